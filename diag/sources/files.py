"""Bring your own data: a folder of CSV / NPY / NPZ / WAV / FLAC / MAT / TDMS / Parquet / Feather
files plus labels, and the writer.

Reading (:func:`read_files` = :func:`find_recordings`, :func:`read_recording` for each,
:func:`check_recording_set`)
-----------------------------------------------------------------------------------------------
Labels come from either

* a **labels manifest** (``label_from="manifest"``, the default): a CSV file, ``labels.csv`` in the
  folder unless ``manifest=`` names another, with a header row and the columns

  ============  ========  ====================================================================
  column        needed    meaning
  ============  ========  ====================================================================
  path          yes       data file, relative to the manifest's folder (or absolute)
  label         yes       class name (non-empty)
  fs            yes*      sampling rate in Hz (*may be empty if the ``fs`` option or a WAV
                          header gives it)
  group         no        what makes recordings dependent (bearing, run); default: the path
  condition     no        operating condition (``"0HP"``, ``"1500rpm"``...)
  fault_size    no        defect size / severity (empty for healthy)
  channels      no        channel names separated by ``;`` (``"DE;FE"``)
  meta          no        a JSON object of extra facts (written by :func:`write_recordings`)
  ============  ========  ====================================================================

* or the **sub-folder names** (``label_from="folder"``): every supported file below
  ``path/<label>/`` gets that label (the first folder level under ``path``); the sampling rate comes
  from the ``fs`` option or the file header (WAV, FLAC, TDMS). A label folder that is a symbolic
  link is followed, and a note says so.

A file listed twice in the manifest (also under another spelling, or through a link) is an error
naming both lines: the same windows would land in training and test, under two labels if the rows
differ.

File formats (the signal always ends up ``[channels, samples]``):

* ``.csv`` (also ``.txt``/``.tsv``): one column per channel, one row per sample; an optional first row
  of non-numeric cells names the channels. Delimiter ``,`` (or ``;``/tab/whitespace, detected from
  the first line). Every other cell must be a number.
* ``.npy``: 1-D (one channel) or 2-D; for 2-D the *shorter* axis is the channel axis (a recording
  has far more samples than channels), so ``[N, C]`` and ``[C, N]`` both work.
* ``.npz``: the array named by the ``key`` option, else the only array in the file.
* ``.wav``: read with :func:`scipy.io.wavfile.read`; integer PCM is scaled to [-1, 1). The header's
  rate must agree with the manifest's / option's ``fs`` when both are given.
* ``.flac``: read with :mod:`soundfile` as float in [-1, 1); the header's rate is checked like WAV's.
* ``.mat`` (v4-v7 via SciPy, v7.3 via h5py): the variable named by the ``variable`` option, else the
  only numeric array with more than one element.
* ``.tdms`` (NI LabVIEW / DAQmx, via :mod:`nptdms`): the channels of the group named by the
  ``tdms_group`` option (else the only group), all of them or those the ``channels`` option
  names; channel names come from the file; the rate is ``1 / wf_increment`` (checked like a WAV
  header's; every channel read must have the same rate and length).
* ``.parquet`` / ``.feather`` / ``.arrow`` (via :mod:`pyarrow`): one numeric column per channel,
  named by the column (a pandas index column is ignored); the ``channels`` option picks columns
  (e.g. to leave out a time column). The rate comes from the manifest or the ``fs`` option.

Writing (:func:`write_recordings`)
----------------------------------
One ``[channels, samples]`` float32 file per recording under ``<out_dir>/<label>/`` plus the
``labels.csv`` manifest above, so ``read_files(out_dir)`` reads the recordings back unchanged.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from diag.errors import DiagError
from diag.limits import check_fits, human
from diag.sources.base import Recording, list_files

__all__ = [
    "read_files",
    "find_recordings",
    "read_recording",
    "check_recording_set",
    "FileEntry",
    "write_recordings",
    "load_mat",
    "SUPPORTED_EXTENSIONS",
    "MANIFEST_NAME",
    "listed_entry",
    "csv_layout",
    "CsvLayout",
    "check_label",
]

MANIFEST_NAME = "labels.csv"
MANIFEST_COLUMNS = ("path", "label", "fs", "group", "condition", "fault_size", "channels", "meta")
SUPPORTED_EXTENSIONS = (
    ".csv", ".txt", ".tsv", ".npy", ".npz", ".wav", ".flac", ".mat", ".tdms", ".parquet", ".feather", ".arrow",
)
WRITE_FORMATS = ("npy", "csv")
CHANNEL_SEP = ";"


# ================================================================================================
# Writer


def _slug(text: str, max_len: int = 80) -> str:
    """A file-system-safe name: letters, digits and ``._@+-``; everything else becomes ``_``."""
    s = re.sub(r"[^A-Za-z0-9._@+-]+", "_", text).strip("._")
    return s[:max_len] or "rec"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def _record_stem(rec: Recording, index: int) -> str:
    src = rec.source or ""
    if not src:
        return f"rec{index:05d}"
    # a file path: keep its stem; anything else (``simulate:bearing#12``): the whole text
    if os.sep in src or "/" in src or Path(src).suffix.lower() in SUPPORTED_EXTENSIONS:
        src = Path(src).stem
    return _slug(src)


def _not_written_by_us(out: Path) -> str:
    """Empty if ``out`` holds only what :func:`write_recordings` writes (a ``labels.csv`` with its
    header and the files it lists); else the first few of the other files."""
    listed: set[str] = set()
    try:
        with (out / MANIFEST_NAME).open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            if tuple(next(reader, [])) == MANIFEST_COLUMNS:
                listed = {MANIFEST_NAME} | {row[0] for row in reader if row}
    except (OSError, UnicodeDecodeError, csv.Error):
        pass
    others = [
        rel for p in sorted(out.rglob("*"))
        if not (p.is_dir() and not p.is_symlink()) and (rel := p.relative_to(out).as_posix()) not in listed
    ]
    return ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")


def write_recordings(
    recordings: Sequence[Recording],
    out_dir: str | Path,
    fmt: str = "npy",
    overwrite: bool = False,
) -> Path:
    """Write recordings as one file each plus a ``labels.csv`` manifest that :func:`read_files` reads.

    Parameters
    ----------
    recordings : sequence of Recording
        Each is validated first (finite samples, positive fs, a label).
    out_dir : str or Path
        Folder to create. Layout: ``<out_dir>/<label>/<name>.<fmt>`` and ``<out_dir>/labels.csv``
        with columns ``path,label,fs,group,condition,fault_size,channels,meta`` (``channels``
        joined by ``;``, ``meta`` as JSON). ``<name>`` comes from the recording's ``source`` (made
        file-system safe, de-duplicated).
    fmt : {"npy", "csv"}
        ``npy``: a ``[channels, samples]`` float32 array. ``csv``: one column per channel with a
        header row of channel names, float32 values printed to round-trip exactly.
    overwrite : bool
        Replace an existing non-empty ``out_dir`` that holds recordings written here before (its
        ``labels.csv`` and the files it lists, nothing else). Without it, or for any other folder
        (one holding a file diag did not write), the folder is refused: nothing of yours is deleted.

    Returns
    -------
    Path
        ``out_dir``.

    The write is atomic: everything goes into a temporary sibling folder that is renamed to
    ``out_dir`` only when complete, so an interrupted run never leaves a half-written dataset.
    """
    if fmt not in WRITE_FORMATS:
        raise DiagError(f"write_recordings: fmt must be one of {', '.join(WRITE_FORMATS)}, got {fmt!r}")
    recordings = list(recordings)
    if not recordings:
        raise DiagError("write_recordings: no recordings to write")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DiagError(f"{out}: exists and is not a folder; choose another output folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise DiagError(
                f"{out}: folder exists and is not empty; choose another folder, or pass overwrite=True (--overwrite) "
                "to replace recordings written there by diag"
            )
        foreign = _not_written_by_us(out)
        if foreign:
            raise DiagError(
                f"{out}: holds {foreign}, which diag did not write; --overwrite only replaces a folder of "
                "recordings diag wrote, and diag never deletes your files; choose another folder"
            )
    for rec in recordings:
        rec.validate()
        bad = [c for c in rec.channels if CHANNEL_SEP in c or not c.strip()]
        if bad:
            raise DiagError(f"{rec.source or 'recording'}: channel names must be non-empty and not contain '{CHANNEL_SEP}', got {bad}")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)
        used: set[str] = set()
        rows = []
        for i, rec in enumerate(recordings):
            label_dir = _slug(rec.label)
            stem = _record_stem(rec, i)
            rel = f"{label_dir}/{stem}.{fmt}"
            n = 1
            while rel.lower() in used:  # also unique on case-insensitive file systems
                n += 1
                rel = f"{label_dir}/{stem}_{n}.{fmt}"
            used.add(rel.lower())
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            sig = np.ascontiguousarray(rec.signal, dtype=np.float32)
            if fmt == "npy":
                np.save(target, sig, allow_pickle=False)
            else:
                with target.open("w", newline="") as fh:
                    fh.write(",".join(rec.channels) + "\n")
                    np.savetxt(fh, sig.T, delimiter=",", fmt="%.9g")
            try:
                meta = json.dumps(rec.meta, sort_keys=True, default=_json_default) if rec.meta else ""
            except (TypeError, ValueError) as exc:
                raise DiagError(f"{rec.source or 'recording'}: meta is not JSON-serialisable ({exc})") from None
            rows.append(
                {
                    "path": rel,
                    "label": rec.label,
                    "fs": repr(float(rec.fs)),
                    "group": rec.group,
                    "condition": rec.condition,
                    "fault_size": rec.fault_size,
                    "channels": CHANNEL_SEP.join(rec.channels),
                    "meta": meta,
                }
            )
        with (tmp / MANIFEST_NAME).open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(MANIFEST_COLUMNS))
            writer.writeheader()
            writer.writerows(rows)

        if out.exists():
            old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(out, old)
            try:
                os.replace(tmp, out)
            except BaseException:
                os.replace(old, out)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


# ================================================================================================
# MAT files (shared with the dataset readers)


def load_mat(path: str | Path, variable_names: Iterable[str] | None = None, **loadmat_kwargs: Any) -> dict[str, Any]:
    """Read a MATLAB file into ``{name: value}``, skipping ``__header__``-style entries.

    v4/v5/v7 files go through :func:`scipy.io.loadmat` (``loadmat_kwargs`` are passed on); v7.3
    (HDF5) files through h5py, numeric arrays only (each transposed back to MATLAB's orientation).
    A file that is not a readable MATLAB file raises a one-line :class:`DiagError` naming it.
    """
    import scipy.io

    p = Path(path)
    names = list(variable_names) if variable_names is not None else None
    try:
        data = scipy.io.loadmat(str(p), variable_names=names, **loadmat_kwargs)
    except NotImplementedError:  # "Please use HDF reader for matlab v7.3 files"
        return _load_mat_h5(p, names)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse failure of a user file is the user's file
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise DiagError(
            f"{p}: not a readable MATLAB file ({reason}); the file is corrupt or truncated, re-download it"
        ) from None
    return {k: v for k, v in data.items() if not k.startswith("__")}


def _load_mat_h5(p: Path, names: list[str] | None) -> dict[str, Any]:
    import h5py

    out: dict[str, Any] = {}
    try:
        with h5py.File(p, "r") as f:
            for key in f.keys():
                if key.startswith("#") or (names is not None and key not in names):
                    continue
                obj = f[key]
                if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "iufb":
                    declared = float(np.prod(obj.shape, dtype=np.float64)) * obj.dtype.itemsize
                    check_fits(declared, f"{p}: variable '{key}' declares shape {tuple(obj.shape)} ({obj.dtype}), which",
                               f"the file is {human(p.stat().st_size)}; a file declaring more than it holds is damaged")
                    out[key] = np.asarray(obj[()]).T
                else:
                    out[key] = obj.__class__.__name__  # a struct/cell: not read, but listed
    except OSError as exc:
        raise DiagError(
            f"{p}: not a readable MATLAB v7.3 (HDF5) file ({str(exc).splitlines()[0][:120]}); "
            "the file is corrupt or truncated, re-download it"
        ) from None
    return out


def _numeric_arrays(data: dict[str, Any]) -> dict[str, np.ndarray]:
    return {
        k: v
        for k, v in data.items()
        if isinstance(v, np.ndarray) and v.dtype.kind in "iufb" and v.size > 1
    }


# ================================================================================================
# Reading one file


def _as_channels_first(arr: np.ndarray, where: str) -> np.ndarray:
    """1-D -> [1, N]; 2-D -> channels on the shorter axis; anything else is an error."""
    arr = np.asarray(arr)
    if arr.dtype.kind not in "iufb":
        raise DiagError(f"{where}: array is not numeric (dtype {arr.dtype}); store numbers only")
    arr = np.squeeze(arr) if arr.ndim > 2 else arr
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise DiagError(f"{where}: expected a 1-D or 2-D array, got shape {arr.shape}")
    if arr.shape[0] > arr.shape[1]:
        arr = arr.T
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    return np.ascontiguousarray(arr)


def is_number(cell: str) -> bool:
    """Whether a CSV cell parses as a number (header detection)."""
    try:
        float(cell)
        return True
    except ValueError:
        return False


#: a number written with a decimal comma: ``0,123``, ``-1,5e-3``
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+(?:[eE][+-]?\d+)?$")
#: data rows :func:`csv_layout` looks at
LAYOUT_ROWS = 200


@dataclass(frozen=True)
class CsvLayout:
    """How a CSV recording is written: its delimiter (``None``: whitespace), whether numbers use a
    decimal comma (``0,123``), and whether its first non-empty line is a header of channel names."""

    delimiter: str | None
    decimal_comma: bool
    has_header: bool

    def cells(self, line: str) -> list[str]:
        """The stripped cells of one line (numbers still as written)."""
        return [c.strip() for c in (line.split(self.delimiter) if self.delimiter else line.split())]

    def numeric(self, line: str) -> str:
        """A data line as numpy reads it: decimal commas turned into points."""
        return line.replace(",", ".") if self.decimal_comma else line


def csv_layout(first: str, rows: Sequence[str]) -> CsvLayout:
    """The layout of a CSV recording from its first non-empty line and (up to :data:`LAYOUT_ROWS`) the
    lines after it -- the one rule of both CSV readers (:func:`read_files`, the streamed reader of
    ``diag predict``).

    Delimiter: ``;`` or tab when the first line holds one, else ``,``, else whitespace. Decimal commas
    (spreadsheets in many locales): with ``;`` / tab, data cells like ``0,123``; with no delimiter in a
    header line (one channel), data rows like ``0,123``; with no header, rows that each are one
    ``D,DDD`` pair where some fraction starts with ``0`` (``0,0123``: no integer column is written so).
    A number is never split at its decimal comma into two channels.
    """
    data = [ln for ln in rows if ln.strip()][:LAYOUT_ROWS]
    delim = next((d for d in (";", "\t") if d in first), "," if "," in first else None)
    first_cells = [c.strip() for c in (first.split(delim) if delim else first.split())]
    if delim in (";", "\t"):
        sample = [c.strip() for ln in [first, *data] for c in ln.split(delim)]
        comma = any(_DECIMAL_COMMA.match(c) for c in sample)
        header = not all(is_number(c.replace(",", ".") if comma else c) for c in first_cells if c)
        return CsvLayout(delim, comma, header)
    if delim is None:
        header = not all(is_number(c) for c in first_cells if c)
        comma = header and bool(data) and all(_DECIMAL_COMMA.match(ln.strip()) for ln in data)
        return CsvLayout("," if header and data and not comma and "," in data[0] else None, comma, header)
    header = not all(is_number(c) for c in first_cells if c)
    if header and len(first_cells) > 1:  # a header naming several columns: "," separates channels
        return CsvLayout(",", False, True)
    body = data if header else [first, *data]
    pairs = [ln.strip() for ln in body]
    if pairs and all(_DECIMAL_COMMA.match(ln) for ln in pairs) and \
            any(ln.split(",", 1)[1][:1] == "0" and len(re.split(r"[eE]", ln.split(",", 1)[1])[0]) > 1 for ln in pairs):
        return CsvLayout(None, True, header)
    return CsvLayout(",", False, header)


#: data rows parsed per block by :func:`_read_csv` (its memory: one block of text and floats at a time)
CSV_BLOCK_ROWS = 1 << 16


def _csv_lines(fh: Any) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of the non-empty lines of an open text file."""
    for lineno, line in enumerate(fh, start=1):
        if line.strip():
            yield lineno, line


def _read_csv(p: Path) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """A CSV recording as float32 ``[channels, samples]`` and its header's names (None: no header row).

    The layout (delimiter, decimal comma, header) is :func:`csv_layout`'s, the rule the streamed reader
    of ``diag predict`` follows too. Read in two streamed passes -- count the data rows, then parse
    blocks of ``CSV_BLOCK_ROWS`` rows straight into the preallocated float32 array -- so memory is the
    samples kept (4 bytes each) plus one block, never the text (a whole-file parse held the text, a
    list of its lines and float64 values: about 12 MB per MB of CSV)."""
    with open(p, encoding="utf-8-sig", errors="replace") as fh:
        rows = _csv_lines(fh)
        first = next(rows, (0, None))[1]
        if first is None:
            raise DiagError(f"{p}: empty file; remove it or re-export it")
        sample = [line for _, line in zip(range(4 * LAYOUT_ROWS), rows)]
        n_rows = 1 + len(sample) + sum(1 for _ in rows)
    layout = csv_layout(first, sample)

    def cells(line: str) -> list[str]:
        return layout.cells(layout.numeric(line))

    names = tuple(c.strip("\"'") for c in layout.cells(first)) if layout.has_header else None
    if names is not None and layout.delimiter is None and len(names) > 1 and sample and len(cells(sample[0])) == 1:
        names = (first.strip().strip("\"'"),)  # one channel whose name holds a space ("Accel X")
    n = n_rows - (1 if layout.has_header else 0)
    if n == 0:  # before np.loadtxt, which would warn "no data"
        raise DiagError(f"{p}: no samples below the header; remove the file or re-export it")
    data = _parse_csv_blocks(p, layout, n, names, cells)
    return data, names


def _parse_csv_blocks(p: Path, layout: CsvLayout, n: int, names: tuple[str, ...] | None, cells: Any) -> np.ndarray:
    """The ``n`` data rows of ``p`` parsed block by block into a float32 ``[channels, n]`` array."""
    data: np.ndarray | None = None
    filled = 0
    with open(p, encoding="utf-8-sig", errors="replace") as fh:
        rows = _csv_lines(fh)
        if layout.has_header:
            next(rows)
        while filled < n:
            block = [r for _, r in zip(range(CSV_BLOCK_ROWS), rows)]
            if not block:
                break
            try:
                x = np.loadtxt([layout.numeric(line) for _, line in block], delimiter=layout.delimiter, ndmin=2,
                               dtype=np.float64)
            except ValueError:
                _csv_bad_cell(p, block, cells)
            if data is None:
                if names is not None and len(names) != x.shape[1]:
                    raise DiagError(f"{p}: header names {len(names)} columns but the rows have {x.shape[1]}")
                data = np.empty((x.shape[1], n), dtype=np.float32)
            elif x.shape[1] != data.shape[0]:
                raise DiagError(f"{p}: rows have different numbers of columns; every row needs one value per channel")
            data[:, filled : filled + len(x)] = x.T
            filled += len(x)
    if data is None or filled != n:
        raise DiagError(f"{p}: changed while it was read; read it again")
    return data


def _csv_bad_cell(p: Path, block: list[tuple[int, str]], cells: Any) -> None:
    """Raise the one-line error for a block of ``(line number, row)`` np.loadtxt refused: the first cell
    that is not a number, else rows of different lengths."""
    for lineno, line in block:
        for col, c in enumerate(cells(line), start=1):
            if not is_number(c):
                shown = repr(c) if c else "an empty cell"
                raise DiagError(
                    f"{p}: line {lineno}, column {col}: {shown} is not a number; "
                    "a CSV recording holds numbers only (one optional header row of channel names)"
                ) from None
    raise DiagError(f"{p}: rows have different numbers of columns; every row needs one value per channel") from None


def _pcm_to_float(data: np.ndarray) -> np.ndarray:
    if data.dtype.kind == "f":
        return data
    if data.dtype == np.uint8:
        return (data.astype(np.float32) - 128.0) / 128.0
    scale = float(2 ** (8 * data.dtype.itemsize - 1))
    return data.astype(np.float32 if data.dtype.itemsize <= 2 else np.float64) / scale


def _reason(exc: BaseException, p: Path, limit: int = 100) -> str:
    """A library's error as a short clause: first line, without the file's path, cut at a word."""
    text = (str(exc).splitlines() or [""])[0].replace(f"'{p}'", "the file").replace(str(p), "the file").strip()
    text = text or type(exc).__name__
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0] + "..."
    return text


