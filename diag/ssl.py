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

The parts are small and testable alone (lightly style): :class:`TimeFrequencyAugment` (the view
transform), :class:`ProjectionHead` / :class:`PredictionHead`, :func:`nt_xent_loss`, :func:`byol_loss`, plus
:func:`knn_predict`, the k-NN probe that shows the features improve: features of the labelled
training windows are the bank, the validation windows are classified by their k nearest
neighbours (cosine similarity), before pretraining (random initialisation, epoch 0) and every
``knn_every`` epochs. Pretraining itself only sees the *training* split (of ``--data`` and of every
``--extra`` prepared dataset), never validation or test windows.

Output folder::

    backbone.safetensors   the (online) backbone (timm keys, no classifier): create_backbone(init="ssl", weights=DIR)
    pretrain.json          model, in_chans, preprocessing of the dataset, pretrain config, history, k-NN probe
    metrics.jsonl / metrics.csv
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from diag.errors import DiagError


# ------------------------------------------------------------------------------------------------
# View transform


class TimeFrequencyAugment:
    """Random views of a batch of time-frequency images ``[B, C, H, W]`` (rows: frequency, columns: time).

    Per image, in this order:

    * time crop-and-resize: a random span of ``s * W`` columns, ``s ~ U[crop_min, 1]``, at a random
      position, stretched back to ``W`` (bilinear along time only; rows are untouched), then
      shifted in time by up to ``shift * W`` columns either way (reflecting at the edges);
    * time masking: up to ``time_mask * W`` consecutive columns set to the image mean;
    * frequency masking: up to ``freq_mask * H`` consecutive rows set to the image mean;
    * gain: an additive offset ``~ N(0, gain^2)`` (a gain in the log-magnitude domain);
    * noise: additive Gaussian noise with standard deviation ``~ U[0, noise]``.

    No flips, no rotations, no shifts along frequency. All randomness comes from ``generator`` (on
    the images' device), so views are reproducible.
    """

    def __init__(self, crop_min: float = 0.5, time_mask: float = 0.2, freq_mask: float = 0.1, gain: float = 0.3,
                 noise: float = 0.2, shift: float = 0.0):
        if not 0 < crop_min <= 1:
            raise DiagError(f"crop_min: must be in (0, 1], got {crop_min}")
        if not 0 <= shift < 1:
            raise DiagError(f"shift: must be in [0, 1), got {shift}")
        self.shift = shift
        for name, v in (("time_mask", time_mask), ("freq_mask", freq_mask)):
            if not 0 <= v < 1:
                raise DiagError(f"{name}: must be in [0, 1), got {v}")
        if gain < 0 or noise < 0:
            raise DiagError(f"gain and noise: must be >= 0, got {gain}, {noise}")
        self.crop_min, self.time_mask, self.freq_mask, self.gain, self.noise = crop_min, time_mask, freq_mask, gain, noise

    @classmethod
    def light(cls) -> "TimeFrequencyAugment":
        """The mild setting used while fine-tuning (no frequency masking)."""
        return cls(crop_min=0.8, time_mask=0.1, freq_mask=0.0, gain=0.1, noise=0.05)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        dev = x.device
        u = torch.rand(b, 7 if self.shift > 0 else 6, generator=generator, device=dev)  # 6: same stream as before shift
        if self.crop_min < 1 or self.shift > 0:
            s = self.crop_min + (1 - self.crop_min) * u[:, 0]
            theta = torch.zeros(b, 2, 3, device=dev)
            theta[:, 0, 0] = s
            theta[:, 0, 2] = (1 - s) * (2 * u[:, 1] - 1)
            if self.shift > 0:
                theta[:, 0, 2] += 2 * self.shift * (2 * u[:, 6] - 1)
            theta[:, 1, 1] = 1
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        if self.time_mask > 0:
            x = torch.where(_band(u[:, 2], u[:, 3], self.time_mask, w)[:, None, None, :], mean, x)
        if self.freq_mask > 0:
            x = torch.where(_band(u[:, 4], u[:, 5], self.freq_mask, h)[:, None, :, None], mean, x)
        if self.gain > 0:
            x = x + self.gain * torch.randn(b, 1, 1, 1, generator=generator, device=dev)
        if self.noise > 0:
            sigma = self.noise * torch.rand(b, 1, 1, 1, generator=generator, device=dev)
            x = x + sigma * torch.randn(x.shape, generator=generator, device=dev)
        return x


