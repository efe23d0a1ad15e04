"""University of Ottawa bearing data under time-varying speed (Huang & Baddour 2018): ``read_ottawa``.

H. Huang, N. Baddour, "Bearing vibration data collected under time-varying rotational speed
conditions", Data in Brief 21 (2018) 1745-1749; Mendeley Data ``v43hmbwxpm`` (version 1: 36 files,
health H/I/O; version 2: 60 files, adding B and C).

Layout: one ``.mat`` file per trial, named ``<health>-<profile>-<trial>.mat`` (``H-A-1.mat``),
usually in one folder per health state. Each holds ``Channel_1`` (accelerometer) and
``Channel_2`` (encoder: the shaft-speed signal), ``N x 1``, sampled at 200 kHz for 10 s.

* health: ``H`` healthy, ``I`` inner-race defect, ``O`` outer-race defect, ``B`` ball defect,
  ``C`` a combination of inner, outer and ball defects;
* speed profile: ``A`` increasing, ``B`` decreasing, ``C`` increasing then decreasing,
  ``D`` decreasing then increasing;
* trial 1-3.

Labels, groups and conditions
-----------------------------
``label``      the health state: ``healthy``/``inner``/``outer``/``ball``/``combined``.
``condition``  the speed profile: ``increasing``/``decreasing``/``increasing-decreasing``/
               ``decreasing-increasing`` (``meta["profile"]`` keeps the letter).
``group``      the file (``"H-A-1"``): every file is a separate run. Note that the dataset has
               *one bearing per health state*: all 12 files of a label come from the same
               bearing, so no split of this dataset can test on an unseen bearing. A
               ``recording``/``group`` split tests on unseen runs; a ``condition`` split tests on
               an unseen speed profile, which is the question this dataset was built for.
``fault_size`` ``""`` (the dataset gives no defect sizes).

Signals are returned as float32 (a 10 s file is 2 000 000 samples per channel).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from diag.errors import DiagError
from diag.sources.base import Recording, list_files
from diag.sources.files import load_mat

__all__ = ["read_ottawa", "HEALTH", "PROFILES", "OTTAWA_FS", "parse_name"]

OTTAWA_FS = 200_000.0
HEALTH = {"H": "healthy", "I": "inner", "O": "outer", "B": "ball", "C": "combined"}
PROFILES = {"A": "increasing", "B": "decreasing", "C": "increasing-decreasing", "D": "decreasing-increasing"}
#: channel name -> MATLAB variable
VARIABLES = {"vibration": "Channel_1", "encoder": "Channel_2"}

_NAME_RE = re.compile(r"^([HIOBC])-([ABCD])-(\d+)$", re.IGNORECASE)


def parse_name(path: str | Path) -> tuple[str, str, int]:
    """``(health letter, profile letter, trial)`` from ``H-A-1.mat``."""
    p = Path(path)
    m = _NAME_RE.match(p.stem)
    if not m:
        raise DiagError(
            f"{p}: not an Ottawa file name (expected <health>-<profile>-<trial>.mat, e.g. H-A-1.mat with "
            "health H/I/O/B/C and profile A/B/C/D); rename it, or use the files reader with a labels manifest"
        )
    h, s, t = m.groups()
    return h.upper(), s.upper(), int(t)


def _letters(values: str | Iterable[str] | None, table: dict[str, str], option: str) -> set[str] | None:
    """Accept letters (``"H"``) or names (``"healthy"``); return the letters."""
    if values is None:
        return None
    if isinstance(values, str):
        values = [v for v in re.split(r"[,;\s]+", values) if v]
    by_name = {v: k for k, v in table.items()}
    out = set()
    for v in values:
        key = str(v).strip()
        if key.upper() in table:
            out.add(key.upper())
        elif key.lower() in by_name:
            out.add(by_name[key.lower()])
        else:
            choices = ", ".join(f"{k} ({n})" for k, n in table.items())
            raise DiagError(f"{option}: unknown {v!r}; choose from {choices}")
    return out


def read_ottawa(
    path: str | Path | None,
    channels: str | Sequence[str] = ("vibration",),
    health: str | Sequence[str] | None = None,
    profiles: str | Sequence[str] | None = None,
) -> list[Recording]:
    """Read the Ottawa time-varying-speed bearing files (a folder, searched recursively, or one file).

    Parameters
    ----------
    path : str or Path
        Folder of ``H-A-1.mat``-style files (any sub-folders), or one file.
    channels : list of {"vibration", "encoder"}, default ("vibration",)
        ``vibration`` = ``Channel_1`` (accelerometer), ``encoder`` = ``Channel_2`` (speed signal).
        Add ``encoder`` to keep the speed information next to the vibration.
    health : list of str, optional
        Keep only these health states, as letters (``H``, ``I``, ``O``, ``B``, ``C``) or names.
    profiles : list of str, optional
        Keep only these speed profiles, as letters (``A``-``D``) or names (``increasing``...).

    Returns
    -------
    list of Recording
        One per file at 200 kHz, float32 ``[channels, samples]``, sorted by health, profile, trial.
    """
    if path is None or str(path) == "":
        raise DiagError("ottawa reader: no path given; pass the folder of H-A-1.mat files (--data PATH)")
    root = Path(path).expanduser()
    if not root.exists():
        raise DiagError(f"{root}: no such file or folder; download the dataset first (diag fetch ottawa)")
    if isinstance(channels, str):
        channels = [c for c in re.split(r"[,;\s]+", channels) if c]
    chans = tuple(str(c).strip().lower() for c in channels)
    bad = [c for c in chans if c not in VARIABLES]
    if not chans or bad:
        raise DiagError(f"channels: unknown {bad or '(none given)'}; choose from vibration, encoder")
    if len(set(chans)) != len(chans):
        raise DiagError(f"channels: {list(chans)} names a channel twice")
    keep_h = _letters(health, HEALTH, "health")
    keep_p = _letters(profiles, PROFILES, "profiles")
    return [_recording(run, f, chans) for run, f in _select(root, keep_h, keep_p)]


def _select(root: Path, keep_h: set[str] | None, keep_p: set[str] | None) -> list[tuple[tuple[str, str, int], Path]]:
    """``((health, profile, trial), file)`` of the files under ``root`` that pass the filters, sorted by
    health, profile, trial; the same run twice is an error."""
    if root.is_file():
        files = [root]
    else:
        files = list_files(root, ".mat")
        if not files:
            raise DiagError(f"{root}: no .mat files below the folder; download and unzip the dataset (diag fetch ottawa)")
    entries = []
    seen: dict[tuple[str, str, int], Path] = {}
    for f in files:
        h, s, t = parse_name(f)
        if (keep_h is not None and h not in keep_h) or (keep_p is not None and s not in keep_p):
            continue
        if (h, s, t) in seen:
            raise DiagError(f"{f}: the same run as {seen[(h, s, t)]}; keep one copy of each file")
        seen[(h, s, t)] = f
        entries.append(((h, s, t), f))
    if not entries:
        raise DiagError(f"{root}: no Ottawa recordings left after the health/profiles filters")
    order = {k: i for i, k in enumerate(HEALTH)}
    entries.sort(key=lambda e: (order[e[0][0]], e[0][1], e[0][2]))
    return entries


def _recording(run: tuple[str, str, int], f: Path, chans: tuple[str, ...]) -> Recording:
    """The validated :class:`Recording` of one file with channels ``chans``."""
    h, s, t = run
    wanted = [VARIABLES[c] for c in chans]
    data = load_mat(f, variable_names=wanted)
    missing = [v for v in wanted if v not in data]
    if missing:
        present = sorted(load_mat(f))
        raise DiagError(
            f"{f}: no variable {', '.join(missing)}; the file holds {', '.join(present) or 'nothing'} "
            "(Ottawa files hold Channel_1 = vibration and Channel_2 = encoder)"
        )
    sigs = []
    for v in wanted:
        arr = data[v]
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "iuf":
            raise DiagError(f"{f}: variable {v} is not a numeric array; re-download the file")
        sigs.append(np.asarray(arr, dtype=np.float32).ravel())
    lengths = {len(x) for x in sigs}
    if len(lengths) != 1:
        raise DiagError(f"{f}: Channel_1 and Channel_2 have different lengths {sorted(lengths)}; re-download the file")
    rec = Recording(
        signal=np.stack(sigs),
        fs=OTTAWA_FS,
        label=HEALTH[h],
        group=f"{h}-{s}-{t}",
        condition=PROFILES[s],
        source=str(f),
        fault_size="",
        channels=chans,
        meta={"health": h, "profile": s, "trial": t, "bearing": h},
    )
    return rec.validate()
