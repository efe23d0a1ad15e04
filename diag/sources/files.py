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

File formats: :mod:`diag.sources.formats`; the writer: :mod:`diag.sources.writer`.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from diag.errors import DiagError
from diag.sources.base import Recording, list_files
from diag.sources.formats import (CHANNEL_SEP, MANIFEST_COLUMNS, MANIFEST_NAME, SUPPORTED_EXTENSIONS,  # noqa: F401
                                  WRITE_FORMATS, CsvLayout, csv_layout, load_mat, read_one)  # re-exported
from diag.sources.writer import write_recordings

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
        check_label(rel_parts[0], f"{base / rel_parts[0]} (a label folder)")
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
    got = read_one(f, key, variable, tdms_group, keep)
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
