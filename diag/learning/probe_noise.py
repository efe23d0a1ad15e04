"""How far a pretraining's probe must rise before the rise is more than noise (torch-free, so the study
layer can re-read a record's verdict without importing the training code).

The probe classifies ``n_val`` validation windows after every probed epoch; the best reading is kept.
Under "nothing was learned" each reading scatters around the initial accuracy ``p0`` with the binomial
standard error, and the best of K readings scatters higher. The margin holds against that maximum.
Windows of one recording are not independent (neighbours overlap and share the recording's state), so
the standard error is widened by the design effect the initial reading shows across the validation
recordings (:func:`design_effect`): measured on ITSC's 13 validation recordings of 12 windows, 2.0
(SSL_FINDINGS.md, Stop 33)."""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from statistics import NormalDist


def noise_quantile(readings: int, alpha: float | None = None) -> float:
    """How many standard errors noise alone reaches in the best of ``readings`` probe readings with
    probability ``alpha`` (Bonferroni over the readings; 2.0 for one). Measured why (SSL_FINDINGS.md,
    Stop 32): a SimCLR run whose loss stayed at its chance value read +0.071 in its best of 40 epochs,
    against a margin of 0.079 for one reading. Readings of neighbouring epochs are correlated, so this
    is conservative."""
    alpha = 1.0 - NormalDist().cdf(2.0) if alpha is None else alpha  # one reading: two standard errors
    return NormalDist().inv_cdf(1.0 - alpha / max(int(readings), 1))


def design_effect(correct: Sequence[bool], groups: Sequence[Hashable]) -> float:
    """How much the windows' grouping into recordings widens the standard error of the probe's accuracy:
    the cluster-robust variance over the recordings (``groups``) divided by the binomial variance, at
    least 1. 1 where it cannot be estimated (fewer than two recordings, or every window right or every
    one wrong)."""
    n = len(correct)
    if n != len(groups):
        raise ValueError(f"design_effect: {n} readings but {len(groups)} group labels")
    per: dict[Hashable, list[int]] = {}
    for c, g in zip(correct, groups):
        per.setdefault(g, []).append(int(bool(c)))
    p = sum(int(bool(c)) for c in correct) / max(n, 1)
    if len(per) < 2 or p in (0.0, 1.0):
        return 1.0
    g = len(per)
    cluster = g / (g - 1) * sum((sum(v) - p * len(v)) ** 2 for v in per.values()) / n**2
    return max(cluster / (p * (1 - p) / n), 1.0)


def probe_margin(p0: float, n_val: int, readings: int, deff: float = 1.0) -> float:
    """The rise over ``p0`` that the best of ``readings`` readings on ``n_val`` windows must exceed to
    count as learned (at least one window); ``deff``: the design effect of the validation recordings."""
    n = max(int(n_val), 1)
    deff = max(float(deff), 1.0) if math.isfinite(deff) else 1.0
    return max(noise_quantile(readings) * math.sqrt(deff * max(p0 * (1 - p0), 0.0) / n), 1.0 / n)


def probe_learned(p0: float, best: float, n_val: int, readings: int, deff: float = 1.0) -> tuple[bool, float]:
    """``(learned, margin)``: whether the best of ``readings`` readings rose over ``p0`` by more than
    :func:`probe_margin` (the rule ``diag pretrain`` writes and the reports re-read records by)."""
    margin = probe_margin(p0, n_val, readings, deff)
    return bool(best - p0 > margin), margin
