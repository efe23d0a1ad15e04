"""Resampling and band limiting of whole recordings: a rational polyphase resampler (:func:`resample`)
and a centred linear-phase FIR band limit (:func:`band_limit`), with the pieces the streaming readers of
:mod:`diag.signal.stream` reuse (:func:`resample_block`, :func:`band_block`, :func:`band_filter`). Both work
in blocks straight into a float32 result, so a whole recording is never copied to float64."""

from __future__ import annotations

import dataclasses
import functools
from fractions import Fraction
from typing import Callable

import numpy as np
from scipy.signal import resample_poly

from diag.errors import DiagError
from diag.sources.base import Recording

__all__ = ["rational_ratio", "resample", "BAND_TRANSITION", "BAND_ATTENUATION_DB", "band_filter", "band_edges",
           "filter_segment", "symmetric_index", "band_limit", "BLOCK", "RESAMPLE_HALF_LEN", "resample_margin",
           "resample_block", "band_block"]


def rational_ratio(fs_from: float, fs_to: float, max_denominator: int = 10_000) -> tuple[int, int]:
    """``(up, down)`` with ``fs_to / fs_from == up / down`` exactly (to 1 ppm), smallest terms."""
    frac = Fraction(fs_to / fs_from).limit_denominator(max_denominator)
    if frac.numerator == 0 or abs(frac.numerator / frac.denominator * fs_from - fs_to) > 1e-6 * fs_to:
        raise DiagError(
            f"cannot resample {fs_from:g} Hz to {fs_to:g} Hz by a rational factor; "
            "choose a target windows.fs that is a simple ratio of the recording's rate"
        )
    return frac.numerator, frac.denominator


#: output samples per block when a whole recording is resampled or band-limited: the float64 work arrays
#: hold about this many samples per channel, never the whole recording (which stays float32)
BLOCK = 1 << 18
#: scipy.signal.resample_poly's default anti-alias FIR: 2 * half_len + 1 taps at the upsampled rate,
#: half_len = 10 * max(up, down); an output sample depends on the inputs within half_len / up samples
RESAMPLE_HALF_LEN = 10


