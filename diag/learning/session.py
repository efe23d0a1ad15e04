"""Setting up a ``diag train`` run, so the loop in :mod:`diag.learning.train` reads top to bottom: the
settings reconciled with a resumed run's, the run folder claimed, the labelled subset, the data on the
device, the model, optimiser and schedule, and the resumed state (:func:`start`, returning a
:class:`Session`). Also what a refit takes from the run it refits (:func:`refit_source`)."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from diag.config import changed_settings, from_dict
from diag.errors import DiagError
from diag.learning.augment import TimeFrequencyAugment
from diag.learning.models import SSL_META, SSL_WEIGHTS, build_backbone, check_input_size
from diag.learning.rundir import RunDir
from diag.learning.runtime import (Dist, Runtime, batch_plan, console, init_distributed, load_checkpoint,
                                   make_optimizer, make_scaler, set_rng_state, warmup_steps)
from diag.provenance import check_run_dir, preprocessing_difference, start_run_dir
from diag.signal.dataset import MANIFEST, PreparedDataset, SplitImages
from diag.show import esc, tagged
from diag.storage import atomic_write_json, read_json

__all__ = ["Session", "start", "refit_source", "epochs_for", "preprocessing_differs", "check_classes",
           "select_labeled"]


@dataclass
class Session:
    """Everything the training loop touches, set up by :func:`start`."""

    cfg: Any  #: the TrainConfig
    ds: PreparedDataset
    run: RunDir
    dist: Dist
    rt: Runtime
    model: nn.Module
    net: nn.Module  #: the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    scaler: Any
    trainable: list[torch.nn.Parameter]
    augment: TimeFrequencyAugment | None
    labeled: np.ndarray  #: indices of the labelled training windows
    x_train: SplitImages
    y_train: torch.Tensor
    x_val: SplitImages | None
    y_val: torch.Tensor | None
    schedule: dict[str, Any]  #: epochs, steps_per_epoch, steps, warmup_steps, min_steps
    gen: torch.Generator  #: shuffling
    aug_gen: torch.Generator  #: augmentation
    state: dict[str, Any]  #: epoch, step, history, best, bad_epochs (what last.pt resumes)
    start_info: dict[str, Any]  #: how the weights were first initialised
    refit: dict[str, Any] | None = None
    min_last: int = 2  #: the smallest last batch (BatchNorm needs two samples per rank)
    resumed: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def selected_by(self) -> str:
        if self.x_val is None:
            return "last epoch (no validation split)"
        return "val macro-F1" if self.cfg.select == "f1" else "val loss"


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


def epochs_for(epochs: int, steps_per_epoch: int, min_steps: int = 0) -> int:
    """``epochs``, raised so that ``epochs * steps_per_epoch >= min_steps`` (a step budget for few labels)."""
    return max(epochs, -(-min_steps // max(1, steps_per_epoch)))


def _settings(run: RunDir, cfg: Any, resume: bool, config_type: type) -> tuple[Any, dict[str, Any] | None]:
    """The config to train with: a resumed run's saved one (a given ``cfg`` must agree with it)."""
    if not resume:
        return cfg or config_type(), None
    if run.finished:
        raise DiagError(f"{run.path}: this run already finished (test_metrics.json exists); use --force to start over")
    if not run.started:
        raise DiagError(f"{run.path}: nothing to resume (no config.json); start it without --resume")
    saved = run.saved()
    if cfg is not None and asdict(cfg) != saved["train"]:
        raise DiagError(f"--resume continues {run.path} with its saved settings; these differ: "
                        f"{', '.join(changed_settings(cfg, saved['train']))}")
    return from_dict(config_type, saved["train"], "train"), saved


