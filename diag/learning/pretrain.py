"""``diag pretrain``: self-supervised pretraining (SimCLR, or BYOL) on the user's own unlabelled windows.

Two augmented views of each window go through the backbone and a projector. The default method,
SimCLR (Chen et al., 2020), asks each view to pick out its partner among all other views of the
batch (NT-Xent loss, temperature 0.2): the other windows are the negatives. The alternative, BYOL
(Grill et al., 2020; ``method = "byol"``), needs no negatives: an online network with a predictor
is pulled towards an exponential-moving-average target network.

Why SimCLR is the default -- measured, not assumed. The usual argument for BYOL is that contrastive
methods need large batches; on time-frequency images of waveforms a batch of 64 on a CPU is plenty,
because windows of different recordings differ strongly. On the simulated bearing set (k-NN probe on
the validation split, random initialisation 0.621) SimCLR reached 0.895 after 5 epochs and 0.934
after 10 (20-epoch schedule, CPU), while BYOL crept to 0.625 after 8 epochs and 0.688 after 50
(``scripts/ssl_study.sh``); fine-tuning from SimCLR then beat scratch by 4.7 points of test accuracy
(21.5 with 10 labels per class), from BYOL by nothing. Faster BYOL schedules drifted onto
nuisances (0.47-0.51): without negatives BYOL can settle on whatever is easiest to keep constant
between two views of one window (noise texture, level), which here is not the fault.

Both only ask the augmentations to define what should *not* matter -- and for time-frequency
images we know that well: where in time a window starts, how long a transient lasts, missing time
slices or frequency bands, the overall level (an offset in the log domain) and noise. Nothing flips or rotates the image: the frequency axis carries the fault.

Positive pairs: two views of the same window (``positives = "window"``, the default), or of two
nearby windows of the same recording (``"recording"``, within ``neighbours`` hops; uses the
recording identity, never a label).

The method's parts are small and testable alone (lightly style): the views
(:class:`diag.learning.augment.TimeFrequencyAugment`), the heads and losses (:mod:`diag.learning.selfsup`:
:class:`~diag.learning.selfsup.ProjectionHead`, :func:`~diag.learning.selfsup.nt_xent_loss`, :func:`~diag.learning.selfsup.byol_loss`),
and :func:`~diag.learning.selfsup.knn_predict` for the k-NN probe that shows the features improve: features of the labelled
training windows are the bank, the validation windows are classified by their k nearest
neighbours (cosine similarity), before pretraining (random initialisation, epoch 0) and every
``knn_every`` epochs. Pretraining itself only sees the *training* split (of ``--data`` and of every
``--extra`` prepared dataset), never validation or test windows.

The loop shares its runtime (device, precision, schedule, step, checkpoints) with ``diag train``
through :mod:`diag.learning.runtime`; the probe's features come from :func:`diag.learning.evaluate.predict_images`.

Output folder::

    .diag-output           marker: a diag pretraining (only such a folder is ever replaced, with --force)
    backbone.safetensors   the (online) backbone (timm keys, no classifier): create_backbone(init="ssl", weights=DIR)
    pretrain.json          model, in_chans, preprocessing of the dataset, pretrain config, history, k-NN probe
    metrics.jsonl / metrics.csv
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from diag.learning.augment import TimeFrequencyAugment
from diag.config import changed_settings, from_dict, load_section
from diag.signal.dataset import PreparedDataset
from diag.errors import DiagError
from diag.learning.evaluate import accuracy_f1, predict_images
from diag.learning.models import SSL_META, SSL_WEIGHTS, check_input_size, check_model_name, create_backbone
from diag.provenance import check_run_dir, package_versions, start_run_dir
from diag.learning.runtime import (AMP_MODES, Dist, Runtime, batch_plan, console, init_distributed, load_checkpoint, lr_at,
                          make_optimizer, make_scaler, optimizer_step, progress, rng_state, save_checkpoint,
                          save_safetensors, set_lr, set_rng_state, warmup_steps)
from diag.learning.runtime import check_finite_training
from diag.learning.selfsup import BYOL, SimCLR, knn_predict, momentum_at
from diag.storage import atomic_write_json, read_json, write_history

POSITIVES = ("window", "recording")
METHODS = ("simclr", "byol")


def neighbour_table(recording: np.ndarray, start: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """For each window, the indices of up to ``k`` windows before and ``k`` after it (by start) in the
    same recording: ``(candidates [N, 2k], padded with -1 after the valid ones; counts [N])``."""
    n = len(recording)
    order = np.lexsort((start, recording))
    pos = np.empty(n, dtype=np.int64)
    pos[order] = np.arange(n)
    offsets = [o for o in range(-k, k + 1) if o != 0]
    cand = np.full((n, len(offsets)), -1, dtype=np.int64)
    for j, off in enumerate(offsets):
        q = pos + off
        other = order[np.clip(q, 0, n - 1)]
        ok = (q >= 0) & (q < n) & (recording[other] == recording)
        cand[:, j] = np.where(ok, other, -1)
    cand = -np.sort(-cand, axis=1)  # valid indices first
    return cand, (cand >= 0).sum(axis=1)


def sample_partners(idx: torch.Tensor, cand: torch.Tensor, counts: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One random neighbour per window index (the window itself where its recording has no other)."""
    u = torch.rand(len(idx), generator=generator)
    c = counts[idx]
    r = (u * c.clamp(min=1)).long().clamp(max=cand.shape[1] - 1)
    picked = cand[idx, r]
    return torch.where(c > 0, picked, idx)


