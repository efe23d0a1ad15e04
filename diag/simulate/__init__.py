"""Physics-based simulators that produce labelled :class:`~diag.sources.base.Recording` lists.

* :mod:`diag.simulate.bearing` — rolling-element bearing vibration: fault impacts at the defect
  frequencies computed from the bearing geometry, exciting decaying structural resonances, with slip
  jitter, load-zone / cage amplitude modulation, shaft harmonics, healthy roughness and noise.
* :mod:`diag.simulate.inverter` — two-level three-phase voltage-source inverter (sine-triangle or
  space-vector PWM) on a star R-L-back-EMF load, with open-circuit switch faults (22 classes).

Both expose a dataset function with the source-reader signature
``fn(path=None, **options) -> list[Recording]`` (``source.kind = "bearing_sim"`` / ``"inverter_sim"``)
and a single-signal function for experiments and tests.

Their options are parameter dataclasses validated in one place (``BearingParams`` / ``BearingSetParams``,
``InverterParams`` / ``InverterSetParams``, each with ``validated()``); the shared option checks live in
:mod:`diag.simulate.params`, the inverter's batched circuit integration in :mod:`diag.simulate.circuit`.
"""

from __future__ import annotations

from typing import Any, Sequence


from diag.errors import DiagError

from diag.simulate.bearing import (
    BearingGeometry,
    simulate_bearing,
    simulate_bearing_recordings,
)
from diag.simulate.inverter import (
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
    _check_size(fn, kwargs)
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


def _check_size(fn: Any, kwargs: dict[str, Any]) -> None:
    """Refuse (one line) a ``duration`` x ``fs`` whose one recording (float64, 3 channels at most,
    a few intermediate copies) cannot fit in memory, before simulating anything."""
    import inspect

    from diag.limits import budget, check_fits

    defaults = {n: p.default for n, p in inspect.signature(fn).parameters.items()}
    try:
        duration = float(kwargs.get("duration", defaults.get("duration", 0.0)))
        fs = float(kwargs.get("fs", defaults.get("fs", 0.0)))
    except (TypeError, ValueError):
        return  # the simulator names the bad value itself
    if not (duration > 0 and fs > 0 and duration * fs < float("inf")):
        return
    per_second = fs * 8.0 * 3 * 4
    check_fits(duration * per_second, f"--set duration={duration:g} (at {fs:g} Hz): one recording",
               f"at most about {budget() / per_second:.0f} s per recording fit; simulate shorter recordings "
               "(more of them with recordings_per_class)")


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
