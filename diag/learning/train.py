"""``diag train``: fine-tune a timm backbone on a prepared dataset -- one readable loop.

The loop reads top to bottom (nanoGPT style): config -> data -> model -> optimizer -> epochs
(train steps, validation, selection, checkpoint) -> the selected model scored once on test. What it
shares with ``diag pretrain`` (device, precision, schedule, step, checkpoints) is in
:mod:`diag.learning.runtime`; scoring uses :func:`diag.learning.evaluate.predict_images`.

* Optimiser: AdamW, no weight decay on norms, biases and other 1-D parameters; linear warmup then
  cosine decay, set per step; label smoothing; gradient clipping.
* Precision and layout: bf16 (or fp16 + GradScaler) autocast and channels_last on CUDA; fp32 on CPU.
* Devices: ``auto`` picks CUDA, then Apple MPS, then CPU. Under ``torchrun`` (WORLD_SIZE > 1) the
  model is wrapped in DistributedDataParallel and every global batch is split across ranks; only
  rank 0 writes. The same config works with and without torchrun.
* Few labels: ``labels_per_class`` or ``label_fraction`` keep a stratified, seeded subset of the
  training windows labelled; the chosen indices are written to ``labeled.json``.
* Honesty: the epoch is selected on the validation split (macro-F1 or loss); the test split is
  scored once, at the end, with the selected weights.
* Data: a split is held as one float16 tensor (on the GPU when it fits) and indexed in batches;
  augmentation runs on whole batches. Splits larger than ``in_memory_gb`` are streamed from the
  memory-mapped file, ``num_workers`` processes reading whole batches.
* Resume: ``last.pt`` (model, optimiser, scaler, RNG states, epoch, history; plain tensors and
  dicts, loadable with ``weights_only=True``) is written every epoch; ``resume=True`` continues and
  reaches the same result as an uninterrupted run (same seed, CPU).

Run directory::

    .diag-output       marker: a diag training run (only such a folder is ever replaced, with --force)
    config.json        the training config, data path and dataset fingerprint
    labeled.json       which training windows were used with their labels
    model.safetensors  selected weights;  model.json: classes, preprocessing, config, versions, seed
    metrics.jsonl / metrics.csv    one row per epoch
    test_metrics.json  accuracy, macro-F1, per-class report, confusion matrix (split: test)
    confusion_test.png, curves.png, last.pt
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from diag.learning.augment import TimeFrequencyAugment
from diag.config import changed_settings, from_dict, load_section
from diag.signal.dataset import PreparedDataset, SplitImages
from diag.errors import DiagError
from diag.learning.evaluate import accuracy_f1, classification_metrics, plot_confusion, plot_curves, predict_images
from diag.learning.models import (INITS, SSL_META, SSL_WEIGHTS, build_backbone, check_input_size, check_model_name, parse_freeze,
                         train_mode)
from diag.provenance import check_run_dir, package_versions, preprocessing_difference, preprocessing_of, start_run_dir
from diag.learning.runtime import (AMP_MODES, Dist, Runtime, all_reduce_sum, batch_plan, broadcast_flag, console,
                          end_distributed, init_distributed, load_checkpoint, lr_at, make_optimizer, make_scaler,
                          optimizer_step, progress, rng_state, save_checkpoint, save_safetensors, set_lr,
                          set_rng_state, warmup_steps)
from diag.storage import atomic_write_json, read_json, write_history
from diag.serving.unknown import calibrate_run

SELECT_BY = ("f1", "loss")


@dataclass
class TrainConfig:
    """Fine-tuning settings (the ``[train]`` table of a config file; ``--set train.key=value``).

    model: timm model name. init: ``scratch`` | ``imagenet`` | ``ssl``; weights: checkpoint for
    imagenet (optional: else $DIAG_IMAGENET_WEIGHTS or timm's hub) or ssl (a ``diag pretrain``
    folder). freeze: ``none`` | ``stem`` | ``stages:K`` | ``backbone``. replicate_channels: feed
    1-channel images to an RGB stem by copying them (instead of summing the stem's RGB kernels).
    drop_path: stochastic depth rate passed to timm.

    epochs, batch_size (global, split across torchrun ranks), lr (peak), weight_decay (not applied to
    norms, biases, 1-D parameters), warmup (a fraction of all steps when < 1, else a number of
    steps; 0 = none), label_smoothing, grad_clip (max global grad norm; 0 = off), augment (time
    shift/stretch, time masking, small gain and noise on each batch).

    labels_per_class / label_fraction: keep only this many (stratified, seeded) labelled training
    windows; 0 = all. select: ``f1`` (best validation macro-F1, ties to lower loss) or ``loss``.
    patience: stop after this many epochs without a better validation score (0 = never).
    min_steps: a step budget for small label sets: a run with fewer than this many optimiser steps
    (epochs x batches per epoch) gets more epochs until it has at least ``min_steps`` (0 = off);
    the schedule (warmup, cosine) spans the raised total, selection stays on validation.
    refit_from: a finished run whose validation held out whole units (recordings, loads, fault sizes):
    train for exactly the epochs it selected, with its settings, on every training window of a dataset
    prepared the same way but with ``split.val_fraction = 0`` (so the held-out units are trained on);
    the test windows must be the same; there is no validation, so no epoch selection and no unknown
    threshold (see :func:`refit_source`). ``diag train --refit-from RUN``.

    amp: ``auto`` (bf16 on CUDA when supported, else fp16; off elsewhere) | ``bf16`` | ``fp16`` |
    ``off``. channels_last: NHWC memory layout on CUDA. device: ``auto`` | ``cpu`` | ``cuda[:i]`` |
    ``mps``. num_workers: reader processes when a split is streamed from disk (larger than
    ``in_memory_gb``); in-memory splits need none. seed: initialisation, shuffling, augmentation and
    label subsets.
    """

    model: str = "convnext_atto"
    init: str = "scratch"
    weights: str = ""
    freeze: str = "none"
    replicate_channels: bool = False
    drop_path: float = 0.0
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: float = 0.05
    label_smoothing: float = 0.1
    grad_clip: float = 1.0
    augment: bool = True
    labels_per_class: int = 0
    label_fraction: float = 0.0
    select: str = "f1"
    patience: int = 0
    min_steps: int = 0
    refit_from: str = ""
    seed: int = 0
    amp: str = "auto"
    channels_last: bool = True
    device: str = "auto"
    num_workers: int = 0
    in_memory_gb: float = 4.0

    def validate(self) -> "TrainConfig":
        check_model_name(self.model)
        if self.init not in INITS:
            raise DiagError(f"train.init: unknown '{self.init}'; choose one of {', '.join(INITS)}")
        parse_freeze(self.freeze)
        checks = [
            (self.epochs >= 1, f"train.epochs: must be >= 1, got {self.epochs}"),
            (self.batch_size >= 2, f"train.batch_size: must be >= 2, got {self.batch_size}"),
            (self.lr > 0, f"train.lr: must be > 0, got {self.lr}"),
            (self.weight_decay >= 0, f"train.weight_decay: must be >= 0, got {self.weight_decay}"),
            (self.warmup >= 0 and (self.warmup < 1 or float(self.warmup).is_integer()),
             f"train.warmup: a fraction in [0, 1) or a whole number of steps, got {self.warmup}"),
            (0 <= self.label_smoothing < 1, f"train.label_smoothing: must be in [0, 1), got {self.label_smoothing}"),
            (self.grad_clip >= 0, f"train.grad_clip: must be >= 0 (0 = off), got {self.grad_clip}"),
            (0 <= self.drop_path < 1, f"train.drop_path: must be in [0, 1), got {self.drop_path}"),
            (self.labels_per_class >= 0, f"train.labels_per_class: must be >= 0, got {self.labels_per_class}"),
            (0 <= self.label_fraction <= 1, f"train.label_fraction: must be in [0, 1], got {self.label_fraction}"),
            (not (self.labels_per_class and self.label_fraction),
             "train.labels_per_class and train.label_fraction: set one of them, not both"),
            (self.select in SELECT_BY, f"train.select: choose one of {', '.join(SELECT_BY)}, got '{self.select}'"),
            (self.patience >= 0, f"train.patience: must be >= 0 (0 = off), got {self.patience}"),
            (self.min_steps >= 0, f"train.min_steps: must be >= 0 (0 = off), got {self.min_steps}"),
            (self.amp in AMP_MODES, f"train.amp: choose one of {', '.join(AMP_MODES)}, got '{self.amp}'"),
            (self.num_workers >= 0, f"train.num_workers: must be >= 0, got {self.num_workers}"),
            (self.in_memory_gb >= 0, f"train.in_memory_gb: must be >= 0, got {self.in_memory_gb}"),
        ]
        for ok, message in checks:
            if not ok:
                raise DiagError(message)
        return self


def load_train_config(path: str | Path | None = None, overrides: Sequence[str] = (),
                      base: dict[str, Any] | None = None) -> TrainConfig:
    """``TrainConfig`` from ``base`` (e.g. a run's saved config), the ``[train]`` table of ``path`` and
    ``train.key=value`` overrides, in that order; validated."""
    return load_section(TrainConfig, "train", path, overrides, base, example="train.lr=3e-4")


# ------------------------------------------------------------------------------------------------
# Data


def check_classes(y: np.ndarray, classes: Sequence[str], where: str) -> None:
    """At least two classes, and every class must have training windows (pretraining may use one class)."""
    if len(classes) < 2:
        raise DiagError(f"{where}: has only one class ({', '.join(map(repr, classes))}); a classifier needs at least "
                        "two; prepare a dataset with recordings of two or more classes")
    counts = np.bincount(y, minlength=len(classes))
    empty = [c for c, n in zip(classes, counts) if n == 0]
    if empty:
        raise DiagError(f"{where}: the train split has no windows of class {', '.join(map(repr, empty))}; "
                        "prepare the dataset with a split that keeps every class in training")


def select_labeled(y: np.ndarray, classes: Sequence[str], labels_per_class: int = 0, label_fraction: float = 0.0,
                   seed: int = 0) -> np.ndarray:
    """Indices of the training windows whose labels are used (sorted); the rest stay unlabelled.

    ``labels_per_class=N``: N windows of every class; ``label_fraction=F``: a stratified fraction F
    (sklearn's ``train_test_split``); neither: all. Seeded, so the same call picks the same windows.
    """
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state

    n = len(y)
    counts = np.bincount(y, minlength=len(classes))
    if labels_per_class:
        short = [f"'{c}' has {counts[k]}" for k, c in enumerate(classes) if counts[k] < labels_per_class]
        if short:
            raise DiagError(f"labels_per_class={labels_per_class} is more than the training windows available: "
                            f"{', '.join(short)}; lower it")
        rng = check_random_state(seed)
        picked = [rng.choice(np.flatnonzero(y == k), labels_per_class, replace=False) for k in range(len(classes))]
        return np.sort(np.concatenate(picked))
    if label_fraction and label_fraction < 1:
        try:
            idx, _ = train_test_split(np.arange(n), train_size=label_fraction, stratify=y, random_state=seed)
        except ValueError as exc:
            raise DiagError(f"label_fraction={label_fraction}: cannot draw a stratified subset ({exc})") from None
        got = np.bincount(y[idx], minlength=len(classes))
        lost = [c for k, c in enumerate(classes) if got[k] == 0]
        if lost:
            raise DiagError(f"label_fraction={label_fraction} leaves no labelled window of class "
                            f"{', '.join(map(repr, lost))}; raise it or use labels_per_class")
        return np.sort(idx)
    return np.arange(n)


# ------------------------------------------------------------------------------------------------
# Evaluation


def evaluate_split(model: nn.Module, images: SplitImages, y: torch.Tensor, batch_size: int,
                   dtype: torch.dtype | None, channels_last: bool = False) -> tuple[float, np.ndarray]:
    """(mean cross-entropy without label smoothing, predicted classes)."""
    logits = predict_images(model, images, batch_size=batch_size, dtype=dtype, channels_last=channels_last)
    if len(y) == 0:
        return float("nan"), np.zeros(0, dtype=np.int64)
    loss = F.cross_entropy(logits, y.to(logits.device)).item()
    return loss, logits.argmax(1).cpu().numpy()


# ------------------------------------------------------------------------------------------------
# The loop


def train(data: str | Path, out: str | Path, cfg: TrainConfig | None = None, *, resume: bool = False,
          force: bool = False, quiet: bool = False) -> dict[str, Any]:
    """Train on the prepared dataset ``data``, writing the run to ``out``; returns a summary dict.

    With ``resume=True`` the run in ``out`` continues from ``last.pt`` with its saved config (a
    ``cfg`` that differs from it is an error).
    """
    out = Path(out)
    dist = init_distributed()
    saved = _saved_run(out) if resume else None
    if saved is not None:
        if cfg is not None and asdict(cfg) != saved["train"]:
            diff = changed_settings(cfg, saved["train"])
            raise DiagError(f"--resume continues {out} with its saved settings; these differ: {', '.join(diff)}")
        cfg = from_dict(TrainConfig, saved["train"], "train")
    cfg = (cfg or TrainConfig()).validate()
    ds = PreparedDataset(data)
    refit = refit_source(cfg.refit_from, ds) if cfg.refit_from else None
    if refit is not None and saved is None:  # the selected number of passes, over every training window
        cfg = dataclasses.replace(cfg, epochs=refit["epochs"], min_steps=0, patience=0)
    if saved is not None and saved["dataset_fingerprint"] != ds.manifest.get("fingerprint"):
        raise DiagError(f"{ds.path}: not the prepared dataset this run started on (fingerprint differs)")
    if dist.main:
        check_run_dir(out, "train-run", resume=resume, force=force, inputs=[data, cfg.weights])
    rt = Runtime.setup(cfg.device, cfg.amp, cfg.channels_last, quiet, "train", dist)
    device, show = rt.device, rt.show

    # ---- data: labelled training subset, validation, test --------------------------------------
    classes = ds.classes
    y_train_all = ds.labels("train")
    check_classes(y_train_all, classes, str(ds.path))
    labeled = select_labeled(y_train_all, classes, cfg.labels_per_class, cfg.label_fraction, cfg.seed)
    if len(labeled) < max(2, dist.world):
        raise DiagError(f"only {len(labeled)} labelled training windows; need at least {max(2, dist.world)}")
    x_train = SplitImages(ds, "train", labeled, device, cfg.in_memory_gb, cfg.num_workers)
    y_train = torch.as_tensor(y_train_all[labeled], device=device)
    has_val = "val" in ds.splits and len(ds.labels("val")) > 0
    x_val = SplitImages(ds, "val", None, device, cfg.in_memory_gb, cfg.num_workers) if has_val else None
    y_val = torch.as_tensor(ds.labels("val"), device=device) if has_val else None

    # ---- model and optimiser --------------------------------------------------------------------
    torch.manual_seed(cfg.seed)
    extra = {"drop_path_rate": cfg.drop_path} if cfg.drop_path else {}
    built = build_backbone(cfg.model, "scratch" if saved else cfg.init, ds.image_shape[0], len(classes),
                           weights=None if saved else (cfg.weights or None), freeze=cfg.freeze,
                           replicate_channels=cfg.replicate_channels, **extra)
    model = built.model
    check_input_size(model, cfg.model, ds.image_shape, str(ds.path))
    start_info = dict(saved["start"]) if saved else dict(built.info)  # how the weights were first initialised
    if not saved and cfg.init == "ssl":
        _warn_if_other_preprocessing(cfg.weights, ds, show)
    rt.prepare_model(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay, device)
    scaler = make_scaler(rt)
    net: nn.Module = model
    if dist.world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    augment = TimeFrequencyAugment.light() if cfg.augment else None

    min_last = max(2, dist.world)
    steps_per_epoch = len(batch_plan(len(labeled), cfg.batch_size, None, min_last=min_last))
    epochs = epochs_for(cfg.epochs, steps_per_epoch, cfg.min_steps)  # raised for small label sets
    total_steps = epochs * steps_per_epoch
    warmup = warmup_steps(cfg.warmup, total_steps)
    schedule = {"epochs": epochs, "steps_per_epoch": steps_per_epoch, "steps": total_steps, "warmup_steps": warmup,
                "min_steps": cfg.min_steps}
    gen = torch.Generator().manual_seed(cfg.seed)  # shuffling
    aug_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1 + 1000 * dist.rank)  # augmentation
    state: dict[str, Any] = {"epoch": 0, "step": 0, "history": [], "best": None, "bad_epochs": 0}

    if saved is not None:  # ---- resume ------------------------------------------------------
        last = load_checkpoint(out / "last.pt", keys=("model", "optimizer", "scaler", "rng", "state"))
        model.load_state_dict(last["model"])
        optimizer.load_state_dict(last["optimizer"])
        scaler.load_state_dict(last["scaler"])
        set_rng_state(last["rng"], gen, aug_gen, dist)
        state = last["state"]
        if show:
            console.print(f"resuming {out} after epoch {state['epoch']}/{epochs}")
    elif dist.main:
        start_run_dir(out, "train-run", force=force, inputs=[data, cfg.weights])
        atomic_write_json(out / "config.json", {"train": asdict(cfg), "data": str(ds.path),
                                                "dataset_fingerprint": ds.manifest.get("fingerprint"),
                                                "start": start_info})
        atomic_write_json(out / "labeled.json", {
            "split": "train", "n_train": len(y_train_all), "n_labeled": len(labeled),
            "labels_per_class": cfg.labels_per_class, "label_fraction": cfg.label_fraction, "seed": cfg.seed,
            "labeled": labeled.tolist(),
            "note": "indices into the train split; the other training windows were not used with labels"})

    sel_name = ("val macro-F1" if cfg.select == "f1" else "val loss") if has_val else "last epoch (no validation split)"
    with rt.session():
        stop = state["bad_epochs"] >= cfg.patience > 0
        for epoch in range(state["epoch"] + 1, epochs + 1):
            if stop:
                break
            # -- train one epoch (each rank takes its share of every global batch)
            t0 = time.perf_counter()
            train_mode(model)
            local = [b[dist.rank::dist.world] for b in batch_plan(len(labeled), cfg.batch_size, gen, min_last)]
            loss_sum = torch.zeros((), device=device)
            seen = 0
            with progress(show, f"epoch {epoch}/{epochs}", len(local)) as advance:
                targets = y_train[torch.cat(local).to(device)].split([len(b) for b in local])
                for y, x in zip(targets, x_train.iterate(local)):
                    lr = lr_at(state["step"], total_steps, warmup, cfg.lr)
                    set_lr(optimizer, lr)
                    if augment is not None:
                        x = augment(x, aug_gen)
                    with rt.autocast():
                        logits = net(rt.layout(x))
                    loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
                    optimizer_step(loss, optimizer, scaler, trainable, cfg.grad_clip)
                    loss_sum += loss.detach() * len(y)
                    seen += len(y)
                    state["step"] += 1
                    advance()
            if dist.world > 1:
                tot = all_reduce_sum(torch.stack([loss_sum, torch.tensor(float(seen), device=device)]), dist)
                loss_sum, seen = tot[0], int(tot[1].item())
            train_loss = (loss_sum / max(1, seen)).item()
            train_seconds = time.perf_counter() - t0

            # -- validate and select (every rank evaluates the whole split: same weights, same answer)
            if has_val:
                val_loss, val_pred = evaluate_split(model, x_val, y_val, 2 * cfg.batch_size, rt.dtype,
                                                    rt.channels_last)
                val_acc, val_f1 = accuracy_f1(y_val.cpu().numpy(), val_pred)
                score = (val_f1, -val_loss) if cfg.select == "f1" else (-val_loss,)
            else:
                val_loss = val_acc = val_f1 = float("nan")
                score = (float(epoch),)  # no validation split: the last epoch is the selected one
            best = state["best"]
            improved = broadcast_flag(best is None or tuple(score) > tuple(best["score"]), dist, device)
            if improved:
                state["best"] = {"epoch": epoch, "score": list(score), "val_loss": val_loss,
                                 "val_accuracy": val_acc, "val_macro_f1": val_f1}
                state["bad_epochs"] = 0
            else:
                state["bad_epochs"] += 1
            stop = cfg.patience > 0 and state["bad_epochs"] >= cfg.patience
            record = {"epoch": epoch, "step": state["step"], "train_loss": train_loss, "val_loss": val_loss,
                      "val_accuracy": val_acc, "val_macro_f1": val_f1, "lr": lr,
                      "seconds": round(time.perf_counter() - t0, 3), "train_seconds": round(train_seconds, 3),
                      "images_per_s": round(seen / max(train_seconds, 1e-9), 1), "selected": bool(improved)}
            state["history"].append(record)
            state["epoch"] = epoch

            # -- write (rank 0): selected weights first, then the resumable state
            rng = rng_state(gen, aug_gen, dist)
            if dist.main:
                if improved:
                    _save_model(out, model, ds, cfg, state, start_info, dist, labeled, sel_name, rt.info(), schedule,
                                refit)
                save_checkpoint(out / "last.pt", {
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                    "rng": rng, "state": state})
                write_history(out, state["history"])
            if show:
                console.print(
                    f"epoch {epoch:>3}/{epochs}  train loss {train_loss:.4f}  val loss {val_loss:.4f}  "
                    f"acc {val_acc:.3f}  F1 {val_f1:.3f}  lr {lr:.2e}  {record['seconds']:.1f} s "
                    f"({record['images_per_s']:.0f} img/s){'  *' if improved else ''}")
            if stop and show:
                console.print(f"early stop: no better {sel_name} for {cfg.patience} epochs")

    # ---- the selected model, scored once on the test split ----------------------------------------
    summary: dict[str, Any] = {"out": str(out), "selected_epoch": state["best"]["epoch"],
                               "selected_by": sel_name,
                               "val": {k: state["best"][k] for k in ("val_loss", "val_accuracy", "val_macro_f1")},
                               "history": state["history"]}
    if dist.main:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(out / "model.safetensors"), device=str(device)))
        has_test = "test" in ds.splits and len(ds.labels("test")) > 0
        if has_test:
            x_test = SplitImages(ds, "test", None, device, cfg.in_memory_gb, cfg.num_workers)
            y_test = ds.labels("test")
            test_loss, test_pred = evaluate_split(model, x_test, torch.as_tensor(y_test), 2 * cfg.batch_size,
                                                  rt.dtype, rt.channels_last)
            test = classification_metrics(y_test, test_pred, classes, split="test")
            test.update({"loss": test_loss, "selected_epoch": state["best"]["epoch"],
                         "selected_by": summary["selected_by"]})
            atomic_write_json(out / "test_metrics.json", test)
            plot_confusion(test["confusion"], classes, out / "confusion_test.png",
                           f"test split: accuracy {test['accuracy']:.3f}, macro-F1 {test['macro_f1']:.3f}")
            summary["test"] = {k: test[k] for k in ("accuracy", "macro_f1", "loss", "n")}
        else:
            atomic_write_json(out / "test_metrics.json", {"split": "test", "n": 0, "note": "the dataset has no test windows"})
            summary["test"] = None
        plot_curves(state["history"], out / "curves.png", title=f"{cfg.model} ({cfg.init}) - {ds.path.name}")
        if "val" in ds.splits and len(ds.labels("val")):  # the unknown threshold for diag predict (unknown.json)
            summary["unknown"] = calibrate_run(out, ds.path, net=model, meta=read_json(out / "model.json"), device=device)
        if show:
            t = summary["test"]
            console.print(f"selected epoch {summary['selected_epoch']} by {summary['selected_by']}; "
                          + (f"test accuracy {t['accuracy']:.3f}, macro-F1 {t['macro_f1']:.3f} (n={t['n']})"
                             if t else "no test split") + f"  -> {out}")
            u = summary.get("unknown")
            if u and not u["guaranteed"][f"{u['far']:g}"]:
                console.print(f"[yellow]note:[/] {u['calibrated_on']['n']} validation windows are too few to promise "
                              f"the unknown threshold's {100 * u['far']:g} % false-alarm rate with "
                              f"{100 * u['confidence']:g} % confidence; it is set at the largest validation score")
    end_distributed(dist)
    return summary


def refit_source(run: str | Path, ds: PreparedDataset) -> dict[str, Any]:
    """What a refit (``train.refit_from = RUN``) takes from ``RUN``, after checking that it may.

    ``RUN`` must be a finished run that selected its epoch on validation; ``ds`` must hold no validation
    windows (prepared with ``split.val_fraction = 0``), the same classes and preprocessing as RUN's
    dataset and exactly its test windows (RUN's dataset must still be there to compare), so the refit
    trains on the held-out units and is scored on the same, untouched test side. Returns
    ``{"from", "epochs", "selected_by", "val_macro_f1", "val_by"}``.
    """
    run = Path(run)
    meta_path = run / "model.json"
    if not meta_path.is_file() or not (run / "test_metrics.json").is_file():
        raise DiagError(f"--refit-from {run}: not a finished diag train run (no model.json / test_metrics.json)")
    meta = read_json(meta_path, "the run's model record")
    sel = meta.get("selected") or {}
    if not str(sel.get("by", "")).startswith("val"):
        raise DiagError(f"--refit-from {run}: it selected its epoch by {sel.get('by')!r}, not on validation; "
                        "refit from a run that had a validation split")
    if "val" in ds.splits and len(ds.labels("val")):
        raise DiagError(f"{ds.path}: has {len(ds.labels('val'))} validation windows; a refit trains on them: prepare "
                        "the same data with --set split.val_fraction=0")
    src = Path((meta.get("dataset") or {}).get("path") or "")
    if not src.name or not (src / "manifest.json").is_file():
        raise DiagError(f"--refit-from {run}: its prepared dataset {src} is gone, so the test windows cannot be "
                        "checked to be the same; prepare it again at that path")
    if list(meta.get("classes") or []) != list(ds.classes):
        raise DiagError(f"{ds.path}: classes {ds.classes} are not the run's {meta.get('classes')}")
    diff = preprocessing_difference(meta.get("preprocessing") or {}, ds.manifest)
    if diff:
        raise DiagError(f"{ds.path}: prepared differently from {run}'s data ({diff}); prepare it the same way")
    src_ds = PreparedDataset(src)
    a, b = src_ds.meta("test") if "test" in src_ds.splits else {}, ds.meta("test") if "test" in ds.splits else {}
    key = (lambda m: sorted(zip(map(str, m.get("source", [])), map(int, m.get("start", [])))) if m else [])
    if key(a) != key(b):
        raise DiagError(f"{ds.path}: its test windows are not those of {src} ({len(key(b))} vs {len(key(a))}); a "
                        "refit must be scored on the same test side: prepare with the same split settings")
    return {"from": str(run), "epochs": int(sel["epoch"]), "selected_by": sel.get("by"),
            "val_macro_f1": sel.get("val_macro_f1"),
            "val_by": ((src_ds.manifest.get("split") or {}).get("val_by"))}


def epochs_for(epochs: int, steps_per_epoch: int, min_steps: int = 0) -> int:
    """``epochs``, raised so that ``epochs * steps_per_epoch >= min_steps`` (a step budget for few labels)."""
    return max(epochs, -(-min_steps // max(1, steps_per_epoch)))


def _save_model(out: Path, model: nn.Module, ds: PreparedDataset, cfg: TrainConfig, state: dict[str, Any],
                start_info: dict[str, Any], dist: Dist, labeled: np.ndarray, sel_name: str,
                runtime: dict[str, Any], schedule: dict[str, Any], refit: dict[str, Any] | None = None) -> None:
    best = state["best"]
    save_safetensors(out / "model.safetensors", model.state_dict(), metadata={"format": "pt", "model": cfg.model})
    atomic_write_json(out / "model.json", {
        "format": "diag-model/1",
        "model": cfg.model,
        "in_chans": ds.image_shape[0],
        "replicate_channels": cfg.replicate_channels,
        "classes": ds.classes,
        "preprocessing": preprocessing_of(ds.manifest),
        "dataset": {"path": str(ds.path), "fingerprint": ds.manifest.get("fingerprint"), "sizes": ds.manifest.get("sizes")},
        "train": asdict(cfg),
        "start": start_info,
        "selected": {"epoch": best["epoch"], "by": sel_name, "val_loss": best["val_loss"],
                     "val_accuracy": best["val_accuracy"], "val_macro_f1": best["val_macro_f1"]},
        "labeled": {"n": int(len(labeled)), "of": int(len(ds.labels("train")))},
        "schedule": schedule,
        **({"refit": refit} if refit else {}),
        "seed": cfg.seed,
        "world_size": dist.world,
        "runtime": runtime,
        "versions": package_versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })


def _saved_run(out: Path) -> dict[str, Any]:
    """The saved config of a resumable run in ``out``."""
    if not (out / "config.json").is_file() or not (out / "last.pt").is_file():
        raise DiagError(f"{out}: nothing to resume (no config.json / last.pt); start it without --resume")
    if (out / "test_metrics.json").is_file():
        raise DiagError(f"{out}: this run already finished (test_metrics.json exists); use --force to start over")
    saved = read_json(out / "config.json", "the run's saved settings", "not resumed; start the run again with --force")
    if not isinstance(saved, dict) or not isinstance(saved.get("train"), dict) or "dataset_fingerprint" not in saved:
        raise DiagError(f"{out / 'config.json'}: not the saved settings of a diag train run; not resumed; "
                        "start the run again with --force")
    return saved


def _warn_if_other_preprocessing(weights: str, ds: PreparedDataset, show: bool) -> None:
    p = Path(weights)
    meta = (p if p.is_dir() else p.parent) / SSL_META
    if not show or not meta.is_file():
        return
    pre = read_json(meta, "the pretraining record").get("preprocessing", {})
    if pre.get("transform") != ds.manifest.get("transform") or pre.get("fs") != ds.manifest.get("fs"):
        console.print(f"[yellow]warning:[/] {meta.parent / SSL_WEIGHTS} was pretrained on images made with other "
                      "preprocessing (transform or sampling rate) than this dataset")


# ------------------------------------------------------------------------------------------------
# Command-line entry


def run(data: str | Path | None, out: str | Path, config: str | Path | None = None, overrides: Sequence[str] = (),
        resume: bool = False, force: bool = False, quiet: bool = False,
        refit_from: str | Path | None = None) -> dict[str, Any]:
    """What ``diag train`` calls: settle the config (saved one when resuming; with ``refit_from``, that
    run's settings under the given ones), then :func:`train`."""
    out = Path(out)
    base = _saved_run(out) if resume else None
    base_train = base["train"] if base else None
    if refit_from is not None and not resume:
        src = Path(refit_from) / "config.json"
        if not src.is_file():
            raise DiagError(f"--refit-from {refit_from}: not a diag train run (no config.json)")
        saved = read_json(src, "the run's saved settings")
        base_train = {**saved["train"], "refit_from": str(refit_from)}
    cfg = load_train_config(config, overrides, base=base_train)
    if data is None:
        if base is None:
            raise DiagError("--data: the prepared dataset folder is required (made by `diag prepare`)")
        data = base["data"]
    return train(data, out, cfg, resume=resume, force=force, quiet=quiet)
