"""Shared by the time-frequency modules (:mod:`~diag.signal.cwt`, :mod:`~diag.signal.stft`,
:mod:`~diag.signal.orders`, :mod:`~diag.signal.transforms`): validated NumPy signals as a torch batch,
the per-chunk working memory, fast FFT lengths."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from diag.checks import check_signal_array
from diag.errors import DiagError

#: per-chunk working memory of the fast path, bytes (CPU: small enough to stay in cache; a GPU gets 64x)
CHUNK_BYTES = 12 * 2**20

__all__ = ["CHUNK_BYTES", "ANY_NDIM", "check_real_array", "as_signals", "next_5_smooth"]


#: any number of dimensions (a time axis at least)
ANY_NDIM = tuple(range(1, 65))


def check_real_array(x: Any, name: str, axis: int) -> tuple[np.ndarray, int]:
    """``x`` as a real numeric array whose time axis ``axis`` has at least 2 samples, with no NaN / Inf:
    the checks of :func:`diag.checks.check_signal_array` on any number of dimensions. Integers become
    float64. Returns ``(x, axis % x.ndim)``."""
    hint = f"[..., samples, ...] with time on axis {axis}"
    a = check_signal_array(x, name, ndim=ANY_NDIM, min_samples=0, finite=False, shape_hint=hint)
    if not -a.ndim <= axis < a.ndim:
        raise DiagError(f"{name}: axis {axis} out of range for x with {a.ndim} dimensions")
    ax = axis % a.ndim
    check_signal_array(np.moveaxis(a, ax, -1), name, ndim=ANY_NDIM, min_samples=2, shape_hint=hint)
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    return a, ax


def as_signals(x: Any, name: str, axis: int) -> tuple[torch.Tensor, tuple[int, ...], int]:
    """Validated NumPy input -> float32 torch ``[R, N]`` plus the other axes' shape and the axis."""
    x, ax = check_real_array(x, name, axis)
    xm = np.moveaxis(x, ax, -1)
    lead = xm.shape[:-1]
    return torch.from_numpy(np.ascontiguousarray(xm, dtype=np.float32).reshape(-1, xm.shape[-1])), lead, ax


def next_5_smooth(n: int) -> int:
    """Smallest integer >= n whose prime factors are 2, 3, 5 (fast FFT lengths)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1