@dataclass
class _Read:
    """What one file gave: the signal ``[C, N]``, channel names if the file has them, the rate its
    header states (and which header), notes for the user."""

    signal: np.ndarray
    names: tuple[str, ...] | None = None
    fs: float | None = None
    fs_from: str = ""


def _select(names: Sequence[str], keep: tuple[str, ...] | None, p: Path, what: str) -> list[str]:
    """The names to read: ``keep`` (each must exist) or all."""
    if keep is None:
        return list(names)
    missing = [c for c in keep if c not in names]
    if missing:
        raise DiagError(f"{p}: no {what}(s) {', '.join(missing)} (channels option); it has {', '.join(names)}")
    return list(keep)


def _read_tdms(p: Path, group: str | None, keep: tuple[str, ...] | None) -> _Read:
    """NI TDMS: the channels of one group (``tdms_group`` option, else the only group), rate from ``wf_increment``."""
    from nptdms import TdmsFile

    try:
        tdms = TdmsFile.read(p)
    except Exception as exc:  # noqa: BLE001 - any parse failure of a user file is the user's file
        raise DiagError(f"{p}: not a readable TDMS file ({_reason(exc, p)}); re-export it from LabVIEW/DAQmx") from None
    groups = {g.name: g for g in tdms.groups()}
    if group is not None:
        if group not in groups:
            raise DiagError(f"{p}: no group '{group}' (tdms_group option); the file holds: {', '.join(groups) or 'no groups'}")
        g = groups[group]
    elif len(groups) == 1:
        (g,) = groups.values()
    elif not groups:
        with p.open("rb") as fh:
            tdms_lead_in = fh.read(4) == b"TDSm"
        raise DiagError(
            f"{p}: the TDMS file holds no groups (no data); re-export it" if tdms_lead_in
            else f"{p}: not a readable TDMS file (no TDSm lead-in); re-export it from LabVIEW/DAQmx"
        )
    else:
        raise DiagError(f"{p}: holds {len(groups)} groups ({', '.join(groups)}); choose one with the tdms_group option")
    chans = {c.name: c for c in g.channels()}
    if not chans:
        raise DiagError(f"{p}: group '{g.name}' has no channels")
    names = _select(list(chans), keep, p, f"channel of group '{g.name}'")
    data, rates = [], set()
    for n in names:
        arr = np.asarray(chans[n][:])
        if arr.dtype.kind not in "iufb":
            raise DiagError(
                f"{p}: channel '{n}' of group '{g.name}' is not numeric ({arr.dtype}); "
                "choose the signal channels with the channels option"
            )
        data.append(arr.astype(np.float64) if arr.dtype.kind != "f" else arr)
        inc = chans[n].properties.get("wf_increment")
        if inc is not None:
            inc = float(inc)
            if not np.isfinite(inc) or inc <= 0:
                raise DiagError(f"{p}: channel '{n}' has wf_increment {inc!r}; it must be a positive time step in s")
            rates.add(1.0 / inc)
    lengths = {len(a) for a in data}
    if len(lengths) != 1:
        raise DiagError(
            f"{p}: channels {', '.join(names)} of group '{g.name}' have different lengths {sorted(lengths)}; "
            "choose channels of one length with the channels option"
        )
    if len(rates) > 1:
        raise DiagError(
            f"{p}: channels of group '{g.name}' have different rates ({', '.join(f'{r:g}' for r in sorted(rates))} Hz "
            "from wf_increment); choose channels of one rate with the channels option"
        )
    fs = rates.pop() if rates else None
    return _Read(np.ascontiguousarray(np.stack(data)), tuple(names), fs, "TDMS wf_increment")


