"""Recordings opened for scoring, read in parts: :class:`Signal` and :func:`open_signal`.

A :class:`Signal` is ``fs``, ``n_samples``, ``channels`` and ``read(a, b) -> [C, b - a]`` (float64),
read with non-decreasing ranges. The formats that can be read in parts stream, so memory stays bounded
whatever the file length: ``.npy`` (positioned reads of the ranges asked for), ``.wav`` (memory map) and large ``.csv`` (row chunks);
the other formats of :mod:`diag.sources.files` are read whole.

What a file does not say about itself -- its sampling rate, its channel names, its ``meta`` (a shaft
speed, a fundamental) -- comes from a ``labels.csv`` that lists it (in its folder or up to two folders
above: :func:`diag.sources.files.listed_entry`, the parser ``diag prepare`` reads a folder with), so a
folder written by ``diag simulate`` or laid out as for ``diag prepare`` scores with no options.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from diag.checks import check_fs, check_signal_array
from diag.errors import DiagError
from diag.sources.files import FileEntry, listed_entry
from diag.sources.formats import LAYOUT_ROWS, MANIFEST_NAME, check_npy_magic, csv_layout

__all__ = ["Signal", "open_signal", "expand_paths", "SUPPORTED", "CSV_STREAM_BYTES", "CSV_CHUNK_ROWS"]

#: the formats :func:`open_signal` reads
SUPPORTED = (".csv", ".txt", ".tsv", ".npy", ".npz", ".wav", ".mat")
#: CSV files larger than this (bytes) are read in row chunks instead of whole
CSV_STREAM_BYTES = 64 * 2**20
CSV_CHUNK_ROWS = 200_000


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
        #: the labels.csv row that lists the file (``labels.csv line N``), where its fs / channels / meta came from
        self.listed = ""
        #: the keys of ``meta`` that came from that row (not from the file itself)
        self.listed_keys: set[str] = set()
        #: why labels.csv files found beside the file could not be read (they were passed over)
        self.unreadable_listings: list[str] = []

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    def read(self, a: int, b: int) -> np.ndarray:
        return self._reader(a, b)

    @classmethod
    def from_array(cls, signal: np.ndarray, fs: float, name: str = "array",
                   channels: Sequence[str] | None = None) -> "Signal":
        x = check_signal_array(signal, name, finite=False)
        x = x[None, :] if x.ndim == 1 else x
        names = tuple(channels) if channels else tuple(f"ch{i}" for i in range(x.shape[0]))
        return cls(name, check_fs(fs, name), x.shape[1], names, lambda a, b: x[:, a:b], streamed=False)


class _NpyRanges:
    """``read(a, b)`` of a ``.npy`` file's samples ``[a, b)`` (channels first, float64) by positioned reads
    (``os.pread``) of just those bytes: nothing of the file stays mapped or cached in the process, so
    memory is bounded by the read, whatever the file's length (a memory map would count every page
    touched, e.g. by the source checks that scan the whole file, in the process's resident memory)."""

    def __init__(self, p: Path, shape: tuple[int, ...], fortran: bool, dtype: np.dtype, offset: int):
        self.p, self.dtype, self.offset = p, dtype, offset
        rows, cols = (shape[0], 1) if len(shape) == 1 else shape
        # memory order: C-order [rows, cols] keeps a row contiguous; Fortran order a column
        self.major, self.minor = (cols, rows) if fortran else (rows, cols)
        # channels on the shorter axis, as in diag.sources.files
        self.samples_major = (rows > cols) != fortran if len(shape) == 2 else True
        if len(shape) == 1:
            self.major, self.minor, self.samples_major = shape[0], 1, True
        self.n_channels = self.minor if self.samples_major else self.major
        self.n_samples = self.major if self.samples_major else self.minor
        self.fd = os.open(p, os.O_RDONLY)

    def _pread(self, start: int, count: int) -> np.ndarray:
        size = self.dtype.itemsize
        want = count * size
        buf = os.pread(self.fd, want, self.offset + start * size)
        if len(buf) != want:
            raise DiagError(f"{self.p}: the file ends before its last sample (truncated); re-export it with numpy.save")
        return np.frombuffer(buf, dtype=self.dtype)

    def read(self, a: int, b: int) -> np.ndarray:
        b = min(b, self.n_samples)
        if b <= a:
            return np.zeros((self.n_channels, 0))
        if self.samples_major:  # samples are the major axis: one contiguous block of rows
            x = self._pread(a * self.minor, (b - a) * self.minor).reshape(b - a, self.minor).T
        else:  # each channel is a contiguous run: one read per channel
            x = np.stack([self._pread(c * self.minor + a, b - a) for c in range(self.major)])
        return x.astype(np.float64)

    def __del__(self) -> None:
        try:
            os.close(self.fd)
        except (OSError, AttributeError):
            pass