def resample_margin(up: int, down: int) -> int:
    """Input samples of overlap a block of :func:`resample_block` reads on each side: more than the FIR's
    reach (``RESAMPLE_HALF_LEN * max(up, down) / up`` input samples), a multiple of ``down``."""
    reach = -(-RESAMPLE_HALF_LEN * max(up, down) // up) + 1
    return (-(-reach // down) + 1) * down


def resample_block(read: Callable[[int, int], np.ndarray], n: int, up: int, down: int, m0: int, m1: int) -> np.ndarray:
    """Output samples ``[m0, m1)`` (``m0`` a multiple of ``up``) of ``resample_poly(x, up, down)`` of a
    recording of ``n`` samples, from inputs ``read(a, b) -> [C, b - a]``: the block's inputs with
    :func:`resample_margin` of overlap, starting at a multiple of ``down`` so its outputs fall on the
    whole recording's output grid (the recording's own ends are zero-padded as the whole one's are).
    Equal to the whole recording's outputs to float rounding; float32 ``[C, m1 - m0]``."""
    margin = resample_margin(up, down)
    a = max(0, m0 // up * down - margin)
    b = min(n, -(-m1 * down // up) + margin)
    y = resample_poly(np.asarray(read(a, b), dtype=np.float64), up, down, axis=-1)
    off = a // down * up
    return y[:, m0 - off : m1 - off].astype(np.float32)


def resample(rec: Recording, fs: float, block: int = BLOCK) -> Recording:
    """Polyphase-resample ``rec`` to ``fs`` Hz (Kaiser-windowed anti-alias FIR, ``scipy.signal.resample_poly``).

    Returns ``rec`` itself when the rate already matches. The original rate is kept in
    ``meta["fs_original"]``. Computed in blocks of about ``block`` output samples
    (:func:`resample_block`) straight into the float32 result, so memory is the recording, the result
    and one block, never a float64 copy of the whole recording.
    """
    if fs <= 0 or abs(rec.fs - fs) <= 1e-9 * fs:
        return rec
    up, down = rational_ratio(rec.fs, fs)
    x = rec.signal
    n = x.shape[-1]
    n_out = -(-n * up // down)  # as resample_poly: ceil(n * up / down)
    step = max(1, -(-block // up)) * up  # a multiple of up
    y = np.empty((x.shape[0], n_out), dtype=np.float32)
    for m0 in range(0, n_out, step):
        m1 = min(n_out, m0 + step)
        y[:, m0:m1] = resample_block(lambda a, b: x[:, a:b], n, up, down, m0, m1)
    meta = dict(rec.meta, fs_original=rec.fs)
    return dataclasses.replace(rec, signal=y, fs=fs, meta=meta)


#: transition band of the band-limit filter, as a fraction of the sampling rate (60 Hz at 12 kHz): it lies
#: inside the band, so everything outside ``[lo, hi]`` is attenuated by at least BAND_ATTENUATION_DB
BAND_TRANSITION = 0.005
BAND_ATTENUATION_DB = 100.0


@functools.lru_cache(maxsize=32)
def band_filter(fs: float, lo: float, hi: float) -> np.ndarray:
    """The linear-phase FIR of :func:`band_limit` (float64 taps, odd length) at ``fs`` Hz for the band
    ``[lo, hi]`` Hz (``lo = 0``: low-pass, keeps DC; ``hi = 0``: high-pass).

    A Kaiser-window design (``scipy.signal.kaiserord`` / ``firwin``) with at least
    :data:`BAND_ATTENUATION_DB` dB of stop-band attenuation outside the band and its transition
    (:data:`BAND_TRANSITION` x ``fs`` wide) inside it: about 1,300 taps at any rate.
    """
    from scipy.signal import firwin, kaiserord

    nyq = fs / 2
    if hi and hi >= nyq:
        raise DiagError(f"windows.band: upper edge {hi:g} Hz is at or above the Nyquist frequency {nyq:g} Hz "
                        f"({fs:g} Hz); choose a lower edge or 0 for none")
    if lo >= (hi or nyq):
        raise DiagError(f"windows.band: lower edge {lo:g} Hz must be below the upper edge {(hi or nyq):g} Hz")
    tw = BAND_TRANSITION * fs
    if lo >= (hi or nyq) - (2 * tw if lo and hi else tw):
        raise DiagError(f"windows.band: [{lo:g}, {hi:g}] Hz is narrower than the filter's transition bands "
                        f"({tw:g} Hz each at {fs:g} Hz); widen it")
    numtaps, beta = kaiserord(BAND_ATTENUATION_DB, tw / nyq)
    numtaps |= 1  # odd (type I): a whole-sample delay, so the centred filter has zero phase
    if lo > 0 and hi > 0:
        cut, pass_zero = [lo + tw / 2, hi - tw / 2], False
    elif hi > 0:
        cut, pass_zero = hi - tw / 2, True
    else:
        cut, pass_zero = lo + tw / 2, False
    return firwin(numtaps, cut, window=("kaiser", beta), pass_zero=pass_zero, fs=fs)


def band_edges(band: list[float] | tuple[float, ...] | None) -> tuple[float, float] | None:
    """``windows.band`` as ``(lo, hi)`` Hz, or None when it is off (empty, or both edges 0)."""
    lo, hi = (float(band[0]), float(band[1])) if band else (0.0, 0.0)
    return None if lo <= 0 and hi <= 0 else (lo, hi)


def filter_segment(x: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """``x`` ``[C, M + len(taps) - 1]`` (float64) filtered by the centred ``taps``: ``[C, M]`` float32 (the
    'valid' part of the convolution; :func:`band_limit` pads the recording's ends, the streaming reader
    of :mod:`diag.signal.stream` reads its neighbours)."""
    from scipy.signal import oaconvolve

    return oaconvolve(x, taps[None, :], mode="valid", axes=-1).astype(np.float32)


def symmetric_index(idx: np.ndarray, n: int) -> np.ndarray:
    """Sample indices ``idx`` (may lie up to ``n`` before 0 or after ``n - 1``) reflected into ``[0, n)``
    as ``numpy.pad(mode="symmetric")`` extends a signal (the edge sample repeated)."""
    idx = np.where(idx < 0, -idx - 1, idx)
    return np.where(idx >= n, 2 * n - idx - 1, idx)


def band_block(read: Callable[[int, int], np.ndarray], n: int, taps: np.ndarray, a: int, b: int) -> np.ndarray:
    """Samples ``[a, b)`` of a recording of ``n >= len(taps) // 2`` samples filtered by the centred
    ``taps`` over its mirrored ends, from inputs ``read(lo, hi) -> [C, hi - lo]``: the block with the
    filter's reach (half its length) of neighbours on both sides. float32 ``[C, b - a]``."""
    h = len(taps) // 2
    want = symmetric_index(np.arange(a - h, b + h), n)
    lo, hi = int(want.min()), int(want.max()) + 1
    x = np.asarray(read(lo, hi), dtype=np.float64)
    return filter_segment(x[:, want - lo], taps)


def band_limit(rec: Recording, band: list[float] | tuple[float, ...], block: int = BLOCK) -> Recording:
    """Remove everything outside ``band = [lo, hi]`` Hz from the whole recording (zero phase).

    A linear-phase FIR (:func:`band_filter`, at least 100 dB down outside the band), centred, over the
    recording extended by mirroring at both ends (``numpy.pad`` ``symmetric``, so the filter sees no
    jump at the edges). ``lo = 0`` keeps DC (no high-pass); ``hi = 0`` means no low-pass. Every
    recording gets the same operation, so a cue that differs only outside the band is gone from all
    of them (CWRU: two acquisition chains whose anti-alias edges differ around 5.0-5.6 kHz).

    An FIR rather than an FFT brick wall over the whole recording: its reach is finite (half its
    length, about 640 samples), so it is applied in blocks of ``block`` samples (:func:`band_block`)
    straight into the float32 result -- memory is the recording, the result and one block -- and
    ``diag predict`` applies exactly the same filter to a file of any length in chunks, with bounded
    memory (:class:`diag.signal.stream.BandLimitedReader`); and rather than a Butterworth
    ``sosfiltfilt``, whose transition band would let part of a cue at the limit through.
    """
    edges = band_edges(band)
    if edges is None:
        return rec
    try:
        taps = band_filter(float(rec.fs), *edges)
    except DiagError as exc:
        raise DiagError(f"{rec.source}: {exc}") from None
    h = len(taps) // 2
    x = rec.signal
    n = x.shape[-1]
    if n < h:  # shorter than the filter's reach: mirrored by numpy.pad, filtered whole
        y = filter_segment(np.pad(x.astype(np.float64), ((0, 0), (h, h)), "symmetric"), taps)
    else:
        y = np.empty(x.shape, dtype=np.float32)
        for a in range(0, n, block):
            y[:, a : a + block] = band_block(lambda lo, hi: x[:, lo:hi], n, taps, a, min(n, a + block))
    return dataclasses.replace(rec, signal=y, meta=dict(rec.meta, band=list(edges)))
