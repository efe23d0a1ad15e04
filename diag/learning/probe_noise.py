"""How far a pretraining's probe must rise before the rise is more than noise (torch-free, so the study
layer can re-read a record's verdict without importing the training code).

The probe classifies ``n_val`` validation windows after every probed epoch; the best reading is kept.
Under "nothing was learned" each reading scatters around the initial accuracy ``p0`` with the binomial
standard error, and the best of K readings scatters higher. The margin holds against that maximum."""

from __future__ import annotations

import math
from statistics import NormalDist


def noise_quantile(readings: int, alpha: float | None = None) -> float:
    """How many standard errors noise alone reaches in the best of ``readings`` probe readings with
    probability ``alpha`` (Bonferroni over the readings; 2.0 for one). Measured why (SSL_FINDINGS.md,
    Stop 32): a SimCLR run whose loss stayed at its chance value read +0.071 in its best of 40 epochs,
    against a margin of 0.079 for one reading. Readings of neighbouring epochs are correlated, so this
    is conservative."""
    alpha = 1.0 - NormalDist().cdf(2.0) if alpha is None else alpha  # one reading: two standard errors
    return NormalDist().inv_cdf(1.0 - alpha / max(int(readings), 1))


def probe_margin(p0: float, n_val: int, readings: int) -> float:
    """The rise over ``p0`` that the best of ``readings`` readings on ``n_val`` windows must exceed to
    count as learned (at least one window)."""
    n = max(int(n_val), 1)
    return max(noise_quantile(readings) * math.sqrt(max(p0 * (1 - p0), 0.0) / n), 1.0 / n)


def probe_learned(p0: float, best: float, n_val: int, readings: int) -> tuple[bool, float]:
    """``(learned, margin)``: whether the best of ``readings`` readings rose over ``p0`` by more than
    :func:`probe_margin` (the rule ``diag pretrain`` writes and the reports re-read records by)."""
    margin = probe_margin(p0, n_val, readings)
    return bool(best - p0 > margin), margin
