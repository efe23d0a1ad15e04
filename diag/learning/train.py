"""``diag train``: fine-tune a timm backbone on a prepared dataset -- one readable loop.

The loop reads top to bottom (nanoGPT style): config -> data -> model -> optimizer -> epochs
(train steps, validation, selection, checkpoint) -> the selected model scored once on test. What it
shares with ``diag pretrain`` (device, precision, schedule, step, checkpoints) is in
:mod:`diag.learning.runtime`; scoring uses :func:`diag.learning.evaluate.predict_images`.

* Optimiser: AdamW, no weight decay on norms, biases and other 1-D parameters; linear warmup then
  cosine decay, set per step; label smoothing; gradient clipping.
* Precision and layout: bf16 (or fp16 + GradScaler) autocast on CUDA, fp32 on CPU; channels_last on both.
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

The run folder is :class:`diag.learning.rundir.RunDir`; its set-up and resume are
:func:`diag.learning.session.start`; :func:`finish_run` scores the selected model on test once.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from diag.config import load_section
from diag.errors import DiagError, disk_full_as_error
from diag.learning.evaluate import accuracy_f1, classification_metrics, plot_confusion, plot_curves, predict_images
from diag.learning.models import INITS, check_model_name, parse_freeze, train_mode
from diag.learning.rundir import ModelRecord, RunDir
from diag.learning.runtime import (AMP_MODES, all_reduce_sum, batch_plan, broadcast_flag, check_finite_training,
                                   console, end_distributed, lr_at, optimizer_step, progress, rng_state,
                                   save_checkpoint, save_safetensors, set_lr)
from diag.learning import tracking
from diag.learning.session import Session, check_classes, epochs_for, refit_source, select_labeled, start  # noqa: F401
from diag.learning.unknown import calibrate_run
from diag.provenance import package_versions
from diag.signal.dataset import SplitImages
from diag.storage import atomic_write_json, clean_stale, write_history

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
    ``off``. channels_last: NHWC memory layout on CUDA and CPU. device: ``auto`` | ``cpu`` | ``cuda[:i]`` |
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
          force: bool = False, quiet: bool = False, track: Any = None) -> dict[str, Any]:
    """Train on the prepared dataset ``data``, writing the run to ``out``, then :func:`finish_run` it; returns
    a summary dict. With ``resume=True`` the run in ``out`` continues from ``last.pt`` with its saved config
    (a ``cfg`` that differs from it is an error)."""
    with disk_full_as_error(out):
        return _train(data, out, cfg, resume, force, quiet, track)


def _train(data: str | Path, out: str | Path, cfg: TrainConfig | None, resume: bool, force: bool,
           quiet: bool, track: Any = None) -> dict[str, Any]:
    s = start(data, out, cfg, TrainConfig, resume, force, quiet)
    if s.dist.main:  # the .NAME.tmp-PID-* of checkpoint writes a killed earlier process left in the run
        clean_stale(s.run.path)
    cfg, state, show = s.cfg, s.state, s.rt.show
    epochs = s.schedule["epochs"]
    tracker = tracking.open_run(track, s.run.path, "train", asdict(cfg), s.dist.main, warn=console.print)
    with s.rt.session():
        stop = state["bad_epochs"] >= cfg.patience > 0
        for epoch in range(state["epoch"] + 1, epochs + 1):
            if stop:
                break
            t0 = time.perf_counter()
            train_loss, lr, seen, seconds = train_epoch(s, epoch)
            check_finite_training(train_loss, epoch, s.run.path, cfg.lr)
            if s.x_val is not None:  # every rank evaluates the whole split: same weights, same answer
                val_loss, val_pred = evaluate_split(s.model, s.x_val, s.y_val, 2 * cfg.batch_size, s.rt.dtype,
                                                    s.rt.channels_last)
                val_acc, val_f1 = accuracy_f1(s.y_val.cpu().numpy(), val_pred)
                score = (val_f1, -val_loss) if cfg.select == "f1" else (-val_loss,)
            else:
                val_loss = val_acc = val_f1 = float("nan")
                score = (float(epoch),)  # no validation split: the last epoch is the selected one
            best = state["best"]
            improved = broadcast_flag(best is None or tuple(score) > tuple(best["score"]), s.dist, s.rt.device)
            if improved:
                state["best"] = {"epoch": epoch, "score": list(score), "val_loss": val_loss,
                                 "val_accuracy": val_acc, "val_macro_f1": val_f1}
            state["bad_epochs"] = 0 if improved else state["bad_epochs"] + 1
            stop = cfg.patience > 0 and state["bad_epochs"] >= cfg.patience
            record = {"epoch": epoch, "step": state["step"], "train_loss": train_loss, "val_loss": val_loss,
                      "val_accuracy": val_acc, "val_macro_f1": val_f1, "lr": lr,
                      "seconds": round(time.perf_counter() - t0, 3), "train_seconds": round(seconds, 3),
                      "images_per_s": round(seen / max(seconds, 1e-9), 1), "selected": bool(improved)}
            state["history"].append(record)
            state["epoch"] = epoch
            checkpoint(s, improved)
            tracker.epoch(record)
            if show:
                console.print(f"epoch {epoch:>3}/{epochs}  train loss {train_loss:.4f}  val loss {val_loss:.4f}  "
                              f"acc {val_acc:.3f}  F1 {val_f1:.3f}  lr {lr:.2e}  {record['seconds']:.1f} s "
                              f"({record['images_per_s']:.0f} img/s){'  *' if improved else ''}")
            if stop and show:
                console.print(f"early stop: no better {s.selected_by} for {cfg.patience} epochs")
    return tracker.finish(finish_run(s), s.run.path)


def train_epoch(s: Session, epoch: int) -> tuple[float, float, int, float]:
    """One pass over the labelled windows (each rank takes its share of every global batch):
    ``(mean train loss, last learning rate, windows seen, seconds)``."""
    cfg, dist, state = s.cfg, s.dist, s.state
    t0 = time.perf_counter()
    train_mode(s.model)
    local = [b[dist.rank::dist.world] for b in batch_plan(len(s.labeled), cfg.batch_size, s.gen, s.min_last)]
    loss_sum = torch.zeros((), device=s.rt.device)
    seen, lr = 0, 0.0
    with progress(s.rt.show, f"epoch {epoch}/{s.schedule['epochs']}", len(local)) as advance:
        targets = s.y_train[torch.cat(local).to(s.rt.device)].split([len(b) for b in local])
        for y, x in zip(targets, s.x_train.iterate(local)):
            lr = lr_at(state["step"], s.schedule["steps"], s.schedule["warmup_steps"], cfg.lr)
            set_lr(s.optimizer, lr)
            if s.augment is not None:
                x = s.augment(x, s.aug_gen)
            with s.rt.autocast():
                logits = s.net(s.rt.layout(x))
            loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
            optimizer_step(loss, s.optimizer, s.scaler, s.trainable, cfg.grad_clip)
            loss_sum += loss.detach() * len(y)
            seen += len(y)
            state["step"] += 1
            advance()
    if dist.world > 1:
        tot = all_reduce_sum(torch.stack([loss_sum, torch.tensor(float(seen), device=s.rt.device)]), dist)
        loss_sum, seen = tot[0], int(tot[1].item())
    return (loss_sum / max(1, seen)).item(), lr, seen, time.perf_counter() - t0


def checkpoint(s: Session, improved: bool) -> None:
    """Rank 0 writes the selected weights (when the epoch improved) first, then the resumable state."""
    rng = rng_state(s.gen, s.aug_gen, s.dist)
    if not s.dist.main:
        return
    if improved:
        save_safetensors(s.run / RunDir.WEIGHTS, s.model.state_dict(), metadata={"format": "pt", "model": s.cfg.model})
        s.run.write_record(model_record(s))
    save_checkpoint(s.run / RunDir.LAST, {"model": s.model.state_dict(), "optimizer": s.optimizer.state_dict(),
                                          "scaler": s.scaler.state_dict(), "rng": rng, "state": s.state})
    write_history(s.run.path, s.state["history"])


def model_record(s: Session) -> ModelRecord:
    """The run's model.json at the selected epoch."""
    best, ds, cfg = s.state["best"], s.ds, s.cfg
    return ModelRecord(
        model=cfg.model, in_chans=ds.image_shape[0], replicate_channels=cfg.replicate_channels, classes=ds.classes,
        preprocessing=ds.preprocessing_record(),
        dataset={"path": str(ds.path), "fingerprint": ds.manifest.get("fingerprint"), "sizes": ds.manifest.get("sizes")},
        train=asdict(cfg), start=s.start_info,
        selected={"epoch": best["epoch"], "by": s.selected_by, "val_loss": best["val_loss"],
                  "val_accuracy": best["val_accuracy"], "val_macro_f1": best["val_macro_f1"]},
        labeled={"n": int(len(s.labeled)), "of": int(len(ds.labels("train")))}, schedule=s.schedule, refit=s.refit,
        seed=cfg.seed, world_size=s.dist.world, runtime=s.rt.info(), versions=package_versions(),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"))


# ------------------------------------------------------------------------------------------------
# Finishing a run: the selected model scored once on the test split, plots, the unknown detector


def finish_run(s: Session) -> dict[str, Any]:
    """The selected model scored once on the test split (``test_metrics.json``: the run is finished), its
    curves and confusion matrix, and its unknown detector calibrated on validation; returns the summary."""
    from safetensors.torch import load_file

    state, cfg, ds, run = s.state, s.cfg, s.ds, s.run
    summary: dict[str, Any] = {"out": str(run.path), "selected_epoch": state["best"]["epoch"],
                               "selected_by": s.selected_by,
                               "val": {k: state["best"][k] for k in ("val_loss", "val_accuracy", "val_macro_f1")},
                               "history": state["history"]}
    if s.dist.main:
        s.model.load_state_dict(load_file(str(run / RunDir.WEIGHTS), device=str(s.rt.device)))
        summary["test"], test = _score_test(s)
        plot_curves(state["history"], run / "curves.png", title=f"{cfg.model} ({cfg.init}) - {ds.path.name}")
        if s.x_val is not None:  # the unknown threshold for diag predict (unknown.json)
            summary["unknown"] = calibrate_run(run.path, ds.path, net=s.model, meta=run.record().to_dict(),
                                               device=s.rt.device)
        # last, atomically: test_metrics.json says the run is finished, so it is written only once every other
        # file of the run is in place (a full disk or a kill before it leaves a resumable, unfinished run)
        with disk_full_as_error(run.path):
            atomic_write_json(run / RunDir.TEST, test)
        if s.rt.show:
            _say_finished(summary)
    end_distributed(s.dist)
    return summary


def _score_test(s: Session) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The selected model scored once on the test split: (the summary's numbers, test_metrics.json's content,
    written by the caller last)."""
    ds, run, classes = s.ds, s.run, s.ds.classes
    if "test" not in ds.splits or len(ds.labels("test")) == 0:
        return None, {"split": "test", "n": 0, "note": "the dataset has no test windows"}
    x_test = SplitImages(ds, "test", None, s.rt.device, s.cfg.in_memory_gb, s.cfg.num_workers)
    y_test = ds.labels("test")
    loss, pred = evaluate_split(s.model, x_test, torch.as_tensor(y_test), 2 * s.cfg.batch_size, s.rt.dtype,
                                s.rt.channels_last)
    test = classification_metrics(y_test, pred, classes, split="test")
    test.update({"loss": loss, "selected_epoch": s.state["best"]["epoch"], "selected_by": s.selected_by})
    plot_confusion(test["confusion"], classes, run / "confusion_test.png",
                   f"test split: accuracy {test['accuracy']:.3f}, macro-F1 {test['macro_f1']:.3f}")
    return {k: test[k] for k in ("accuracy", "macro_f1", "loss", "n")}, test


def _say_finished(summary: dict[str, Any]) -> None:
    t = summary["test"]
    console.print(f"selected epoch {summary['selected_epoch']} by {summary['selected_by']}; "
                  + (f"test accuracy {t['accuracy']:.3f}, macro-F1 {t['macro_f1']:.3f} (n={t['n']})"
                     if t else "no test split") + f"  -> {summary['out']}")
    u = summary.get("unknown")
    if u and not u["guaranteed"][f"{u['far']:g}"]:
        console.print(f"[yellow]note:[/] {u['calibrated_on']['n']} validation windows are too few to promise "
                      f"the unknown threshold's {100 * u['far']:g} % false-alarm rate with "
                      f"{100 * u['confidence']:g} % confidence; it is set at the largest validation score")