def _band(u_width: torch.Tensor, u_start: torch.Tensor, max_frac: float, n: int) -> torch.Tensor:
    """Boolean ``[B, n]`` masks of one run of up to ``max_frac * n`` consecutive positions each."""
    width = (u_width * max_frac * n).long()
    start = (u_start * (n - width + 1)).long()
    pos = torch.arange(n, device=u_width.device)[None, :]
    return (pos >= start[:, None]) & (pos < (start + width)[:, None])


# ------------------------------------------------------------------------------------------------
# Heads and loss


class ProjectionHead(nn.Sequential):
    """BYOL projector: Linear -> BatchNorm -> ReLU -> Linear (``in_dim -> hidden -> out_dim``)."""

    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int = 128):
        super().__init__(nn.Linear(in_dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
                         nn.Linear(hidden_dim, out_dim))


class PredictionHead(ProjectionHead):
    """BYOL predictor: the same shape as the projector, ``out_dim -> hidden -> out_dim``."""

    def __init__(self, dim: int = 128, hidden_dim: int = 512):
        super().__init__(dim, hidden_dim, dim)


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Negative cosine similarity between predictions ``p`` and (detached) target projections ``z``, in [-1, 1]."""
    return -F.cosine_similarity(p, z.detach(), dim=-1).mean()


class BYOL(nn.Module):
    """Online backbone + projector + predictor; EMA target backbone + projector (no gradients)."""

    def __init__(self, backbone: nn.Module, hidden_dim: int = 512, proj_dim: int = 128):
        super().__init__()
        from diag.models import features

        self._features = features
        self.backbone = backbone
        self.projector = ProjectionHead(backbone.num_features, hidden_dim, proj_dim)
        self.predictor = PredictionHead(proj_dim, hidden_dim)
        self.target_backbone = copy.deepcopy(backbone).requires_grad_(False)
        self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)

    def online_modules(self) -> list[nn.Module]:
        return [self.backbone, self.projector, self.predictor]

    def forward(self, v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
        """Symmetric BYOL loss of two views of the same batch."""
        both = torch.cat([v1, v2])
        p1, p2 = self.predictor(self.projector(self._features(self.backbone, both))).chunk(2)
        with torch.no_grad():
            z1, z2 = self.target_projector(self._features(self.target_backbone, both)).chunk(2)
        return 0.5 * (byol_loss(p1, z2) + byol_loss(p2, z1))

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        """target <- momentum * target + (1 - momentum) * online (parameters and buffers)."""
        for online, target in ((self.backbone, self.target_backbone), (self.projector, self.target_projector)):
            tp, op = list(target.parameters()), list(online.parameters())
            torch._foreach_lerp_(tp, op, 1.0 - momentum)
            for tb, ob in zip(target.buffers(), online.buffers()):
                tb.copy_(ob)


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent: each view must pick its partner among the other ``2B - 1`` views of the batch."""
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    n = len(z1)
    sim = (z @ z.T) / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


class SimCLR(nn.Module):
    """Backbone + projector; the other windows of the batch are the negatives (no target network)."""

    def __init__(self, backbone: nn.Module, hidden_dim: int = 512, proj_dim: int = 128, temperature: float = 0.2):
        super().__init__()
        from diag.models import features

        self._features = features
        self.backbone = backbone
        self.projector = ProjectionHead(backbone.num_features, hidden_dim, proj_dim)
        self.temperature = temperature

    def online_modules(self) -> list[nn.Module]:
        return [self.backbone, self.projector]

    def forward(self, v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
        z1, z2 = self.projector(self._features(self.backbone, torch.cat([v1, v2]))).chunk(2)
        return nt_xent_loss(z1, z2, self.temperature)

    def update_target(self, momentum: float) -> None:
        """No target network: nothing to do."""


def momentum_at(step: int, total: int, base: float) -> float:
    """BYOL's EMA schedule: ``base`` rising to 1 along a cosine."""
    return 1.0 - (1.0 - base) * (math.cos(math.pi * step / max(1, total)) + 1) / 2


# ------------------------------------------------------------------------------------------------
# k-NN probe


def knn_predict(bank: torch.Tensor, bank_labels: torch.Tensor, query: torch.Tensor, num_classes: int, k: int = 20,
                temperature: float = 0.07, chunk: int = 1024) -> torch.Tensor:
    """Weighted k-NN on cosine similarity (InstDisc style): each of the ``k`` most similar bank
    features votes for its class with weight ``exp(sim / temperature)``. Features need not be normalised."""
    bank = F.normalize(bank.float(), dim=1)
    query = F.normalize(query.float(), dim=1)
    k = min(k, len(bank))
    preds = []
    for q in query.split(chunk):
        sim, idx = (q @ bank.T).topk(k, dim=1)
        votes = torch.zeros(len(q), num_classes, device=q.device)
        votes.scatter_add_(1, bank_labels[idx], (sim / temperature).exp())
        preds.append(votes.argmax(1))
    return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)


@torch.no_grad()
def embed(backbone: nn.Module, x: torch.Tensor, batch_size: int, device: torch.device,
          dtype: torch.dtype | None = None) -> torch.Tensor:
    """Pooled backbone features of float16 images ``x`` ``[N, C, H, W]`` (any device) -> ``[N, D]`` on ``device``."""
    from diag.models import features
    from diag.train import autocast

    was = backbone.training
    backbone.eval()
    out = []
    for i in range(0, len(x), batch_size):
        with autocast(device, dtype):
            out.append(features(backbone, x[i:i + batch_size].to(device).float()).float())
    backbone.train(was)
    return torch.cat(out)


def knn_probe(backbone: nn.Module, bank_x: torch.Tensor, bank_y: torch.Tensor, query_x: torch.Tensor,
              query_y: np.ndarray, num_classes: int, k: int, device: torch.device, batch_size: int = 256,
              dtype: torch.dtype | None = None) -> dict[str, float]:
    """k-NN accuracy and macro-F1 of ``query`` (validation) windows against the labelled ``bank``."""
    from diag.evaluate import accuracy_f1

    pred = knn_predict(embed(backbone, bank_x, batch_size, device, dtype), bank_y.to(device),
                       embed(backbone, query_x, batch_size, device, dtype), num_classes, k)
    acc, f1 = accuracy_f1(np.asarray(query_y), pred.cpu().numpy())
    return {"knn_accuracy": acc, "knn_macro_f1": f1}


# ------------------------------------------------------------------------------------------------
# Pretraining


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
        from diag.models import check_model_name
        from diag.train import AMP_MODES

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
    from diag.config import apply_overrides, from_dict, read_toml

    data = read_toml(path) if path else {}
    for text in overrides:
        if not text.split("=", 1)[0].strip().startswith("pretrain."):
            raise DiagError(f"--set {text}: diag pretrain reads only pretrain.* settings (e.g. pretrain.epochs=100)")
    tree = apply_overrides({"pretrain": dict(data.get("pretrain", {}))}, list(overrides))
    return from_dict(PretrainConfig, tree["pretrain"], "pretrain").validate()


def pretrain(data: str | Path | None, out: str | Path, cfg: PretrainConfig | None = None,
             extra: Sequence[str | Path] = (), force: bool = False, quiet: bool = False,
             resume: bool = False) -> dict[str, Any]:
    """BYOL on the training windows of ``data`` (+ ``extra`` prepared datasets); writes ``out``.

    ``last.pt`` (online and target networks, optimiser, random states) is written every epoch;
    ``resume=True`` continues an interrupted run with its saved settings and data (``data``, ``extra``
    and ``cfg`` may then be left out; given, they must match) and reaches the same weights as an
    uninterrupted run (same seed, CPU). Returns a summary with the k-NN probe before
    (``knn_start``) and after (``knn_final``).
    """
    from diag.dataset import PreparedDataset
    from diag.storage import atomic_write_json
    from diag.models import SSL_META, SSL_WEIGHTS, create_backbone
    from diag.config import changed_settings, from_dict
    from diag.train import (Dist, _progress, _rng_state, _save_last, _set_rng_state, _write_history, amp_dtype,
                            autocast, batch_plan, console, deterministic, init_distributed, lr_at,
                            package_versions, param_groups, pick_device, preprocessing_of, save_safetensors,
                            warmup_steps)
    from diag.provenance import check_run_dir, start_run_dir

    if init_distributed().world > 1:
        raise DiagError("diag pretrain runs in one process (the heads' BatchNorm is not synchronised); "
                        "start it without torchrun")
    out = Path(out)
    saved = _saved_pretrain(out, SSL_META) if resume else None
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
    if saved is not None:
        if _data_fingerprints(saved) != fingerprints:
            raise DiagError(f"{out}: --resume needs the same prepared datasets the run started on "
                            f"({', '.join([saved['dataset']['path']] + [e['path'] for e in saved['extra']])})")
    for e in extras:
        if tuple(e.image_shape) != tuple(ds.image_shape):
            raise DiagError(f"--extra {e.path}: images are {tuple(e.image_shape)}, but {ds.path} has "
                            f"{tuple(ds.image_shape)}; prepare both with the same transform size and channels")
        if e.path.resolve() == ds.path.resolve():
            raise DiagError(f"--extra {e.path}: is the --data dataset itself")
    if not resume and not force and (out / SSL_META).is_file():  # the same finished run: reuse it
        import json

        done = json.loads((out / SSL_META).read_text(encoding="utf-8"))
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
    device = pick_device(cfg.device)
    dtype = amp_dtype(cfg.amp, device)
    if dtype is not None and device.type == "cpu":
        raise DiagError("pretrain.amp: mixed precision is for GPUs; use amp=off (or auto) on CPU")
    channels_last = cfg.channels_last and device.type == "cuda"
    show = not quiet

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
        rec = np.concatenate([np.array([f"{i}|{v}" for v in m["rec"]], dtype=object) for i, m in enumerate(metas)])
        _, rec_id = np.unique(rec, return_inverse=True)
        cand_np, counts_np = neighbour_table(rec_id, np.concatenate([m["start"] for m in metas]).astype(np.int64),
                                             cfg.neighbours)
        cand, counts = torch.from_numpy(cand_np), torch.from_numpy(counts_np)
    bank_x, bank_y = unlabeled[:n_bank], torch.as_tensor(ds.labels("train"))
    has_val = "val" in ds.splits and len(ds.labels("val")) > 0
    val_x = torch.from_numpy(np.array(ds.images("val"))).to(keep) if has_val else None
    val_y = ds.labels("val") if has_val else None
    if len(unlabeled) < cfg.batch_size:
        raise DiagError(f"only {len(unlabeled)} training windows; pretrain.batch_size={cfg.batch_size} needs at least that many")

    # ---- model ----------------------------------------------------------------------------------
    torch.manual_seed(cfg.seed)
    backbone = create_backbone(cfg.model, cfg.init, ds.image_shape[0], num_classes=0, weights=cfg.weights or None,
                               replicate_channels=cfg.replicate_channels)
    net = (SimCLR(backbone, cfg.hidden_dim, cfg.proj_dim, cfg.temperature) if cfg.method == "simclr"
            else BYOL(backbone, cfg.hidden_dim, cfg.proj_dim)).to(device)
    if channels_last:
        net.to(memory_format=torch.channels_last)
    online = nn.ModuleList(net.online_modules())
    optimizer = torch.optim.AdamW(param_groups(online, cfg.weight_decay), lr=cfg.lr,
                                  **({"fused": True} if device.type == "cuda" else {}))
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
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
                         dtype=dtype)

    if saved is None:
        start_run_dir(out, "pretrain", force=force, inputs=inputs)
    history: list[dict[str, Any]] = []
    meta: dict[str, Any] = {
        "format": "diag-ssl/1", "method": {"simclr": "SimCLR", "byol": "BYOL"}[cfg.method], "model": cfg.model,
        "in_chans": ds.image_shape[0],
        "replicate_channels": cfg.replicate_channels, "feature_dim": backbone.num_features,
        "classes": ds.classes, "preprocessing": preprocessing_of(ds),
        "dataset": {"path": str(ds.path), "fingerprint": ds.manifest.get("fingerprint"), "split": "train",
                    "windows": n_bank},
        "unlabeled_windows": len(unlabeled),
        "extra": [{"path": str(e.path), "fingerprint": e.manifest.get("fingerprint"), "split": "train",
                   "windows": len(e.labels("train"))} for e in extras],
        "pretrain": asdict(cfg), "knn_probe": {"bank": "train (labelled)", "query": "val", "k": cfg.knn_k},
        "versions": package_versions(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    step, first = 0, 1
    with deterministic(device.type == "cpu"):
        if saved is not None:  # ---- resume ----------------------------------------------------
            last = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
            if last.get("device", device.type) != device.type:
                raise DiagError(f"{out}: this run started on {last['device']}, here it would continue on "
                                f"{device.type}; resume it on a machine with {last['device']}")
            net.load_state_dict(last["model"])
            optimizer.load_state_dict(last["optimizer"])
            scaler.load_state_dict(last["scaler"])
            _set_rng_state(last["rng"], gen, aug_gen, Dist())
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
            with _progress(show, f"pretrain {epoch}/{cfg.epochs}", len(batches)) as advance:
                for b in batches:
                    lr = lr_at(step, total, warmup, cfg.lr)
                    for g in optimizer.param_groups:
                        g["lr"] = lr
                    x = unlabeled[b.to(unlabeled.device)].to(device).float()
                    if cfg.positives == "recording":
                        x2 = unlabeled[sample_partners(b, cand, counts, gen).to(unlabeled.device)].to(device).float()
                    else:
                        x2 = x
                    v1, v2 = views(x, aug_gen), views(x2, aug_gen)
                    if channels_last:
                        v1, v2 = (v.contiguous(memory_format=torch.channels_last) for v in (v1, v2))
                    with autocast(device, dtype):
                        loss = net(v1, v2)
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss.float()).backward()
                    if cfg.grad_clip > 0:
                        scaler.unscale_(optimizer)
                        torch.nn.utils.clip_grad_norm_(online.parameters(), cfg.grad_clip)
                    scaler.step(optimizer)
                    scaler.update()
                    m = momentum_at(step, total, cfg.momentum)
                    net.update_target(m)
                    loss_sum += loss.detach().float()
                    step += 1
                    advance()
            rec: dict[str, Any] = {"epoch": epoch, "step": step, "loss": (loss_sum / len(batches)).item()}
            knn = probe() if (epoch % cfg.knn_every == 0 or epoch == cfg.epochs) else {
                "knn_accuracy": float("nan"), "knn_macro_f1": float("nan")}
            rec.update(knn)
            rec.update({"lr": lr, "momentum": m, "seconds": round(time.perf_counter() - t0, 3)})
            history.append(rec)
            save_safetensors(out / SSL_WEIGHTS, net.backbone.state_dict(), metadata={"format": "pt", "model": cfg.model})
            meta.update(history=history, epochs_done=epoch, knn_start=_last_knn(history[:1]),
                        knn_last=_last_knn(history))
            # Order matters for a crash between the writes: weights, then pretrain.json (which says
            # finished on the last epoch), then last.pt; a resume restarts from the older last.pt.
            meta["finished"] = epoch == cfg.epochs
            atomic_write_json(out / SSL_META, meta)
            _write_history(out, history)
            _save_last(out / "last.pt", {"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                                         "scaler": scaler.state_dict(), "rng": _rng_state(gen, aug_gen, Dist()),
                                         "epoch": epoch, "step": step,
                                         "history": history, "device": device.type})
            if show:
                knn_txt = (f"  k-NN val accuracy {knn['knn_accuracy']:.3f}  F1 {knn['knn_macro_f1']:.3f}"
                           if not math.isnan(knn["knn_accuracy"]) else "")
                mom = f"  momentum {m:.4f}" if cfg.method == "byol" else ""
                console.print(f"epoch {epoch:>3}/{cfg.epochs}  {meta['method']} loss {rec['loss']:.4f}{knn_txt}  "
                              f"lr {lr:.2e}{mom}  {rec['seconds']:.1f} s")
    final = _last_knn(history)
    if show:
        console.print(f"k-NN val accuracy {start['knn_accuracy']:.3f} ({cfg.init} init) -> "
                      f"{final['knn_accuracy']:.3f} after {cfg.epochs} epochs  -> {out / SSL_WEIGHTS}")
    return {"out": str(out), "knn_start": start, "knn_final": final, "history": history}


def _saved_pretrain(out: Path, marker: str) -> dict[str, Any]:
    """The saved state of a resumable ``diag pretrain`` run in ``out``."""
    import json

    if not (out / marker).is_file() or not (out / "last.pt").is_file():
        raise DiagError(f"{out}: nothing to resume (no {marker} / last.pt); start it without --resume")
    saved = json.loads((out / marker).read_text(encoding="utf-8"))
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
