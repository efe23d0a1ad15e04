"""Shared by the time-frequency modules (:mod:`~diag.signal.cwt`, :mod:`~diag.signal.stft`,
:mod:`~diag.signal.orders`, :mod:`~diag.signal.transforms`): validated NumPy signals as a torch batch,
the per-chunk working memory, fast FFT lengths."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from diag.errors import DiagError

#: per-chunk working memory of the fast path, bytes (CPU: small enough to stay in cache; a GPU gets 64x)
CHUNK_BYTES = 12 * 2**20

__all__ = ["CHUNK_BYTES", "check_real_array", "as_signals", "next_5_smooth"]


def check_real_array(x: Any, name: str, axis: int) -> tuple[np.ndarray, int]:
    x = np.asarray(x)
    if x.ndim == 0:
        raise DiagError(f"{name}: x must have a time axis, got a scalar")
    if np.iscomplexobj(x) or not np.issubdtype(x.dtype, np.number):
        raise DiagError(f"{name}: x must be real-valued numbers, got dtype {x.dtype}")
    if not -x.ndim <= axis < x.ndim:
        raise DiagError(f"{name}: axis {axis} out of range for x with {x.ndim} dimensions")
    ax = axis % x.ndim
    if x.shape[ax] < 2:
        raise DiagError(f"{name}: the time axis needs at least 2 samples, got {x.shape[ax]}")
    if not np.isfinite(x).all():
        raise DiagError(f"{name}: x contains {int((~np.isfinite(x)).sum())} NaN or infinite values")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    return x, ax


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