@dataclass
class PretrainConfig:
    """Self-supervised pretraining settings (the ``[pretrain]`` table; ``--set pretrain.key=value``).

    model: timm model name; init: ``scratch`` or ``imagenet`` (continue from ImageNet weights,
    ``weights`` as for train). epochs, batch_size, lr (peak AdamW), weight_decay, warmup (fraction
    of steps when < 1, else steps), grad_clip (0 = off). method: ``simclr`` (default) or ``byol``;
    temperature: SimCLR's NT-Xent temperature; momentum: BYOL's base EMA rate (rises to 1 along a
    cosine). hidden_dim / proj_dim: head sizes. View strengths: crop_min, time_mask,
    freq_mask, gain, noise, shift (see :class:`TimeFrequencyAugment`). positives: ``window`` (two
    views of one window) or ``recording`` (views of two windows of one recording at most
    ``neighbours`` hops apart). knn_k, knn_every: the k-NN probe
    (k neighbours, every N epochs and at the end; epoch 0 is the starting network). amp, device,
    channels_last as for train; in_memory_gb: the unlabelled windows are held in memory up to this size.
    """

    model: str = "convnext_atto"
    init: str = "scratch"
    weights: str = ""
    replicate_channels: bool = False
    epochs: int = 50
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: float = 0.1
    grad_clip: float = 3.0
    momentum: float = 0.99
    hidden_dim: int = 512
    proj_dim: int = 128
    crop_min: float = 0.5
    time_mask: float = 0.2
    freq_mask: float = 0.1
    gain: float = 0.3
    noise: float = 0.2
    shift: float = 0.0
    method: str = "simclr"
    temperature: float = 0.2
    positives: str = "window"
    neighbours: int = 4
    knn_k: int = 20
    knn_every: int = 5
    seed: int = 0
    amp: str = "auto"
    channels_last: bool = True
    device: str = "auto"
    in_memory_gb: float = 8.0

    def validate(self) -> "PretrainConfig":
        check_model_name(self.model)
        checks = [
            (self.init in ("scratch", "imagenet"), f"pretrain.init: choose scratch or imagenet, got '{self.init}'"),
            (self.epochs >= 1, f"pretrain.epochs: must be >= 1, got {self.epochs}"),
            (self.batch_size >= 4, f"pretrain.batch_size: must be >= 4 (BatchNorm in the heads), got {self.batch_size}"),
            (self.lr > 0, f"pretrain.lr: must be > 0, got {self.lr}"),
            (self.weight_decay >= 0, f"pretrain.weight_decay: must be >= 0, got {self.weight_decay}"),
            (self.warmup >= 0 and (self.warmup < 1 or float(self.warmup).is_integer()),
             f"pretrain.warmup: a fraction in [0, 1) or a whole number of steps, got {self.warmup}"),
            (self.grad_clip >= 0, f"pretrain.grad_clip: must be >= 0, got {self.grad_clip}"),
            (0 < self.momentum < 1, f"pretrain.momentum: must be in (0, 1), got {self.momentum}"),
            (self.hidden_dim >= 1 and self.proj_dim >= 1, "pretrain.hidden_dim / proj_dim: must be >= 1"),
            (self.method in METHODS, f"pretrain.method: choose one of {', '.join(METHODS)}, got '{self.method}'"),
            (self.temperature > 0, f"pretrain.temperature: must be > 0, got {self.temperature}"),
            (self.positives in POSITIVES, f"pretrain.positives: choose one of {', '.join(POSITIVES)}, got '{self.positives}'"),
            (self.neighbours >= 1, f"pretrain.neighbours: must be >= 1, got {self.neighbours}"),
            (self.knn_k >= 1, f"pretrain.knn_k: must be >= 1, got {self.knn_k}"),
            (self.knn_every >= 1, f"pretrain.knn_every: must be >= 1, got {self.knn_every}"),
            (self.amp in AMP_MODES, f"pretrain.amp: choose one of {', '.join(AMP_MODES)}, got '{self.amp}'"),
            (self.in_memory_gb > 0, f"pretrain.in_memory_gb: must be > 0, got {self.in_memory_gb}"),
        ]
        for ok, message in checks:
            if not ok:
                raise DiagError(message)
        self.views()  # validates the view strengths
        return self

    def views(self) -> TimeFrequencyAugment:
        return TimeFrequencyAugment(self.crop_min, self.time_mask, self.freq_mask, self.gain, self.noise, self.shift)


