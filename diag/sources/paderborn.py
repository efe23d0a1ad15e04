"""Paderborn University KAt bearing data (Lessmeier et al., PHM Europe 2016): ``read_paderborn``.

Layout as published (``http://groups.uni-paderborn.de/kat/BearingDataCenter/<code>.rar``, one
archive per bearing, extracted to one folder per bearing code)::

    K001/N15_M07_F10_K001_1.mat ... N09_M07_F10_K001_20.mat
    KA01/N15_M07_F10_KA01_1.mat ...

File names: ``N<speed>_M<torque>_F<force>_<bearing>_<measurement>`` with speed ``N09``/``N15`` =
900/1500 rpm, load torque ``M01``/``M07`` = 0.1/0.7 Nm, radial force ``F04``/``F10`` = 400/1000 N,
the four-character bearing code, and the measurement number 1-20 (4 s each). The four published
settings are ``N15_M07_F10``, ``N09_M07_F10``, ``N15_M01_F10`` and ``N15_M07_F04``.

Each file holds one struct named as the file stem with fields ``Info``, ``X``, ``Y``,
``Description``. ``Y`` is a struct array of the measured signals, each with ``Name``, ``Data``
and ``Raster`` (plus ``Type``/``Unit``): ``phase_current_1``, ``phase_current_2``,
``vibration_1`` on the ``HostService`` raster (64 kHz), ``force``, ``speed``, ``torque`` on
``Mech`` (4 kHz), ``temp_2_bearing_module`` on ``Temp`` (1 Hz). ``X`` holds the time axes.
Channels of one recording must share a raster (the 64 kHz trio is the usual choice).

Labels, groups and conditions
-----------------------------
``label``       ``label_by="location"`` (default): ``healthy``/``outer``/``inner``/``combined``
                (KB bearings: damage on both rings); ``label_by="bearing"``: the bearing code.
``group``       the bearing code: the 80 measurements of one bearing (4 settings x 20) share
                its damage, so a ``group`` split tests on bearings never seen in training.
``condition``   the setting, ``"N15_M07_F10"``.
``fault_size``  the damage extent level 1-3 of Lessmeier's tables (``""`` for healthy).
``meta``        bearing, rpm, torque_nm, radial_force_n, measurement, damage (``healthy``/
                ``artificial``/``real``), method (EDM, drilling, engraver, fatigue pitting...),
                location.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from diag.errors import DiagError
from diag.sources.base import Recording, list_files
from diag.sources.files import load_mat

__all__ = ["read_paderborn", "PADERBORN_BEARINGS", "parse_name", "RASTER_FS"]

#: Sampling rate (Hz) of each raster, matched on the start of the ``Raster`` text.
RASTER_FS = {"hostservice": 64000.0, "mech": 4000.0, "temp": 1.0}
#: Rate of each published channel, used when a file has no ``Raster`` field.
CHANNEL_FS = {
    "phase_current_1": 64000.0, "phase_current_2": 64000.0, "vibration_1": 64000.0,
    "force": 4000.0, "speed": 4000.0, "torque": 4000.0, "temp_2_bearing_module": 1.0,
}
LABEL_BY = ("location", "bearing")
DAMAGE = ("healthy", "artificial", "real")
SPEED_RPM = {"09": 900, "15": 1500}
TORQUE_NM = {"01": 0.1, "07": 0.7}
FORCE_N = {"04": 400, "10": 1000}

# code: (location, damage, extent, method). Lessmeier et al. 2016, Tables 4 (artificial),
# 5 (accelerated lifetime = "real") and 6 (healthy).
PADERBORN_BEARINGS: dict[str, tuple[str, str, int, str]] = {
    **{f"K00{i}": ("healthy", "healthy", 0, "") for i in range(1, 7)},
    "KA01": ("outer", "artificial", 1, "EDM"),
    "KA03": ("outer", "artificial", 2, "electric engraver"),
    "KA05": ("outer", "artificial", 1, "electric engraver"),
    "KA06": ("outer", "artificial", 2, "electric engraver"),
    "KA07": ("outer", "artificial", 1, "drilling"),
    "KA08": ("outer", "artificial", 2, "drilling"),
    "KA09": ("outer", "artificial", 2, "drilling"),
    "KI01": ("inner", "artificial", 1, "EDM"),
    "KI03": ("inner", "artificial", 1, "electric engraver"),
    "KI05": ("inner", "artificial", 1, "electric engraver"),
    "KI07": ("inner", "artificial", 2, "electric engraver"),
    "KI08": ("inner", "artificial", 2, "electric engraver"),
    "KA04": ("outer", "real", 1, "fatigue pitting"),
    "KA15": ("outer", "real", 1, "plastic deformation (indentations)"),
    "KA16": ("outer", "real", 2, "fatigue pitting"),
    "KA22": ("outer", "real", 1, "fatigue pitting"),
    "KA30": ("outer", "real", 1, "plastic deformation (indentations)"),
    "KB23": ("combined", "real", 2, "fatigue pitting (inner + outer ring)"),
    "KB24": ("combined", "real", 3, "fatigue pitting (inner + outer ring)"),
    "KB27": ("combined", "real", 1, "plastic deformation (outer + inner ring)"),
    "KI04": ("inner", "real", 1, "fatigue pitting"),
    "KI14": ("inner", "real", 1, "fatigue pitting"),
    "KI16": ("inner", "real", 3, "fatigue pitting"),
    "KI17": ("inner", "real", 1, "fatigue pitting"),
    "KI18": ("inner", "real", 2, "fatigue pitting"),
    "KI21": ("inner", "real", 1, "fatigue pitting"),
}

_NAME_RE = re.compile(r"^N(\d{2})_M(\d{2})_F(\d{2})_(K\d{3}|K[AIB]\d{2})_(\d+)$")
_CODE_LOCATION = {"A": "outer", "I": "inner", "B": "combined"}


def parse_name(path: str | Path) -> dict[str, Any]:
    """Operating setting, bearing and measurement from a file name (``N15_M07_F10_KA01_1.mat``)."""
    p = Path(path)
    m = _NAME_RE.match(p.stem)
    if not m:
        raise DiagError(
            f"{p}: not a Paderborn file name (expected N15_M07_F10_KA01_1.mat: speed, torque, force, "
            "bearing code, measurement); rename it, or use the files reader with a labels manifest"
        )
    n, mt, fo, code, meas = m.groups()
    if n not in SPEED_RPM or mt not in TORQUE_NM or fo not in FORCE_N:
        raise DiagError(
            f"{p}: unknown operating setting N{n}_M{mt}_F{fo}; Paderborn uses N09/N15, M01/M07, F04/F10"
        )
    return {
        "condition": f"N{n}_M{mt}_F{fo}",
        "rpm": SPEED_RPM[n],
        "torque_nm": TORQUE_NM[mt],
        "radial_force_n": FORCE_N[fo],
        "bearing": code,
        "measurement": int(meas),
    }


def _bearing_info(code: str) -> tuple[str, str, int | None, str]:
    if code in PADERBORN_BEARINGS:
        loc, damage, extent, method = PADERBORN_BEARINGS[code]
        return loc, damage, extent, method
    # not in the published tables: the code's letter still says where the damage is
    loc = "healthy" if code[1].isdigit() else _CODE_LOCATION[code[1]]
    return loc, "healthy" if loc == "healthy" else "unknown", None, ""


def _names(value: str | Iterable[str] | None, option: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [v for v in re.split(r"[,;\s]+", value) if v]
    out = [str(v).strip() for v in value]
    if not out:
        raise DiagError(f"{option}: give at least one value")
    return out


def _text(value: Any) -> str:
    """A MATLAB char field as str (``simplify_cells`` gives str; odd files give arrays)."""
    if isinstance(value, str):
        return value
    arr = np.asarray(value)
    if arr.dtype.kind in "US":
        return "".join(str(x) for x in arr.ravel())
    return ""


def _struct_list(value: Any) -> list[dict]:
    if isinstance(value, dict):
        return [value]
    if isinstance(value, np.ndarray) and value.dtype == object:
        value = list(value.ravel())
    if isinstance(value, (list, tuple)) and all(isinstance(v, dict) for v in value):
        return list(value)
    return []


def _signals(f: Path) -> dict[str, tuple[np.ndarray, float]]:
    """``{name: (data 1-D, fs)}`` of the file's ``Y`` signals."""
    data = load_mat(f, simplify_cells=True)
    top = data.get(f.stem)
    if top is None:
        structs = [k for k, v in data.items() if isinstance(v, dict)]
        if len(structs) != 1:
            raise DiagError(
                f"{f}: no struct variable '{f.stem}' (the file holds {', '.join(sorted(data)) or 'nothing'}); "
                "a Paderborn file holds one struct named as the file; re-download or re-extract it"
            )
        top = data[structs[0]]
    if not isinstance(top, dict) or "Y" not in top:
        raise DiagError(f"{f}: variable '{f.stem}' is not the Paderborn struct with a 'Y' field; re-download or re-extract it")
    items = _struct_list(top["Y"])
    if not items:
        raise DiagError(f"{f}: field 'Y' is not a struct array of signals (Name, Raster, Data); re-download or re-extract it")
    out: dict[str, tuple[np.ndarray, float]] = {}
    for i, item in enumerate(items):
        missing = [k for k in ("Name", "Data") if k not in item]
        if missing:
            raise DiagError(f"{f}: Y({i + 1}) has no field {', '.join(missing)}; re-download or re-extract the file")
        name = _text(item["Name"]).strip()
        sig = np.asarray(item["Data"])
        if sig.dtype.kind not in "iuf":
            raise DiagError(f"{f}: Y({i + 1}) '{name}' Data is not numeric; re-download or re-extract the file")
        raster = _text(item.get("Raster", "")).strip().lower()
        fs = next((v for k, v in RASTER_FS.items() if raster.startswith(k)), None)
        if fs is None:
            fs = CHANNEL_FS.get(name)
        if fs is None:
            raise DiagError(
                f"{f}: signal '{name}' has unknown raster '{raster}'; expected HostService (64 kHz), Mech (4 kHz) or Temp (1 Hz)"
            )
        out[name] = (sig.astype(np.float64, copy=False).ravel(), fs)
    return out


