"""Self-supervised methods as small parts (lightly style), each testable alone.

* :class:`ProjectionHead` / :class:`PredictionHead`: MLP heads on pooled backbone features;
* :func:`nt_xent_loss` (SimCLR, Chen et al., 2020): each view picks its partner among the other views
  of the batch; :class:`SimCLR` = backbone + projector + this loss;
* :func:`byol_loss` (BYOL, Grill et al., 2020): online predictions pulled towards an EMA target
  network, no negatives; :class:`BYOL` = online backbone, projector, predictor + EMA target,
  :func:`momentum_at` its EMA schedule;
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