def load_pretrain_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> PretrainConfig:
    """``PretrainConfig`` from the ``[pretrain]`` table of ``path`` plus ``pretrain.key=value`` overrides."""
    return load_section(PretrainConfig, "pretrain", path, overrides, example="pretrain.epochs=100")


def knn_probe(backbone: nn.Module, bank_x: torch.Tensor, bank_y: torch.Tensor, query_x: torch.Tensor,
              query_y: np.ndarray, num_classes: int, k: int, device: torch.device, batch_size: int = 256,
              dtype: torch.dtype | None = None) -> dict[str, float]:
    """k-NN accuracy and macro-F1 of ``query`` (validation) windows against the labelled ``bank``."""
    bank = predict_images(backbone, bank_x, batch_size=batch_size, device=device, dtype=dtype, features=True)
    query = predict_images(backbone, query_x, batch_size=batch_size, device=device, dtype=dtype, features=True)
    pred = knn_predict(bank, bank_y.to(device), query, num_classes, k)
    acc, f1 = accuracy_f1(np.asarray(query_y), pred.cpu().numpy())
    return {"knn_accuracy": acc, "knn_macro_f1": f1}


def pretrain(data: str | Path | None, out: str | Path, cfg: PretrainConfig | None = None,
             extra: Sequence[str | Path] = (), force: bool = False, quiet: bool = False,
             resume: bool = False) -> dict[str, Any]:
    """SimCLR (or BYOL) on the training windows of ``data`` (+ ``extra`` prepared datasets); writes ``out``.

    ``last.pt`` (the networks, optimiser, random states) is written every epoch; ``resume=True``
    continues an interrupted run with its saved settings and data (``data``, ``extra`` and ``cfg``
    may then be left out; given, they must match) and reaches the same weights as an uninterrupted
    run (same seed, CPU). Returns a summary with the k-NN probe before (``knn_start``) and after
    (``knn_final``).
    """
    if init_distributed().world > 1:
        raise DiagError("diag pretrain runs in one process (the heads' BatchNorm is not synchronised); "
                        "start it without torchrun")
    out = Path(out)
    saved = _saved_pretrain(out) if resume else None
    if saved is not None:
        diff = changed_settings(cfg, saved["pretrain"]) if cfg is not None else []
        if diff:
            raise DiagError(f"--resume continues {out} with its saved settings; these differ: {', '.join(diff)}")
        cfg = from_dict(PretrainConfig, saved["pretrain"], "pretrain")
        data = data if data is not None else saved["dataset"]["path"]
        extra = list(extra) or [e["path"] for e in saved["extra"]]
    if data is None:
        raise DiagError("--data: the prepared dataset folder is required (made by `diag prepare`)")
    cfg = (cfg or PretrainConfig()).validate()
    ds = PreparedDataset(data)
    extras = [PreparedDataset(p) for p in extra]
    fingerprints = [s.manifest.get("fingerprint") for s in (ds, *extras)]
    if saved is not None and _data_fingerprints(saved) != fingerprints:
        raise DiagError(f"{out}: --resume needs the same prepared datasets the run started on "
                        f"({', '.join([saved['dataset']['path']] + [e['path'] for e in saved['extra']])})")
    for e in extras:
        if tuple(e.image_shape) != tuple(ds.image_shape):
            raise DiagError(f"--extra {e.path}: images are {tuple(e.image_shape)}, but {ds.path} has "
                            f"{tuple(ds.image_shape)}; prepare both with the same transform size and channels")
        if e.path.resolve() == ds.path.resolve():
            raise DiagError(f"--extra {e.path}: is the --data dataset itself")
    if not resume and not force and (out / SSL_META).is_file():  # the same finished run: reuse it
        done = read_json(out / SSL_META, "the pretraining record")
        if done.get("finished"):
            diff = changed_settings(cfg, done.get("pretrain", {}))
            if _data_fingerprints(done) != fingerprints:
                diff.insert(0, "the prepared dataset(s)")
            if diff:
                raise DiagError(f"{out}: holds a finished pretraining with other settings ({', '.join(diff)}); "
                                "pass --force to replace it, or choose another --out")
            if not quiet:
                console.print(f"{out}: finished earlier with the same settings and data; reusing it")
            return {"out": str(out), "knn_start": done["knn_start"], "knn_final": done["knn_last"],
                    "history": done["history"], "reused": True}
    inputs = [data, *extra, cfg.weights]
    check_run_dir(out, "pretrain", resume=resume, force=force, inputs=inputs)
    rt = Runtime.setup(cfg.device, cfg.amp, cfg.channels_last, quiet, "pretrain")
    device, show = rt.device, rt.show

    # ---- data: unlabelled = training windows only; the k-NN probe uses train labels vs val ----------
    sources = [ds, *extras]
    nbytes = sum(len(s.labels("train")) for s in sources) * int(np.prod(ds.image_shape)) * 2
    if nbytes > cfg.in_memory_gb * 2**30:
        raise DiagError(f"the unlabelled training windows need {nbytes / 2**30:.1f} GB, more than "
                        f"pretrain.in_memory_gb={cfg.in_memory_gb}; raise it or use fewer --extra datasets")
    keep = device if device.type == "cuda" else torch.device("cpu")
    unlabeled = torch.cat([torch.from_numpy(np.array(s.images("train"))) for s in sources]).to(keep)
    n_bank = len(ds.labels("train"))
    if cfg.positives == "recording":  # pairs: two nearby windows of the same recording (metadata, no labels)
        metas = [s.meta("train") for s in sources]
        recording = np.concatenate([np.array([f"{i}|{v}" for v in m["rec"]], dtype=object)
                                    for i, m in enumerate(metas)])
        _, rec_id = np.unique(recording, return_inverse=True)
        cand_np, counts_np = neighbour_table(rec_id, np.concatenate([m["start"] for m in metas]).astype(np.int64),
                                             cfg.neighbours)
        cand, counts = torch.from_numpy(cand_np), torch.from_numpy(counts_np)
    bank_x, bank_y = unlabeled[:n_bank], torch.as_tensor(ds.labels("train"))
    has_val = "val" in ds.splits and len(ds.labels("val")) > 0
    val_x = torch.from_numpy(np.array(ds.images("val"))).to(keep) if has_val else None
    val_y = ds.labels("val") if has_val else None
    if len(unlabeled) < cfg.batch_size:
        raise DiagError(f"only {len(unlabeled)} training windows; pretrain.batch_size={cfg.batch_size} needs at least that many")

    # ---- model --------------------------------------------------------------------------------
    torch.manual_seed(cfg.seed)
    backbone = create_backbone(cfg.model, cfg.init, ds.image_shape[0], num_classes=0, weights=cfg.weights or None,
                               replicate_channels=cfg.replicate_channels)
    check_input_size(backbone, cfg.model, ds.image_shape, str(ds.path))
    net = (SimCLR(backbone, cfg.hidden_dim, cfg.proj_dim, cfg.temperature) if cfg.method == "simclr"
           else BYOL(backbone, cfg.hidden_dim, cfg.proj_dim))
    rt.prepare_model(net)
    online = nn.ModuleList(net.online_modules())
    optimizer = make_optimizer(online, cfg.lr, cfg.weight_decay, device)
    scaler = make_scaler(rt)
    views = cfg.views()
    gen = torch.Generator().manual_seed(cfg.seed)
    aug_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    steps_per_epoch = len(unlabeled) // cfg.batch_size  # full batches only (BatchNorm heads)
    total = cfg.epochs * steps_per_epoch
    warmup = warmup_steps(cfg.warmup, total)

    def probe() -> dict[str, float]:
        if not has_val:
            return {"knn_accuracy": float("nan"), "knn_macro_f1": float("nan")}
        return knn_probe(net.backbone, bank_x, bank_y, val_x, val_y, len(ds.classes), cfg.knn_k, device,
                         dtype=rt.dtype)

    if saved is None:
        start_run_dir(out, "pretrain", force=force, inputs=inputs)
    history: list[dict[str, Any]] = []
    meta: dict[str, Any] = {
        "format": "diag-ssl/1", "method": {"simclr": "SimCLR", "byol": "BYOL"}[cfg.method], "model": cfg.model,
        "in_chans": ds.image_shape[0],
        "replicate_channels": cfg.replicate_channels, "feature_dim": backbone.num_features,
        "classes": ds.classes, "preprocessing": ds.preprocessing_record(),
        "dataset": {"path": str(ds.path), "fingerprint": ds.manifest.get("fingerprint"), "split": "train",
                    "windows": n_bank},
        "unlabeled_windows": len(unlabeled),
        "extra": [{"path": str(e.path), "fingerprint": e.manifest.get("fingerprint"), "split": "train",
                   "windows": len(e.labels("train"))} for e in extras],
        "pretrain": asdict(cfg), "knn_probe": {"bank": "train (labelled)", "query": "val", "k": cfg.knn_k},
        "runtime": rt.info(),
        "versions": package_versions(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    step, first = 0, 1
    with rt.session():
        if saved is not None:  # ---- resume ----------------------------------------------------
            last = load_checkpoint(out / "last.pt", keys=("model", "optimizer", "scaler", "rng", "epoch", "step",
                                                          "history"))
            if last.get("device", device.type) != device.type:
                raise DiagError(f"{out}: this run started on {last['device']}, here it would continue on "
                                f"{device.type}; resume it on a machine with {last['device']}")
            net.load_state_dict(last["model"])
            optimizer.load_state_dict(last["optimizer"])
            scaler.load_state_dict(last["scaler"])
            set_rng_state(last["rng"], gen, aug_gen, Dist())
            history = list(last["history"])
            step, first = last["step"], last["epoch"] + 1
            meta["created"] = saved.get("created", meta["created"])
            start = {k: history[0][k] for k in ("knn_accuracy", "knn_macro_f1")}
            if show:
                console.print(f"resuming {out} after epoch {last['epoch']}/{cfg.epochs}")
        else:
            start = probe()
            history.append({"epoch": 0, "step": 0, "loss": float("nan"), **start, "lr": 0.0,
                            "momentum": cfg.momentum, "seconds": 0.0})
            if show:
                console.print(f"epoch   0  k-NN val accuracy {start['knn_accuracy']:.3f}  F1 {start['knn_macro_f1']:.3f}"
                              f"  ({cfg.init} initialisation; {len(unlabeled)} unlabelled training windows)")
        for epoch in range(first, cfg.epochs + 1):
            t0 = time.perf_counter()
            net.train()
            batches = batch_plan(len(unlabeled), cfg.batch_size, gen)[:steps_per_epoch]
            loss_sum = torch.zeros((), device=device)
            with progress(show, f"pretrain {epoch}/{cfg.epochs}", len(batches)) as advance:
                for b in batches:
                    lr = lr_at(step, total, warmup, cfg.lr)
                    set_lr(optimizer, lr)
                    x = unlabeled[b.to(unlabeled.device)].to(device).float()
                    if cfg.positives == "recording":
                        x2 = unlabeled[sample_partners(b, cand, counts, gen).to(unlabeled.device)].to(device).float()
                    else:
                        x2 = x
                    v1, v2 = views(x, aug_gen), views(x2, aug_gen)
                    with rt.autocast():
                        loss = net(rt.layout(v1), rt.layout(v2))
                    optimizer_step(loss, optimizer, scaler, online.parameters(), cfg.grad_clip)
                    m = momentum_at(step, total, cfg.momentum)
                    net.update_target(m)
                    loss_sum += loss.detach().float()
                    step += 1
                    advance()
            row: dict[str, Any] = {"epoch": epoch, "step": step, "loss": (loss_sum / len(batches)).item()}
            check_finite_training(row["loss"], epoch, out, cfg.lr)
            knn = probe() if (epoch % cfg.knn_every == 0 or epoch == cfg.epochs) else {
                "knn_accuracy": float("nan"), "knn_macro_f1": float("nan")}
            row.update(knn)
            row.update({"lr": lr, "momentum": m, "seconds": round(time.perf_counter() - t0, 3)})
            history.append(row)
            save_safetensors(out / SSL_WEIGHTS, net.backbone.state_dict(), metadata={"format": "pt", "model": cfg.model})
            meta.update(history=history, epochs_done=epoch, knn_start=_last_knn(history[:1]),
                        knn_last=_last_knn(history))
            # Order matters for a crash between the writes: weights, then pretrain.json (which says
            # finished on the last epoch), then last.pt; a resume restarts from the older last.pt.
            meta["finished"] = epoch == cfg.epochs
            atomic_write_json(out / SSL_META, meta)
            write_history(out, history)
            save_checkpoint(out / "last.pt", {"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                                              "scaler": scaler.state_dict(), "rng": rng_state(gen, aug_gen, Dist()),
                                              "epoch": epoch, "step": step,
                                              "history": history, "device": device.type})
            if show:
                knn_txt = (f"  k-NN val accuracy {knn['knn_accuracy']:.3f}  F1 {knn['knn_macro_f1']:.3f}"
                           if not math.isnan(knn["knn_accuracy"]) else "")
                mom = f"  momentum {m:.4f}" if cfg.method == "byol" else ""
                console.print(f"epoch {epoch:>3}/{cfg.epochs}  {meta['method']} loss {row['loss']:.4f}{knn_txt}  "
                              f"lr {lr:.2e}{mom}  {row['seconds']:.1f} s")
    final = _last_knn(history)
    if show:
        console.print(f"k-NN val accuracy {start['knn_accuracy']:.3f} ({cfg.init} init) -> "
                      f"{final['knn_accuracy']:.3f} after {cfg.epochs} epochs  -> {out / SSL_WEIGHTS}")
    return {"out": str(out), "knn_start": start, "knn_final": final, "history": history}


def _saved_pretrain(out: Path) -> dict[str, Any]:
    """The saved state of a resumable ``diag pretrain`` run in ``out``."""
    if not (out / SSL_META).is_file() or not (out / "last.pt").is_file():
        raise DiagError(f"{out}: nothing to resume (no {SSL_META} / last.pt); start it without --resume")
    saved = read_json(out / SSL_META, "the pretraining record", "not resumed; start it again with --force")
    if not isinstance(saved, dict) or not isinstance(saved.get("pretrain"), dict) or "dataset" not in saved:
        raise DiagError(f"{out / SSL_META}: not the record of a diag pretraining; not resumed; "
                        "start it again with --force")
    if saved.get("finished"):
        raise DiagError(f"{out}: this pretraining already finished; use --force to start over")
    return saved


def _data_fingerprints(meta: dict[str, Any]) -> list[str | None]:
    """Fingerprints of the prepared datasets (``--data`` then each ``--extra``) a pretrain.json names."""
    return [meta.get("dataset", {}).get("fingerprint")] + [e.get("fingerprint") for e in meta.get("extra", [])]


def _last_knn(history: list[dict[str, Any]]) -> dict[str, Any]:
    done = [h for h in history if not math.isnan(h["knn_accuracy"])] or history[:1]
    h = done[-1]
    return {"epoch": h["epoch"], "knn_accuracy": h["knn_accuracy"], "knn_macro_f1": h["knn_macro_f1"]}
