"""``diag train``: fine-tune a timm backbone on a prepared dataset -- one readable loop.

The loop reads top to bottom (nanoGPT style): config -> data -> model -> optimizer -> epochs
(train steps, validation, selection, checkpoint) -> the selected model scored once on test.

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

    config.json        the training config, data path and dataset fingerprint
    labeled.json       which training windows were used with their labels
    model.safetensors  selected weights;  model.json: classes, preprocessing, config, versions, seed
    metrics.jsonl / metrics.csv    one row per epoch
    test_metrics.json  accuracy, macro-F1, per-class report, confusion matrix (split: test)
    confusion_test.png, curves.png, last.pt
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn

from diag.config import apply_overrides, changed_settings, from_dict, read_toml
from diag.dataset import DatasetWriter, PreparedDataset
from diag.storage import atomic_write_json, atomic_write_text
from diag.errors import DiagError
from diag.provenance import check_run_dir, start_run_dir

console = Console(stderr=True, highlight=False, soft_wrap=True)
AMP_MODES = ("auto", "bf16", "fp16", "off")
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
    seed: int = 0
    amp: str = "auto"
    channels_last: bool = True
    device: str = "auto"
    num_workers: int = 0
    in_memory_gb: float = 4.0

    def validate(self) -> "TrainConfig":
        from diag.models import INITS, check_model_name, parse_freeze

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
    data = read_toml(path) if path else {}
    table = dict(base or {})
    table.update(data.get("train", {}))
    for text in overrides:
        if not text.split("=", 1)[0].strip().startswith("train."):
            raise DiagError(f"--set {text}: diag train reads only train.* settings (e.g. train.lr=3e-4)")
    tree = apply_overrides({"train": table}, list(overrides))
    return from_dict(TrainConfig, tree["train"], "train").validate()


# ------------------------------------------------------------------------------------------------
# Devices, precision, distributed


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owned: bool = False  # this process group was started here (and is ended here)

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """Join the torchrun process group when WORLD_SIZE > 1 (NCCL on CUDA, else gloo)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as td

    d = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not td.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(d.local_rank)
        td.init_process_group(backend)
        d.owned = True
    return d


