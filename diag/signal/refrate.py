"""Reference rates of order images: the shaft rate (``envorder``) or electrical fundamental
(``harmonics``) of a recording, from its meta, the config, or estimated from its spectrum, and per window."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from diag.config import ORDER_PARTS, TransformConfig
from diag.errors import DiagError

__all__ = ["REF_SECONDS", "REF_HARMONICS", "REF_MIN_PROMINENCE", "RATE_KEYS", "estimate_reference_hz", "reference_hz",
           "window_reference_hz"]

RATE_KEYS = {"envorder": (("shaft_hz", 1.0), ("rpm", 1.0 / 60.0)),
             "harmonics": (("f1", 1.0), ("fundamental_hz", 1.0))}


#: ``transform.ref_search``: the rate is estimated from the first this many seconds of a recording
REF_SECONDS = 10.0
#: harmonics summed by the estimate, and the least mean height (natural log of power over the local
#: median) of its line: white or brown noise reach 0.4-0.7, CWRU's shaft lines 4-9
REF_HARMONICS = 5
REF_MIN_PROMINENCE = 1.5


def estimate_reference_hz(x: np.ndarray, fs: float, search: Sequence[float],
                          harmonics: int = REF_HARMONICS) -> tuple[float, float]:
    """Estimate a shaft rate or electrical fundamental from a recording ``x`` ``[C, N]`` at ``fs`` Hz.

    Harmonic sum on a whitened spectrum: the Welch power spectrum (4 s Hann segments, 0.25 Hz, or the
    whole signal when shorter; zero-padded 4x; channels averaged in log) minus its running median over 10 Hz, so each bin
    reads "how far this line stands above the local floor" (log units); the rate ``f`` in ``search =
    [lo, hi]`` (0.01 Hz grid) that maximises the mean height of ``f, 2f, ..., harmonics x f`` wins.
    Measured on the 37 CWRU 12 kHz drive-end records (first 10 s, search 15-45 Hz): every estimate within
    0.04 Hz of the file's ``X<rec>RPM`` / 60 (median 0.01 Hz; prominence 4.6-9); searching 10-60 Hz
    instead, 4 of 37 landed on another line,
    hence the advice to search within a factor of ~1.5 of the nominal rate. Returns ``(hz, prominence)``:
    the mean height of the winning harmonics (noise alone: 0.4-0.7; see :data:`REF_MIN_PROMINENCE`).
    """
    from scipy.ndimage import median_filter
    from scipy.signal import welch

    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    lo, hi = float(search[0]), float(search[1])
    nper = int(min(x.shape[-1], round(fs * 4.0)))
    # zero-padded 4x: the Hann main lobe is sampled finely enough to place a line between FFT bins
    f, p = welch(x - x.mean(axis=-1, keepdims=True), fs=fs, nperseg=nper, noverlap=nper // 2, nfft=4 * nper, axis=-1)
    keep = f <= min(fs / 2, harmonics * hi + 20.0)
    f, logp = f[keep], np.log(p[..., keep] + 1e-300).mean(axis=0)
    df = f[1] - f[0]
    height = logp - median_filter(logp, size=max(3, int(round(10.0 / df)) | 1), mode="nearest")
    cand = np.arange(lo, hi + 1e-9, 0.01)
    score = np.mean([np.interp(k * cand, f, height, right=0.0) for k in range(1, harmonics + 1)], axis=0)
    i = int(np.argmax(score))
    return float(cand[i]), float(score[i])


def reference_hz(meta: dict[str, Any], cfg: TransformConfig, signal: np.ndarray | None = None,
                 fs: float | None = None) -> tuple[tuple[float, float] | None, str]:
    """The reference rate of one recording for order images, as ``((start_hz, end_hz), how)``.

    ``envorder`` takes the shaft rate from the recording's ``meta``: ``shaft_hz`` (Hz) or ``rpm``
    (a number, or ``[start, end]`` for a speed ramp -- the bearing simulator writes both, the CWRU
    reader writes ``rpm``, ``diag simulate`` files keep them in labels.csv); ``harmonics`` takes the
    electrical fundamental ``f1`` (the inverter simulator) or ``fundamental_hz``. Otherwise
    ``transform.ref_hz`` when set (``how = "config transform.ref_hz"``); or, with ``transform.ref_search``
    and the recording's ``signal`` ``[C, N]`` as read (its rate ``fs``), the rate estimated from its
    first :data:`REF_SECONDS` (:func:`estimate_reference_hz`; ``how`` names the estimate and its
    prominence; a line too faint to trust raises a DiagError naming the recording); else ``(None, "none")``.
    Transforms without an order part give ``(None, "not needed")``.
    """
    parts = [p for p in cfg.parts if p in ORDER_PARTS]
    if not parts:
        return None, "not needed"
    for key, scale in RATE_KEYS[parts[0]]:
        v = meta.get(key) if isinstance(meta, dict) else None
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            pair = (float(v) * scale, float(v) * scale)
        elif isinstance(v, (list, tuple)) and len(v) == 2 and all(
                isinstance(a, (int, float)) and not isinstance(a, bool) for a in v):
            pair = (float(v[0]) * scale, float(v[1]) * scale)
        else:
            continue
        if all(math.isfinite(a) and a > 0 for a in pair):
            return pair, f"recording meta '{key}'"
    if cfg.ref_hz > 0:
        return (float(cfg.ref_hz), float(cfg.ref_hz)), "config transform.ref_hz"
    if cfg.ref_search and signal is not None and fs:
        x = np.asarray(signal)[..., : int(round(REF_SECONDS * fs))]
        hz, prominence = estimate_reference_hz(x, fs, cfg.ref_search)
        lo, hi = cfg.ref_search
        what = "electrical fundamental" if parts[0] == "harmonics" else "shaft rate"
        if not prominence >= REF_MIN_PROMINENCE:  # (NaN too: a recording with non-finite samples)
            raise DiagError(f"no clear {what} line between {lo:g} and {hi:g} Hz in the first {REF_SECONDS:g} s "
                            f"(best {hz:.2f} Hz stands {prominence:.2f} above the spectrum's floor, needs "
                            f"{REF_MIN_PROMINENCE:g}); give the rate (rpm / f1 in the meta, --ref-hz) or widen "
                            "transform.ref_search")
        return (hz, hz), f"estimated from the spectrum ({lo:g}-{hi:g} Hz search, prominence {prominence:.1f})"
    return None, "none"


def window_reference_hz(ref: tuple[Any, Any], starts: Any, length: int, n_samples: Any) -> np.ndarray:
    """Reference rate (Hz) of each window starting at ``starts`` (samples) of a recording of
    ``n_samples``: ``start_hz`` + (``end_hz`` - ``start_hz``) x (window centre / recording length),
    i.e. a linear speed ramp evaluated at each window's centre; constant when start = end.
    ``ref`` parts and ``n_samples`` may be arrays (one per window) as well as numbers."""
    c = (np.asarray(starts, dtype=np.float64) + length / 2.0) / np.maximum(np.asarray(n_samples, np.float64), 1.0)
    lo, hi = np.asarray(ref[0], np.float64), np.asarray(ref[1], np.float64)
    return lo + (hi - lo) * c
