"""Scoring waveforms with a trained run -- windows -> probabilities -> file verdict (shared by the
``diag predict``, ``diag evaluate`` and ``diag export`` commands and :func:`diag.load_model`).

A run folder (``diag train --out``) carries its own preprocessing in ``model.json``; :class:`Predictor`
rebuilds it with the same public functions ``diag prepare`` uses -- :func:`diag.signal.windows.resample`
(polyphase, with a note), :func:`diag.signal.windows.band_limit`, :func:`diag.signal.windows.window_starts`,
:func:`diag.signal.windows.apply_normalization` and
:func:`diag.signal.transforms.make_transform` -- and checks that the rebuilt transform describes itself
exactly as the stored one did (a different diag version that changed the images is refused).

Per window: class probabilities and an out-of-distribution score (see :mod:`diag.serving.unknown`); a window
whose score exceeds the run's calibrated threshold is ``unknown``. Per file (:func:`file_verdict`):

* **verdict rule** ``mean-probability``: if at least half of the windows are unknown the file is
  ``unknown``; otherwise the class with the highest mean probability over the known windows.
  Averaging probabilities (rather than counting argmax votes) keeps the model's confidence and is
  robust to a few noisy windows; the unknown share decides first, so an unfamiliar recording is
  never forced into a confident wrong class.
* **confidence**: the verdict's mean probability over the known windows (for ``unknown``: the share
  of unknown windows).
* **top**: the three classes with the highest mean probability; **shares**: the fraction of windows
  whose label (argmax or ``unknown``) is each class.
* **spans**: the window labels smoothed by a 3-window majority vote, then cut into runs of equal
  label (a run of fewer than 3 windows is folded into its longer neighbour: flicker is not a span;
  ``--windows`` keeps every window's own label), each with its start and end in seconds (a window stands for the stretch half-way to its
  neighbours' centres, so spans tile the recording) -- a recording that turns faulty halfway shows
  ``normal 0-5 s, inner 5-10 s``. ``verdict_span`` is the first to last second the verdict holds.

Reading: files are read with the readers of :mod:`diag.sources`, except the formats that can be
read in parts -- ``.npy`` (memory map), ``.wav`` (memory map) and large ``.csv`` (row chunks) --
which are scored in batches of windows, so memory stays bounded by the batch whatever the file
length. A file at another rate is resampled chunk by chunk (:func:`resample_signal`: each chunk
through :func:`diag.signal.windows.resample` with enough overlap that the result equals resampling the
whole file). Only a run with ``windows.band`` reads every file whole: its band limit is an FFT over
the whole recording, as at training.

Order images (``envorder`` / ``harmonics``) need each recording's reference rate (shaft rate /
electrical fundamental): given per file (``--ref-hz``, ``ref_hz=``), else from the file's metadata
(a CWRU record's ``X<rec>RPM``, the ``meta`` column of a ``labels.csv`` listing the file, e.g. what
``diag simulate`` writes) else the run's ``transform.ref_hz`` -- the rule ``diag prepare`` uses
(:func:`diag.signal.transforms.reference_hz`), with a speed ramp spread over the windows by
:func:`diag.signal.transforms.window_reference_hz`.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from diag.errors import DiagError
from diag.sources.files import is_number
from diag.serving.unknown import forward_parts

__all__ = ["Predictor", "load_model", "FileResult", "WindowScores", "Signal", "open_signal", "resample_signal",
           "expand_paths", "file_verdict", "forward_parts", "UNKNOWN", "VERDICT_RULE"]

UNKNOWN = "unknown"
BATCH = 256
#: CSV files larger than this (bytes) are read in row chunks instead of whole
CSV_STREAM_BYTES = 64 * 2**20
CSV_CHUNK_ROWS = 200_000
#: recordings with more windows than this show a progress bar
PROGRESS_WINDOWS = 2000
#: output samples resampled per step when a file at another rate is streamed
RESAMPLE_CHUNK = 1 << 16
#: scipy.signal.resample_poly's default anti-alias FIR: 2 * half_len + 1 taps at the upsampled rate,
#: half_len = 10 * max(up, down); an output sample depends on the inputs within half_len / up samples
RESAMPLE_HALF_LEN = 10
#: labels manifests looked for in the file's folder and this many folders above it (diag simulate's
#: layout is <out>/<label>/<file> with <out>/labels.csv)
MANIFEST_LEVELS = 3
#: a file's reference rate more than this factor outside the training rates gets a warning note
REF_MARGIN = 1.25
VERDICT_RULE = ("mean-probability: unknown if at least half of the windows are unknown, else the class with "
                "the highest mean probability over the known windows")
SMOOTH = 3
SUPPORTED = (".csv", ".txt", ".tsv", ".npy", ".npz", ".wav", ".mat")


# ================================================================================================
# Signals that can be read in parts


class Signal:
    """A recording opened for scoring: ``fs``, ``n_samples``, ``channels`` and ``read(a, b) -> [C, b-a]``.

    ``read`` is called with non-decreasing ranges; implementations may forget what lies before ``a``.
    """

    def __init__(self, path: str, fs: float, n_samples: int, channels: tuple[str, ...],
                 reader: Callable[[int, int], np.ndarray], streamed: bool):
        self.path, self.fs, self.n_samples, self.channels = path, float(fs), int(n_samples), tuple(channels)
        self._reader = reader
        self.streamed = streamed
        self.notes: list[str] = []
        self.fs_original = self.fs
        #: what the file's reader knows about the recording (e.g. a CWRU record's ``rpm``)
        self.meta: dict[str, Any] = {}
        #: after :meth:`Predictor.prepare_signal`: the reference rate ``(start_hz, end_hz)`` of order images
        self.ref: tuple[float, float] | None = None
        self.ref_from = ""

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    def read(self, a: int, b: int) -> np.ndarray:
        return self._reader(a, b)

    @classmethod
    def from_array(cls, signal: np.ndarray, fs: float, name: str = "array",
                   channels: Sequence[str] | None = None) -> "Signal":
        try:
            x = np.asarray(signal)
        except Exception:  # noqa: BLE001
            raise DiagError(f"{name}: not an array of samples") from None
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
            raise DiagError(f"{name}: expected real samples shaped [channels, samples] or [samples], "
                            f"got {x.dtype} {x.shape}")
        names = tuple(channels) if channels else tuple(f"ch{i}" for i in range(x.shape[0]))
        return cls(name, _check_fs(fs, name), x.shape[1], names, lambda a, b: x[:, a:b], streamed=False)


def _check_fs(fs: Any, where: str) -> float:
    if fs is None:
        raise DiagError(f"{where}: sampling rate unknown; pass --fs HZ (fs= in the API)")
    try:
        v = float(fs)
    except (TypeError, ValueError):
        raise DiagError(f"{where}: sampling rate {fs!r} is not a number of Hz") from None
    if not math.isfinite(v) or v <= 0:
        raise DiagError(f"{where}: sampling rate must be a positive number of Hz, got {fs!r}")
    return v


def _open_npy(p: Path, fs: float | None) -> Signal:
    try:
        arr = np.load(p, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # noqa: BLE001
        raise DiagError(f"{p}: not a readable .npy array ({str(exc)[:100]}); re-export it with numpy.save") from None
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise DiagError(f"{p}: expected a real 1-D or 2-D array of samples, got {arr.dtype} {arr.shape}")
    # the shorter axis holds the channels, as in diag.sources.files
    view = arr if arr.shape[0] <= arr.shape[1] else arr.T
    rate = _check_fs(fs, str(p))
    return Signal(str(p), rate, view.shape[1], tuple(f"ch{i}" for i in range(view.shape[0])),
                  lambda a, b: np.asarray(view[:, a:b], dtype=np.float64), streamed=True)


def _open_wav(p: Path, fs: float | None) -> Signal | None:
    import scipy.io.wavfile

    try:
        rate, data = scipy.io.wavfile.read(p, mmap=True)
    except ValueError:
        return None  # e.g. 24-bit PCM cannot be memory-mapped: the files reader reads it whole
    except Exception as exc:  # noqa: BLE001
        raise DiagError(f"{p}: not a readable WAV file ({str(exc)[:100]}); re-export it as PCM or float WAV") from None
    view = data[None, :] if data.ndim == 1 else data.T
    kind, size = data.dtype.kind, data.dtype.itemsize

    def read(a: int, b: int) -> np.ndarray:
        x = np.asarray(view[:, a:b])
        if kind == "f":
            return x.astype(np.float64)
        if data.dtype == np.uint8:
            return (x.astype(np.float64) - 128.0) / 128.0
        return x.astype(np.float64) / float(2 ** (8 * size - 1))

    sig = Signal(str(p), float(rate), view.shape[1], tuple(f"ch{i}" for i in range(view.shape[0])), read,
                 streamed=True)
    if fs is not None and abs(float(fs) - rate) > 1e-6 * rate:
        sig.notes.append(f"the WAV header's {rate:g} Hz is used; --fs {float(fs):g} applies to formats without a rate")
    return sig


class _CsvChunks:
    """Row chunks of a large CSV recording (one column per channel, optional header row)."""

    def __init__(self, p: Path):
        self.p = p
        with open(p, encoding="utf-8-sig", errors="replace") as fh:
            first = ""
            self.skip = 0
            for line in fh:
                self.skip += 1
                if line.strip():
                    first = line
                    break
            if not first:
                raise DiagError(f"{p}: empty file; remove it or re-export it")
            self.n = sum(1 for line in fh if line.strip())
        self.delim = next((d for d in (",", ";", "\t") if d in first), None)
        head = [c.strip() for c in (first.split(self.delim) if self.delim else first.split())]
        numeric = all(is_number(c) for c in head if c)
        self.names = None if numeric else tuple(c.strip("\"'") for c in head)
        if numeric:
            self.skip -= 1
            self.n += 1
        self.n_channels = len(head)
        self._fh = None
        self._row = 0
        self._buf = np.zeros((self.n_channels, 0))
        self._buf_start = 0

    def read(self, a: int, b: int) -> np.ndarray:
        if self._fh is None:
            self._fh = open(self.p, encoding="utf-8-sig", errors="replace")
            for _ in range(self.skip):
                self._fh.readline()
        keep = max(0, a - self._buf_start)
        self._buf, self._buf_start = self._buf[:, keep:], self._buf_start + keep
        while self._buf_start + self._buf.shape[1] < b:
            lines = []
            while len(lines) < max(CSV_CHUNK_ROWS, b - self._buf_start - self._buf.shape[1]):
                line = self._fh.readline()
                if not line:
                    break
                if line.strip():
                    lines.append(line)
            if not lines:
                break
            try:
                chunk = np.loadtxt(lines, delimiter=self.delim, ndmin=2, dtype=np.float64)
            except ValueError:
                raise DiagError(f"{self.p}: a cell between data rows {self._row + 1} and {self._row + len(lines)} "
                                "is not a number; a CSV recording holds numbers only") from None
            if chunk.shape[1] != self.n_channels:
                raise DiagError(f"{self.p}: rows have different numbers of columns; every row needs one value per channel")
            self._row += len(lines)
            self._buf = np.concatenate([self._buf, chunk.T], axis=1)
        return self._buf[:, a - self._buf_start : b - self._buf_start]


class _ResampledReader:
    """``read(a, b)`` of ``sig``'s channels ``idx`` polyphase-resampled to ``fs`` Hz, chunk by chunk.

    Equal to :func:`diag.signal.windows.resample` of the whole recording (to float32 rounding): every chunk
    goes through it with ``margin`` input samples of overlap on both sides -- more than the FIR's
    reach (``RESAMPLE_HALF_LEN * max(up, down) / up`` input samples) -- and starts at a multiple of
    ``down``, so its output samples fall on the whole file's output grid; the overlap's outputs are
    dropped. The file's own ends are zero-padded by ``resample_poly`` just as the whole file's are.
    Memory: one chunk of about ``RESAMPLE_CHUNK`` output samples (plus what the last ``read`` asked for).
    """

    def __init__(self, sig: Signal, idx: list[int], fs: float):
        from diag.signal.windows import rational_ratio

        self.sig, self.idx, self.fs = sig, list(idx), float(fs)
        self.up, self.down = rational_ratio(sig.fs, fs)
        up, down = self.up, self.down
        self.n_out = -(-sig.n_samples * up // down)  # as resample_poly: ceil(n * up / down)
        reach = -(-RESAMPLE_HALF_LEN * max(up, down) // up) + 1
        self.margin = (-(-reach // down) + 1) * down  # input samples, a multiple of down
        self.block = max(1, -(-RESAMPLE_CHUNK // up)) * up  # output samples, a multiple of up
        self._buf = np.zeros((len(self.idx), 0), dtype=np.float32)
        self._start = 0  # output index of _buf[:, 0]; _start + width is a multiple of up (or n_out)

    def _chunk(self, m0: int, m1: int) -> np.ndarray:
        """Output samples ``[m0, m1)`` (``m0`` a multiple of ``up``)."""
        from diag.sources.base import Recording
        from diag.signal.windows import resample

        up, down, n = self.up, self.down, self.sig.n_samples
        a = max(0, m0 // up * down - self.margin)  # a multiple of down: its output grid is the file's
        b = min(n, -(-m1 * down // up) + self.margin)
        x = np.asarray(self.sig.read(a, b), dtype=np.float64)[self.idx]
        _check_finite(x, self.sig.path, a)
        y = resample(Recording(signal=x, fs=self.sig.fs, label="?", source=self.sig.path), self.fs).signal
        off = a // down * up
        return y[:, m0 - off : m1 - off]

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
    ``sig`` in chunks of about ``RESAMPLE_CHUNK`` output samples (see :class:`_ResampledReader`); reads
    must come in non-decreasing ranges, as :meth:`Predictor.predict_signal` makes them. The result keeps
    ``sig``'s notes and meta and records the original rate in ``fs_original``.
    """
    idx = list(range(sig.n_channels)) if idx is None else list(idx)
    reader = _ResampledReader(sig, idx, fs)
    out = Signal(sig.path, fs, reader.n_out, tuple(sig.channels[i] for i in idx), reader.read,
                 streamed=sig.streamed)
    out.notes, out.meta, out.fs_original = list(sig.notes), sig.meta, sig.fs
    return out