def start(data: str | Path, out: str | Path, cfg: Any, config_type: type, resume: bool, force: bool,
          quiet: bool) -> Session:
    """Set up (or resume) a training run; the run folder is claimed and its first files written."""
    run, dist = RunDir(out), init_distributed()
    cfg, saved = _settings(run, cfg, resume, config_type)
    cfg = cfg.validate()
    ds = PreparedDataset(data)
    refit = refit_source(cfg.refit_from, ds) if cfg.refit_from else None
    if refit is not None and saved is None:  # the selected number of passes, over every training window
        cfg = dataclasses.replace(cfg, epochs=refit["epochs"], min_steps=0, patience=0)
    if saved is not None and saved["dataset_fingerprint"] != ds.manifest.get("fingerprint"):
        raise DiagError(f"{ds.path}: not the prepared dataset this run started on (fingerprint differs)")
    resume_from = resume and run.has_checkpoint  # a run stopped before its first checkpoint starts over
    restart = (resume and not resume_from) or (not resume and run.started and not run.has_checkpoint
                                                and not run.finished)
    if dist.main:
        check_run_dir(out, RunDir.KIND, resume=resume or restart, force=force and not restart,
                      inputs=[data, cfg.weights])
    rt = Runtime.setup(cfg.device, cfg.amp, cfg.channels_last, quiet, "train", dist)
    labeled, x_train, y_train, x_val, y_val = _data(ds, cfg, rt.device, dist)
    torch.manual_seed(cfg.seed)
    s = _model(ds, cfg, rt, dist, saved if resume_from else None, run, refit, labeled, x_train, y_train, x_val, y_val)
    if resume_from:
        _resume(s)
    elif dist.main:
        _begin(s, saved, force or restart, data)
    return s


def _data(ds: PreparedDataset, cfg: Any, device: torch.device, dist: Dist) -> tuple:
    """The labelled training subset, and the splits as image batches on ``device``."""
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
    return labeled, x_train, y_train, x_val, y_val


def _model(ds: PreparedDataset, cfg: Any, rt: Runtime, dist: Dist, saved: dict[str, Any] | None, run: RunDir,
           refit: dict[str, Any] | None, labeled: np.ndarray, x_train: SplitImages, y_train: torch.Tensor,
           x_val: SplitImages | None, y_val: torch.Tensor | None) -> Session:
    """Model (from its start, or scratch to be overwritten by a checkpoint), optimiser, schedule, generators."""
    extra = {"drop_path_rate": cfg.drop_path} if cfg.drop_path else {}
    built = build_backbone(cfg.model, "scratch" if saved else cfg.init, ds.image_shape[0], len(ds.classes),
                           weights=None if saved else (cfg.weights or None), freeze=cfg.freeze,
                           replicate_channels=cfg.replicate_channels, **extra)
    model = built.model
    check_input_size(model, cfg.model, ds.image_shape, str(ds.path))
    start_info = dict(saved["start"]) if saved else dict(built.info)
    if not saved and cfg.init == "ssl":
        record = _pretraining_meta(cfg.weights)  # read once: checked here, kept in model.json
        if record is not None:
            _warn_if_other_preprocessing(record, cfg.weights, ds, rt.show)
            keep = ("format", "init", "method", "model", "epochs_done", "probe", "knn_start", "knn_last", "pretrain",
                    "finished", "method_choice")
            start_info["pretraining"] = {k: record[k] for k in keep if k in record}
    rt.prepare_model(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay, rt.device)
    net: nn.Module = model
    if dist.world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
    min_last = max(2, dist.world)
    steps_per_epoch = len(batch_plan(len(labeled), cfg.batch_size, None, min_last=min_last))
    epochs = epochs_for(cfg.epochs, steps_per_epoch, cfg.min_steps)  # raised for small label sets
    total = epochs * steps_per_epoch
    schedule = {"epochs": epochs, "steps_per_epoch": steps_per_epoch, "steps": total,
                "warmup_steps": warmup_steps(cfg.warmup, total), "min_steps": cfg.min_steps}
    gen = torch.Generator().manual_seed(cfg.seed)
    aug_gen = torch.Generator(device=rt.device).manual_seed(cfg.seed + 1 + 1000 * dist.rank)
    state: dict[str, Any] = {"epoch": 0, "step": 0, "history": [], "best": None, "bad_epochs": 0}
    return Session(cfg, ds, run, dist, rt, model, net, optimizer, make_scaler(rt), trainable,
                   TimeFrequencyAugment.light() if cfg.augment else None, labeled, x_train, y_train, x_val, y_val,
                   schedule, gen, aug_gen, state, start_info, refit, min_last)


def _resume(s: Session) -> None:
    last = load_checkpoint(s.run / RunDir.LAST, keys=("model", "optimizer", "scaler", "rng", "state"))
    s.model.load_state_dict(last["model"])
    s.optimizer.load_state_dict(last["optimizer"])
    s.scaler.load_state_dict(last["scaler"])
    set_rng_state(last["rng"], s.gen, s.aug_gen, s.dist)
    s.state, s.resumed = last["state"], True
    if s.rt.show:
        console.print(esc(f"resuming {s.run.path} after epoch {s.state['epoch']}/{s.schedule['epochs']}"))