def _read_arrow(p: Path, keep: tuple[str, ...] | None) -> _Read:
    """Parquet / Feather (Arrow IPC): one numeric column per channel, named by the column."""
    import pyarrow as pa

    ext = p.suffix.lower()
    try:
        if ext == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(p)
        else:
            import pyarrow.feather as feather

            table = feather.read_table(p)
    except Exception as exc:  # noqa: BLE001
        raise DiagError(f"{p}: not a readable {ext[1:]} file ({_reason(exc, p)}); re-export it") from None
    # pandas writes a non-default index as '__index_level_0__': not a channel
    columns = [c for c in table.column_names if not c.startswith("__index_level_")]
    if not columns:
        raise DiagError(f"{p}: no columns; a recording needs one column per channel")
    names = _select(columns, keep, p, "column")
    if table.num_rows == 0:
        raise DiagError(f"{p}: no rows (no samples); remove the file or re-export it")
    data = []
    for n in names:
        col = table.column(n)
        if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type)):
            raise DiagError(
                f"{p}: column '{n}' is {col.type}, not numbers; choose the signal columns with the channels option"
            )
        data.append(np.asarray(col.to_numpy(), dtype=np.float64 if not pa.types.is_floating(col.type) else None))
    return _Read(np.ascontiguousarray(np.stack(data)), tuple(names))


