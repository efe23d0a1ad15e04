"""Self-supervised methods as small parts (lightly style), each testable alone.

* :class:`ProjectionHead` / :class:`PredictionHead`: MLP heads on pooled backbone features;
* :func:`nt_xent_loss` (SimCLR, Chen et al., 2020): each view picks its partner among the other views
  of the batch; :class:`SimCLR` = backbone + projector + this loss;
* :func:`byol_loss` (BYOL, Grill et al., 2020): online predictions pulled towards an EMA target
  network, no negatives; :class:`BYOL` = online backbone, projector, predictor + EMA target,
  :func:`momentum_at` its EMA schedule;
* :class:`MoCo` (He et al., 2020; v2 heads): SimCLR's loss against a *queue* of negatives from an EMA
  key encoder, so a batch of 64 is contrasted with thousands of earlier windows;
* :func:`vicreg_loss` (Bardes et al., 2022): invariance + variance + covariance terms, no negatives, no
  target network; :class:`VICReg`;
* :class:`MaskedSpectrogram` (masked spectrogram modelling, as masked autoencoders do for audio
  spectrograms; SimMIM-style for a CNN): random time-frequency patches are blanked and a 1x1 conv +
  pixel shuffle decoder reconstructs them from the last feature map (L1 on the masked pixels);
* :func:`knn_predict`: the weighted k-NN classifier of the probe that shows the features improve.

The views themselves are :class:`diag.learning.augment.TimeFrequencyAugment`.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from diag.learning.models import features


# ------------------------------------------------------------------------------------------------
# Heads and losses


class ProjectionHead(nn.Sequential):
    """The projector of SimCLR and BYOL: Linear -> BatchNorm -> ReLU -> Linear (``in_dim -> hidden -> out_dim``)."""

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
        p1, p2 = self.predictor(self.projector(features(self.backbone, both))).chunk(2)
        with torch.no_grad():
            z1, z2 = self.target_projector(features(self.target_backbone, both)).chunk(2)
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
        self.backbone = backbone
        self.projector = ProjectionHead(backbone.num_features, hidden_dim, proj_dim)
        self.temperature = temperature

    def online_modules(self) -> list[nn.Module]:
        return [self.backbone, self.projector]

    def forward(self, v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
        z1, z2 = self.projector(features(self.backbone, torch.cat([v1, v2]))).chunk(2)
        return nt_xent_loss(z1, z2, self.temperature)

    def update_target(self, momentum: float) -> None:
        """No target network: nothing to do."""


def _ema(online: list[nn.Module], target: list[nn.Module], momentum: float) -> None:
    """target <- momentum * target + (1 - momentum) * online (parameters); buffers copied."""
    for o, t in zip(online, target):
        torch._foreach_lerp_(list(t.parameters()), list(o.parameters()), 1.0 - momentum)
        for tb, ob in zip(t.buffers(), o.buffers()):
            tb.copy_(ob)


class MoCo(nn.Module):
    """Query backbone + projector; EMA key backbone + projector; a FIFO queue of ``queue_size`` normalised
    keys as negatives (InfoNCE, temperature ``temperature``), symmetric over the two views."""

    def __init__(self, backbone: nn.Module, hidden_dim: int = 512, proj_dim: int = 128, temperature: float = 0.2,
                 queue_size: int = 4096):
        super().__init__()
        self.backbone = backbone
        self.projector = ProjectionHead(backbone.num_features, hidden_dim, proj_dim)
        self.key_backbone = copy.deepcopy(backbone).requires_grad_(False)
        self.key_projector = copy.deepcopy(self.projector).requires_grad_(False)
        self.temperature = temperature
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, proj_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def online_modules(self) -> list[nn.Module]:
        return [self.backbone, self.projector]

    def forward(self, v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
        q1, q2 = F.normalize(self.projector(features(self.backbone, torch.cat([v1, v2]))).float(), dim=1).chunk(2)
        with torch.no_grad():
            k = F.normalize(self.key_projector(features(self.key_backbone, torch.cat([v1, v2]))).float(), dim=1)
        k1, k2 = k.chunk(2)
        queue = self.queue.clone()  # the negatives before this batch's keys are enqueued (in place)
        loss = 0.5 * (moco_loss(q1, k2, queue, self.temperature) + moco_loss(q2, k1, queue, self.temperature))
        self._enqueue(k)
        return loss

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        n, size = len(keys), len(self.queue)
        idx = (self.queue_ptr + torch.arange(n, device=keys.device)) % size
        self.queue[idx] = keys.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + n) % size)

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        _ema([self.backbone, self.projector], [self.key_backbone, self.key_projector], momentum)


def moco_loss(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE of normalised queries ``q`` against their keys ``k`` (positives) and the ``queue`` (negatives)."""
    pos = (q * k).sum(1, keepdim=True)
    neg = q @ queue.T.to(q.dtype)
    logits = torch.cat([pos, neg], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


def vicreg_loss(z1: torch.Tensor, z2: torch.Tensor, sim: float = 25.0, var: float = 25.0, cov: float = 1.0) -> torch.Tensor:
    """VICReg: ``sim`` * MSE(z1, z2) + ``var`` * hinge on each dimension's std (target 1) + ``cov`` *
    squared off-diagonal covariance / D, the last two per branch."""
    z1, z2 = z1.float(), z2.float()
    invariance = F.mse_loss(z1, z2)

    def spread(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = z - z.mean(0)
        std = torch.sqrt(z.var(0) + 1e-4)
        c = (z.T @ z) / max(1, len(z) - 1)
        off = c - torch.diag(torch.diag(c))
        return F.relu(1 - std).mean(), off.pow(2).sum() / z.shape[1]

    (v1, c1), (v2, c2) = spread(z1), spread(z2)
    return sim * invariance + var * (v1 + v2) + cov * (c1 + c2)


class VICReg(nn.Module):
    """Backbone + expander; :func:`vicreg_loss` between the two views (no negatives, no target network)."""

    def __init__(self, backbone: nn.Module, hidden_dim: int = 512, proj_dim: int = 128):
        super().__init__()
        self.backbone = backbone
        self.projector = ProjectionHead(backbone.num_features, hidden_dim, proj_dim)

    def online_modules(self) -> list[nn.Module]:
        return [self.backbone, self.projector]

    def forward(self, v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
        z1, z2 = self.projector(features(self.backbone, torch.cat([v1, v2]))).chunk(2)
        return vicreg_loss(z1, z2)

    def update_target(self, momentum: float) -> None:
        """No target network: nothing to do."""


class MaskedSpectrogram(nn.Module):
    """Masked spectrogram modelling: blank ``mask_ratio`` of a ``grid x grid`` patch grid (to 0, the
    standardised images' mean), reconstruct the image from the backbone's last feature map with a 1x1
    conv + pixel shuffle, L1 on the blanked pixels. Each of the two views is masked independently."""

    def __init__(self, backbone: nn.Module, in_chans: int, image_hw: tuple[int, int], mask_ratio: float = 0.5,
                 grid: int = 8):
        super().__init__()
        self.backbone = backbone
        with torch.no_grad():
            was = backbone.training
            fmap = backbone.eval().forward_features(torch.zeros(1, in_chans, *image_hw))
            backbone.train(was)
        self.stride = image_hw[0] // fmap.shape[-2]
        self.decoder = nn.Sequential(nn.Conv2d(fmap.shape[1], self.stride * self.stride * in_chans, 1),
                                     nn.PixelShuffle(self.stride))
        self.mask_ratio, self.grid, self.image_hw = mask_ratio, grid, image_hw

    def online_modules(self) -> list[nn.Module]:
        return [self.backbone, self.decoder]

    def draw_mask(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Boolean ``[B, 1, H, W]``: True where the image is blanked (``mask_ratio`` of the patches)."""
        b, _, h, w = x.shape
        score = torch.rand(b, self.grid * self.grid, generator=generator, device=x.device)
        n = max(1, int(round(self.mask_ratio * self.grid * self.grid)))
        cut = score.sort(dim=1).values[:, n - 1 : n]
        patches = (score <= cut).reshape(b, 1, self.grid, self.grid).float()
        return F.interpolate(patches, size=(h, w), mode="nearest").bool()

    def forward(self, v1: torch.Tensor, v2: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = torch.cat([v1, v2])
        if mask is None:
            raise ValueError("MaskedSpectrogram needs a mask (draw_mask)")
        rec = self.decoder(self.backbone.forward_features(x.masked_fill(mask, 0.0)))
        rec = F.interpolate(rec, size=x.shape[-2:], mode="bilinear", align_corners=False) if rec.shape[-2:] != x.shape[-2:] else rec
        err = (rec.float() - x.float()).abs() * mask
        return err.sum() / (mask.sum() * x.shape[1]).clamp(min=1)

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