def _begin(s: Session, saved: dict[str, Any] | None, replace: bool, data: str | Path) -> None:
    """A new run folder with its settings and labelled subset (a run that never reached its first
    checkpoint is started over in place)."""
    cfg = s.cfg
    start_run_dir(s.run.path, RunDir.KIND, force=replace, inputs=[data, cfg.weights])
    y_all = s.ds.labels("train")
    atomic_write_json(s.run / RunDir.CONFIG, {"train": asdict(cfg), "data": str(s.ds.path),
                                              "dataset_fingerprint": s.ds.manifest.get("fingerprint"),
                                              "start": s.start_info})
    atomic_write_json(s.run / RunDir.LABELED, {
        "split": "train", "n_train": len(y_all), "n_labeled": len(s.labeled),
        "labels_per_class": cfg.labels_per_class, "label_fraction": cfg.label_fraction, "seed": cfg.seed,
        "labeled": s.labeled.tolist(),
        "note": "indices into the train split; the other training windows were not used with labels"})


def preprocessing_differs(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    """The first setting in which two stored preprocessings (a run's, a dataset's) would make different
    images, or None. Records of images made outside ``diag prepare`` are compared key by key."""
    from diag.signal.preprocessing import Preprocessing

    try:
        pa, pb = Preprocessing.from_dict(a), Preprocessing.from_dict(b)
    except DiagError:
        return preprocessing_difference(a, b)
    return pa.difference(pb, ("run", "dataset"))


def _pretraining_meta(weights: str) -> dict[str, Any] | None:
    """The pretrain.json beside SSL weights (a folder or its backbone file), or None where there is none. A run
    keeps what pretraining began from, its method and probe in model.json (``start.pretraining``), so that it
    says how its start was made wherever the pretraining folder goes."""
    p = Path(weights)
    meta = (p if p.is_dir() else p.parent) / SSL_META
    return read_json(meta, "the pretraining record") if meta.is_file() else None


def _warn_if_other_preprocessing(record: dict[str, Any], weights: str, ds: PreparedDataset, show: bool) -> None:
    pre = record.get("preprocessing") or {}
    if show and preprocessing_differs(pre, ds.preprocessing_record()):
        p = Path(weights)
        folder = p if p.is_dir() else p.parent
        console.print(tagged("[yellow]warning:[/]", f"{folder / SSL_WEIGHTS} was pretrained on images made with "
                             "other preprocessing (transform or sampling rate) than this dataset"))


def refit_source(run: str | Path, ds: PreparedDataset) -> dict[str, Any]:
    """What a refit (``train.refit_from = RUN``) takes from ``RUN``, after checking that it may.

    ``RUN`` must be a finished run that selected its epoch on validation; ``ds`` must hold no validation
    windows (prepared with ``split.val_fraction = 0``), the same classes and preprocessing as RUN's
    dataset and exactly its test windows (RUN's dataset must still be there to compare), so the refit
    trains on the held-out units and is scored on the same, untouched test side. Returns
    ``{"from", "epochs", "selected_by", "val_macro_f1", "val_by"}``.
    """
    rd = RunDir(run)
    if not (rd / RunDir.RECORD).is_file() or not rd.finished:
        raise DiagError(f"--refit-from {run}: not a finished diag train run (no model.json / test_metrics.json)")
    meta = rd.record()
    sel = meta.selected or {}
    if not str(sel.get("by", "")).startswith("val"):
        raise DiagError(f"--refit-from {run}: it selected its epoch by {sel.get('by')!r}, not on validation; "
                        "refit from a run that had a validation split")
    if "val" in ds.splits and len(ds.labels("val")):
        raise DiagError(f"{ds.path}: has {len(ds.labels('val'))} validation windows; a refit trains on them: prepare "
                        "the same data with --set split.val_fraction=0")
    src = Path((meta.dataset or {}).get("path") or "")
    if not src.name or not (src / MANIFEST).is_file():
        raise DiagError(f"--refit-from {run}: its prepared dataset {src} is gone, so the test windows cannot be "
                        "checked to be the same; prepare it again at that path")
    if list(meta.classes) != list(ds.classes):
        raise DiagError(f"{ds.path}: classes {ds.classes} are not the run's {meta.classes}")
    diff = preprocessing_differs(meta.preprocessing or {}, ds.preprocessing_record())
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
