"""Case Western Reserve University (CWRU) bearing data: ``read_cwru``.

The reader keys every file on its **record number** — the last group of digits in the file stem —
so the official names (``105.mat``) and the common long names (``12k_Drive_End_IR007_0_105.mat``,
``normal_0_97.mat``) both work, and the fault text in a file name is never trusted. The record's
fault type, size, outer-race position, load, nominal speed, sampling rate and faulty end come from
the official CWRU tables embedded below (:data:`CWRU_RECORDS`).

Facts the reader respects (see ``../shared/data/README.md``):

* Variables are picked by the exact record number, zero-padded to 3 digits (``X097_DE_time``):
  some files also carry variables of other records, so "the first key ending in ``_DE_time``" is
  wrong. The 0.028" files are the one published exception: 3001-3004 hold ``X056``-``X059`` and
  3005-3008 hold ``X048``-``X051`` variables (:data:`VARIABLE_ID`). A file that holds exactly one
  record's variables under a number no published record uses is read with a visible note
  (:attr:`Recording.notes`): CWRU's 48 kHz ``174.mat`` (``..._IR014_0_174.mat``) holds ``X173_*``.
  A file holding another published record's variables (a renamed copy?) is refused.
* The normal baselines 97-100 were sampled at **48 kHz**, the 12k fault files at 12 kHz. Every
  recording is returned at its true rate; :mod:`diag.signal.windows` resamples to the target rate later.
  (Reading 97 at 12 kHz would put its 147.8 Hz line at 37 Hz and hand a classifier a trivial cue.)
* The normal files have no base-plate (``BA``) channel.

Labels, groups and conditions
-----------------------------
``label``      ``label_by="type_size"``: ``"IR_0.007"``, ``"B_0.014"``, ``"OR@6_0.021"``,
               ``"normal"``; ``label_by="type"``: ``"IR"``, ``"B"``, ``"OR"``, ``"normal"``.
``group``      the physical bearing. CWRU seeded one bearing per fault type and size and recorded
               it under all four loads (and, for the drive end, at 12 and 48 kHz), so the four
               loads of a fault are *one* group: ``"IR_0.007"``. Outer-race faults at 3, 6 and 12
               o'clock share the group ``"OR_0.007"``: CWRU does not say whether the positions are
               separate bearings or the same race turned in its housing, so they are kept on one
               side of a split (the conservative, leak-free choice). Fan-end faults are other
               bearings (6203 at the fan end): ``"FE_IR_0.007"``. The healthy bearing is
               ``"normal"``. A ``group`` split therefore tests on bearings never seen in training.
``condition``  the motor load, ``"0HP"`` ... ``"3HP"``.
``fault_size`` ``"0.007"``/``"0.014"``/``"0.021"``/``"0.028"`` (inches), ``""`` for normal.
``meta``       ``record``, ``rpm`` (the file's ``X<rec>RPM`` when present, else nominal),
               ``rpm_nominal``, ``load_hp``, ``end`` (``"DE"``/``"FE"`` fault end, ``""`` normal),
               ``position`` (outer-race clock position 3/6/12, else ``None``), ``fault``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from diag.errors import DiagError
from diag.sources.base import Recording, list_files
from diag.sources.files import load_mat

__all__ = ["read_cwru", "CWRU_RECORDS", "CwruRecord", "DE_BEARING_MULTIPLES", "record_number", "NOMINAL_RPM"]

#: Nominal shaft speed (rpm) per motor load (HP), from the CWRU tables.
NOMINAL_RPM = {0: 1797, 1: 1772, 2: 1750, 3: 1730}

#: Drive-end bearing (SKF 6205-2RS JEM) defect frequencies as multiples of the shaft frequency.
DE_BEARING_MULTIPLES = {"BPFI": 5.4152, "BPFO": 3.5848, "FTF": 0.39828, "BSF": 4.7135}

CHANNELS = ("DE", "FE", "BA")
LABEL_BY = ("type_size", "type")


@dataclass(frozen=True)
class CwruRecord:
    """One row of the CWRU record table."""

    record: int
    fault: str  # "normal", "IR", "B", "OR"
    size: str  # "0.007" ... or "" for normal
    position: int | None  # outer-race clock position (3, 6, 12); None otherwise
    load_hp: int
    fs: float
    end: str  # fault end "DE" / "FE"; "" for normal

    @property
    def rpm_nominal(self) -> int:
        return NOMINAL_RPM[self.load_hp]


# (fs, end, fault, size, OR position, records at 0/1/2/3 HP; None = not published)
# Sources: CWRU Bearing Data Center pages "Normal Baseline Data", "12k Drive End Bearing Fault Data",
# "48k Drive End Bearing Fault Data", "12k Fan End Bearing Fault Data" (as tabulated by Smith &
# Randall 2015, MSSP 64-65, Table A2, and cross-checked against two independent public copies).
_TABLE: list[tuple[float, str, str, str, int | None, tuple[int | None, ...]]] = [
    # normal baselines: 48 kHz (the site's page does not say so; the files' line spectra prove it)
    (48000, "", "normal", "", None, (97, 98, 99, 100)),
    # 12 kHz drive-end faults
    (12000, "DE", "IR", "0.007", None, (105, 106, 107, 108)),
    (12000, "DE", "B", "0.007", None, (118, 119, 120, 121)),
    (12000, "DE", "OR", "0.007", 6, (130, 131, 132, 133)),
    (12000, "DE", "OR", "0.007", 3, (144, 145, 146, 147)),
    (12000, "DE", "OR", "0.007", 12, (156, 158, 159, 160)),  # there is no record 157
    (12000, "DE", "IR", "0.014", None, (169, 170, 171, 172)),
    (12000, "DE", "B", "0.014", None, (185, 186, 187, 188)),
    (12000, "DE", "OR", "0.014", 6, (197, 198, 199, 200)),
    (12000, "DE", "IR", "0.021", None, (209, 210, 211, 212)),
    (12000, "DE", "B", "0.021", None, (222, 223, 224, 225)),
    (12000, "DE", "OR", "0.021", 6, (234, 235, 236, 237)),
    (12000, "DE", "OR", "0.021", 3, (246, 247, 248, 249)),
    (12000, "DE", "OR", "0.021", 12, (258, 259, 260, 261)),
    (12000, "DE", "IR", "0.028", None, (3001, 3002, 3003, 3004)),
    (12000, "DE", "B", "0.028", None, (3005, 3006, 3007, 3008)),
    # 48 kHz drive-end faults
    (48000, "DE", "IR", "0.007", None, (109, 110, 111, 112)),
    (48000, "DE", "B", "0.007", None, (122, 123, 124, 125)),
    (48000, "DE", "OR", "0.007", 6, (135, 136, 137, 138)),
    (48000, "DE", "OR", "0.007", 3, (148, 149, 150, 151)),
    (48000, "DE", "OR", "0.007", 12, (161, 162, 163, 164)),
    (48000, "DE", "IR", "0.014", None, (174, 175, 176, 177)),
    (48000, "DE", "B", "0.014", None, (189, 190, 191, 192)),
    (48000, "DE", "OR", "0.014", 6, (201, 202, 203, 204)),
    (48000, "DE", "IR", "0.021", None, (213, 214, 215, 217)),  # there is no record 216
    (48000, "DE", "B", "0.021", None, (226, 227, 228, 229)),
    (48000, "DE", "OR", "0.021", 6, (238, 239, 240, 241)),
    (48000, "DE", "OR", "0.021", 3, (250, 251, 252, 253)),
    (48000, "DE", "OR", "0.021", 12, (262, 263, 264, 265)),
    # 12 kHz fan-end faults (the published table has gaps and an out-of-order pair, kept as published)
    (12000, "FE", "IR", "0.007", None, (278, 279, 280, 281)),
    (12000, "FE", "B", "0.007", None, (282, 283, 284, 285)),
    (12000, "FE", "OR", "0.007", 6, (294, 295, 296, 297)),
    (12000, "FE", "OR", "0.007", 3, (298, 299, 300, 301)),
    (12000, "FE", "OR", "0.007", 12, (302, 305, 306, 307)),
    (12000, "FE", "IR", "0.014", None, (274, 275, 276, 277)),
    (12000, "FE", "B", "0.014", None, (286, 287, 288, 289)),
    (12000, "FE", "OR", "0.014", 6, (313, None, None, None)),
    (12000, "FE", "OR", "0.014", 3, (310, 309, 311, 312)),
    (12000, "FE", "IR", "0.021", None, (270, 271, 272, 273)),
    (12000, "FE", "B", "0.021", None, (290, 291, 292, 293)),
    (12000, "FE", "OR", "0.021", 6, (315, None, None, None)),
    (12000, "FE", "OR", "0.021", 3, (None, 316, 317, 318)),
]


def _build_table() -> dict[int, CwruRecord]:
    table: dict[int, CwruRecord] = {}
    for fs, end, fault, size, pos, recs in _TABLE:
        for load, rec in enumerate(recs):
            if rec is None:
                continue
            assert rec not in table, f"duplicate CWRU record {rec}"
            table[rec] = CwruRecord(rec, fault, size, pos, load, float(fs), end)
    return table


#: record number -> :class:`CwruRecord`
CWRU_RECORDS: dict[int, CwruRecord] = _build_table()

#: Files whose variables carry another number than the record (as published by CWRU).
VARIABLE_ID = {3001: 56, 3002: 57, 3003: 58, 3004: 59, 3005: 48, 3006: 49, 3007: 50, 3008: 51}


def record_number(path: str | Path) -> int | None:
    """The record number of a CWRU file: the last group of digits in its stem (``..._0_105`` -> 105)."""
    groups = re.findall(r"\d+", Path(path).stem)
    return int(groups[-1]) if groups else None


def _label(info: CwruRecord, label_by: str) -> str:
    if info.fault == "normal":
        return "normal"
    fault = f"OR@{info.position}" if info.fault == "OR" else info.fault
    return info.fault if label_by == "type" else f"{fault}_{info.size}"


def _group(info: CwruRecord) -> str:
    if info.fault == "normal":
        return "normal"
    g = f"{info.fault}_{info.size}"
    return f"FE_{g}" if info.end == "FE" else g


def _as_channel_list(channels: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(channels, str):
        channels = [c for c in re.split(r"[,;\s]+", channels) if c]
    chans = tuple(str(c).strip().upper() for c in channels)
    if not chans:
        raise DiagError(f"channels: give at least one of {', '.join(CHANNELS)}")
    bad = [c for c in chans if c not in CHANNELS]
    if bad:
        raise DiagError(f"channels: unknown {', '.join(bad)}; CWRU files have {', '.join(CHANNELS)}")
    if len(set(chans)) != len(chans):
        raise DiagError(f"channels: {list(chans)} names a channel twice")
    return chans


def _as_int_list(
    values: int | float | str | Iterable[int | float | str] | None, option: str, strip: str = "", whole: str = "whole numbers"
) -> list[int] | None:
    if values is None:
        return None
    if isinstance(values, (int, float, np.integer, np.floating, str)):
        values = [v for v in re.split(r"[,;\s]+", str(values)) if v] if isinstance(values, str) else [values]
    out = []
    for v in values:
        if isinstance(v, (float, np.floating)):  # TOML/YAML give 2.0 for 2: accept whole-number floats
            if not float(v).is_integer():
                raise DiagError(f"{option}: expected {whole}, got {v!r}")
            out.append(int(v))
            continue
        text = str(v).strip().upper().removesuffix(strip) if strip else str(v).strip()
        try:
            out.append(int(text))
        except ValueError:
            raise DiagError(f"{option}: expected integers, got {v!r}") from None
    return out


def _find_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    files = list_files(root, ".mat")
    if not files:
        raise DiagError(
            f"{root}: no .mat files below the folder; download the CWRU files (diag fetch cwru) "
            "or point --data at the folder that holds them"
        )
    return files


def read_cwru(
    path: str | Path | None,
    channels: str | Sequence[str] = ("DE",),
    label_by: str = "type_size",
    loads: int | str | Sequence[int | str] | None = None,
    records: int | str | Sequence[int | str] | None = None,
) -> list[Recording]:
    """Read CWRU ``.mat`` files (a folder, searched recursively, or one file).

    Parameters
    ----------
    path : str or Path
        Folder of CWRU files (any of the naming styles) or a single file.
    channels : list of {"DE", "FE", "BA"}, default ("DE",)
        Accelerometers to keep, in this order: drive end, fan end, base plate. The normal
        baselines have no ``BA``; asking for it there is an error naming the file.
    label_by : {"type_size", "type"}, default "type_size"
        ``"IR_0.007"``/``"OR@6_0.021"``/``"normal"``, or just ``"IR"``/``"B"``/``"OR"``/``"normal"``.
    loads : list of int, optional
        Keep only these motor loads in HP (0-3; ``"2HP"`` also accepted).
    records : list of int, optional
        Keep only these record numbers; each must be present under ``path``.

    Returns
    -------
    list of Recording
        One per file, sorted by record number, ``signal`` float64 ``[channels, samples]`` in g at
        the record's true sampling rate (12 000 or 48 000 Hz). See the module docstring for
        ``label``/``group``/``condition``/``meta``.
    """
    if path is None or str(path) == "":
        raise DiagError("cwru reader: no path given; pass the folder of CWRU .mat files (--data PATH)")
    root = Path(path).expanduser()
    if not root.exists():
        raise DiagError(f"{root}: no such file or folder; download the CWRU files first (diag fetch cwru)")
    chans = _as_channel_list(channels)
    if label_by not in LABEL_BY:
        raise DiagError(f"label_by: choose one of {', '.join(LABEL_BY)}, got {label_by!r}")
    load_filter = _as_int_list(loads, "loads", strip="HP", whole="whole numbers 0-3")
    if load_filter is not None:
        bad = [v for v in load_filter if v not in NOMINAL_RPM]
        if bad:
            raise DiagError(f"loads: CWRU loads are 0, 1, 2, 3 (HP), got {bad}")
    record_filter = _as_int_list(records, "records", whole="whole record numbers")

    found: dict[int, Path] = {}
    held: set[int] = set()  # every record number under root, before the records filter
    for f in _find_files(root):
        rec = record_number(f)
        if rec is None:
            raise DiagError(
                f"{f}: no record number in the file name; name it <record>.mat (e.g. 105.mat), "
                "or pass a labels manifest via the files reader instead"
            )
        held.add(rec)
        if record_filter is not None and rec not in record_filter:
            continue
        if rec in found:
            raise DiagError(f"{f}: record {rec} is also in {found[rec]}; keep one copy of each record")
        found[rec] = f
    if record_filter is not None:
        missing = [r for r in record_filter if r not in found]
        if missing:
            raise DiagError(
                f"records: {missing} not found under {root}; the folder holds records "
                f"{', '.join(map(str, sorted(held)))} (choose from those)"
            )

    out: list[Recording] = []
    for rec in sorted(found):
        f = found[rec]
        info = CWRU_RECORDS.get(rec)
        if info is None:
            raise DiagError(
                f"{f}: record {rec} is not in diag's CWRU table; pass a labels manifest via the "
                "files reader instead (source kind 'files', labels.csv with path,label,fs)"
            )
        if load_filter is not None and info.load_hp not in load_filter:
            continue
        out.append(_read_record(f, info, chans, label_by))
    if not out:
        raise DiagError(f"{root}: no CWRU recordings left after the loads/records filters ({loads=}, {records=})")
    return out


def _read_record(f: Path, info: CwruRecord, chans: tuple[str, ...], label_by: str) -> Recording:
    vid = VARIABLE_ID.get(info.record, info.record)
    # the whole file is read (not only the wanted variables) so that truncation anywhere is caught
    data = load_mat(f)
    notes: list[str] = []
    other = _sole_foreign_id(data, vid)
    if other is not None:
        vid = other
        notes.append(
            f"record {info.record}: the file holds only the variables of record {other} (X{other:03d}_*), "
            f"a number no published record uses; read them as record {info.record} (a known defect of "
            "CWRU's release, e.g. 48k IR 0.014 at 0 HP, 174.mat)"
        )
    names = {c: f"X{vid:03d}_{c}_time" for c in chans}
    rpm_name = f"X{vid:03d}RPM"
    missing = [c for c, n in names.items() if n not in data]
    if missing:
        present = sorted(data)
        have = [c for c in CHANNELS if f"X{vid:03d}_{c}_time" in present]
        if have:
            raise DiagError(
                f"{f}: no {', '.join(missing)} channel ({', '.join(names[c] for c in missing)}) in record "
                f"{info.record}; this file has {', '.join(have)} (choose channels from those)"
            )
        raise DiagError(
            f"{f}: no variables of record {info.record} ({names[missing[0]]}); the file holds "
            f"{', '.join(present) or 'nothing'}. Is it renamed? The record number in the name must match its contents"
        )
    bad = [names[c] for c in chans if not (isinstance(data[names[c]], np.ndarray) and data[names[c]].dtype.kind in "iuf")]
    if bad:
        raise DiagError(f"{f}: variable(s) {', '.join(bad)} are not numeric arrays; re-download the file")
    for c in chans:
        shape = data[names[c]].shape
        if not (len(shape) == 1 or (len(shape) == 2 and 1 in shape)):
            raise DiagError(
                f"{f}: variable {names[c]} has shape {'x'.join(map(str, shape))}, expected one column "
                "(N x 1 or 1 x N); the file is not an original CWRU file, re-download the file"
            )
    sigs = [np.asarray(data[names[c]], dtype=np.float64).ravel() for c in chans]
    lengths = {len(s) for s in sigs}
    if len(lengths) != 1:
        raise DiagError(f"{f}: channels {', '.join(chans)} have different lengths {sorted(lengths)}; re-download the file")
    rpm = float(info.rpm_nominal)
    raw_rpm = data.get(rpm_name)
    # a non-numeric X<rec>RPM (text, cell, struct) is ignored: the table's nominal speed stands
    if isinstance(raw_rpm, np.ndarray) and raw_rpm.dtype.kind in "iuf" and raw_rpm.size >= 1:
        val = float(raw_rpm.astype(np.float64).ravel()[0])
        if np.isfinite(val) and val > 0:
            rpm = val
    recording = Recording(
        signal=np.stack(sigs),
        fs=info.fs,
        label=_label(info, label_by),
        group=_group(info),
        condition=f"{info.load_hp}HP",
        source=str(f),
        fault_size=info.size,
        channels=chans,
        meta={
            "record": info.record,
            "fault": info.fault,
            "rpm": rpm,
            "rpm_nominal": info.rpm_nominal,
            "load_hp": info.load_hp,
            "end": info.end,
            "position": info.position,
        },
        notes=notes,
    )
    return recording.validate()


_VARIABLE = re.compile(r"X(\d+)(?:_(?:DE|FE|BA)_time|RPM)")


def _sole_foreign_id(data: dict, vid: int) -> int | None:
    """The number in the file's variable names when it is exactly one, not ``vid``, and names no
    published record (so the variables cannot be another file's); else None.

    CWRU's ``174.mat`` (48k IR 0.014", 0 HP) holds ``X173_*``: there is no record 173, so the data
    can only be 174's. A file holding another *published* record's variables (``107.mat`` with
    ``X105_*``) is more likely a renamed copy and stays an error.
    """
    ids = {int(m.group(1)) for k in data if (m := _VARIABLE.fullmatch(k))}
    if vid in ids or len(ids) != 1:
        return None
    (other,) = ids
    if other in CWRU_RECORDS or other in VARIABLE_ID.values():
        return None
    return other