def pick_device(spec: str = "auto", dist: Dist | None = None) -> torch.device:
    """``auto``: CUDA (this rank's GPU under torchrun), else Apple MPS, else CPU."""
    dist = dist or Dist()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", dist.local_rank if dist.world > 1 else torch.cuda.current_device())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise DiagError(f"device: unknown '{spec}'; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DiagError(f"device: '{spec}' requested but CUDA is not available here; use device=auto or cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise DiagError(f"device: '{spec}' but this machine has {torch.cuda.device_count()} GPU(s) (cuda:0 ...)")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DiagError(f"device: '{spec}' requested but Apple MPS is not available here")
    return dev


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``mode`` on ``device`` (None = full precision)."""
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if mode == "bf16" else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


@contextmanager
def deterministic(enabled: bool) -> Iterator[None]:
    """Deterministic kernels while training on CPU (settings restored afterwards).

    Uninitialised memory is not NaN-filled (torch does that by default in deterministic mode, at a
    few per cent of speed); the loop never reads memory it did not write.
    """
    import torch.utils.deterministic as tud

    before, fill = torch.are_deterministic_algorithms_enabled(), tud.fill_uninitialized_memory
    if enabled:
        torch.use_deterministic_algorithms(True, warn_only=True)
        tud.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)
        tud.fill_uninitialized_memory = fill


# ------------------------------------------------------------------------------------------------
# Data


def check_classes(y: np.ndarray, classes: Sequence[str], where: str) -> None:
    """Every class must have training windows."""
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


def batch_plan(n: int, batch_size: int, generator: torch.Generator | None, min_last: int = 2) -> list[torch.Tensor]:
    """Positions ``0..n-1`` cut into batches (shuffled with ``generator``, in order when None).

    A last batch smaller than ``min_last`` joins the one before (BatchNorm and DDP need >= 2 / >=
    world size samples)."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    batches = list(order.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) < min_last:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


class SplitImages:
    """The images of one split (optionally a subset), served as float32 batches on ``device``.

    Held as one float16 tensor (moved to the GPU when training there) if it fits in ``budget_gb``;
    otherwise read batch by batch from the memory-mapped ``.npy`` by ``num_workers`` processes.
    """

    def __init__(self, ds: PreparedDataset, split: str, indices: np.ndarray | None, device: torch.device,
                 budget_gb: float = 4.0, num_workers: int = 0):
        arr = ds.images(split)
        self.path = ds.path / f"{split}.npy"
        self.indices = np.arange(len(arr)) if indices is None else np.asarray(indices)
        self.device = device
        self.num_workers = num_workers
        self.shape = tuple(arr.shape[1:])
        nbytes = len(self.indices) * int(np.prod(self.shape)) * 2
        self.memory: torch.Tensor | None = None
        if nbytes <= budget_gb * 2**30:
            full = len(self.indices) == len(arr) and np.array_equal(self.indices, np.arange(len(arr)))
            t = torch.from_numpy(np.array(arr) if full else arr[self.indices])
            self.memory = t.to(device) if device.type == "cuda" else t

    def __len__(self) -> int:
        return len(self.indices)

    def tensor(self) -> torch.Tensor:
        """The whole split as float16 (in memory only)."""
        assert self.memory is not None
        return self.memory

    def iterate(self, batches: Sequence[torch.Tensor]) -> Iterator[torch.Tensor]:
        """Yield float32 ``[b, C, H, W]`` batches on the device for the given position batches."""
        if self.memory is not None:
            if not batches:
                return
            sizes = [len(b) for b in batches]
            for b in torch.cat(list(batches)).to(self.memory.device).split(sizes):  # one index transfer
                yield self.memory[b].to(self.device, non_blocking=True).float()
            return
        loader = torch.utils.data.DataLoader(
            _MemmapBatches(self.path, self.indices), batch_size=None, sampler=[b.numpy() for b in batches],
            num_workers=self.num_workers, pin_memory=self.device.type == "cuda")
        for x in loader:
            yield x.to(self.device, non_blocking=True).float()


class _MemmapBatches(torch.utils.data.Dataset):
    """Whole batches from a memory-mapped ``.npy`` (opened lazily in each worker, read in sorted order)."""

    def __init__(self, path: Path, indices: np.ndarray):
        self.path, self.indices, self._arr = path, indices, None

    def __getitem__(self, positions: np.ndarray) -> torch.Tensor:
        if self._arr is None:
            self._arr = np.load(self.path, mmap_mode="r")
        rows = self.indices[positions]
        order = np.argsort(rows, kind="stable")
        batch = np.empty((len(rows), *self._arr.shape[1:]), dtype=np.float16)
        batch[order] = self._arr[rows[order]]
        return torch.from_numpy(batch)

    def __len__(self) -> int:
        return len(self.indices)


def preprocessing_of(ds: PreparedDataset) -> dict[str, Any]:
    """Everything ``diag predict`` needs to turn a waveform into this model's images."""
    m = ds.manifest
    return {key: m.get(key) for key in ("config", "fingerprint", "fs", "window", "transform", "image_shape", "classes")}


# ------------------------------------------------------------------------------------------------
# Optimisation


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Trainable parameters in two AdamW groups: decayed (>= 2-D weights) and not (norms, biases, 1-D)."""
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name in skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_steps(warmup: float, total: int) -> int:
    """``warmup`` < 1 is a fraction of ``total`` steps, >= 1 a number of steps."""
    steps = round(warmup * total) if warmup < 1 else int(warmup)
    return max(0, min(steps, total))


def lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    """Learning rate for 0-based ``step``: linear warmup to ``peak`` over ``warmup`` steps, then cosine to 0."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


# ------------------------------------------------------------------------------------------------
# Run directories and checkpoints


def save_safetensors(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write tensors to ``path`` atomically (temporary file + rename)."""
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def _save_last(path: Path, state: dict[str, Any]) -> None:
    """``last.pt``: plain tensors, numbers, strings, lists and dicts only (``weights_only=True`` loads it)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _write_history(out: Path, history: list[dict[str, Any]]) -> None:
    atomic_write_text(out / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))
    buf = io.StringIO()
    if history:
        w = csv.DictWriter(buf, fieldnames=list(history[0]))
        w.writeheader()
        w.writerows(history)
    atomic_write_text(out / "metrics.csv", buf.getvalue())


def _rng_state(gen: torch.Generator, aug_gen: torch.Generator, dist: Dist) -> dict[str, Any]:
    """Every random state the loop uses; under torchrun the per-rank augmentation states are gathered
    (so all ranks must call this)."""
    augment = [aug_gen.get_state()]
    if dist.world > 1:
        import torch.distributed as td

        augment = [None] * dist.world
        td.all_gather_object(augment, aug_gen.get_state())
    state = {"torch": torch.get_rng_state(), "shuffle": gen.get_state(), "augment": augment}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], gen: torch.Generator, aug_gen: torch.Generator, dist: Dist) -> None:
    torch.set_rng_state(state["torch"])
    gen.set_state(state["shuffle"])
    if len(state["augment"]) == dist.world:
        aug_gen.set_state(state["augment"][dist.rank])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def package_versions() -> dict[str, str]:
    from diag.prepare import package_versions as pv

    return pv()


