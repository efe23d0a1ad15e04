"""Physics-based simulators that produce labelled :class:`~diag.sources.base.Recording` lists.

* :mod:`diag.simulate.bearing` — rolling-element bearing vibration: fault impacts at the defect
  frequencies computed from the bearing geometry, exciting decaying structural resonances, with slip
  jitter, load-zone / cage amplitude modulation, shaft harmonics, healthy roughness and noise.
* :mod:`diag.simulate.inverter` — two-level three-phase voltage-source inverter (sine-triangle or
  space-vector PWM) on a star R-L-back-EMF load, with open-circuit switch faults (22 classes).

Both expose a dataset function with the source-reader signature
``fn(path=None, **options) -> list[Recording]`` (``source.kind = "bearing_sim"`` / ``"inverter_sim"``)
and a single-signal function for experiments and tests.

The small helpers below are shared by both modules. They are defined before the submodules are
imported, so ``from diag.simulate import _as_range`` works while this package initialises.
"""

from __future__ import annotations

import math
import zlib
from typing import Any, Sequence

import numpy as np

from diag.errors import DiagError

SNR_LIMITS_DB = (-20.0, 60.0)


def _as_range(name: str, value: Any, lo: float | None = None, hi: float | None = None,
              lo_open: bool = False) -> tuple[float, float]:
    """A number or a ``[low, high]`` pair -> ``(low, high)``; checked against ``[lo, hi]``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        pair = (float(value), float(value))
    elif isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    ):
        pair = (float(value[0]), float(value[1]))
    else:
        raise DiagError(f"{name}: expected a number or a [low, high] pair, got {value!r}")
    if not all(math.isfinite(v) for v in pair):
        raise DiagError(f"{name}: must be finite, got {value!r}")
    if pair[0] > pair[1]:
        raise DiagError(f"{name}: low end {pair[0]} exceeds high end {pair[1]}")
    if lo is not None and (pair[0] < lo or (lo_open and pair[0] <= lo)):
        raise DiagError(f"{name}: must be {'>' if lo_open else '>='} {lo:g}, got {value!r}")
    if hi is not None and pair[1] > hi:
        raise DiagError(f"{name}: must be <= {hi:g}, got {value!r}")
    return pair


def _as_levels(name: str, value: Any, lo: float | None = None, lo_open: bool = True) -> tuple[float, ...]:
    """A number or a non-empty list of numbers -> tuple of floats (a discrete set of levels)."""
    vals = [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    if not isinstance(vals, (list, tuple)) or not vals or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in vals
    ):
        raise DiagError(f"{name}: expected a number or a non-empty list of numbers, got {value!r}")
    out = tuple(float(v) for v in vals)
    if lo is not None and any(v < lo or (lo_open and v <= lo) for v in out):
        raise DiagError(f"{name}: every value must be {'>' if lo_open else '>='} {lo:g}, got {value!r}")
    if len(set(out)) != len(out):
        raise DiagError(f"{name}: values must be distinct, got {value!r}")
    return out


def _check_snr(name: str, snr_db: float | None) -> None:
    if snr_db is None:
        return
    lo, hi = SNR_LIMITS_DB
    if not isinstance(snr_db, (int, float)) or isinstance(snr_db, bool) or not lo <= float(snr_db) <= hi:
        raise DiagError(f"{name}: SNR must be in [{lo:g}, {hi:g}] dB (or None for no noise), got {snr_db!r}")


def _check_positive(name: str, value: Any, strict: bool = True) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DiagError(f"{name}: expected a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (strict and v == 0):
        raise DiagError(f"{name}: must be {'> 0' if strict else '>= 0'}, got {value!r}")
    return v


def _seed_sequence(seed: Any) -> np.random.SeedSequence:
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if seed is None:
        return np.random.SeedSequence()
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0:
        return np.random.SeedSequence(int(seed))
    raise DiagError(f"seed: expected a non-negative integer, got {seed!r}")


def _child_seed(seed: int, label: str, index: int) -> np.random.SeedSequence:
    """Seed of recording ``index`` of class ``label``.

    ``SeedSequence(seed, spawn_key=(crc32(label), index))`` is what ``SeedSequence(seed).spawn``
    would give a child, keyed by class name and index instead of position, so adding a class or
    recordings to one class leaves the random draws of every other recording unchanged.
    """
    return np.random.SeedSequence(int(seed), spawn_key=(zlib.crc32(label.encode()), int(index)))


def _class_list(name: str, value: Any, known: Sequence[str], aliases: dict[str, Sequence[str]]) -> list[str]:
    """Class names from a preset name (``aliases``) or a list; unknown or repeated names refused."""
    if isinstance(value, str):
        if value in aliases:
            return list(aliases[value])
        value = [value]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) for v in value):
        raise DiagError(f"{name}: expected a preset ({', '.join(aliases)}) or a list of class names, got {value!r}")
    bad = [v for v in value if v not in known]
    if bad:
        raise DiagError(f"{name}: unknown class(es) {bad}; known: {', '.join(known)}")
    if len(set(value)) != len(value):
        raise DiagError(f"{name}: repeated class names in {list(value)}")
    return list(value)


def _jsonable(obj: Any) -> Any:
    """Turn tuples/numpy scalars/arrays into plain JSON types (for ``Recording.meta``)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float):
        return round(obj, 10)
    return obj