def read_paderborn(
    path: str | Path | None,
    channels: str | Sequence[str] = ("vibration_1",),
    label_by: str = "location",
    conditions: str | Sequence[str] | None = None,
    bearings: str | Sequence[str] | None = None,
    damage: str | Sequence[str] | None = None,
) -> list[Recording]:
    """Read Paderborn KAt ``.mat`` files (a folder, searched recursively, or one file).

    Parameters
    ----------
    path : str or Path
        Folder holding the extracted bearing folders (``K001/``, ``KA01/``...), one of them, or a file.
    channels : list of str, default ("vibration_1",)
        Signals of ``Y`` to keep, all on one raster: ``vibration_1``, ``phase_current_1``,
        ``phase_current_2`` (64 kHz); or ``force``, ``speed``, ``torque`` (4 kHz).
    label_by : {"location", "bearing"}
        ``healthy``/``outer``/``inner``/``combined``, or the bearing code (``KA01``).
    conditions : list of str, optional
        Keep only these settings, e.g. ``["N15_M07_F10", "N09_M07_F10"]``.
    bearings : list of str, optional
        Keep only these bearing codes, e.g. ``["K001", "KA01", "KI01"]``.
    damage : list of {"healthy", "artificial", "real"}, optional
        Keep only bearings of these kinds (e.g. train on ``healthy`` + ``artificial``, test on
        ``healthy`` + ``real``: the published transfer protocol).

    Returns
    -------
    list of Recording
        One per file (4 s), sorted by bearing, setting and measurement; float64 ``[channels, samples]``.
    """
    root = _check_root(path)
    chans = _names(channels, "channels")
    assert chans is not None
    if len(set(chans)) != len(chans):
        raise DiagError(f"channels: {chans} names a channel twice")
    if label_by not in LABEL_BY:
        raise DiagError(f"label_by: choose one of {', '.join(LABEL_BY)}, got {label_by!r}")
    keep_cond = _names(conditions, "conditions")
    keep_bear = _names(bearings, "bearings")
    keep_damage = _names(damage, "damage")
    if keep_damage is not None:
        bad = [d for d in keep_damage if d not in DAMAGE]
        if bad:
            raise DiagError(f"damage: unknown {bad}; choose from {', '.join(DAMAGE)}")
    entries = _select(root, keep_cond, keep_bear, keep_damage)
    return [_recording(entry, chans, label_by) for entry in entries]