# ------------------------------------------------------------------------------------------------
# Evaluation


@torch.no_grad()
def predict_split(model: nn.Module, images: SplitImages, batch_size: int, dtype: torch.dtype | None,
                  channels_last: bool = False) -> torch.Tensor:
    """Logits ``[N, K]`` (float32, on the device) for a whole split, in order."""
    was_training = model.training
    model.eval()
    out = []
    for x in images.iterate(batch_plan(len(images), batch_size, None, min_last=1)):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(images.device, dtype):
            out.append(model(x).float())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, 0)


def evaluate_split(model: nn.Module, images: SplitImages, y: torch.Tensor, batch_size: int,
                   dtype: torch.dtype | None, channels_last: bool = False) -> tuple[float, np.ndarray]:
    """(mean cross-entropy without label smoothing, predicted classes)."""
    logits = predict_split(model, images, batch_size, dtype, channels_last)
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
    from diag.evaluate import accuracy_f1, classification_metrics, plot_confusion, plot_curves
    from diag.models import create_backbone, train_mode
    from diag.ssl import TimeFrequencyAugment

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
    if saved is not None and saved["dataset_fingerprint"] != ds.manifest.get("fingerprint"):
        raise DiagError(f"{ds.path}: not the prepared dataset this run started on (fingerprint differs)")
    if dist.main:
        check_run_dir(out, "train-run", resume=resume, force=force, inputs=[data, cfg.weights])
    device = pick_device(cfg.device, dist)
    dtype = amp_dtype(cfg.amp, device)
    if dtype is not None and device.type == "cpu":
        raise DiagError("train.amp: mixed precision is for GPUs; use amp=off (or auto) on CPU")
    channels_last = cfg.channels_last and device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    show = dist.main and not quiet
    runtime = {"device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
               "amp": str(dtype).replace("torch.", "") if dtype is not None else "off",
               "channels_last": channels_last, "world_size": dist.world}

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
    in_chans = ds.image_shape[0]

    # ---- model and optimiser --------------------------------------------------------------------
    torch.manual_seed(cfg.seed)
    extra = {"drop_path_rate": cfg.drop_path} if cfg.drop_path else {}
    model = create_backbone(cfg.model, "scratch" if saved else cfg.init, in_chans, len(classes),
                            weights=None if saved else (cfg.weights or None), freeze=cfg.freeze,
                            replicate_channels=cfg.replicate_channels, **extra)
    start_info = dict(saved["start"]) if saved else dict(model.diag_info)  # how the weights were first initialised
    if not saved and cfg.init == "ssl":
        _warn_if_other_preprocessing(cfg.weights, ds, show)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.999),
                                  **({"fused": True} if device.type == "cuda" else {}))
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    net: nn.Module = model
    if dist.world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    augment = TimeFrequencyAugment.light() if cfg.augment else None

    steps_per_epoch = len(batch_plan(len(labeled), cfg.batch_size, None, min_last=max(2, dist.world)))
    total_steps = cfg.epochs * steps_per_epoch
    warmup = warmup_steps(cfg.warmup, total_steps)
    gen = torch.Generator().manual_seed(cfg.seed)  # shuffling
    aug_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1 + 1000 * dist.rank)  # augmentation
    state: dict[str, Any] = {"epoch": 0, "step": 0, "history": [], "best": None, "bad_epochs": 0}

    if saved is not None:  # ---- resume ------------------------------------------------------
        last = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(last["model"])
        optimizer.load_state_dict(last["optimizer"])
        scaler.load_state_dict(last["scaler"])
        _set_rng_state(last["rng"], gen, aug_gen, dist)
        state = last["state"]
        if show:
            console.print(f"resuming {out} after epoch {state['epoch']}/{cfg.epochs}")
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
    with deterministic(device.type == "cpu"):
        stop = state["bad_epochs"] >= cfg.patience > 0
        for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
            if stop:
                break
            # -- train one epoch
            t0 = time.perf_counter()
            train_mode(model)
            batches = batch_plan(len(labeled), cfg.batch_size, gen, min_last=max(2, dist.world))
            local = [b[dist.rank::dist.world] for b in batches]
            loss_sum = torch.zeros((), device=device)
            seen = 0
            with _progress(show, f"epoch {epoch}/{cfg.epochs}", len(local)) as advance:
                targets = y_train[torch.cat(local).to(device)].split([len(b) for b in local])
                for y, x in zip(targets, x_train.iterate(local)):
                    lr = lr_at(state["step"], total_steps, warmup, cfg.lr)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    if augment is not None:
                        x = augment(x, aug_gen)
                    if channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    with autocast(device, dtype):
                        logits = net(x)
                    loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    if cfg.grad_clip > 0:
                        scaler.unscale_(optimizer)
                        torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
                    scaler.step(optimizer)
                    scaler.update()
                    loss_sum += loss.detach() * len(y)
                    seen += len(y)
                    state["step"] += 1
                    advance()
            if dist.world > 1:
                import torch.distributed as td

                tot = torch.stack([loss_sum, torch.tensor(float(seen), device=device)])
                td.all_reduce(tot)
                loss_sum, seen = tot[0], int(tot[1].item())
            train_loss = (loss_sum / max(1, seen)).item()
            train_seconds = time.perf_counter() - t0

            # -- validate and select (every rank evaluates the whole split: same weights, same answer)
            if has_val:
                val_loss, val_pred = evaluate_split(model, x_val, y_val, 2 * cfg.batch_size, dtype, channels_last)
                val_acc, val_f1 = accuracy_f1(y_val.cpu().numpy(), val_pred)
                score = (val_f1, -val_loss) if cfg.select == "f1" else (-val_loss,)
            else:
                val_loss = val_acc = val_f1 = float("nan")
                score = (float(epoch),)  # no validation split: the last epoch is the selected one
            best = state["best"]
            improved = best is None or tuple(score) > tuple(best["score"])
            if dist.world > 1:  # rank 0 decides, so that ranks can never disagree about stopping
                import torch.distributed as td

                flag = torch.tensor([float(improved)], device=device)
                td.broadcast(flag, 0)
                improved = bool(flag.item())
            if improved:
                state["best"] = best = {"epoch": epoch, "score": list(score), "val_loss": val_loss,
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
            rng = _rng_state(gen, aug_gen, dist)
            if dist.main:
                if improved:
                    _save_model(out, model, ds, cfg, state, start_info, dist, labeled, sel_name, runtime)
                _save_last(out / "last.pt", {
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                    "rng": rng, "state": state})
                _write_history(out, state["history"])
            if show:
                console.print(
                    f"epoch {epoch:>3}/{cfg.epochs}  train loss {train_loss:.4f}  val loss {val_loss:.4f}  "
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
                                                  dtype, channels_last)
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
        if show:
            t = summary["test"]
            console.print(f"selected epoch {summary['selected_epoch']} by {summary['selected_by']}; "
                          + (f"test accuracy {t['accuracy']:.3f}, macro-F1 {t['macro_f1']:.3f} (n={t['n']})"
                             if t else "no test split") + f"  -> {out}")
    if dist.world > 1:
        import torch.distributed as td

        td.barrier()
        if dist.owned:
            td.destroy_process_group()
    return summary


def _save_model(out: Path, model: nn.Module, ds: PreparedDataset, cfg: TrainConfig, state: dict[str, Any],
                start_info: dict[str, Any], dist: Dist, labeled: np.ndarray, sel_name: str,
                runtime: dict[str, Any]) -> None:
    best = state["best"]
    save_safetensors(out / "model.safetensors", model.state_dict(), metadata={"format": "pt", "model": cfg.model})
    atomic_write_json(out / "model.json", {
        "format": "diag-model/1",
        "model": cfg.model,
        "in_chans": ds.image_shape[0],
        "replicate_channels": cfg.replicate_channels,
        "classes": ds.classes,
        "preprocessing": preprocessing_of(ds),
        "dataset": {"path": str(ds.path), "fingerprint": ds.manifest.get("fingerprint"), "sizes": ds.manifest.get("sizes")},
        "train": asdict(cfg),
        "start": start_info,
        "selected": {"epoch": best["epoch"], "by": sel_name, "val_loss": best["val_loss"],
                     "val_accuracy": best["val_accuracy"], "val_macro_f1": best["val_macro_f1"]},
        "labeled": {"n": int(len(labeled)), "of": int(len(ds.labels("train")))},
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
    return json.loads((out / "config.json").read_text(encoding="utf-8"))


def _warn_if_other_preprocessing(weights: str, ds: PreparedDataset, show: bool) -> None:
    from diag.models import SSL_META, SSL_WEIGHTS

    p = Path(weights)
    meta = (p if p.is_dir() else p.parent) / SSL_META
    if not show or not meta.is_file():
        return
    pre = json.loads(meta.read_text(encoding="utf-8")).get("preprocessing", {})
    if pre.get("transform") != ds.manifest.get("transform") or pre.get("fs") != ds.manifest.get("fs"):
        console.print(f"[yellow]warning:[/] {meta.parent / SSL_WEIGHTS} was pretrained on images made with other "
                      "preprocessing (transform or sampling rate) than this dataset")


@contextmanager
def _progress(show: bool, label: str, total: int):
    """A rich progress bar for one epoch (nothing when quiet); yields an ``advance()`` callable."""
    if not show or not console.is_terminal:
        yield lambda: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task(label, total=total)
        yield lambda: progress.advance(task)


# ------------------------------------------------------------------------------------------------
# Command-line entry and toy data


def run(data: str | Path | None, out: str | Path, config: str | Path | None = None, overrides: Sequence[str] = (),
        resume: bool = False, force: bool = False, quiet: bool = False) -> dict[str, Any]:
    """What ``diag train`` calls: settle the config (saved one when resuming), then :func:`train`."""
    out = Path(out)
    base = _saved_run(out) if resume else None
    cfg = load_train_config(config, overrides, base=base["train"] if base else None)
    if data is None:
        if base is None:
            raise DiagError("--data: the prepared dataset folder is required (made by `diag prepare`)")
        data = base["data"]
    return train(data, out, cfg, resume=resume, force=force, quiet=quiet)


def make_toy_dataset(out: str | Path, n_train: int = 40, n_val: int = 12, n_test: int = 12, classes: int = 4,
                     size: int = 32, channels: int = 1, seed: int = 0, noise: float = 0.6,
                     stripes: float = 1.5) -> Path:
    """A tiny prepared dataset whose class is visible, for tests, benchmarks and demos.

    Each ``channels x size x size`` image is a scalogram-like pattern: class ``k`` has a bright band
    at frequency row ``(k + 1) * size / (classes + 1)`` (+- 1 row), pulsing along time at a
    class-specific rate; nuisances unrelated to the class are broadband transients (vertical
    stripes of random strength ``stripes`` at random times) and Gaussian noise (``noise``). Images
    are standardised per image like ``transform.norm = "image"``. ``n_*`` are windows per class and
    split.
    """
    rng = np.random.default_rng(seed)
    names = [f"class{k}" for k in range(classes)]
    sizes = {"train": n_train * classes, "val": n_val * classes, "test": n_test * classes}
    rows = np.arange(size)[:, None]
    cols = np.arange(size)[None, :]
    metas = {}
    with DatasetWriter(out, sizes, (channels, size, size)) as w:
        for split, n in sizes.items():
            y = np.repeat(np.arange(classes), n // classes)
            rng.shuffle(y)
            imgs = np.empty((n, channels, size, size), dtype=np.float32)
            for i, k in enumerate(y):
                row = (k + 1) * size / (classes + 1) + rng.integers(-1, 2)
                pulse = 0.6 + 0.4 * np.cos(2 * np.pi * (k + 2) * cols / size + rng.uniform(0, 2 * np.pi))
                band = 2.0 * np.exp(-0.5 * ((rows - row) / 0.8) ** 2) * pulse
                stripe_cols = rng.integers(0, size, size=3)
                stripe = np.zeros((1, size))
                stripe[0, stripe_cols] = rng.uniform(0, stripes, size=3)
                img = band + stripe + rng.normal(0, noise, (channels, size, size))
                imgs[i] = (img - img.mean()) / (img.std() + 1e-6)
            w.add(split, imgs)
            metas[split] = {"y": y, "label": np.array([names[k] for k in y], dtype=object),
                            "group": np.array(["toy"] * n, dtype=object), "condition": np.array(["-"] * n, dtype=object),
                            "fault_size": np.array([""] * n, dtype=object), "source": np.array(["toy"] * n, dtype=object),
                            "start": np.arange(n), "rec": np.zeros(n, dtype=np.int64)}
        manifest = {"format_version": 1, "fingerprint": f"toy-{seed}-{size}-{channels}-{classes}-{n_train}",
                    "config": {"source": {"kind": "toy"}}, "classes": names, "fs": 1000.0,
                    "window": {"length": 256, "hop": 128, "normalize": "zscore", "channels": ["toy"]},
                    "transform": {"kind": "toy"}, "image_shape": [channels, size, size], "sizes": sizes}
        w.commit(metas, manifest)
    return Path(out)
