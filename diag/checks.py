"""Input checks in one place (scikit-learn's ``check_array`` style): every public entry point that takes a
sampling rate or an array of samples checks it with these, so the same mistake gets the same one-line
:class:`~diag.errors.DiagError` wherever it is made, naming where (a file, an option, an argument) and
what was expected.

Bottom layer: imports only :mod:`diag.errors`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from diag.errors import DiagError

__all__ = ["check_fs", "check_signal_array", "check_finite"]


def check_fs(fs: Any, where: str, option: str = "--fs HZ (fs= in the API)") -> float:
    """A sampling rate in Hz as a positive finite float; ``None`` says how to give it (``option``)."""
    if fs is None:
        raise DiagError(f"{where}: sampling rate unknown; pass {option}")
    if isinstance(fs, bool):
        raise DiagError(f"{where}: sampling rate {fs!r} is not a number of Hz")
    try:
        v = float(fs)
    except (TypeError, ValueError):
        raise DiagError(f"{where}: sampling rate {fs!r} is not a number of Hz") from None
    if not math.isfinite(v) or v <= 0:
        raise DiagError(f"{where}: sampling rate must be a positive number of Hz, got {fs!r}")
    return v


def check_finite(x: np.ndarray, where: str, offset: int = 0, fix: str = "clean or interpolate the recording") -> None:
    """NaN / Inf samples in ``x`` (``[..., samples]``) are an error naming the first one (``offset``: the
    sample number of ``x[..., 0]`` in the whole recording)."""
    bad = ~np.isfinite(x)
    if bad.any():
        flat = bad.reshape(-1, bad.shape[-1]).any(axis=0) if bad.ndim > 1 else bad
        first = offset + int(np.argmax(flat))
        raise DiagError(f"{where}: {int(bad.sum())} NaN/Inf samples (first at sample {first}); {fix}")


def check_signal_array(x: Any, where: str, *, ndim: tuple[int, ...] = (1, 2), min_samples: int = 1,
                       finite: bool = True, shape_hint: str = "[channels, samples] or [samples]") -> np.ndarray:
    """``x`` as a real numeric array with a time (last) axis of at least ``min_samples``, of one of the
    dimensions ``ndim``, and (``finite``) no NaN / Inf; integers and bools are not converted here."""
    try:
        a = np.asarray(x)
    except Exception:  # noqa: BLE001 -- ragged lists, objects numpy cannot hold
        raise DiagError(f"{where}: not an array of samples; expected {shape_hint}") from None
    if a.ndim not in ndim:
        raise DiagError(f"{where}: expected real samples shaped {shape_hint}, got shape {a.shape}")
    if np.iscomplexobj(a) or not np.issubdtype(a.dtype, np.number) or a.dtype == bool:
        raise DiagError(f"{where}: samples must be real numbers, got dtype {a.dtype}")
    if a.shape[-1] < min_samples:
        raise DiagError(f"{where}: the time axis needs at least {min_samples} samples, got {a.shape[-1]}")
    if finite:
        check_finite(a, where)
    return a
