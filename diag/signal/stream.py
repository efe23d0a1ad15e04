"""The recording as the training recordings were before windowing, read in parts: polyphase resampling
(:class:`ResampledReader`) and the band limit (:class:`BandLimitedReader`) applied chunk by chunk, equal
to :func:`diag.signal.windows.resample` / :func:`diag.signal.windows.band_limit` of the whole recording
(to float32 rounding), so ``diag predict`` scores a file of any length with bounded memory.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from diag.checks import check_finite
from diag.signal.resampling import RESAMPLE_HALF_LEN, band_block, resample_block, resample_margin
from diag.signal.windows import band_edges, band_filter, filter_segment, rational_ratio
from diag.sources.stream import Signal

__all__ = ["ResampledReader", "BandLimitedReader", "resample_signal", "band_limit_signal", "select_signal",
           "RESAMPLE_CHUNK", "RESAMPLE_HALF_LEN"]

#: output samples resampled per step when a file at another rate is streamed
RESAMPLE_CHUNK = 1 << 16


class ResampledReader:
    """``read(a, b)`` of ``sig``'s channels ``idx`` polyphase-resampled to ``fs`` Hz, chunk by chunk.

    Equal to :func:`diag.signal.windows.resample` of the whole recording (to float32 rounding): every chunk
    goes through it with ``margin`` input samples of overlap on both sides -- more than the FIR's
    reach (``RESAMPLE_HALF_LEN * max(up, down) / up`` input samples) -- and starts at a multiple of
    ``down``, so its output samples fall on the whole file's output grid; the overlap's outputs are
    dropped. The file's own ends are zero-padded by ``resample_poly`` just as the whole file's are.
    Memory: one chunk of about ``RESAMPLE_CHUNK`` output samples (plus what the last ``read`` asked for).
    """

    def __init__(self, sig: Signal, idx: list[int], fs: float):
        self.sig, self.idx, self.fs = sig, list(idx), float(fs)
        self.up, self.down = rational_ratio(sig.fs, fs)
        up, down = self.up, self.down
        self.n_out = -(-sig.n_samples * up // down)  # as resample_poly: ceil(n * up / down)
        self.margin = resample_margin(up, down)  # input samples, a multiple of down
        self.block = max(1, -(-RESAMPLE_CHUNK // up)) * up  # output samples, a multiple of up
        self._buf = np.zeros((len(self.idx), 0), dtype=np.float32)
        self._start = 0  # output index of _buf[:, 0]; _start + width is a multiple of up (or n_out)

    def _chunk(self, m0: int, m1: int) -> np.ndarray:
        """Output samples ``[m0, m1)`` (``m0`` a multiple of ``up``): :func:`resample_block`."""
        return resample_block(self._checked, self.sig.n_samples, self.up, self.down, m0, m1)

    def _checked(self, a: int, b: int) -> np.ndarray:
        x = np.asarray(self.sig.read(a, b), dtype=np.float64)[self.idx]
        check_finite(x, self.sig.path, a)
        return x

    def read(self, a: int, b: int) -> np.ndarray:
        b = min(b, self.n_out)
        end = self._start + self._buf.shape[1]
        if not self._start <= a < end:  # nothing kept is needed: restart on the grid at or before a
            self._start = end = a // self.up * self.up
            self._buf = self._buf[:, :0]
        else:
            self._buf, self._start = self._buf[:, a - self._start :], a
        parts = [self._buf]
        while end < b:  # each underlying read: one block of outputs plus the overlap
            stop = min(self.n_out, end + self.block)
            parts.append(self._chunk(end, stop))
            end = stop
        if len(parts) > 1:
            self._buf = np.concatenate(parts, axis=1)
        return self._buf[:, a - self._start : b - self._start]


def resample_signal(sig: Signal, fs: float, idx: Sequence[int] | None = None) -> Signal:
    """``sig`` (its channels ``idx``, default all) polyphase-resampled to ``fs`` Hz as it is read.

    Equal to :func:`diag.signal.windows.resample` of the whole recording, to float32 rounding, while reading
    ``sig`` in chunks of about ``RESAMPLE_CHUNK`` output samples (see :class:`ResampledReader`); reads
    must come in non-decreasing ranges. The result keeps ``sig``'s notes and meta and records the
    original rate in ``fs_original``.
    """
    idx = list(range(sig.n_channels)) if idx is None else list(idx)
    reader = ResampledReader(sig, idx, fs)
    out = Signal(sig.path, fs, reader.n_out, tuple(sig.channels[i] for i in idx), reader.read,
                 streamed=sig.streamed)
    _inherit(out, sig)
    return out


class BandLimitedReader:
    """``read(a, b)`` of ``sig`` band-limited to ``band`` (``[lo, hi]`` Hz) as :func:`diag.signal.windows.band_limit`
    does to the whole recording: the same centred FIR over the same mirrored ends. Each read takes the
    filter's reach (half its length) of neighbours on both sides, so memory is bounded by the read."""

    def __init__(self, sig: Signal, band: Sequence[float]):
        edges = band_edges(band)
        if edges is None:
            raise ValueError("BandLimitedReader: no band")
        self.sig, self.taps = sig, band_filter(float(sig.fs), *edges)
        self.h = len(self.taps) // 2
        self._whole: np.ndarray | None = None

    def read(self, a: int, b: int) -> np.ndarray:
        n, h = self.sig.n_samples, self.h
        b = min(b, n)
        if n < h:  # shorter than the filter's reach: filtered whole, once
            if self._whole is None:
                x = np.asarray(self.sig.read(0, n), dtype=np.float64)
                check_finite(x, self.sig.path)
                self._whole = filter_segment(np.pad(x, ((0, 0), (h, h)), "symmetric"), self.taps)
            return self._whole[:, a:b]
        return band_block(self._checked, n, self.taps, a, b)

    def _checked(self, lo: int, hi: int) -> np.ndarray:
        x = np.asarray(self.sig.read(lo, hi), dtype=np.float64)
        check_finite(x, self.sig.path, lo)
        return x


def select_signal(sig: Signal, idx: Sequence[int]) -> Signal:
    """``sig``'s channels ``idx`` (a new Signal with its own copy of the notes)."""
    idx = list(idx)
    every = idx == list(range(sig.n_channels))
    out = Signal(sig.path, sig.fs, sig.n_samples, tuple(sig.channels[i] for i in idx),
                 sig.read if every else (lambda a, b: np.asarray(sig.read(a, b))[idx]), streamed=sig.streamed)
    _inherit(out, sig)
    return out


def band_limit_signal(sig: Signal, band: Sequence[float]) -> Signal:
    """``sig`` band-limited as it is read (:class:`BandLimitedReader`); ``sig`` itself when ``band`` is off."""
    if band_edges(band) is None:
        return sig
    reader = BandLimitedReader(sig, band)
    out = Signal(sig.path, sig.fs, sig.n_samples, sig.channels, reader.read, streamed=sig.streamed)
    _inherit(out, sig)
    return out


def _inherit(out: Signal, sig: Signal) -> None:
    """What a derived signal keeps of the one it reads: notes, meta, where they came from, the file's rate."""
    out.notes, out.meta, out.fs_original = list(sig.notes), sig.meta, sig.fs_original
    out.listed, out.listed_keys, out.unreadable_listings = sig.listed, sig.listed_keys, sig.unreadable_listings