def _open_npy(p: Path, fs: float | None) -> Signal:
    check_npy_magic(p)
    try:
        with open(p, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            shape, fortran, dtype = (np.lib.format.read_array_header_1_0(fh) if version == (1, 0)
                                     else np.lib.format.read_array_header_2_0(fh))
            offset = fh.tell()
    except Exception as exc:  # noqa: BLE001
        raise DiagError(f"{p}: not a readable .npy array ({str(exc)[:100]}); re-export it with numpy.save") from None
    dtype = np.dtype(dtype)
    if len(shape) not in (1, 2) or dtype.hasobject or not np.issubdtype(dtype, np.number) or dtype.kind == "c":
        raise DiagError(f"{p}: expected a real 1-D or 2-D array of samples, got {dtype} {tuple(shape)}")
    need = offset + int(np.prod(shape)) * dtype.itemsize
    if p.stat().st_size < need:
        raise DiagError(f"{p}: not a readable .npy array (the file ends before its last sample: truncated); "
                        "re-export it with numpy.save")
    ranges = _NpyRanges(p, tuple(int(v) for v in shape), bool(fortran), dtype, offset)
    rate = check_fs(fs, str(p), FS_HINT)
    return Signal(str(p), rate, ranges.n_samples, tuple(f"ch{i}" for i in range(ranges.n_channels)),
                  ranges.read, streamed=True)


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
            sample = []
            self.n = 0
            for line in fh:
                if line.strip():
                    self.n += 1
                    if len(sample) < LAYOUT_ROWS:
                        sample.append(line)
        self.layout = csv_layout(first, sample, str(p))
        self.delim = self.layout.delimiter
        head = self.layout.cells(first)
        numeric = not self.layout.has_header
        self.names = None if numeric else tuple(c.strip("\"'") for c in head)
        if not numeric and self.delim is None and len(head) > 1 and sample and len(self.layout.cells(sample[0])) == 1:
            self.names = (first.strip().strip("\"'"),)  # one channel whose name holds a space ("Accel X")
        n_columns = len(self.layout.cells(self.layout.numeric(sample[0]))) if sample else len(head)
        if numeric:
            self.skip -= 1
            self.n += 1
        self.n_channels = len(head) if numeric else n_columns
        self._fh = None
        self._row = 0
        self._buf = np.zeros((self.n_channels, 0))
        self._buf_start = 0

    def read(self, a: int, b: int) -> np.ndarray:
        if a < self._buf_start and self._fh is not None:  # before what is kept (scoring after the source
            self._fh.close()  # checks scanned the whole file): read again from the top
            self._fh, self._row, self._buf, self._buf_start = None, 0, self._buf[:, :0], 0
        if self._fh is None:
            self._fh = open(self.p, encoding="utf-8-sig", errors="replace")
            for _ in range(self.skip):
                self._fh.readline()
        keep = max(0, a - self._buf_start)
        self._buf, self._buf_start = self._buf[:, keep:], self._buf_start + keep
        while self._row < a:  # a read past what was kept (windows far apart): skip the rows between, unparsed
            line = self._fh.readline()
            if not line:
                break
            self._row += bool(line.strip())
        while self._buf_start + self._buf.shape[1] < b:
            lines = []
            while len(lines) < max(CSV_CHUNK_ROWS, b - self._buf_start - self._buf.shape[1]):
                line = self._fh.readline()
                if not line:
                    break
                if line.strip():
                    lines.append(self.layout.numeric(line))
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


#: how to give a rate the file does not carry
FS_HINT = "--fs HZ, or list the file with its fs in a labels.csv beside it (fs= in the API)"


def _open_format(p: Path, fs: float | None, key: str | None, variable: str | None,
                 cwru_channels: Sequence[str] | None) -> Signal:
    """The file opened by its format (streamed where it can be); ``fs``: the rate to assume when the
    format does not carry one."""
    ext = p.suffix.lower()
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
        return Signal(str(p), check_fs(fs, str(p), FS_HINT), chunks.n, names, chunks.read, streamed=True)
    if ext == ".mat" and cwru_channels is not None:
        return _open_with_reader(p, fs, cwru_channels=cwru_channels)
    if ext != ".wav":
        check_fs(fs, str(p), FS_HINT)
    return _open_with_reader(p, fs, key, variable)


def _apply_listing(sig: Signal, entry: FileEntry) -> None:
    """What a labels.csv row says about the file: its channel names and its meta (the file's own win)."""
    if entry.channels:
        if len(entry.channels) != sig.n_channels:
            raise DiagError(f"{entry.where}: {len(entry.channels)} channel names ({';'.join(entry.channels)}) for "
                            f"{sig.n_channels} channels in {Path(sig.path).name}; fix the channels column")
        sig.channels = tuple(entry.channels)
    sig.listed = entry.where
    sig.listed_keys = {k for k in entry.meta if k not in sig.meta}
    sig.meta = {**entry.meta, **sig.meta}


def open_signal(path: str | Path, fs: float | None = None, key: str | None = None, variable: str | None = None,
                cwru_channels: Sequence[str] | None = None) -> Signal:
    """Open one recording file for scoring (see the module docstring for which formats stream).

    ``fs``: the rate in Hz, for formats that do not carry one; default the ``fs`` of a labels.csv row
    listing the file (a rate given both ways must agree). ``key`` / ``variable``: the array of an
    ``.npz`` / ``.mat`` file holding several. ``cwru_channels``: read ``.mat`` files as CWRU records (by
    record number; rate from the record table), keeping these accelerometers (``DE``, ``FE``, ``BA``) --
    what a run trained on ``source.kind = "cwru"`` uses.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise DiagError(f"{p}: no such file; check the path")
    if not p.is_file():
        raise DiagError(f"{p}: not a file")
    ext = p.suffix.lower()
    if ext not in SUPPORTED:
        raise DiagError(f"{p}: unsupported file type '{p.suffix}'; convert it to one of {', '.join(SUPPORTED)}")
    entry, skipped = listed_entry(p)
    if fs is not None:
        fs = check_fs(fs, "--fs")
    if entry is not None and entry.fs is not None:
        if fs is not None and abs(fs - entry.fs) > 1e-6 * entry.fs:
            raise DiagError(f"{p}: --fs {fs:g} Hz but {entry.where} says {entry.fs:g} Hz; fix one of them")
        fs = entry.fs
    try:
        sig = _open_format(p, fs, key, variable, cwru_channels)
    except DiagError as exc:
        if skipped and "sampling rate unknown" in str(exc):
            raise DiagError(f"{exc} (skipped {skipped[0]})") from None
        raise
    if entry is not None:
        _apply_listing(sig, entry)
    sig.unreadable_listings = list(skipped)
    return sig


def expand_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Files named, and the supported files below folders named (sorted); DiagError if none."""
    from diag.sources.base import list_files

    out: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            found = [f for f in list_files(p) if f.suffix.lower() in SUPPORTED and f.name != MANIFEST_NAME]
            if not found:
                raise DiagError(f"{p}: no recordings ({', '.join(SUPPORTED)}) below the folder")
            out += found
        elif p.is_file():
            out.append(p)
        elif p.exists():  # a device, a pipe, a socket: reading one hangs or never ends
            raise DiagError(f"{p}: not a regular file (a device, a pipe or a socket); pass recording files")
        else:
            raise DiagError(f"{p}: no such file or folder; check the path")
    if not out:
        raise DiagError("no recordings given; pass one or more files or folders")
    return out