def _open_with_reader(p: Path, fs: float | None, key: str | None = None, variable: str | None = None,
                      cwru_channels: Sequence[str] | None = None) -> Signal:
    """Any format of :func:`diag.sources.files.read_files`, read whole (label: the folder name, unused);
    a CWRU record (``.mat`` with a known record number) through :func:`diag.sources.cwru.read_cwru`."""
    from diag.sources.files import read_files

    if cwru_channels is not None and p.suffix.lower() == ".mat":
        from diag.sources.cwru import read_cwru

        recs = read_cwru(p, channels=list(cwru_channels))
    else:
        recs = read_files(p, label_from="folder", fs=fs, key=key, variable=variable)
    r = recs[0]
    sig = Signal(str(p), r.fs, r.n_samples, r.channels, lambda a, b: r.signal[:, a:b], streamed=False)
    sig.meta = dict(r.meta or {})
    return sig


def open_signal(path: str | Path, fs: float | None = None, key: str | None = None, variable: str | None = None,
                cwru_channels: Sequence[str] | None = None) -> Signal:
    """Open one recording file for scoring (see the module docstring for which formats stream).

    ``key`` / ``variable``: the array of an ``.npz`` / ``.mat`` file holding several. ``cwru_channels``:
    read ``.mat`` files as CWRU records (by record number; rate from the record table), keeping these
    accelerometers (``DE``, ``FE``, ``BA``) -- what a run trained on ``source.kind = "cwru"`` uses.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise DiagError(f"{p}: no such file; check the path")
    if not p.is_file():
        raise DiagError(f"{p}: not a file")
    ext = p.suffix.lower()
    if ext not in SUPPORTED:
        raise DiagError(f"{p}: unsupported file type '{p.suffix}'; convert it to one of {', '.join(SUPPORTED)}")
    if ext == ".npy":
        return _open_npy(p, fs)
    if ext == ".wav":
        sig = _open_wav(p, fs)
        if sig is not None:
            return sig
    if ext in (".csv", ".txt", ".tsv") and p.stat().st_size > CSV_STREAM_BYTES:
        chunks = _CsvChunks(p)
        names = chunks.names or tuple(f"ch{i}" for i in range(chunks.n_channels))
        if len(names) != chunks.n_channels:
            raise DiagError(f"{p}: header names {len(names)} columns but the rows have {chunks.n_channels}")
        return Signal(str(p), _check_fs(fs, str(p)), chunks.n, names, chunks.read, streamed=True)
    if ext == ".mat" and cwru_channels is not None:
        return _open_with_reader(p, fs, cwru_channels=cwru_channels)
    if ext != ".wav" and fs is None:
        raise DiagError(f"{p}: sampling rate unknown; pass --fs HZ")
    return _open_with_reader(p, fs, key, variable)


def expand_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Files named, and the supported files below folders named (sorted); DiagError if none."""
    from diag.sources.base import list_files

    out: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            found = [f for f in list_files(p) if f.suffix.lower() in SUPPORTED and f.name != "labels.csv"]
            if not found:
                raise DiagError(f"{p}: no recordings ({', '.join(SUPPORTED)}) below the folder")
            out += found
        elif p.exists():
            out.append(p)
        else:
            raise DiagError(f"{p}: no such file or folder; check the path")
    if not out:
        raise DiagError("no recordings given; pass one or more files or folders")
    return out