def _read_flac(p: Path) -> _Read:
    import soundfile

    try:
        data, rate = soundfile.read(str(p), dtype="float64", always_2d=True)
    except Exception as exc:  # noqa: BLE001
        raise DiagError(f"{p}: not a readable FLAC file ({_reason(exc, p)}); re-export it") from None
    return _Read(np.ascontiguousarray(data.T), None, float(rate), "FLAC header")  # FLAC is [N, C]


def _read_one(
    p: Path,
    key: str | None = None,
    variable: str | None = None,
    tdms_group: str | None = None,
    keep: tuple[str, ...] | None = None,
) -> _Read:
    """Read one data file of any supported type (by its extension)."""
    ext = p.suffix.lower()
    if ext in (".csv", ".txt", ".tsv"):
        sig, names = _read_csv(p)
        return _Read(sig, names)
    if ext == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001
            raise DiagError(f"{p}: not a readable .npy array ({str(exc)[:100]}); re-export it with numpy.save") from None
        return _Read(_as_channels_first(arr, str(p)))
    if ext == ".npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                keys = list(z.files)
                if key is not None:
                    if key not in keys:
                        raise DiagError(f"{p}: no array '{key}' (key option); the file holds: {', '.join(keys)}")
                    arr = z[key]
                elif len(keys) == 1:
                    arr = z[keys[0]]
                else:
                    raise DiagError(f"{p}: holds {len(keys)} arrays ({', '.join(keys)}); choose one with the key option")
        except DiagError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise DiagError(f"{p}: not a readable .npz archive ({str(exc)[:100]}); re-export it with numpy.savez") from None
        return _Read(_as_channels_first(arr, f"{p}[{key or keys[0]}]"))
    if ext == ".wav":
        import scipy.io.wavfile

        try:
            rate, data = scipy.io.wavfile.read(p)
        except Exception as exc:  # noqa: BLE001
            raise DiagError(f"{p}: not a readable WAV file ({str(exc)[:100]}); re-export it as PCM or float WAV") from None
        data = _pcm_to_float(np.asarray(data))
        sig = data[None, :] if data.ndim == 1 else data.T  # WAV is [N, C]
        return _Read(np.ascontiguousarray(sig), None, float(rate), "WAV header")
    if ext == ".flac":
        return _read_flac(p)
    if ext == ".tdms":
        return _read_tdms(p, tdms_group, keep)
    if ext in (".parquet", ".feather", ".arrow"):
        return _read_arrow(p, keep)
    if ext == ".mat":
        data = load_mat(p)
        arrays = _numeric_arrays(data)
        if variable is not None:
            if variable not in data:
                raise DiagError(f"{p}: no variable '{variable}' (variable option); the file holds: {', '.join(sorted(data)) or 'nothing'}")
            if variable not in arrays:
                raise DiagError(f"{p}: variable '{variable}' is not a numeric array with more than one element")
            return _Read(_as_channels_first(arrays[variable], f"{p}:{variable}"))
        if len(arrays) == 1:
            (name, arr), = arrays.items()
            return _Read(_as_channels_first(arr, f"{p}:{name}"))
        if not arrays:
            raise DiagError(f"{p}: no numeric array in the file (variables: {', '.join(sorted(data)) or 'none'})")
        raise DiagError(
            f"{p}: {len(arrays)} numeric variables ({', '.join(sorted(arrays))}); choose one with the variable option"
        )
    raise DiagError(
        f"{p}: unsupported file type '{p.suffix}'; convert it to one of {', '.join(SUPPORTED_EXTENSIONS)}"
    )


