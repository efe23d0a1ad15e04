"""The file formats a recording is read from (the signal always ends up ``[channels, samples]``), and
the constants of the ``labels.csv`` manifest; :mod:`diag.sources.files` finds the files and labels.

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
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from diag.errors import DiagError
from diag.limits import check_fits, human

MANIFEST_NAME = "labels.csv"
MANIFEST_COLUMNS = ("path", "label", "fs", "group", "condition", "fault_size", "channels", "meta")
SUPPORTED_EXTENSIONS = (
    ".csv", ".txt", ".tsv", ".npy", ".npz", ".wav", ".flac", ".mat", ".tdms", ".parquet", ".feather", ".arrow",
)
WRITE_FORMATS = ("npy", "csv")
CHANNEL_SEP = ";"


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


def csv_layout(first: str, rows: Sequence[str], where: str = "this CSV") -> CsvLayout:
    """The layout of a CSV recording from its first non-empty line and (up to :data:`LAYOUT_ROWS`) the
    lines after it -- the one rule of both CSV readers (:func:`read_files`, the streamed reader of
    ``diag predict``).

    Delimiter: ``;`` or tab when the first line holds one, else ``,``, else whitespace. Decimal commas
    (spreadsheets in many locales): with ``;`` / tab, data cells like ``0,123``; with no delimiter in a
    header line (one channel), data rows like ``0,123``; with no header, rows that each are one
    ``D,DDD`` pair where some fraction starts with ``0`` or holds an exponent (``0,0123``, ``1,5e-3``: no
    integer column is written so). Rows that are all ``D,DDD`` pairs with neither sign are ambiguous (one
    number or two integer channels) and refused (:class:`DiagError` naming ``where``: add a header row).
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
    if not pairs or not all(_DECIMAL_COMMA.match(ln) for ln in pairs):
        return CsvLayout(",", False, header)
    fractions = [ln.split(",", 1)[1] for ln in pairs]
    if any("e" in f.lower() or (f[:1] == "0" and len(f) > 1) for f in fractions):
        return CsvLayout(None, True, header)  # 0,0123 or 1,5e-3: no integer column is written so
    raise DiagError(
        f"{where}: every row is like '{pairs[0]}', which reads as one number with a decimal comma or as two integer "
        "columns; add a header row: one name (e.g. accel) for one channel, or a name per column (e.g. a,b)"
    )


#: the longest bad CSV cell an error quotes (a longer one is described by its length)
QUOTE_CELL_CHARS = 24
#: data rows parsed per block by :func:`read_csv` (its memory: one block of text and floats at a time)
CSV_BLOCK_ROWS = 1 << 16


def _csv_lines(fh: Any) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of the non-empty lines of an open text file."""
    for lineno, line in enumerate(fh, start=1):
        if line.strip():
            yield lineno, line


def read_csv(p: Path) -> tuple[np.ndarray, tuple[str, ...] | None]:
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
        sample = [line for _, (_, line) in zip(range(4 * LAYOUT_ROWS), rows)]
        n_rows = 1 + len(sample) + sum(1 for _ in rows)
    layout = csv_layout(first, sample, str(p))

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
                _csv_bad_cell(p, block, cells, first_block=filled == 0)
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


def _csv_bad_cell(p: Path, block: list[tuple[int, str]], cells: Any, first_block: bool = False) -> None:
    """Raise the one-line error for a block of ``(line number, row)`` np.loadtxt refused: the first cell
    that is not a number, else rows of different lengths.

    A file's content is quoted only once it has shown itself a recording: a first data row that is not
    numbers (a text file, or a link to one such as ``/etc/passwd``) is refused without quoting it, and a
    bad cell further down is quoted only when short (:data:`QUOTE_CELL_CHARS`)."""
    for i, (lineno, line) in enumerate(block):
        for col, c in enumerate(cells(line), start=1):
            if not is_number(c):
                if first_block and i == 0:
                    raise DiagError(
                        f"{p}: line {lineno}, the first data row, is not numbers, so this is not a CSV recording "
                        "(numbers only, one optional header row of channel names); remove the file or re-export it"
                    ) from None
                shown = "an empty cell" if not c else repr(c) if len(c) <= QUOTE_CELL_CHARS else \
                    f"a cell of {len(c)} characters"
                raise DiagError(
                    f"{p}: line {lineno}, column {col}: {shown} is not a number; "
                    "a CSV recording holds numbers only (one optional header row of channel names)"
                ) from None
    raise DiagError(f"{p}: rows have different numbers of columns; every row needs one value per channel") from None


def check_npy_magic(p: Path) -> None:
    """Refuse a ``.npy`` file that does not start with the NPY magic, in words of diag's own: numpy's
    errors quote the file's first bytes (or speak of pickles), and a refused file's content is never
    shown (a link to a text file named ``x.npy``)."""
    try:
        with open(p, "rb") as fh:
            head = fh.read(6)
    except OSError as exc:
        raise DiagError(f"{p}: cannot read the file ({exc.strerror or exc}); check its permissions") from None
    if head != b"\x93NUMPY":
        raise DiagError(f"{p}: not an .npy file (it does not start with the NPY header); "
                        "re-export it with numpy.save or give it its own extension")


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


def read_one(
    p: Path,
    key: str | None = None,
    variable: str | None = None,
    tdms_group: str | None = None,
    keep: tuple[str, ...] | None = None,
) -> _Read:
    """Read one data file of any supported type (by its extension)."""
    ext = p.suffix.lower()
    if ext in (".csv", ".txt", ".tsv"):
        sig, names = read_csv(p)
        return _Read(sig, names)
    if ext == ".npy":
        check_npy_magic(p)
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
