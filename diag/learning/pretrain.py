"""``diag pretrain``: self-supervised pretraining on the user's own unlabelled windows, with a probe that
says whether it learned.

Methods (``pretrain.method`` / ``--method``), each three small parts -- views, head, loss -- in
:mod:`diag.learning.selfsup`:

* ``simclr`` (default; Chen et al., 2020): each view picks its partner among the other views of the
  batch (NT-Xent, temperature 0.2);
* ``moco`` (He et al., 2020): the same loss against a queue of ``queue_size`` keys from an EMA encoder,
  so a batch of 64 sees thousands of negatives;
* ``vicreg`` (Bardes et al., 2022) and ``byol`` (Grill et al., 2020): no negatives, small batches;
* ``msm``: masked spectrogram modelling (blank time-frequency patches, reconstruct them);
* ``auto`` (default): :func:`pretrain_auto` runs SimCLR and VICReg with the same settings and keeps the
  one whose probe rose most.

Why ``auto`` is the default -- measured, not assumed (``SSL_FINDINGS.md`` "Stop 31",
``scripts/studies/ssl_methods.sh``, tf_efficientnet_lite0, 6 epochs): no one method learns on every data
set. SimCLR stays at its chance loss from a random start on ITSC's and the simulated bearings' 32x32
images while VICReg learns there; from ImageNet weights on the inverter set SimCLR lifts the probe 0.703
-> 0.836 while VICReg's falls. Two pretrainings cost twice the (short) pretraining; the probe on
validation chooses, as it already chooses the epoch, and the test split is never seen.

The views (:class:`diag.learning.augment.TimeFrequencyAugment`) say what should *not* matter: where
in time a window starts, missing time slices or frequency bands, the level, noise. With ``views =
"auto"`` (default) they follow the image kind (:func:`diag.learning.augment.views_for`): no time crop
of envelope-order images (their columns are bands), a row shift for order images.

**The probe decides what is kept.** Before pretraining (epoch 0: the initialisation, random or
ImageNet) and after every ``knn_every`` epochs, BatchNorm statistics are recalibrated on unaugmented
unlabelled windows and the pooled features are probed: the labelled *training* windows are the bank
(``probe = "knn"``: weighted k-NN, cosine; ``"logistic"``: a logistic regression on them) and the
*validation* windows are classified. ``backbone.safetensors`` is the backbone of the best probe
(epoch 0 included: a pretraining that never beats its start hands back the start, and says so).
``pretrain.json`` (schema ``diag-ssl/2``) records the curve and the verdict under ``probe``:
``initial``, ``best``, ``best_epoch``, ``delta``, ``margin`` (what noise alone reaches in the best of
the probe's readings: the binomial standard error of the initial accuracy on the validation windows
times the one-sided normal quantile of 0.02275 / K for K readings after epoch 0 — 2 for one reading,
3.05 for 20 —, at least one window; the standard error widened by ``design_effect``, how much the
initial reading's windows agree within their validation recordings), ``readings`` (K), ``learned``
(``delta > margin``) and ``verdict``, a sentence. The probe never sees the test split.

Pretraining reads the *training* windows of ``--data`` (and of every ``--extra`` prepared dataset),
plus an unlabelled pool of other recordings (``--unlabelled DIR``, imaged by
:mod:`diag.commands.pretrain` with the dataset's own preprocessing; recordings of the test split are
refused there). A non-finite loss stops the run with one line; no backbone is written.

Output folder::

    .diag-output           marker: a diag pretraining (only such a folder is ever replaced, with --force)
    methods/<method>/      with ``method = "auto"``: each candidate's own pretraining folder (as below);
                           the top folder then holds the chosen one's backbone and record + ``method_choice``
    backbone.safetensors   best-by-probe backbone (timm keys, no classifier), written when the run finishes
    pretrain.json          model, init, in_chans, preprocessing, settings, views, history, probe (diag-ssl/2)
    metrics.jsonl / metrics.csv, last.pt (resume state)
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from diag.config import changed_settings, from_dict, load_section
from diag.errors import DiagError
from diag.learning import tracking
from diag.learning.augment import TimeFrequencyAugment, views_for
from diag.learning.evaluate import accuracy_f1, predict_images
from diag.learning.models import SSL_META, SSL_WEIGHTS, check_input_size, check_model_name, create_backbone
from diag.learning.probe_noise import design_effect, probe_learned
from diag.learning.runtime import (AMP_MODES, Dist, Runtime, batch_plan, console, init_distributed, load_checkpoint, lr_at,
                                   make_optimizer, make_scaler, optimizer_step, progress, rng_state, save_checkpoint,
                                   save_safetensors, set_lr, set_rng_state, warmup_steps)
from diag.learning.selfsup import BYOL, MaskedSpectrogram, MoCo, SimCLR, VICReg, knn_predict, momentum_at
from diag.provenance import check_run_dir, package_versions, start_run_dir
from diag.show import esc
from diag.signal.dataset import PreparedDataset
from diag.storage import atomic_write_bytes, atomic_write_json, read_json, write_history

POSITIVES = ("window", "recording")
METHODS = ("auto", "simclr", "moco", "vicreg", "byol", "msm")
METHOD_NAMES = {"simclr": "SimCLR", "moco": "MoCo", "vicreg": "VICReg", "byol": "BYOL", "msm": "MSM"}
AUTO_METHODS = ("simclr", "vicreg")  #: what ``method = "auto"`` tries, in this order (ties keep the first)
PROBES = ("knn", "logistic")
VIEWS = ("auto", "given")


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
    ``weights`` as for train: the fourth start, ImageNet then own-data SSL). epochs, batch_size, lr (peak
    AdamW), weight_decay, warmup (fraction of steps when < 1, else steps), grad_clip (0 = off).
    method: auto | simclr | moco | vicreg | byol | msm (auto: each of :data:`AUTO_METHODS`, the best by
    probe kept; see :func:`pretrain_auto`). temperature: NT-Xent / InfoNCE temperature;
    momentum: the EMA rate of BYOL's target and MoCo's key encoder (rises to 1 along a cosine);
    queue_size: MoCo's negatives; mask_ratio: MSM's blanked fraction of patches. hidden_dim /
    proj_dim: head sizes. views: ``auto`` (the strengths below, adapted to the image kind) or ``given``;
    view strengths crop_min, time_mask, freq_mask, gain, noise, shift, freq_shift (see
    :class:`TimeFrequencyAugment`). positives: ``window`` (two views of one window) or ``recording``
    (views of two windows of one recording at most ``neighbours`` hops apart). probe: ``knn`` or
    ``logistic``; knn_k; knn_every: probe every N epochs and at the end (epoch 0 always).
    amp, device, channels_last as for train; in_memory_gb: the unlabelled windows are held in memory
    up to this size.
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
    method: str = "auto"
    momentum: float = 0.99
    temperature: float = 0.2
    queue_size: int = 4096
    mask_ratio: float = 0.5
    hidden_dim: int = 512
    proj_dim: int = 128
    views: str = "auto"
    crop_min: float = 0.5
    time_mask: float = 0.2
    freq_mask: float = 0.1
    gain: float = 0.3
    noise: float = 0.2
    shift: float = 0.0
    freq_shift: float = 0.0
    positives: str = "window"
    neighbours: int = 4
    probe: str = "knn"
    knn_k: int = 20
    knn_every: int = 1
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
            (self.queue_size >= 1, f"pretrain.queue_size: must be >= 1, got {self.queue_size}"),
            (0 < self.mask_ratio < 1, f"pretrain.mask_ratio: must be in (0, 1), got {self.mask_ratio}"),
            (self.hidden_dim >= 1 and self.proj_dim >= 1, "pretrain.hidden_dim / proj_dim: must be >= 1"),
            (self.method in METHODS, f"pretrain.method: choose one of {', '.join(METHODS)}, got '{self.method}'"),
            (self.temperature > 0, f"pretrain.temperature: must be > 0, got {self.temperature}"),
            (self.views in VIEWS, f"pretrain.views: choose one of {', '.join(VIEWS)}, got '{self.views}'"),
            (self.positives in POSITIVES, f"pretrain.positives: choose one of {', '.join(POSITIVES)}, got '{self.positives}'"),
            (self.neighbours >= 1, f"pretrain.neighbours: must be >= 1, got {self.neighbours}"),
            (self.probe in PROBES, f"pretrain.probe: choose one of {', '.join(PROBES)}, got '{self.probe}'"),
            (self.knn_k >= 1, f"pretrain.knn_k: must be >= 1, got {self.knn_k}"),
            (self.knn_every >= 1, f"pretrain.knn_every: must be >= 1, got {self.knn_every}"),
            (self.amp in AMP_MODES, f"pretrain.amp: choose one of {', '.join(AMP_MODES)}, got '{self.amp}'"),
            (self.in_memory_gb > 0, f"pretrain.in_memory_gb: must be > 0, got {self.in_memory_gb}"),
        ]
        for ok, message in checks:
            if not ok:
                raise DiagError(message)
        self.augment()  # validates the view strengths
        return self

    def view_settings(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in ("crop_min", "time_mask", "freq_mask", "gain", "noise", "shift", "freq_shift")}

    def augment(self, kinds: Sequence[str] = ()) -> TimeFrequencyAugment:
        """The views: the given strengths, adapted to the image ``kinds`` when ``views = "auto"``."""
        settings = views_for(list(kinds), self.view_settings())[0] if self.views == "auto" else self.view_settings()
        return TimeFrequencyAugment(**settings)


def load_pretrain_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> PretrainConfig:
    """``PretrainConfig`` from the ``[pretrain]`` table of ``path`` plus ``pretrain.key=value`` overrides."""
    return load_section(PretrainConfig, "pretrain", path, overrides, example="pretrain.epochs=100")


@dataclass
class UnlabelledPool:
    """Images of recordings outside the labelled set (``diag pretrain --unlabelled DIR``), made with the
    prepared dataset's own preprocessing; ``record``: what pretrain.json says of them (folder, files,
    windows, a digest of their content hashes, the files refused)."""

    images: np.ndarray
    record: dict[str, Any] = field(default_factory=dict)


@dataclass
class Pool:
    """What one pretraining holds in memory: the unlabelled windows (training splits + pool), the probe's
    bank (labelled training windows) and query (validation), the recording neighbours of each window."""

    unlabeled: torch.Tensor
    bank_x: torch.Tensor
    bank_y: torch.Tensor
    val_x: torch.Tensor | None
    val_y: np.ndarray | None
    cand: torch.Tensor | None = None
    counts: torch.Tensor | None = None
    val_groups: np.ndarray | None = None  # each validation window's recording (the probe's design effect)


def load_pool(ds: PreparedDataset, extras: list[PreparedDataset], extra_pool: UnlabelledPool | None,
              cfg: PretrainConfig, device: torch.device) -> Pool:
    """The training windows of ``ds`` and ``extras`` (never validation or test) plus ``extra_pool``."""
    sources = [ds, *extras]
    n_pool = 0 if extra_pool is None else len(extra_pool.images)
    nbytes = (sum(len(s.labels("train")) for s in sources) + n_pool) * int(np.prod(ds.image_shape)) * 2
    if nbytes > cfg.in_memory_gb * 2**30:
        raise DiagError(f"the unlabelled windows need {nbytes / 2**30:.1f} GB, more than "
                        f"pretrain.in_memory_gb={cfg.in_memory_gb}; raise it or use fewer --extra / --unlabelled")
    keep = device if device.type == "cuda" else torch.device("cpu")
    parts = [torch.from_numpy(np.array(s.images("train"))) for s in sources]
    if n_pool:
        parts.append(torch.from_numpy(np.ascontiguousarray(extra_pool.images)).to(parts[0].dtype))
    unlabeled = torch.cat(parts).to(keep)
    if len(unlabeled) < cfg.batch_size:
        raise DiagError(f"only {len(unlabeled)} unlabelled windows; pretrain.batch_size={cfg.batch_size} needs at least that many")
    n_bank = len(ds.labels("train"))
    has_val = "val" in ds.splits and len(ds.labels("val")) > 0
    pool = Pool(unlabeled, unlabeled[:n_bank], torch.as_tensor(ds.labels("train")),
                torch.from_numpy(np.array(ds.images("val"))).to(keep) if has_val else None,
                ds.labels("val") if has_val else None,
                val_groups=ds.meta("val").get("rec") if has_val else None)
    if cfg.positives == "recording":  # pairs: two nearby windows of the same recording (metadata, no labels)
        metas = [s.meta("train") for s in sources]
        rec = np.concatenate([np.array([f"{i}|{v}" for v in m["rec"]], dtype=object) for i, m in enumerate(metas)]
                             + [np.array([f"pool|{i}" for i in range(n_pool)], dtype=object)])
        start = np.concatenate([m["start"] for m in metas] + [np.zeros(n_pool)]).astype(np.int64)
        cand, counts = neighbour_table(np.unique(rec, return_inverse=True)[1], start, cfg.neighbours)
        pool.cand, pool.counts = torch.from_numpy(cand), torch.from_numpy(counts)
    return pool


def build_method(cfg: PretrainConfig, backbone: nn.Module, image_shape: Sequence[int]) -> nn.Module:
    """The SSL method's network around ``backbone`` (see :mod:`diag.learning.selfsup`)."""
    if cfg.method == "simclr":
        return SimCLR(backbone, cfg.hidden_dim, cfg.proj_dim, cfg.temperature)
    if cfg.method == "moco":
        return MoCo(backbone, cfg.hidden_dim, cfg.proj_dim, cfg.temperature, cfg.queue_size)
    if cfg.method == "vicreg":
        return VICReg(backbone, cfg.hidden_dim, cfg.proj_dim)
    if cfg.method == "msm":
        return MaskedSpectrogram(backbone, image_shape[0], tuple(image_shape[1:]), cfg.mask_ratio)
    if cfg.method == "auto":
        raise DiagError("pretrain.method = auto is several pretrainings: run it with pretrain_auto")
    return BYOL(backbone, cfg.hidden_dim, cfg.proj_dim)


