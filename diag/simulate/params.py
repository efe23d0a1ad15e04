"""Parameter helpers shared by the simulators: ranges and levels of options, SNR and positivity checks,
seeds derived per class and recording, class lists, JSON-able metadata."""

from __future__ import annotations

import math
import zlib
from typing import Any, Sequence

import numpy as np

from diag.checks import check_fs
from diag.errors import DiagError

SNR_LIMITS_DB = (-20.0, 60.0)


def as_range(name: str, value: Any, lo: float | None = None, hi: float | None = None,
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


def as_levels(name: str, value: Any, lo: float | None = None, lo_open: bool = True) -> tuple[float, ...]:
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


def check_snr(name: str, snr_db: float | None) -> None:
    if snr_db is None:
        return
    lo, hi = SNR_LIMITS_DB
    if not isinstance(snr_db, (int, float)) or isinstance(snr_db, bool) or not lo <= float(snr_db) <= hi:
        raise DiagError(f"{name}: SNR must be in [{lo:g}, {hi:g}] dB (or None for no noise), got {snr_db!r}")


def check_positive(name: str, value: Any, strict: bool = True) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DiagError(f"{name}: expected a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (strict and v == 0):
        raise DiagError(f"{name}: must be {'> 0' if strict else '>= 0'}, got {value!r}")
    return v


def check_sampling_rate(fs: Any) -> float:
    """The simulator option ``fs`` (Hz) as a positive float: :func:`diag.checks.check_fs`."""
    return check_fs(fs, "fs", option="fs=HZ")


def check_samples(fs: Any, duration: Any) -> tuple[float, float, int]:
    """``(fs, duration, n)`` checked: both > 0 and at least 16 samples."""
    fs = check_sampling_rate(fs)
    duration = check_positive("duration", duration)
    n = int(round(duration * fs))
    if n < 16:
        raise DiagError(f"duration: {duration:g} s at {fs:g} Hz gives only {n} samples; need at least 16")
    return fs, duration, n


def check_seed(seed: Any) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DiagError(f"seed: expected a non-negative integer, got {seed!r}")


def check_count(recordings_per_class: Any) -> None:
    if isinstance(recordings_per_class, bool) or not isinstance(recordings_per_class, int) or recordings_per_class < 1:
        raise DiagError(f"recordings_per_class: expected an integer >= 1, got {recordings_per_class!r}")


def seed_sequence(seed: Any) -> np.random.SeedSequence:
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if seed is None:
        return np.random.SeedSequence()
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0:
        return np.random.SeedSequence(int(seed))
    raise DiagError(f"seed: expected a non-negative integer, got {seed!r}")


def child_seed(seed: int, label: str, index: int) -> np.random.SeedSequence:
    """Seed of recording ``index`` of class ``label``.

    ``SeedSequence(seed, spawn_key=(crc32(label), index))`` is what ``SeedSequence(seed).spawn``
    would give a child, keyed by class name and index instead of position, so adding a class or
    recordings to one class leaves the random draws of every other recording unchanged.
    """
    return np.random.SeedSequence(int(seed), spawn_key=(zlib.crc32(label.encode()), int(index)))


def class_list(name: str, value: Any, known: Sequence[str], aliases: dict[str, Sequence[str]]) -> list[str]:
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


def jsonable(obj: Any) -> Any:
    """Turn tuples/numpy scalars/arrays into plain JSON types (for ``Recording.meta``)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float):
        return round(obj, 10)
    return obj