# ================================================================================================
# Reader


def _parse_fs(text: str, where: str) -> float | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        fs = float(text)
    except ValueError:
        raise DiagError(f"{where}: fs {text!r} is not a number of Hz") from None
    if not np.isfinite(fs) or fs <= 0:
        raise DiagError(f"{where}: fs must be a positive number of Hz, got {text!r}")
    return fs


def _read_manifest(manifest: Path) -> list[dict[str, str]]:
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            twice = sorted({h for h in header if h and header.count(h) > 1})
            if twice:
                raise DiagError(f"{manifest}: column(s) {', '.join(twice)} appear twice in the header; one value "
                                "would silently win; keep one column of each name")
            missing = [c for c in ("path", "label") if c not in header]
            if missing:
                raise DiagError(
                    f"{manifest}: labels manifest lacks column(s) {', '.join(missing)}; "
                    "the header must be at least path,label,fs"
                )
            unknown = [h for h in header if h and h not in MANIFEST_COLUMNS]
            if unknown:
                raise DiagError(
                    f"{manifest}: unknown column(s) {', '.join(unknown)}; known: {', '.join(MANIFEST_COLUMNS)}"
                )
            rows = []
            for row in reader:
                # DictReader files cells beyond the header under the key None; blank ones are harmless
                if any((c or "").strip() for c in row.get(None) or []):
                    n_cells = len(reader.fieldnames or []) + len(row[None])
                    raise DiagError(
                        f"{manifest}: line {reader.line_num} has {n_cells} cells but the header has "
                        f"{len(reader.fieldnames or [])}; remove the extra cells or add a column name to the header"
                    )
                clean = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None}
                if any(clean.values()):
                    rows.append(clean)
    except UnicodeDecodeError:
        raise DiagError(f"{manifest}: labels manifest is not UTF-8 text; save it as UTF-8 CSV") from None
    except csv.Error as exc:  # e.g. a cell over the csv module's field limit (131072 characters)
        line = f" near line {reader.line_num + 1}"
        raise DiagError(f"{manifest}{line}: not a readable labels CSV ({exc}); keep each cell short "
                        "(meta is a small JSON object)") from None
    if not rows:
        raise DiagError(f"{manifest}: labels manifest has no rows; add one row per data file (path,label,fs)")
    return rows