def _check_root(path: str | Path | None) -> Path:
    if path is None or str(path) == "":
        raise DiagError("paderborn reader: no path given; pass the folder of extracted bearing folders (--data PATH)")
    root = Path(path).expanduser()
    if not root.exists():
        raise DiagError(f"{root}: no such file or folder; download and extract the bearing archives first (diag fetch paderborn)")
    return root


def _select(root: Path, keep_cond: list[str] | None, keep_bear: list[str] | None,
            keep_damage: list[str] | None) -> list[tuple]:
    """The files under ``root`` that pass the filters, as ``(bearing, condition, measurement, file, name
    info, location, damage, extent, method)``, sorted by bearing, setting and measurement."""
    if root.is_file():
        files = [root]
    else:
        files = list_files(root, ".mat")
        if not files:
            rars = sorted(p.name for p in root.rglob("*.rar"))
            hint = f" ({len(rars)} .rar archives found: extract them first)" if rars else ""
            raise DiagError(f"{root}: no .mat files below the folder{hint}; download and extract the bearing archives")
    entries = []
    for f in files:
        info = parse_name(f)
        if keep_cond is not None and info["condition"] not in keep_cond:
            continue
        if keep_bear is not None and info["bearing"] not in keep_bear:
            continue
        loc, dmg, extent, method = _bearing_info(info["bearing"])
        if keep_damage is not None and dmg not in keep_damage:
            continue
        entries.append((info["bearing"], info["condition"], info["measurement"], f, info, loc, dmg, extent, method))
    if not entries:
        raise DiagError(f"{root}: no Paderborn recordings left after the conditions/bearings/damage filters")
    entries.sort(key=lambda e: e[:3])
    return entries