# ------------------------------------------------------------------------------------------------
# The probe


#: a history row's probe columns when no probe ran (every row has the same columns: metrics.csv)
NO_PROBE = {"probe_accuracy": float("nan"), "probe_macro_f1": float("nan"), "probe_design_effect": float("nan")}


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, images: torch.Tensor, device: torch.device, batch_size: int = 64,
                          max_windows: int = 512) -> None:
    """Re-estimate every BatchNorm's running statistics on ``images`` (unaugmented; the first
    ``max_windows``), as a cumulative average: the EMA statistics of training were gathered on
    augmented views. Nothing happens to a model without BatchNorm (ConvNeXt)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    was = model.training
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for i in range(0, min(len(images), max_windows), batch_size):
        model(images[i:i + batch_size].to(device).float())
    for m, mom in zip(bns, saved):
        m.momentum = mom
    model.train(was)


def probe_features(backbone: nn.Module, pool: Pool, cfg: PretrainConfig, num_classes: int, device: torch.device,
                   dtype: torch.dtype | None = None) -> dict[str, float]:
    """Probe accuracy and macro-F1 of the validation windows against the labelled training windows
    (after BatchNorm recalibration); NaN without a validation split."""
    if pool.val_x is None:
        return dict(NO_PROBE)
    recalibrate_batchnorm(backbone, pool.unlabeled, device)
    bank = predict_images(backbone, pool.bank_x, batch_size=256, device=device, dtype=dtype, features=True)
    query = predict_images(backbone, pool.val_x, batch_size=256, device=device, dtype=dtype, features=True)
    if cfg.probe == "knn":
        pred = knn_predict(bank, pool.bank_y.to(device), query, num_classes, cfg.knn_k).cpu().numpy()
    else:
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        scale = StandardScaler().fit(bank.cpu().numpy())
        clf = LogisticRegression(max_iter=500, C=1.0).fit(scale.transform(bank.cpu().numpy()), pool.bank_y.numpy())
        pred = clf.predict(scale.transform(query.cpu().numpy()))
    acc, f1 = accuracy_f1(np.asarray(pool.val_y), pred)
    deff = (design_effect(np.asarray(pool.val_y) == pred, pool.val_groups) if pool.val_groups is not None
            else float("nan"))
    return {"probe_accuracy": acc, "probe_macro_f1": f1, "probe_design_effect": deff}


def probe_summary(history: list[dict[str, Any]], n_val: int, init: str, probe: str) -> dict[str, Any]:
    """The ``probe`` record of pretrain.json: curve, initial, best (epoch 0 included), delta, noise margin,
    learned (``delta > margin``) and a one-sentence verdict."""
    curve = [{"epoch": h["epoch"], "accuracy": h["probe_accuracy"], "macro_f1": h["probe_macro_f1"]}
             for h in history if not math.isnan(h["probe_accuracy"])]
    out: dict[str, Any] = {"kind": probe, "metric": "accuracy", "query": "val", "bank": "train (labelled)",
                           "windows": n_val, "curve": curve}
    if not curve:
        return {**out, "initial": None, "best": None, "best_epoch": None, "delta": None, "margin": None,
                "learned": None, "verdict": "no validation split: the probe cannot tell whether pretraining learned; "
                                            "the last epoch's backbone is kept"}
    p0 = curve[0]["accuracy"]
    best = max(curve, key=lambda c: (c["accuracy"], -c["epoch"]))  # ties: the earlier epoch
    delta = best["accuracy"] - p0
    readings = max(len(curve) - 1, 1)
    deff = next((h.get("probe_design_effect", math.nan) for h in history if h["epoch"] == curve[0]["epoch"]), math.nan)
    deff = deff if math.isfinite(deff) else 1.0  # the initial reading's: the spread under "nothing learned"
    learned, margin = probe_learned(p0, best["accuracy"], n_val, readings, deff)
    last = curve[-1]["accuracy"]
    if learned:
        verdict = (f"learned: the {probe} probe on validation rose from {p0:.3f} ({init} initialisation) to "
                   f"{best['accuracy']:.3f} at epoch {best['epoch']} (+{delta:.3f}, noise margin {margin:.3f}); "
                   f"that epoch's backbone is kept")
    else:
        how = "fell" if last < p0 - margin else "did not move beyond noise"
        verdict = (f"did not learn: the {probe} probe on validation {how} ({p0:.3f} at {init} initialisation, best "
                   f"{best['accuracy']:.3f} at epoch {best['epoch']}, last {last:.3f}; noise margin {margin:.3f}); "
                   + ("the initial weights are kept" if best["epoch"] == 0 else
                      f"epoch {best['epoch']}'s backbone is kept, within noise of the initial weights"))
    return {**out, "initial": p0, "best": best["accuracy"], "best_epoch": best["epoch"], "delta": delta,
            "margin": margin, "readings": readings, "design_effect": deff, "learned": learned, "last": last, "verdict": verdict}


# ------------------------------------------------------------------------------------------------
# The loop


@dataclass
class LoopState:
    """Everything one epoch updates: the network, optimiser, scaler, random generators, step, history,
    and the best-by-probe backbone so far."""

    net: nn.Module
    optimizer: Any
    scaler: Any
    gen: torch.Generator
    aug_gen: torch.Generator
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, torch.Tensor] | None = None
    best_score: float = -math.inf


def pretrain_epoch(st: LoopState, pool: Pool, cfg: PretrainConfig, rt: Runtime, views: TimeFrequencyAugment,
                   epoch: int) -> dict[str, float]:
    """One pass over the unlabelled windows (full batches only: the heads' BatchNorm). A non-finite loss
    raises a one-line DiagError (the caller writes no backbone)."""
    steps_per_epoch = len(pool.unlabeled) // cfg.batch_size
    total = cfg.epochs * steps_per_epoch
    warmup = warmup_steps(cfg.warmup, total)
    st.net.train()
    batches = batch_plan(len(pool.unlabeled), cfg.batch_size, st.gen)[:steps_per_epoch]
    loss_sum = torch.zeros((), device=rt.device)
    lr = m = 0.0
    params = [p for mod in st.net.online_modules() for p in mod.parameters()]
    with progress(rt.show, f"pretrain {epoch}/{cfg.epochs}", len(batches)) as advance:
        for b in batches:
            lr = lr_at(st.step, total, warmup, cfg.lr)
            set_lr(st.optimizer, lr)
            x = pool.unlabeled[b.to(pool.unlabeled.device)].to(rt.device).float()
            x2 = x if pool.cand is None else pool.unlabeled[
                sample_partners(b, pool.cand, pool.counts, st.gen).to(pool.unlabeled.device)].to(rt.device).float()
            v1, v2 = views(x, st.aug_gen), views(x2, st.aug_gen)
            extra = {"mask": st.net.draw_mask(torch.cat([v1, v2]), st.aug_gen)} if cfg.method == "msm" else {}
            with rt.autocast():
                loss = st.net(rt.layout(v1), rt.layout(v2), **extra)
            if not torch.isfinite(loss.detach()).item():
                raise DiagError(f"pretraining stopped: the {METHOD_NAMES[cfg.method]} loss is {loss.item()} at epoch "
                                f"{epoch}, step {st.step}; no backbone written; lower pretrain.lr (now {cfg.lr:g}) "
                                "or raise pretrain.warmup, then run again with --force")
            optimizer_step(loss, st.optimizer, st.scaler, params, cfg.grad_clip)
            m = momentum_at(st.step, total, cfg.momentum)
            st.net.update_target(m)
            loss_sum += loss.detach().float()
            st.step += 1
            advance()
    return {"loss": (loss_sum / max(1, len(batches))).item(), "lr": lr, "momentum": m}


def _probe_and_keep(st: LoopState, pool: Pool, cfg: PretrainConfig, rt: Runtime, num_classes: int,
                    epoch: int) -> dict[str, float]:
    """Probe (when due) and keep the backbone if it is the best so far (epoch 0 is the first candidate)."""
    due = epoch == 0 or epoch % cfg.knn_every == 0 or epoch == cfg.epochs
    res = probe_features(st.net.backbone, pool, cfg, num_classes, rt.device, rt.dtype) if due else dict(NO_PROBE)
    score = res["probe_accuracy"]
    if (not math.isnan(score) and score > st.best_score) or (pool.val_x is None and epoch == cfg.epochs):
        st.best_score = score if not math.isnan(score) else st.best_score
        st.best = {k: v.detach().cpu().clone() for k, v in st.net.backbone.state_dict().items()}
    return res

def pretrain(data: str | Path | None, out: str | Path, cfg: PretrainConfig | None = None,
             extra: Sequence[str | Path] = (), force: bool = False, quiet: bool = False,
             resume: bool = False, unlabelled: UnlabelledPool | None = None, track: Any = None) -> dict[str, Any]:
    """Self-supervised pretraining on the training windows of ``data`` (+ ``extra`` prepared datasets,
    + an ``unlabelled`` pool); writes ``out``.

    ``last.pt`` (the networks, optimiser, random states, best backbone so far) is written every epoch;
    ``resume=True`` continues an interrupted run with its saved settings and data (``data``, ``extra``
    and ``cfg`` may then be left out; given, they must match) and reaches the same weights as an
    uninterrupted run (same seed, CPU). Returns a summary: ``probe`` (see :func:`probe_summary`),
    ``knn_start`` / ``knn_final`` (the probe at epoch 0 and at the last epoch), ``history``.
    """
    if init_distributed().world > 1:  # before anything, method auto's folder included
        raise DiagError("diag pretrain runs in one process (the heads' BatchNorm is not synchronised); "
                        "start it without torchrun")
    out = Path(out)
    if (auto_record(out) is not None) if resume else (cfg or PretrainConfig()).method == "auto":
        return pretrain_auto(data, out, cfg, extra=extra, force=force, quiet=quiet, resume=resume,
                             unlabelled=unlabelled, track=track)
    saved = _saved_pretrain(out) if resume else None
    data, extra, cfg = _settle(saved, data, extra, cfg, out)
    ds, extras = _datasets(data, extra)
    fingerprints = [s.manifest.get("fingerprint") for s in (ds, *extras)] + [_pool_digest(unlabelled)]
    if saved is not None and _data_fingerprints(saved) != fingerprints:
        raise DiagError(f"{out}: --resume needs the same prepared datasets and --unlabelled recordings the run started "
                        f"on ({', '.join([saved['dataset']['path']] + [e['path'] for e in saved['extra']])})")
    if not resume and not force:
        done = _finished_same(out, cfg, fingerprints, quiet)
        if done is not None:
            return done
    inputs = [data, *extra, cfg.weights]
    check_run_dir(out, "pretrain", resume=resume, force=force, inputs=inputs)
    rt = Runtime.setup(cfg.device, cfg.amp, cfg.channels_last, quiet, "pretrain")
    pool = load_pool(ds, extras, unlabelled, cfg, rt.device)
    kinds = _image_kinds(ds)
    views = cfg.augment(kinds)
    torch.manual_seed(cfg.seed)
    backbone = create_backbone(cfg.model, cfg.init, ds.image_shape[0], num_classes=0, weights=cfg.weights or None,
                               replicate_channels=cfg.replicate_channels)
    check_input_size(backbone, cfg.model, ds.image_shape, str(ds.path))
    net = rt.prepare_model(build_method(cfg, backbone, ds.image_shape))
    st = LoopState(net, make_optimizer(nn.ModuleList(net.online_modules()), cfg.lr, cfg.weight_decay, rt.device),
                   make_scaler(rt), torch.Generator().manual_seed(cfg.seed),
                   torch.Generator(device=rt.device).manual_seed(cfg.seed + 1))
    if saved is None:
        start_run_dir(out, "pretrain", force=force, inputs=inputs)
    meta = _meta(cfg, ds, extras, pool, unlabelled, backbone, views, kinds, rt)
    n_val = 0 if pool.val_y is None else len(pool.val_y)
    first = 1
    tracker = tracking.open_run(track, out, "pretrain", asdict(cfg), warn=console.print)
    with rt.session():
        if saved is not None:
            first = _resume(st, out, rt.device, meta, saved)
            if rt.show:
                console.print(esc(f"resuming {out} after epoch {first - 1}/{cfg.epochs}"))
        else:
            row = _probe_and_keep(st, pool, cfg, rt, len(ds.classes), 0)
            st.history.append({"epoch": 0, "step": 0, "loss": float("nan"), **row, "lr": 0.0,
                               "momentum": cfg.momentum, "seconds": 0.0})
            if rt.show:
                console.print(f"epoch   0  probe val accuracy {row['probe_accuracy']:.3f}  F1 {row['probe_macro_f1']:.3f}"
                              f"  ({cfg.init} initialisation; {len(pool.unlabeled)} unlabelled windows)")
        for epoch in range(first, cfg.epochs + 1):
            t0 = time.perf_counter()
            row = pretrain_epoch(st, pool, cfg, rt, views, epoch)
            row.update(_probe_and_keep(st, pool, cfg, rt, len(ds.classes), epoch))
            st.history.append({"epoch": epoch, "step": st.step, **row, "seconds": round(time.perf_counter() - t0, 3)})
            _save_epoch(out, st, meta, cfg, epoch, n_val, rt)
            tracker.epoch(st.history[-1])
    summary = meta["probe"]
    if rt.show:
        console.print(esc(f"{summary['verdict']} -> {out / SSL_WEIGHTS}"), soft_wrap=True)
    return tracker.finish({"out": str(out), "probe": summary, "knn_start": _knn(st.history[:1]),
                           "knn_final": _knn(st.history), "history": st.history}, out, cfg.epochs)


def auto_record(out: Path) -> dict[str, Any] | None:
    """The pretrain.json of a ``method = "auto"`` pretraining in ``out`` (finished or not), else None."""
    if not (Path(out) / SSL_META).is_file():
        return None
    rec = read_json(Path(out) / SSL_META, "the pretraining record", "not resumed; start it again with --force")
    return rec if isinstance(rec, dict) and isinstance(rec.get("method_choice"), dict) else None


def pretrain_auto(data: str | Path | None, out: str | Path, cfg: PretrainConfig | None = None,
                  extra: Sequence[str | Path] = (), force: bool = False, quiet: bool = False, resume: bool = False,
                  unlabelled: UnlabelledPool | None = None, track: Any = None) -> dict[str, Any]:
    """``method = "auto"``: pretrain each of :data:`AUTO_METHODS` with the same settings into
    ``out/methods/<method>`` and keep the one whose probe on validation rose most over the (shared)
    initialisation; ties keep the first. ``out`` then holds that one's backbone and pretrain.json, with
    ``method_choice`` (every candidate's probe, the rule, the choice). Re-running reuses finished
    candidates; ``resume`` continues an interrupted one. Returns :func:`pretrain`'s summary of the
    chosen one, plus ``method_choice``."""
    out = Path(out)
    saved = auto_record(out) if resume else None
    if resume and saved is None:
        raise DiagError(f"{out}: nothing to resume (no {SSL_META}); start it without --resume")
    if saved is not None:
        saved = {**saved, "extra": saved.get("extra") or []}
    data, extra, cfg = _settle(saved, data, extra, cfg, out)
    ds, extras = _datasets(data, extra)
    if "val" not in ds.splits or not len(ds.labels("val")):
        raise DiagError(f"{ds.path}: has no validation split, so the probe cannot choose a method; pass --method "
                        "simclr or --method vicreg (or prepare with a validation split)")
    fingerprints = [s.manifest.get("fingerprint") for s in (ds, *extras)] + [_pool_digest(unlabelled)]
    if saved is not None and _data_fingerprints(saved) != fingerprints:
        raise DiagError(f"{out}: --resume needs the same prepared datasets and --unlabelled recordings the run started on")
    if not resume and not force:
        done = _finished_same(out, cfg, fingerprints, quiet)
        if done is not None:
            return {**done, "method_choice": read_json(out / SSL_META, "the pretraining record").get("method_choice")}
    if saved is None:
        check_run_dir(out, "pretrain", resume=False, force=force, inputs=[data, *extra, cfg.weights])
        check_input_size(create_backbone(cfg.model, "scratch", ds.image_shape[0], num_classes=0), cfg.model,
                         ds.image_shape, str(ds.path))  # before the folder exists, as one pretraining does
        start_run_dir(out, "pretrain", force=force, inputs=[data, *extra, cfg.weights])
        atomic_write_json(out / SSL_META, {
            "format": "diag-ssl/2", "method": "auto", "finished": False, "pretrain": asdict(cfg),
            "dataset": {"path": str(ds.path), "fingerprint": ds.manifest.get("fingerprint")},
            "extra": [{"path": str(e.path), "fingerprint": e.manifest.get("fingerprint")} for e in extras],
            "unlabelled": {"digest": _pool_digest(unlabelled)} if unlabelled is not None else None,
            "method_choice": {"candidates": list(AUTO_METHODS)}})
    results = {}
    for m in AUTO_METHODS:
        sub = out / "methods" / m
        if not quiet:
            console.print(esc(f"method auto: {METHOD_NAMES[m]} ({AUTO_METHODS.index(m) + 1}/{len(AUTO_METHODS)}) -> {sub}"))
        rec = read_json(sub / SSL_META, "the pretraining record") if (sub / SSL_META).is_file() else {}
        if (sub / "last.pt").is_file() and not rec.get("finished"):
            results[m] = pretrain(None, sub, None, quiet=quiet, resume=True, unlabelled=unlabelled, track=track)
        else:  # finished with these settings: reused; else (re)started inside this run's own folder
            results[m] = pretrain(data, sub, PretrainConfig(**{**asdict(cfg), "method": m}), extra=extra,
                                  force=not rec.get("finished"), quiet=quiet, unlabelled=unlabelled, track=track)
    return _keep_best_method(out, cfg, results, quiet)


def _keep_best_method(out: Path, cfg: PretrainConfig, results: dict[str, dict[str, Any]],
                      quiet: bool) -> dict[str, Any]:
    """Copy the candidate whose probe rose most into ``out`` (backbone first, then pretrain.json)."""
    rise = {m: r["probe"]["best"] - r["probe"]["initial"] for m, r in results.items()}
    chosen = max(AUTO_METHODS, key=lambda m: (rise[m], -AUTO_METHODS.index(m)))
    sub = out / "methods" / chosen
    atomic_write_bytes(out / SSL_WEIGHTS, (sub / SSL_WEIGHTS).read_bytes())
    said = "; ".join(f"{METHOD_NAMES[m]} {r['probe']['initial']:.3f} -> {r['probe']['best']:.3f} ({rise[m]:+.3f})"
                     for m, r in results.items())
    choice = {"candidates": list(AUTO_METHODS), "chosen": chosen, "rule": "the largest rise of the validation probe "
              "over the shared initialisation (best epoch - epoch 0); ties keep the first candidate",
              "probes": {m: r["probe"] for m, r in results.items()}, "said": f"chose {METHOD_NAMES[chosen]}: {said}"}
    meta = read_json(sub / SSL_META, "the pretraining record")
    meta.update(pretrain=asdict(cfg), method_choice=choice, finished=True)
    atomic_write_json(out / SSL_META, meta)
    write_history(out, meta["history"])
    if not quiet:
        console.print(esc(f"method auto: {choice['said']} -> {out / SSL_WEIGHTS}"), soft_wrap=True)
    return {**results[chosen], "out": str(out), "method_choice": choice}


def _settle(saved: dict[str, Any] | None, data: Any, extra: Sequence[Any], cfg: PretrainConfig | None,
            out: Path) -> tuple[Any, list[Any], PretrainConfig]:
    """The data and settings of this run: a resumed run's saved ones (given ones must match)."""
    if saved is not None:
        diff = changed_settings(cfg, saved["pretrain"]) if cfg is not None else []
        if diff:
            raise DiagError(f"--resume continues {out} with its saved settings; these differ: {', '.join(diff)}")
        cfg = from_dict(PretrainConfig, saved["pretrain"], "pretrain")
        data = data if data is not None else saved["dataset"]["path"]
        extra = list(extra) or [e["path"] for e in saved["extra"]]
    if data is None:
        raise DiagError("--data: the prepared dataset folder is required (made by `diag prepare`)")
    return data, list(extra), (cfg or PretrainConfig()).validate()


def _datasets(data: Any, extra: Sequence[Any]) -> tuple[PreparedDataset, list[PreparedDataset]]:
    ds = PreparedDataset(data)
    extras = [PreparedDataset(p) for p in extra]
    for e in extras:
        if tuple(e.image_shape) != tuple(ds.image_shape):
            raise DiagError(f"--extra {e.path}: images are {tuple(e.image_shape)}, but {ds.path} has "
                            f"{tuple(ds.image_shape)}; prepare both with the same transform size and channels")
        if e.path.resolve() == ds.path.resolve():
            raise DiagError(f"--extra {e.path}: is the --data dataset itself")
    return ds, extras


def _finished_same(out: Path, cfg: PretrainConfig, fingerprints: list[Any], quiet: bool) -> dict[str, Any] | None:
    """The summary of a finished run in ``out`` with the same settings and data (reused), else None;
    a finished run with others is refused."""
    if not (out / SSL_META).is_file():
        return None
    done = read_json(out / SSL_META, "the pretraining record")
    if not done.get("finished"):
        return None
    diff = changed_settings(cfg, done.get("pretrain", {}))
    if _data_fingerprints(done) != fingerprints:
        diff.insert(0, "the prepared dataset(s) or unlabelled recordings")
    if diff:
        raise DiagError(f"{out}: holds a finished pretraining with other settings ({', '.join(diff)}); "
                        "pass --force to replace it, or choose another --out")
    if not quiet:
        console.print(esc(f"{out}: finished earlier with the same settings and data; reusing it"))
    return {"out": str(out), "probe": done.get("probe"), "knn_start": done["knn_start"], "knn_final": done["knn_last"],
            "history": done["history"], "reused": True}


def _meta(cfg: PretrainConfig, ds: PreparedDataset, extras: list[PreparedDataset], pool: Pool,
          unlabelled: UnlabelledPool | None, backbone: nn.Module, views: TimeFrequencyAugment, kinds: list[str],
          rt: Runtime) -> dict[str, Any]:
    """The parts of pretrain.json known before the first epoch."""
    n_bank = len(ds.labels("train"))
    return {
        "format": "diag-ssl/2", "method": METHOD_NAMES[cfg.method], "model": cfg.model, "init": cfg.init,
        "weights_from": cfg.weights or ("packaged / timm hub" if cfg.init == "imagenet" else None),
        "in_chans": ds.image_shape[0], "replicate_channels": cfg.replicate_channels,
        "feature_dim": backbone.num_features, "classes": ds.classes, "preprocessing": ds.preprocessing_record(),
        "dataset": {"path": str(ds.path), "fingerprint": ds.manifest.get("fingerprint"), "split": "train",
                    "windows": n_bank},
        "unlabeled_windows": len(pool.unlabeled),
        "extra": [{"path": str(e.path), "fingerprint": e.manifest.get("fingerprint"), "split": "train",
                   "windows": len(e.labels("train"))} for e in extras],
        "unlabelled": ({**unlabelled.record, "windows": len(unlabelled.images), "digest": _pool_digest(unlabelled)}
                       if unlabelled is not None else None),
        "pretrain": asdict(cfg), "views": {**views.settings(), "notes": views_for(kinds, cfg.view_settings())[1]
                                           if cfg.views == "auto" else []},
        "knn_probe": {"bank": "train (labelled)", "query": "val", "k": cfg.knn_k, "probe": cfg.probe},
        "runtime": rt.info(), "versions": package_versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _resume(st: LoopState, out: Path, device: torch.device, meta: dict[str, Any], saved: dict[str, Any]) -> int:
    """Load ``last.pt`` into ``st``; returns the first epoch still to run."""
    last = load_checkpoint(out / "last.pt", keys=("model", "optimizer", "scaler", "rng", "epoch", "step", "history",
                                                  "best", "best_score"))
    if last.get("device", device.type) != device.type:
        raise DiagError(f"{out}: this run started on {last['device']}, here it would continue on "
                        f"{device.type}; resume it on a machine with {last['device']}")
    st.net.load_state_dict(last["model"])
    st.optimizer.load_state_dict(last["optimizer"])
    st.scaler.load_state_dict(last["scaler"])
    set_rng_state(last["rng"], st.gen, st.aug_gen, Dist())
    st.history, st.step = list(last["history"]), last["step"]
    st.best, st.best_score = last["best"], float(last["best_score"])
    meta["created"] = saved.get("created", meta["created"])
    return last["epoch"] + 1


def _save_epoch(out: Path, st: LoopState, meta: dict[str, Any], cfg: PretrainConfig, epoch: int, n_val: int,
                rt: Runtime) -> None:
    """pretrain.json, the history and last.pt after ``epoch``; on the last epoch the best backbone first.

    Order matters for a crash between the writes: backbone, then pretrain.json (which says finished on
    the last epoch), then last.pt; a resume restarts from the older last.pt."""
    finished = epoch == cfg.epochs
    meta.update(history=st.history, epochs_done=epoch, knn_start=_knn(st.history[:1]), knn_last=_knn(st.history),
                probe=probe_summary(st.history, n_val, cfg.init, cfg.probe), finished=finished)
    if finished:
        save_safetensors(out / SSL_WEIGHTS, st.best, metadata={"format": "pt", "model": cfg.model,
                                                               "epoch": str(meta["probe"]["best_epoch"])})
    atomic_write_json(out / SSL_META, meta)
    write_history(out, st.history)
    save_checkpoint(out / "last.pt", {"model": st.net.state_dict(), "optimizer": st.optimizer.state_dict(),
                                      "scaler": st.scaler.state_dict(), "rng": rng_state(st.gen, st.aug_gen, Dist()),
                                      "epoch": epoch, "step": st.step, "history": st.history, "best": st.best,
                                      "best_score": st.best_score, "device": rt.device.type})
    if rt.show:
        h = st.history[-1]
        probe = (f"  probe val accuracy {h['probe_accuracy']:.3f}  F1 {h['probe_macro_f1']:.3f}"
                 if not math.isnan(h["probe_accuracy"]) else "")
        console.print(f"epoch {epoch:>3}/{cfg.epochs}  {meta['method']} loss {h['loss']:.4f}{probe}  "
                      f"lr {h['lr']:.2e}  {h['seconds']:.1f} s")


def _image_kinds(ds: PreparedDataset) -> list[str]:
    """The image kinds of ``ds`` (``["cwt", "harmonics"]``); empty when its record does not say."""
    try:
        return [str(p) for p in ds.preprocessing.transform.parts]
    except (DiagError, AttributeError):
        return []


def _pool_digest(pool: UnlabelledPool | None) -> str | None:
    """sha256 over the pool's images (None without a pool): what the reuse and resume checks compare."""
    if pool is None:
        return None
    arr = np.ascontiguousarray(pool.images)
    h = hashlib.sha256(f"{arr.shape}{arr.dtype}".encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


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
    """Fingerprints of the prepared datasets (``--data`` then each ``--extra``) and the digest of the
    ``--unlabelled`` pool a pretrain.json names."""
    pool = meta.get("unlabelled") or {}
    return ([meta.get("dataset", {}).get("fingerprint")] + [e.get("fingerprint") for e in meta.get("extra", [])]
            + [pool.get("digest")])


def _knn(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The last probed row of ``history`` (legacy keys: knn_accuracy / knn_macro_f1, whatever the probe)."""
    done = [h for h in history if not math.isnan(h["probe_accuracy"])] or history[:1]
    h = done[-1]
    return {"epoch": h["epoch"], "knn_accuracy": h["probe_accuracy"], "knn_macro_f1": h["probe_macro_f1"]}