# ================================================================================================
# The predictor


@dataclass
class WindowScores:
    """Per-window results of one recording: starts (samples at the model's rate), probabilities, scores."""

    start: np.ndarray  # int64 [N]
    probs: np.ndarray  # float32 [N, K]
    score: np.ndarray  # float32 [N], higher = less like the training data
    unknown: np.ndarray  # bool [N]


@dataclass
class FileResult:
    path: str
    fs: float
    fs_original: float
    duration_s: float
    windows: WindowScores
    verdict: str
    confidence: float
    is_unknown: bool
    unknown_share: float
    top: list[dict[str, Any]]
    shares: dict[str, float]
    spans: list[dict[str, Any]]
    verdict_span: list[float] | None
    notes: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)  # the channels chosen with --channels, if any
    #: order images: the reference rate used, ``[start_hz, end_hz]`` (equal unless a speed ramp), and whence
    ref_hz: list[float] | None = None
    ref_from: str = ""

    def to_dict(self, windows: bool = False, length: int = 0) -> dict[str, Any]:
        d = {"path": self.path, "verdict": self.verdict, "confidence": round(self.confidence, 4),
             "unknown": self.is_unknown, "unknown_share": round(self.unknown_share, 4),
             "top": self.top, "shares": self.shares, "spans": self.spans, "verdict_span": self.verdict_span,
             "n_windows": int(len(self.windows.start)), "duration_s": round(self.duration_s, 4),
             "fs": self.fs, "fs_original": self.fs_original, "ref_hz": self.ref_hz, "ref_from": self.ref_from,
             "notes": self.notes}
        if windows:
            d["windows"] = [
                {"start_s": round(float(s) / self.fs, 6), "end_s": round(float(s + length) / self.fs, 6),
                 "label": lab, "score": round(float(sc), 5), "unknown": bool(u),
                 "probs": [round(float(v), 5) for v in p]}
                for s, lab, sc, u, p in zip(self.windows.start, self.labels, self.windows.score,
                                            self.windows.unknown, self.windows.probs)
            ]
        return d


