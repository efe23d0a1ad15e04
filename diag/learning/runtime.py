"""What every training loop needs, in one place: devices, torchrun, precision, determinism, batch
plans, the optimiser and its warmup + cosine schedule, one optimisation step, checkpoints with the
random states, and progress display.

Library code that ``diag train`` and ``diag pretrain`` both import (in the spirit of Lightning
Fabric's single runtime object and timm's ``utils/``); neither loop borrows from the other. Global
torch settings are only changed inside context managers that restore them.
"""

from __future__ import annotations

import math
import os
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
from rich.console import Console
from torch import nn

from diag.errors import DiagError, describe, disk_full_as_error
from diag.storage import atomic_file, clean_stale_temporaries

console = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
AMP_MODES = ("auto", "bf16", "fp16", "off")


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


def end_distributed(dist: Dist) -> None:
    """Wait for every rank; end the process group if it was started here."""
    if dist.world > 1:
        import torch.distributed as td

        td.barrier()
        if dist.owned:
            td.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, dist: Dist) -> torch.Tensor:
    """``values`` summed over ranks (unchanged in one process)."""
    if dist.world > 1:
        import torch.distributed as td

        td.all_reduce(values)
    return values


def broadcast_flag(flag: bool, dist: Dist, device: torch.device) -> bool:
    """Rank 0's ``flag`` on every rank (so that ranks can never disagree)."""
    if dist.world <= 1:
        return flag
    import torch.distributed as td

    t = torch.tensor([float(flag)], device=device)
    td.broadcast(t, 0)
    return bool(t.item())


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


@dataclass
class Runtime:
    """Where and how a loop runs: the process group, the device, the autocast dtype, the memory layout."""

    dist: Dist
    device: torch.device
    dtype: torch.dtype | None
    channels_last: bool
    show: bool

    @classmethod
    def setup(cls, device: str, amp: str, channels_last: bool, quiet: bool, section: str,
              dist: Dist | None = None) -> "Runtime":
        dist = dist or Dist()
        dev = pick_device(device, dist)
        dtype = amp_dtype(amp, dev)
        if dtype is not None and dev.type == "cpu":
            raise DiagError(f"{section}.amp: mixed precision is for GPUs; use amp=off (or auto) on CPU")
        # NHWC on CUDA and on the CPU: measured on the 2-core CPU (scripts/bench/bench_layout.py, docs/speed.md), a
        # training step of tf_efficientnet_lite0 is 1.7x (2 threads, 3x64x64) to 2.2x (1 thread, 6x32x32) faster
        # in channels_last and convnext_atto's 1.00-1.08x; MPS and others keep NCHW (not measured).
        return cls(dist, dev, dtype, channels_last and dev.type in ("cuda", "cpu"), dist.main and not quiet)

    def autocast(self):
        return autocast(self.device, self.dtype)

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the loop's memory layout (channels_last on CUDA and CPU when asked for)."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def prepare_model(self, model: nn.Module) -> nn.Module:
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def info(self) -> dict[str, Any]:
        """What a run records about where it ran."""
        name = f" ({torch.cuda.get_device_name(self.device)})" if self.device.type == "cuda" else ""
        return {"device": str(self.device) + name,
                "amp": str(self.dtype).replace("torch.", "") if self.dtype is not None else "off",
                "channels_last": self.channels_last, "world_size": self.dist.world}

    @contextmanager
    def session(self) -> Iterator[None]:
        """The loop's global torch settings, restored afterwards: deterministic kernels on CPU,
        cuDNN autotuning on CUDA."""
        with deterministic(self.device.type == "cpu"), cudnn_benchmark(self.device.type == "cuda"):
            yield


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