from diag.simulate.bearing import (  # noqa: E402  (helpers above must exist first)
    BearingGeometry,
    simulate_bearing,
    simulate_bearing_recordings,
)
from diag.simulate.inverter import (  # noqa: E402
    INVERTER_CLASSES,
    simulate_inverter,
    simulate_inverter_recordings,
)

SIMULATORS = {"bearing": simulate_bearing_recordings, "inverter": simulate_inverter_recordings}


def simulate_to_folder(kind: str, out: str, *, seed: int | None = None, options: Sequence[str] = (),
                       overwrite: bool = False) -> str:
    """Simulate a dataset and write it in the files format ``diag prepare`` reads; return a summary line.

    ``kind``: ``bearing`` or ``inverter``. ``options``: ``key=value`` strings (TOML values; a
    ``source.`` prefix is accepted) passed as keyword options to the dataset function, e.g.
    ``recordings_per_class=4``, ``classes=all``, ``rpm=[1797, 1730]``.
    """
    import inspect
    import time

    from diag.config import parse_override
    from diag.sources.files import write_recordings

    if kind not in SIMULATORS:
        raise DiagError(f"simulate: unknown kind '{kind}'; choose one of {', '.join(SIMULATORS)}")
    fn = SIMULATORS[kind]
    known = [p for p in inspect.signature(fn).parameters if p != "path"]
    kwargs: dict[str, Any] = {}
    for text in options:
        keys, value = parse_override(text)
        if len(keys) == 2 and keys[0] == "source":
            keys = keys[1:]
        if len(keys) != 1 or keys[0] not in known:
            raise DiagError(f"--set {text}: unknown option '{'.'.join(keys)}' of the {kind} simulator; "
                            f"known: {', '.join(known)}")
        if isinstance(value, str) and value.startswith("[") and value.endswith("]"):  # [a, b] unquoted
            value = [v.strip().strip("'\"") for v in value[1:-1].split(",") if v.strip()]
        kwargs[keys[0]] = value
    if seed is not None:
        kwargs["seed"] = seed
    t0 = time.perf_counter()
    recs = fn(None, **kwargs)
    write_recordings(recs, out, overwrite=overwrite)
    seconds = time.perf_counter() - t0
    counts: dict[str, int] = {}
    for r in recs:
        counts[r.label] = counts.get(r.label, 0) + 1
    per = set(counts.values())
    shape = f"{len(counts)} classes x {per.pop()} recordings" if len(per) == 1 else f"{len(counts)} classes"
    return (f"{kind}: {shape} = {len(recs)} recordings of {recs[0].duration:g} s at {recs[0].fs:g} Hz "
            f"({', '.join(recs[0].channels)}), {len({r.condition for r in recs})} conditions -> {out} "
            f"in {seconds:.2f} s")


__all__ = [
    "SIMULATORS",
    "simulate_to_folder",
    "BearingGeometry",
    "simulate_bearing",
    "simulate_bearing_recordings",
    "INVERTER_CLASSES",
    "simulate_inverter",
    "simulate_inverter_recordings",
]