def _smooth(labels: list[str], width: int = SMOOTH) -> list[str]:
    """Majority vote over ``width`` neighbouring windows (ties keep the window's own label)."""
    if width < 2 or len(labels) < width:
        return list(labels)
    h = width // 2
    out = []
    for i, own in enumerate(labels):
        near = labels[max(0, i - h) : i + h + 1]
        best = max(set(near), key=lambda c: (near.count(c), c == own))
        out.append(best)
    return out


def _merge_short(spans: list[dict[str, Any]], min_windows: int) -> list[dict[str, Any]]:
    """Fold runs shorter than ``min_windows`` into their longer neighbour (flicker is not a span)."""
    spans = [dict(s) for s in spans]
    while len(spans) > 1:
        short = [i for i, s in enumerate(spans) if s["windows"] < min_windows]
        if not short:
            break
        i = min(short, key=lambda j: (spans[j]["windows"], j))
        left = spans[i - 1] if i > 0 else None
        right = spans[i + 1] if i + 1 < len(spans) else None
        into = left if right is None or (left is not None and left["windows"] >= right["windows"]) else right
        if into is left:
            left["end_s"], left["windows"] = spans[i]["end_s"], left["windows"] + spans[i]["windows"]
        else:
            right["start_s"], right["windows"] = spans[i]["start_s"], right["windows"] + spans[i]["windows"]
        del spans[i]
        # neighbours that now carry the same label become one span
        j = 0
        while j + 1 < len(spans):
            if spans[j]["label"] == spans[j + 1]["label"]:
                spans[j]["end_s"], spans[j]["windows"] = spans[j + 1]["end_s"], spans[j]["windows"] + spans[j + 1]["windows"]
                del spans[j + 1]
            else:
                j += 1
    return spans


def file_verdict(ws: WindowScores, classes: Sequence[str], fs: float, length: int) -> dict[str, Any]:
    """Verdict, confidence, top 3, shares and spans of one file's windows (rule: module docstring)."""
    n = len(ws.start)
    k = len(classes)
    labels = [UNKNOWN if u else classes[int(j)] for u, j in zip(ws.unknown, ws.probs.argmax(1))]
    unk_share = float(ws.unknown.mean()) if n else 0.0
    known = ~ws.unknown
    mean_p = ws.probs[known].mean(0) if known.any() else ws.probs.mean(0)
    order = np.argsort(-mean_p, kind="stable")
    top = [{"class": classes[int(i)], "p": round(float(mean_p[i]), 4)} for i in order[: min(3, k)]]
    if unk_share >= 0.5:
        verdict, conf = UNKNOWN, unk_share
    else:
        verdict, conf = classes[int(order[0])], float(mean_p[order[0]])
    shares = {c: round(labels.count(c) / n, 4) for c in list(classes) + [UNKNOWN] if labels.count(c)}
    smooth = _smooth(labels)
    spans: list[dict[str, Any]] = []
    # each window stands for the stretch around its centre, half-way to its neighbours' centres, so
    # spans tile the recording without overlapping (the first and last reach its ends)
    centre = (ws.start + length / 2) / fs
    edges = np.r_[0.0, (centre[1:] + centre[:-1]) / 2, (ws.start[-1] + length) / fs] if n else np.zeros(1)
    for i, lab in enumerate(smooth):
        s, e = float(edges[i]), float(edges[i + 1])
        if spans and spans[-1]["label"] == lab:
            spans[-1]["end_s"] = round(e, 4)
            spans[-1]["windows"] += 1
        else:
            spans.append({"label": lab, "start_s": round(s, 4), "end_s": round(e, 4), "windows": 1})
    spans = _merge_short(spans, SMOOTH)
    hold = [i for i, lab in enumerate(smooth) if lab == verdict]
    vspan = [round(float(edges[hold[0]]), 4), round(float(edges[hold[-1] + 1]), 4)] if hold else None
    return {"verdict": verdict, "confidence": conf, "is_unknown": verdict == UNKNOWN, "unknown_share": unk_share,
            "top": top, "shares": shares, "spans": spans, "verdict_span": vspan, "labels": labels}