@contextmanager
def cudnn_benchmark(enabled: bool) -> Iterator[None]:
    """cuDNN autotuning while the block runs (fixed image sizes), restored afterwards."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled or before
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


# ------------------------------------------------------------------------------------------------
# Batches, optimiser, schedule, step


def batch_plan(n: int, batch_size: int, generator: torch.Generator | None, min_last: int = 2) -> list[torch.Tensor]:
    """Positions ``0..n-1`` cut into batches (shuffled with ``generator``, in order when None).

    A last batch smaller than ``min_last`` joins the one before (BatchNorm and DDP need >= 2 / >=
    world size samples)."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    batches = list(order.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) < min_last:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Trainable parameters in two AdamW groups: decayed (>= 2-D weights) and not (norms, biases, 1-D)."""
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name in skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, lr: float, weight_decay: float, device: torch.device) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups` (fused kernels on CUDA)."""
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr,
                             **({"fused": True} if device.type == "cuda" else {}))


def make_scaler(rt: Runtime) -> torch.amp.GradScaler:
    """A gradient scaler, active only for fp16 autocast."""
    return torch.amp.GradScaler(rt.device.type, enabled=rt.dtype == torch.float16)


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


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                   params: Iterable[torch.Tensor], grad_clip: float) -> None:
    """One step: backward (scaled for fp16), optional global-norm clipping, update."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss.float()).backward()
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    scaler.step(optimizer)
    scaler.update()


# ------------------------------------------------------------------------------------------------
# Random states and checkpoints


def rng_state(gen: torch.Generator, aug_gen: torch.Generator, dist: Dist) -> dict[str, Any]:
    """Every random state a loop uses; under torchrun the per-rank augmentation states are gathered
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


def set_rng_state(state: dict[str, Any], gen: torch.Generator, aug_gen: torch.Generator, dist: Dist) -> None:
    torch.set_rng_state(state["torch"])
    gen.set_state(state["shuffle"])
    if len(state["augment"]) == dist.world:
        aug_gen.set_state(state["augment"][dist.rank])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """``last.pt``: plain tensors, numbers, strings, lists and dicts only (``weights_only=True`` loads it).

    Serialised in memory first, so a full disk is the OSError of the write (a one-line error naming the
    disk: :func:`diag.errors.disk_full_error`), never torch's zip writer failing midway; temporaries a killed
    earlier run left beside ``path`` are removed first."""
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    write_file(path, buf.getbuffer())


def write_file(path: str | Path, data: Any) -> None:
    """``data`` (bytes) to ``path`` atomically (:func:`diag.storage.atomic_file`), after removing stale
    temporaries of ``path``; a full disk is a one-line :class:`DiagError` naming it, and no file appears."""
    path = Path(path)
    clean_stale_temporaries(path)
    with disk_full_as_error(path.parent), atomic_file(path) as tmp:
        tmp.write_bytes(data)


def check_finite_training(loss: torch.Tensor, epoch: int, where: str | Path, lr: float | None = None) -> None:
    """Stop training with a one-line :class:`DiagError` when the epoch's loss is NaN or infinite: the weights
    are then no longer numbers, and nothing of this epoch is written (no model, no checkpoint)."""
    value = float(loss.detach().float().cpu()) if isinstance(loss, torch.Tensor) else float(loss)
    if math.isfinite(value):
        return
    hint = "lower train.lr" + (f" (it is {lr:g})" if lr is not None else "") + \
        " or check the prepared images for extreme values"
    raise DiagError(f"{where}: the training loss became {value} in epoch {epoch}; training stopped and no model of "
                    f"this epoch was written; {hint}, then start again (--force)")


def load_checkpoint(path: str | Path, keys: Iterable[str] = ()) -> dict[str, Any]:
    """A ``last.pt`` written by :func:`save_checkpoint`, loaded safely (``weights_only=True``: no code
    runs). A truncated, foreign or malicious file is a one-line :class:`DiagError`, never a traceback."""
    path = Path(path)
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the one-line error says it all
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DiagError(f"{path}: missing; nothing to resume") from None
    except Exception as exc:  # truncated zip, foreign pickle, refused globals: all mean the same here
        raise DiagError(f"{path}: not a diag checkpoint, or damaged ({describe(exc, 100)}); not loaded; "
                        "start the run again with --force") from None
    missing = [k for k in keys if not isinstance(state, dict) or k not in state]
    if missing:
        raise DiagError(f"{path}: not a diag checkpoint (no {', '.join(missing)}); not loaded; "
                        "start the run again with --force")
    return state


def save_safetensors(path: str | Path, state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write tensors to ``path`` atomically, with a canonical header (keys sorted): bit-identical
    weights give a bit-identical file, so a file's sha256 is a reproducibility check.

    (safetensors itself writes the metadata keys in an order that varies from process to process.)
    """
    import json

    from safetensors.torch import save

    raw = save({k: v.detach().contiguous().cpu() for k, v in state.items()},
               metadata={k: str(v) for k, v in metadata.items()} if metadata else None)
    n = int.from_bytes(raw[:8], "little")
    header = json.dumps(json.loads(raw[8:8 + n]), sort_keys=True, separators=(",", ":")).encode()
    if len(header) <= n:  # same content, same length: pad like safetensors does (spaces)
        raw = raw[:8] + header.ljust(n, b" ") + raw[8 + n:]
    write_file(path, raw)


# ------------------------------------------------------------------------------------------------
# Progress


@contextmanager
def progress(show: bool, label: str, total: int):
    """A rich progress bar for one epoch (nothing when quiet or not a terminal); yields ``advance()``."""
    if not show or not console.is_terminal:
        yield lambda: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda: bar.advance(task)
