"""Pixel values of the time-frequency images: area (box) resizing, dB scaling with a floor, per-image
standardisation. NumPy arrays or torch tensors; one image = the last two axes."""

from __future__ import annotations

import functools
from typing import Any, Sequence

import numpy as np
import torch

from diag.errors import DiagError

#: dynamic range kept by the dB scaling, below each image's maximum
TOP_DB = 80.0
#: absolute power floor for the dB scaling ((unit of x)^2)
AMIN_POWER = 1e-20

__all__ = ["TOP_DB", "AMIN_POWER", "area_matrix", "resize_area", "power_to_db", "standardize_images"]


def area_matrix(edges_in: np.ndarray, edges_out: np.ndarray) -> np.ndarray:
    """``A[i, j]`` = length of (input cell j) ∩ (output cell i) / length of output cell i.

    Cells are ``[edges[k], edges[k+1])``; ``A @ v`` is the mean of the piecewise-constant ``v`` over
    each output cell (area / box resampling)."""
    lo = np.maximum(edges_out[:-1, None], edges_in[None, :-1])
    hi = np.minimum(edges_out[1:, None], edges_in[None, 1:])
    return np.clip(hi - lo, 0.0, None) / np.diff(edges_out)[:, None]


@functools.lru_cache(maxsize=256)
def _uniform_area_matrix(n_in: int, n_out: int) -> np.ndarray:
    return area_matrix(np.arange(n_in + 1, dtype=np.float64), np.linspace(0.0, n_in, n_out + 1))


def resize_area(x: Any, shape: Sequence[int], axes: Sequence[int] = (-2, -1)) -> Any:
    """Resize ``x`` along ``axes`` to ``shape`` by area averaging (box resampling).

    Output cell ``i`` of an axis of ``n_in`` samples resized to ``n_out`` covers input coordinates
    ``[i*n_in/n_out, (i+1)*n_in/n_out)`` and is the overlap-weighted mean of the input samples
    (each a cell of width 1) it covers. The mean over each axis is preserved exactly; content above
    the new Nyquist rate averages out instead of aliasing (an alternating +1/-1 pattern pooled by a
    factor >= 2 becomes ~0, not stripes). Upsampling repeats samples (box interpolation).

    Works on NumPy arrays and torch tensors (same device), in the input's floating dtype (integers
    become float64). ``shape`` and ``axes`` have the same length. Cost: one small matrix product per
    resized axis.
    """
    if len(shape) != len(axes):
        raise DiagError(f"resize_area: shape {tuple(shape)} and axes {tuple(axes)} differ in length")
    is_t = isinstance(x, torch.Tensor)
    if not is_t:
        x = np.asarray(x)
        if not np.issubdtype(x.dtype, np.floating):
            x = x.astype(np.float64)
    nd = x.ndim
    for n_out, axis in zip(shape, axes):
        if not -nd <= axis < nd:
            raise DiagError(f"resize_area: axis {axis} out of range for an array with {nd} dimensions")
        n_out = int(n_out)
        n_in = x.shape[axis]
        if n_out < 1 or n_in < 1:
            raise DiagError(f"resize_area: sizes must be >= 1, got {n_in} -> {n_out}")
        if n_out == n_in:
            continue
        a = _uniform_area_matrix(n_in, n_out)
        if is_t:
            at = torch.as_tensor(a, dtype=x.dtype, device=x.device)
            x = torch.movedim(torch.movedim(x, axis, -1) @ at.T, -1, axis)
        else:
            x = np.moveaxis(np.moveaxis(x, axis, -1) @ a.T.astype(x.dtype, copy=False), -1, axis)
    return x


def power_to_db(power: Any, top_db: float = TOP_DB, amin: float = AMIN_POWER) -> Any:
    """``10*log10(max(p, amin, max(p over the image) * 10**(-top_db/10)))``, dB re 1 (unit of x)^2.

    One image = the last two axes; the floor keeps ``top_db`` dB below each image's maximum.
    """
    if isinstance(power, torch.Tensor):
        peak = power.amax(dim=(-2, -1), keepdim=True)
        floor = torch.clamp(peak * 10.0 ** (-top_db / 10.0), min=amin)
        return 10.0 * torch.log10(torch.maximum(power, floor))
    p = np.asarray(power)
    floor = np.maximum(p.max(axis=(-2, -1), keepdims=True) * 10.0 ** (-top_db / 10.0), amin)
    return 10.0 * np.log10(np.maximum(p, floor))


def standardize_images(img: Any) -> Any:
    """Per image (last two axes): ``(v - mean) / (std + 1e-6 * max|v| + 1e-12)``; constant -> zeros."""
    if isinstance(img, torch.Tensor):
        mean = img.mean(dim=(-2, -1), keepdim=True)
        std = (img - mean).square().mean(dim=(-2, -1), keepdim=True).sqrt()  # (torch.std is slower on CPU)
        eps = 1e-6 * img.abs().amax(dim=(-2, -1), keepdim=True) + 1e-12
        return (img - mean) / (std + eps)
    v = np.asarray(img)
    mean = v.mean(axis=(-2, -1), keepdims=True)
    std = v.std(axis=(-2, -1), keepdims=True)
    eps = 1e-6 * np.abs(v).max(axis=(-2, -1), keepdims=True) + 1e-12
    return (v - mean) / (std + eps)