def _recording(entry: tuple, chans: list[str], label_by: str) -> Recording:
    """The validated :class:`Recording` of one selected file (see :func:`_select`) with channels ``chans``."""
    code, cond, meas, f, info, loc, dmg, extent, method = entry
    sigs = _signals(f)
    missing = [c for c in chans if c not in sigs]
    if missing:
        raise DiagError(f"{f}: no signal {', '.join(missing)}; the file has {', '.join(sigs)}")
    rates = {sigs[c][1] for c in chans}
    if len(rates) != 1:
        desc = ", ".join(f"{c} {sigs[c][1]:g} Hz" for c in chans)
        raise DiagError(f"channels: {desc} are sampled at different rates; read each rate separately")
    lengths = [len(sigs[c][0]) for c in chans]
    n = min(lengths)
    if max(lengths) - n > max(2, 0.001 * n):
        raise DiagError(f"{f}: channels {', '.join(chans)} have different lengths {lengths}; re-download the file")
    rec = Recording(
        signal=np.stack([sigs[c][0][:n] for c in chans]),
        fs=rates.pop(),
        label=loc if label_by == "location" else code,
        group=code,
        condition=cond,
        source=str(f),
        fault_size=str(extent) if extent else "",
        channels=tuple(chans),
        meta={
            "bearing": code,
            "rpm": info["rpm"],
            "torque_nm": info["torque_nm"],
            "radial_force_n": info["radial_force_n"],
            "measurement": meas,
            "damage": dmg,
            "method": method,
            "location": loc,
        },
    )
    return rec.validate()