def _as_names(value: str | Sequence[str] | None, option: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [v for v in re.split(r"[;,]", value) if v.strip()]
    names = tuple(str(v).strip() for v in value)
    if not names:
        raise DiagError(f"{option}: give at least one channel name")
    return names


@dataclass
class FileEntry:
    """One recording to read, as :func:`find_recordings` found it (before the file is opened).

    ``where`` names it in messages (``labels.csv line 7`` or the file path); ``fs`` is the rate
    the manifest gives (None: from the option or the file header); ``notes`` are remarks the
    user must see (they end up in :attr:`Recording.notes`).
    """

    file: Path
    where: str
    label: str
    fs: float | None = None
    group: str = ""
    condition: str = ""
    fault_size: str = ""
    channels: tuple[str, ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _manifest_path(root: Path, manifest: str | Path | None) -> Path:
    if manifest is not None:
        mpath = Path(manifest).expanduser()
        if not mpath.is_file():
            raise DiagError(f"{mpath}: labels manifest not found; check the manifest option")
        return mpath
    if root.is_file() and root.suffix.lower() == ".csv":
        return root
    if root.is_dir():
        mpath = root / MANIFEST_NAME
        if not mpath.is_file():
            raise DiagError(
                f"{root}: no {MANIFEST_NAME} in the folder; write one with columns path,label,fs "
                "(or use label_from='folder' with one sub-folder per label)"
            )
        return mpath
    raise DiagError(f"{root}: a single data file needs labels; give manifest=labels.csv or label_from='folder'")


#: the verdict ``diag predict`` gives a window no class explains (diag.serving.verdict.UNKNOWN)
RESERVED_LABELS = ("unknown",)


def check_label(label: str, where: str) -> None:
    """Refuse a class name that would be misread later: one holding a line break or another control
    character (it breaks every table and CSV it is printed in), or one of :data:`RESERVED_LABELS`."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in label):
        raise DiagError(f"{where}: label {label!r} holds a line break or another control character; "
                        "write class names on one line")
    if label.strip().lower() in RESERVED_LABELS:
        raise DiagError(f"{where}: label '{label}' is the verdict diag predict gives to windows no class explains; "
                        "rename the class (e.g. 'unknown_fault')")


def _is_within_real(path: Path, folder: Path) -> bool:
    """Whether ``path`` still lies under ``folder`` once every symbolic link is resolved."""
    real, top = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([real, top]) == top


def _entries_from_manifest(mpath: Path) -> list[FileEntry]:
    base = mpath.parent
    entries: list[FileEntry] = []
    seen: dict[str, tuple[int, str, str]] = {}  # resolved file -> (line, path as written, label)
    for n, row in enumerate(_read_manifest(mpath), start=2):
        where = f"{mpath} line {n}"
        rel = row.get("path", "")
        if not rel:
            raise DiagError(f"{where}: empty path; every row names a data file")
        fpath = Path(rel) if Path(rel).is_absolute() else base / rel
        inside = os.path.normpath(os.path.abspath(fpath))
        if os.path.commonpath([inside, os.path.normpath(os.path.abspath(base))]) != os.path.normpath(os.path.abspath(base)):
            raise DiagError(f"{where}: '{rel}' lies outside the manifest's folder {base}; a labels manifest names only "
                            "files under its own folder (move or link the file there)")
        notes = [f"'{rel}' is a symbolic link to {os.path.realpath(fpath)}; followed"] \
            if not _is_within_real(fpath, base) else []
        if fpath.exists() and not fpath.is_file():
            what = "a folder" if fpath.is_dir() else "not a regular file (a device, a pipe or a socket)"
            raise DiagError(f"{where}: '{rel}' is {what}; list data files only")
        if not fpath.is_file():
            raise DiagError(f"{where}: file '{rel}' not found next to the manifest; fix the path or remove the row")
        label = row.get("label", "")
        if not label:
            raise DiagError(f"{where}: empty label for '{rel}'; give every file a class name")
        check_label(label, where)
        real = os.path.realpath(fpath)
        if real in seen:
            line, rel0, label0 = seen[real]
            labels = f"labels '{label0}' and '{label}'" if label0 != label else f"label '{label}' both times"
            raise DiagError(
                f"{where}: '{rel}' is the same file as '{rel0}' on line {line} ({labels}); a file listed twice puts "
                "the same windows in training and test" + (" under two labels" if label0 != label else "")
                + "; list each file once"
            )
        seen[real] = (n, rel, label)
        meta: dict[str, Any] = {}
        if row.get("meta"):
            try:
                meta = json.loads(row["meta"])
            except json.JSONDecodeError:
                raise DiagError(f"{where}: meta is not valid JSON; leave it empty or write a JSON object") from None
            except RecursionError:
                raise DiagError(f"{where}: meta is nested too deeply to read; write a flat JSON object") from None
            if not isinstance(meta, dict):
                raise DiagError(f"{where}: meta must be a JSON object, got {row['meta'][:40]!r}")
        entries.append(
            FileEntry(
                file=fpath,
                where=where,
                label=label,
                fs=_parse_fs(row.get("fs", ""), where),
                group=row.get("group", "") or rel,
                condition=row.get("condition", ""),
                fault_size=row.get("fault_size", ""),
                channels=_as_names(row.get("channels") or None, f"{where}: channels"),
                meta=meta,
                notes=notes,
            )
        )
    return entries


def _entries_from_folders(root: Path) -> list[FileEntry]:
    links: list[tuple[Path, Path]] = []
    if root.is_file():
        files, base = [root], root.parent.parent
    else:
        base = root
        files = list_files(root, links=links)
        skipped = sorted({p.suffix.lower() or p.name for p in files if p.suffix.lower() not in SUPPORTED_EXTENSIONS})
        files = [p for p in files if p.suffix.lower() in SUPPORTED_EXTENSIONS and p.name != MANIFEST_NAME]
        if not files:
            raise DiagError(
                f"{root}: no data files ({', '.join(SUPPORTED_EXTENSIONS)}) below the folder"
                + (f" (skipped: {', '.join(skipped[:8])})" if skipped else "")
            )
    entries = []
    for fpath in files:
        rel_parts = fpath.relative_to(base).parts
        if len(rel_parts) < 2:
            raise DiagError(
                f"{fpath}: lies directly in {base}, so it has no label folder; "
                "put each file in a sub-folder named by its label (e.g. data/IR/x.csv)"
            )
        notes = [
            f"{'label ' if link.parent == base else ''}folder '{link.relative_to(base)}' is a symbolic link to {target}; followed"
            for link, target in links
            if link in fpath.parents
        ]
        rel = "/".join(rel_parts)
        entries.append(FileEntry(file=fpath, where=str(fpath), label=rel_parts[0], group=rel, notes=notes))
    return entries


def find_recordings(
    path: str | Path | None,
    manifest: str | Path | None = None,
    label_from: str = "manifest",
    classes: Sequence[str] | None = None,
) -> list[FileEntry]:
    """Step 1 of :func:`read_files`: which files to read, with their labels (no file opened yet).

    From the labels manifest (a file listed twice, also via another spelling or a link, is an
    error naming both lines) or from the label folders (symbolic links followed, and said so in
    each entry's notes). ``classes``: the allowed labels.
    """
    if path is None or str(path) == "":
        raise DiagError("files reader: no path given; pass the data folder (--data PATH)")
    if label_from not in ("manifest", "folder"):
        raise DiagError(f"label_from: choose 'manifest' or 'folder', got {label_from!r}")
    root = Path(path).expanduser()
    if not root.exists():
        raise DiagError(f"{root}: no such file or folder; check the path")
    if label_from == "manifest":
        entries = _entries_from_manifest(_manifest_path(root, manifest))
    else:
        entries = _entries_from_folders(root)
    if classes is not None:
        allowed = set(classes)
        for e in entries:
            if e.label not in allowed:
                raise DiagError(
                    f"{e.where}: unknown label '{e.label}' for {e.file.name}; expected one of {', '.join(sorted(allowed))}"
                )
    return entries


#: a labels.csv is looked for in a file's folder and this many folders above it (``diag simulate`` writes
#: ``<out>/labels.csv`` over ``<out>/<label>/<file>``)
MANIFEST_LEVELS = 3
_LISTINGS: dict[tuple[str, int, int], tuple[dict[str, FileEntry], str]] = {}


def _listing(manifest: Path) -> tuple[dict[str, FileEntry], str]:
    """``{resolved file: entry}`` of one labels manifest, or ``({}, why it cannot be read)``; cached while
    the manifest file is unchanged."""
    st = manifest.stat()
    key = (str(manifest.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _LISTINGS:
        try:
            entries = _entries_from_manifest(manifest)
            _LISTINGS[key] = ({os.path.realpath(e.file): e for e in entries}, "")
        except DiagError as exc:  # not a labels manifest, or a broken one: it says nothing about the file
            _LISTINGS[key] = ({}, str(exc))
    return _LISTINGS[key]


def listed_entry(path: str | Path) -> tuple[FileEntry | None, list[str]]:
    """The entry of a labels manifest (``labels.csv`` in the file's folder or up to ``MANIFEST_LEVELS - 1``
    above it) that lists the file -- its label, ``fs``, ``channels`` and ``meta`` read by the same parser as
    :func:`find_recordings` -- or None; and why the manifests found on the way that cannot be read (as
    ``diag prepare`` would not) were passed over."""
    p = Path(path)
    if not p.is_file():
        return None, []
    real = os.path.realpath(p)
    unreadable: list[str] = []
    for folder in list(Path(os.path.abspath(p)).parents)[:MANIFEST_LEVELS]:
        m = folder / MANIFEST_NAME
        if not m.is_file():
            continue
        listed, error = _listing(m)
        if real in listed:
            return listed[real], unreadable
        if error:
            unreadable.append(error)
    return None, unreadable


def read_recording(
    entry: FileEntry,
    fs: float | None = None,
    key: str | None = None,
    variable: str | None = None,
    tdms_group: str | None = None,
    channels: str | Sequence[str] | None = None,
) -> Recording:
    """Step 2 of :func:`read_files`: read one found file into a validated :class:`Recording`.

    The rate is the manifest's, else ``fs``, else the file header's (WAV, FLAC, TDMS
    ``wf_increment``); a header that disagrees with a given rate is an error. ``channels``
    keeps only those channels (by name), in that order.
    """
    f = entry.file
    fs_opt = None if fs in (None, "", 0) else _parse_fs(str(fs), "fs option")
    keep = _as_names(channels, "channels option")
    got = _read_one(f, key, variable, tdms_group, keep)
    sig, names = got.signal, got.names
    if sig.size == 0 or sig.shape[-1] < 2:
        n = 0 if sig.size == 0 else sig.shape[-1]
        raise DiagError(f"{f}: holds {n} sample(s) per channel, too few to be a recording; remove it from the data "
                        "or re-export it")
    if got.fs is not None:
        for given, what in ((entry.fs, "the manifest"), (fs_opt, "the fs option")):
            if given is not None and abs(given - got.fs) > 1e-6 * got.fs:
                raise DiagError(
                    f"{f}: {got.fs_from} says {got.fs:g} Hz but {what} says {given:g} Hz; fix one of them"
                )
    rate = entry.fs if entry.fs is not None else fs_opt if fs_opt is not None else got.fs
    if rate is None:
        raise DiagError(f"{f}: sampling rate unknown; give it in the manifest's fs column or with the fs option")
    ch = entry.channels or names
    if ch is not None and len(ch) != sig.shape[0]:
        raise DiagError(f"{entry.where}: {len(ch)} channel names ({';'.join(ch)}) for {sig.shape[0]} channels in {f.name}")
    rec = Recording(
        signal=sig,
        fs=rate,
        label=entry.label,
        group=entry.group,
        condition=entry.condition,
        source=str(f),
        fault_size=entry.fault_size,
        channels=ch or (),
        meta=entry.meta,
        notes=list(entry.notes),
    )
    if keep is not None and got.names != keep:  # TDMS / Parquet readers select by name themselves
        missing = [c for c in keep if c not in rec.channels]
        if missing:
            raise DiagError(f"{f}: no channel(s) {', '.join(missing)}; it has {', '.join(rec.channels)}")
        idx = [rec.channels.index(c) for c in keep]
        rec.signal = rec.signal[idx]
        rec.channels = keep
    return rec.validate()


def check_recording_set(recordings: Sequence[Recording]) -> list[Recording]:
    """Step 3 of :func:`read_files`: the recordings must agree with each other (channel count).

    (The per-recording checks every reader gets, dead sensors, clipping, duplicate content, run
    in :func:`diag.signal.recordings.load_recordings`.)
    """
    recordings = list(recordings)
    if not recordings:
        raise DiagError("files reader: no recordings found")
    first = recordings[0]
    for rec in recordings[1:]:
        if rec.n_channels != first.n_channels:
            raise DiagError(
                f"{rec.source}: {rec.n_channels} channel(s) but {first.source} has {first.n_channels}; "
                "all files must have the same channels (select some with the channels option)"
            )
    return recordings


def read_files(
    path: str | Path | None,
    manifest: str | Path | None = None,
    fs: float | None = None,
    label_from: str = "manifest",
    key: str | None = None,
    variable: str | None = None,
    tdms_group: str | None = None,
    channels: str | Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
) -> list[Recording]:
    """Read a folder of your own recordings (CSV / NPY / NPZ / WAV / FLAC / MAT / TDMS / Parquet /
    Feather) with their labels: :func:`find_recordings`, :func:`read_recording` each,
    :func:`check_recording_set`.

    Parameters
    ----------
    path : str or Path
        The data folder; or a labels manifest ``.csv`` file; or (``label_from="folder"``) a single
        data file, labelled by its parent folder's name.
    manifest : str or Path, optional
        Labels manifest; default ``<path>/labels.csv``. Paths in it are relative to its own folder.
    fs : float, optional
        Sampling rate in Hz for files whose manifest row has no ``fs`` (and for ``label_from="folder"``).
        A file header's rate (WAV, FLAC, TDMS ``wf_increment``) that disagrees with it (or with the
        row's fs) is an error.
    label_from : {"manifest", "folder"}
        Where labels come from (see the module docstring).
    key : str, optional
        Array to read from ``.npz`` files holding several.
    variable : str, optional
        Variable to read from ``.mat`` files holding several numeric arrays.
    tdms_group : str, optional
        TDMS group to read from ``.tdms`` files holding several (not the ``group`` of a recording).
    channels : list of str, optional
        Keep only these channels (by name), in this order (TDMS channels, Parquet columns...).
    classes : list of str, optional
        The allowed labels; a file with another label is an error (catches typos in the manifest).

    Returns
    -------
    list of Recording
        One per file, validated, ``source`` = the file path, ``group`` = the manifest's group or the
        file's path relative to the data folder (each file its own group). Channel names come from
        the manifest, else the file (CSV header, TDMS channel, Parquet column), else ``ch0, ch1...``.
        All recordings must have the same number of channels.
    """
    entries = find_recordings(path, manifest=manifest, label_from=label_from, classes=classes)
    recordings = [
        read_recording(e, fs=fs, key=key, variable=variable, tdms_group=tdms_group, channels=channels) for e in entries
    ]
    return check_recording_set(recordings)