class Predictor:
    """A trained run ready to score waveforms: ``predict(signal, fs)`` and ``classes``.

    Built by :func:`diag.load_model` / :func:`load_model`. ``unknown`` is the run's calibrated
    out-of-distribution threshold (:mod:`diag.serving.unknown`), or None when the run has none and its
    prepared dataset is gone (then no window is ever reported unknown, and ``notes`` says so).
    """

    def __init__(self, run: str | Path, device: str = "cpu", hop: int | None = None, calibrate: bool = True,
                 quiet: bool = True, batch_size: int = BATCH):
        import torch

        from diag.config import TransformConfig, from_dict
        from diag.learning.models import load_trained
        from diag.signal.transforms import make_transform
        from diag.serving.unknown import UnknownDetector

        self.run = Path(run).expanduser()
        if not self.run.is_dir():
            raise DiagError(f"{self.run}: no such run folder; pass the --out folder of `diag train`")
        self.device = _device(device)
        self.net, self.meta = _load(self.run, self.device, load_trained)
        pre = self.meta.get("preprocessing") or {}
        cfg = pre.get("config") or {}
        win = pre.get("window") or {}
        if not cfg.get("transform") or not win.get("length") or not pre.get("fs"):
            raise DiagError(f"{self.run}/model.json: records no waveform preprocessing (trained on images made "
                            "outside `diag prepare`?); it cannot score recordings")
        self.classes: list[str] = list(self.meta["classes"])
        self.fs = float(pre["fs"])
        self.length = int(win["length"])
        self.hop = int(hop) if hop is not None else int(win.get("hop") or self.length)
        if self.hop < 1:
            raise DiagError(f"--hop: must be >= 1 sample, got {self.hop}")
        self.normalize = str(win.get("normalize", "zscore"))
        self.norm_stats = win.get("normalization_stats")  # windows.normalize = "dataset": the training split's
        self.band = [float(v) for v in (win.get("band") or [])]  # windows.band, applied to the whole recording
        self.channels = tuple(win.get("channels") or ())
        self.batch_size = int(batch_size)
        self.tcfg = tcfg = from_dict(TransformConfig, cfg["transform"], "transform")
        self.transform = make_transform(tcfg, self.fs, self.length, device=self.device)
        #: whether the images sit on an order axis (envorder / harmonics): every file needs a reference rate
        self.needs_ref = bool(getattr(self.transform, "needs_ref", False))
        self.ref_hz: float | None = None  # order images: the shaft rate / fundamental the run's config fixes
        if self.needs_ref:
            from diag.signal.transforms import reference_hz

            pair, _ = reference_hz({}, tcfg)
            self.ref_hz = pair[0] if pair else None
        #: order images: [lowest, highest] reference rate of the training recordings (older runs: from
        #: their prepared dataset if it is still there), to say when a file's rate is far outside it
        self.ref_range: list[float] | None = pre.get("ref_hz_range") if self.needs_ref else None
        if self.needs_ref and self.ref_range is None:
            self.ref_range = _dataset_ref_range(self.meta)
        # labels.csv path -> ({listed file: (meta, "labels.csv line N")}, why it could not be read)
        self._manifests: dict[str, tuple[dict[str, tuple[dict[str, Any], str]], str]] = {}
        stored = pre.get("transform") or {}
        now = self.transform.to_dict()
        for key in ("kind", "size", "frequencies_hz", "norm", "log"):
            if key in stored and stored[key] != now[key]:
                raise DiagError(f"{self.run}: this diag builds different images than the run was trained on "
                                f"(transform {key} differs); score it with the diag version that trained it")
        src = cfg.get("source") or {}
        self.cwru_channels = (list((src.get("options") or {}).get("channels") or ["DE"])
                              if src.get("kind") == "cwru" else None)
        if isinstance(self.cwru_channels, list) and len(self.cwru_channels) == 1 and "," in self.cwru_channels[0]:
            self.cwru_channels = [c.strip() for c in self.cwru_channels[0].split(",")]
        self.notes: list[str] = []
        self.unknown = UnknownDetector.for_run(self.run, self.net, self.meta, device=self.device,
                                               calibrate=calibrate, quiet=quiet)
        if self.unknown is None:
            self.notes.append("no unknown threshold: the run has no unknown.json and no validation windows to "
                              "calibrate one on (its prepared dataset is gone, or has none, as after a refit); "
                              "every window gets a class (a moved dataset: `diag predict --calibrate DATA`)")

    # -- windows -> scores --------------------------------------------------------------------------

    @property
    def unknown_features(self) -> str:
        """What the run's unknown score reads besides the logits (``forward_parts(..., features=...)``)."""
        return self.unknown.features if self.unknown is not None else "pooled"

    def images(self, x: np.ndarray, ref_hz: Any = None) -> np.ndarray:
        """Raw windows ``[B, C, L]`` at the model's rate -> the model's input images, exactly as prepared.

        ``ref_hz``: order images only, the reference rate of each window (a number or ``[B]``, Hz);
        default the run's fixed ``transform.ref_hz``."""
        from diag.signal.windows import apply_normalization

        x = apply_normalization(x, self.normalize, self.norm_stats)
        ref = self.ref_hz if ref_hz is None else ref_hz
        return self.transform(x, ref_hz=ref) if self.needs_ref and ref is not None else self.transform(x)

    def score_windows(self, x: np.ndarray, ref_hz: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Raw windows ``[B, C, L]`` -> (probabilities ``[B, K]``, unknown scores ``[B]``)."""
        import torch

        img = self.images(x, ref_hz)
        with torch.inference_mode():
            t = torch.from_numpy(img).to(self.device)
            feats, logits = forward_parts(self.net, t, features=self.unknown_features)
            probs = torch.softmax(logits.float(), 1)
            score = (self.unknown.score(logits, feats) if self.unknown is not None
                     else torch.zeros(len(t), device=t.device))
        return probs.cpu().numpy(), score.float().cpu().numpy()

    def select_channels(self, sig: Signal, channels: Sequence[str] | None) -> list[int]:
        need = len(self.channels) or int(self.meta.get("in_chans", 1))
        if channels:
            missing = [c for c in channels if c not in sig.channels]
            if missing:
                raise DiagError(f"{sig.path}: no channel(s) {', '.join(missing)} (--channels); it has "
                                f"{', '.join(sig.channels)}")
            idx = [sig.channels.index(c) for c in channels]
        elif self.channels and all(c in sig.channels for c in self.channels):
            idx = [sig.channels.index(c) for c in self.channels]
        elif sig.n_channels == need:
            idx = list(range(need))
        elif sig.n_channels < need:
            raise DiagError(f"{sig.path}: {sig.n_channels} channel(s) but the model needs {need} "
                            f"({', '.join(self.channels)}); score a recording of the same channels")
        else:
            raise DiagError(f"{sig.path}: {sig.n_channels} channels ({', '.join(sig.channels)}) but the model "
                            f"takes {need} ({', '.join(self.channels)}); choose them with --channels")
        if len(idx) != need:
            raise DiagError(f"{sig.path}: --channels selects {len(idx)} channel(s) but the model needs {need}")
        return idx

    # -- the recording as at training ---------------------------------------------------------------

    def _listed_meta(self, path: str) -> tuple[tuple[dict[str, Any], str] | None, list[str]]:
        """The ``meta`` of a labels manifest (``labels.csv`` in the file's folder or up to
        ``MANIFEST_LEVELS - 1`` above) that lists this file, and where (``labels.csv line N``); and
        why the manifests found there that diag cannot read (as ``diag prepare`` would not) were skipped."""
        from diag.sources.files import MANIFEST_NAME, find_recordings

        p = Path(path)
        if not p.is_file():
            return None, []
        real = os.path.realpath(p)
        unreadable = []
        for folder in list(Path(os.path.abspath(p)).parents)[:MANIFEST_LEVELS]:
            m = folder / MANIFEST_NAME
            if not m.is_file():
                continue
            key = str(m)
            if key not in self._manifests:  # read once per manifest, however many files it lists
                try:
                    entries = find_recordings(folder, manifest=m)
                    self._manifests[key] = ({os.path.realpath(e.file): (e.meta, e.where) for e in entries}, "")
                except DiagError as exc:  # not a labels manifest, or a broken one: it says nothing
                    self._manifests[key] = ({}, str(exc))
            listed, error = self._manifests[key]
            if real in listed:
                return listed[real], unreadable
            if error:
                unreadable.append(error)
        return None, unreadable

    def reference(self, sig: Signal, ref_hz: Any = None,
                  idx: Sequence[int] | None = None) -> tuple[tuple[float, float] | None, str, list[str]]:
        """The reference rate of one recording for order images: ``((start_hz, end_hz), whence, notes)``.

        ``ref_hz`` given (a number, or ``[start, end]`` for a speed ramp) wins. Otherwise the rule of
        ``diag prepare`` (:func:`diag.signal.transforms.reference_hz`): the recording's meta -- what the file's
        reader knows (a CWRU record's ``X<rec>RPM``), else the ``meta`` of a ``labels.csv`` listing the
        file (``rpm`` / ``shaft_hz`` for envorder, ``f1`` / ``fundamental_hz`` for harmonics) -- else the
        run's ``transform.ref_hz``, or the rate estimated from the file's first seconds when the run
        sets ``transform.ref_search`` (its channels ``idx``, as read: prepare's estimate of a training
        recording). Neither: DiagError naming the file. Runs without order images: ``(None, "", notes)``.
        """
        from diag.signal.transforms import reference_hz

        given = _ref_pair(ref_hz, sig.path) if ref_hz is not None else None
        if not self.needs_ref:
            return None, "", ([f"--ref-hz {_fmt_ref(given)} Hz not used: the run's {self.tcfg.kind} images have "
                               "no order axis"] if given else [])
        fallback = reference_hz({}, self.tcfg)
        found, how, unreadable = None, "", []
        pair, why = reference_hz(sig.meta or {}, self.tcfg)  # what the file's reader knows, first
        if pair is not None and why != fallback[1]:  # from the meta, not the config's fallback
            found, how = pair, f"{why} of the file"
        else:
            listed, unreadable = self._listed_meta(sig.path)
            pair, why = reference_hz(listed[0] if listed else {}, self.tcfg)
            if listed and pair is not None and why != fallback[1]:
                found, how = pair, f"{why} of {listed[1]}"
        if given is not None:
            pair, how_used = given, "given (--ref-hz)"
            note = f"order axis: reference {_fmt_ref(given)} Hz from --ref-hz"
            if found is not None and not np.allclose(found, given, rtol=1e-6):
                note += f" (not the {_fmt_ref(found)} Hz of {how})"
        elif found is not None:
            pair, how_used = found, how
            note = f"order axis: reference {_fmt_ref(found)} Hz from {how}"
        elif fallback[0] is not None:
            pair, how_used = fallback[0], "the run's transform.ref_hz"
            note = f"order axis: reference {_fmt_ref(pair)} Hz, the run's fixed transform.ref_hz"
        elif self.tcfg.ref_search:
            from diag.signal.transforms import REF_SECONDS

            x = np.asarray(sig.read(0, min(sig.n_samples, int(round(REF_SECONDS * sig.fs)))))
            x = x[list(idx)] if idx is not None else x
            try:
                pair, how_used = reference_hz({}, self.tcfg, x, sig.fs)
            except DiagError as exc:
                raise DiagError(f"{sig.path}: {exc}") from None
            note = f"order axis: reference {_fmt_ref(pair)} Hz {how_used}"
        else:
            what = "electrical fundamental" if "harmonics" in self.transform.kinds else "shaft rate"
            skipped = f" (skipped {unreadable[0]})" if unreadable else ""
            raise DiagError(f"{sig.path}: the model's {self.tcfg.kind} images sit on an order axis and need this "
                            f"recording's {what}, which neither the file nor a labels.csv listing it gives{skipped}; "
                            f"pass --ref-hz HZ{' (or --rpm RPM)' if what == 'shaft rate' else ''}; ref_hz= in the API")
        top = max(pair)
        try:  # one tiny window: is the rate within what the images can show (order_max x rate)?
            self.transform(np.full((1, 1, self.length), 1e-3, dtype=np.float32), ref_hz=top)
        except DiagError as exc:
            detail = str(exc).split(";")[0].removeprefix("transform: ")
            raise DiagError(f"{sig.path}: reference rate {top:g} Hz ({how_used}) is out of reach of the run's "
                            f"images: {detail}; check the rate (a shaft rate in Hz is rpm / 60)") from None
        notes = [note]
        if self.ref_range:
            lo, hi = self.ref_range
            if min(pair) < lo / REF_MARGIN or max(pair) > hi * REF_MARGIN:
                notes.append(f"warning: reference {_fmt_ref(pair)} Hz is far outside the {lo:g}-{hi:g} Hz the model "
                             f"was trained at (more than {REF_MARGIN - 1:.0%} beyond): the order axis keeps fault "
                             "lines in place, but resonances and load effects move with speed; check such verdicts")
        return pair, how_used, notes

    def _check_upsampling(self, sig: Signal) -> None:
        if sig.fs < self.fs and self.fs / sig.fs > 4:
            raise DiagError(f"{sig.path}: sampled at {sig.fs:g} Hz, far below the model's {self.fs:g} Hz "
                            "(more than 4x upsampling); record at a higher rate")

    def _whole(self, sig: Signal, idx: list[int]) -> Signal:
        """The whole signal, polyphase-resampled to the model's rate (with a note) and band-limited as the
        training recordings were (``windows.band``: an FFT over the whole recording, so not streamed)."""
        from diag.sources.base import Recording
        from diag.signal.windows import band_limit, resample

        self._check_upsampling(sig)
        x = np.asarray(sig.read(0, sig.n_samples), dtype=np.float64)[idx]
        _check_finite(x, sig.path, 0)
        rec = Recording(signal=x, fs=sig.fs, label="?", source=sig.path)
        notes = list(sig.notes)
        if abs(sig.fs - self.fs) > 1e-9 * self.fs:
            rec = resample(rec, self.fs)
            notes.append(f"resampled {sig.fs:g} Hz -> {self.fs:g} Hz (polyphase) to match the model")
        if self.band:
            rec = band_limit(rec, self.band)
            if sig.streamed:
                notes.append("band-limited as at training: read whole")
        out = Signal(sig.path, self.fs, rec.n_samples, tuple(sig.channels[i] for i in idx),
                     lambda a, b: rec.signal[:, a:b], streamed=False)
        out.notes, out.meta = notes, sig.meta
        return out

    def prepare_signal(self, sig: Signal, channels: Sequence[str] | None = None,
                       ref_hz: Any = None) -> tuple[Signal, list[int]]:
        """The recording as the training recordings were before windowing: the model's channels (their
        indices), at the model's rate, band-limited like them; for order images with its reference rate
        (``.ref``, ``.ref_from``, see :meth:`reference`)."""
        idx = self.select_channels(sig, channels)
        pair, how, ref_notes = self.reference(sig, ref_hz, idx)
        if self.band:  # an FFT brick wall over the whole recording, as at training
            sig = self._whole(sig, idx)
            idx = list(range(len(idx)))
        elif abs(sig.fs - self.fs) > 1e-9 * self.fs:
            self._check_upsampling(sig)
            sig = resample_signal(sig, self.fs, idx)
            sig.notes.append(f"resampled {sig.fs_original:g} Hz -> {self.fs:g} Hz (polyphase) to match the model")
            idx = list(range(len(idx)))
        else:
            sig = copy.copy(sig)  # the caller's Signal keeps its own notes
        sig.notes = list(sig.notes) + ref_notes
        sig.ref, sig.ref_from = pair, how
        return sig, idx

    def window_batches(self, sig: Signal, idx: Sequence[int],
                       starts: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray, Any]]:
        """The windows at ``starts`` of a recording made ready by :meth:`prepare_signal`, ``batch_size`` at
        a time, read in chunks (bounded memory): ``(starts, windows [B, C, L] float32, reference rate of
        each window or None)``. NaN/Inf samples are a DiagError naming the file and the sample."""
        from diag.signal.transforms import window_reference_hz

        offs = np.arange(self.length)
        for i in range(0, len(starts), self.batch_size):
            st = starts[i : i + self.batch_size]
            a, b = int(st[0]), int(st[-1]) + self.length
            chunk = np.asarray(sig.read(a, b))[idx]
            _check_finite(chunk, sig.path, a)
            x = chunk[:, (st - a)[:, None] + offs].transpose(1, 0, 2).astype(np.float32)
            ref = window_reference_hz(sig.ref, st, self.length, sig.n_samples) if sig.ref is not None else None
            yield st, x, ref

    def predict_signal(self, sig: Signal, channels: Sequence[str] | None = None,
                       progress: Callable[[int, int], None] | None = None, ref_hz: Any = None) -> FileResult:
        """Score one opened recording (see :func:`open_signal`); ``ref_hz``: see :meth:`reference`."""
        fs_original = sig.fs
        sig, idx = self.prepare_signal(sig, channels, ref_hz)
        n = sig.n_samples
        if n < self.length:
            raise DiagError(f"{sig.path}: {n} samples at {sig.fs:g} Hz ({n / sig.fs:.3g} s) is shorter than one "
                            f"{self.length}-sample window ({self.length / self.fs:.3g} s); record longer")
        from diag.signal.windows import window_starts

        starts = window_starts(0, n, self.length, self.hop)
        probs, scores = [], []
        done = 0
        for st, x, ref in self.window_batches(sig, idx, starts):
            p, s = self.score_windows(x, ref)
            probs.append(p)
            scores.append(s)
            done += len(st)
            if progress is not None:
                progress(done, len(starts))
        P, S = np.concatenate(probs), np.concatenate(scores)
        U = (S > self.unknown.threshold) if self.unknown is not None else np.zeros(len(S), bool)
        ws = WindowScores(starts, P, S, U)
        v = file_verdict(ws, self.classes, self.fs, self.length)
        return FileResult(path=sig.path, fs=self.fs, fs_original=fs_original, duration_s=n / self.fs, windows=ws,
                          notes=list(sig.notes), channels=list(channels or []),
                          ref_hz=[float(r) for r in sig.ref] if sig.ref is not None else None,
                          ref_from=sig.ref_from, **v)

    def predict(self, signal: Any, fs: float, channels: Sequence[str] | None = None,
                name: str = "array", ref_hz: Any = None) -> FileResult:
        """Score a waveform array ``[samples]`` or ``[channels, samples]`` sampled at ``fs`` Hz.

        Returns a :class:`FileResult`: ``.windows.probs`` (per-window probabilities ``[N, K]``, columns in
        ``classes`` order), ``.windows.unknown``, ``.verdict``, ``.confidence``, ``.top``, ``.spans``.
        ``ref_hz``: for a run on order images, the recording's shaft rate (envorder) or electrical
        fundamental (harmonics) in Hz, or ``[start, end]`` for a linear speed ramp.
        """
        return self.predict_signal(Signal.from_array(signal, fs, name, channels), channels, ref_hz=ref_hz)

    def open(self, path: str | Path, fs: float | None = None, key: str | None = None,
             variable: str | None = None) -> Signal:
        """:func:`open_signal` with this run's reader hints (CWRU records for a CWRU-trained run)."""
        return open_signal(path, fs, key, variable, cwru_channels=self.cwru_channels)

    def predict_file(self, path: str | Path, fs: float | None = None, channels: Sequence[str] | None = None,
                     progress: Callable[[int, int], None] | None = None, key: str | None = None,
                     variable: str | None = None, ref_hz: Any = None) -> FileResult:
        return self.predict_signal(self.open(path, fs, key, variable), channels, progress, ref_hz=ref_hz)

    def describe(self) -> dict[str, Any]:
        return {"run": str(self.run), "model": self.meta.get("model"), "classes": self.classes, "fs": self.fs,
                "window": {"length": self.length, "hop": self.hop, "normalize": self.normalize,
                           "channels": list(self.channels)},
                "transform": (self.meta["preprocessing"]["config"]["transform"]),
                "unknown": self.unknown.describe() if self.unknown is not None else None,
                "rule": VERDICT_RULE}


def _device(spec: Any) -> Any:
    import torch

    try:
        dev = torch.device(spec)
    except (RuntimeError, TypeError):
        raise DiagError(f"--device: '{spec}' is not one of cpu, cuda, cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise DiagError(f"--device: '{spec}' is not one of cpu, cuda, cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DiagError("--device cuda: no CUDA GPU is available here; use --device cpu")
    return dev


def _load(run: Path, device: Any, load_trained: Callable) -> tuple[Any, dict[str, Any]]:
    meta_path = run / "model.json"
    if meta_path.is_file():
        try:
            json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise DiagError(f"{meta_path}: corrupt; train the run again") from None
    try:
        return load_trained(run, device)
    except DiagError:
        raise
    except Exception as exc:  # noqa: BLE001 -- safetensors / timm errors on a damaged run
        raise DiagError(f"{run}/model.safetensors: weights do not load ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:120] if str(exc) else ''}); train the run again") from None


def _dataset_ref_range(meta: dict[str, Any]) -> list[float] | None:
    """A run trained before model.json recorded ``ref_hz_range``: its prepared dataset's, if still there."""
    from diag.provenance import trained_ref_range

    path = Path((meta.get("dataset") or {}).get("path") or "")
    try:
        return trained_ref_range(json.loads((path / "manifest.json").read_text())) if path.name else None
    except (OSError, ValueError):
        return None


def _ref_pair(value: Any, where: str) -> tuple[float, float]:
    """A given reference rate (a number, or ``[start, end]`` for a ramp) -> ``(start_hz, end_hz)``."""
    try:
        v = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        v = np.zeros(0)
    pair = (float(v), float(v)) if v.ndim == 0 else tuple(float(a) for a in v) if v.shape == (2,) else ()
    if len(pair) != 2 or not all(math.isfinite(a) and a > 0 for a in pair):
        raise DiagError(f"{where}: --ref-hz must be a positive number of Hz (the shaft rate, or the electrical "
                        f"fundamental; ref_hz= may also be [start, end] for a ramp), got {value!r}")
    return pair


def _fmt_ref(pair: tuple[float, float] | None) -> str:
    if pair is None:
        return ""
    return f"{pair[0]:g}" if pair[0] == pair[1] else f"{pair[0]:g}..{pair[1]:g}"


def _check_finite(x: np.ndarray, path: str, offset: int) -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        first = offset + int(np.argmax(bad.any(axis=0)))
        raise DiagError(f"{path}: NaN/Inf samples (first at sample {first}); clean or interpolate the recording")


def load_model(run: str | Path, device: str = "cpu", hop: int | None = None) -> Predictor:
    """A trained run as an object with ``predict(signal, fs)`` and ``classes`` (the CLI's code path).

    >>> m = load_model("runs/bearing")
    >>> r = m.predict(x, fs=12000)          # x: [samples] or [channels, samples]
    >>> r.verdict, r.confidence, r.windows.probs.shape
    """
    return Predictor(run, device=device, hop=hop)
