"""Writing (:func:`write_recordings`)
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
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from diag.errors import DiagError
from diag.sources.base import Recording
from diag.sources.formats import CHANNEL_SEP, MANIFEST_COLUMNS, MANIFEST_NAME, SUPPORTED_EXTENSIONS, WRITE_FORMATS


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
    _check_target(out, overwrite)
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
        rows = [_write_one(tmp, rec, i, fmt, used) for i, rec in enumerate(recordings)]
        with (tmp / MANIFEST_NAME).open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(MANIFEST_COLUMNS))
            writer.writeheader()
            writer.writerows(rows)
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _check_target(out: Path, overwrite: bool) -> None:
    """Refuse an output that is a file, or a non-empty folder unless ``overwrite`` and diag wrote all of it."""
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


def _write_one(tmp: Path, rec: Recording, i: int, fmt: str, used: set[str]) -> dict[str, str]:
    """Write recording ``i`` under ``tmp/<label>/`` (a name unique also on case-insensitive file systems);
    returns its manifest row."""
    label_dir = _slug(rec.label)
    stem = _record_stem(rec, i)
    rel = f"{label_dir}/{stem}.{fmt}"
    n = 1
    while rel.lower() in used:
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
    return {"path": rel, "label": rec.label, "fs": repr(float(rec.fs)), "group": rec.group,
            "condition": rec.condition, "fault_size": rec.fault_size, "channels": CHANNEL_SEP.join(rec.channels),
            "meta": meta}


def _swap_in(tmp: Path, out: Path) -> None:
    """Rename the finished ``tmp`` folder to ``out``; an older ``out`` is put back if the rename fails."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
