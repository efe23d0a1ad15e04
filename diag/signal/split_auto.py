"""The default split: ``split.method = "auto"`` asks "does it work on a recording it never saw?".

:func:`resolve_split` turns ``auto`` into the split that answers that question wherever the data
allows it:

* ``group`` when groups are given (two or more recordings share a non-empty ``Recording.group``:
  the same bearing at several loads, one test-rig run cut into files) and every class has at least
  two groups: the test side holds whole groups (machines, bearings) never trained on;
* ``recording`` when no groups are given and every class has at least two recordings: the test
  side holds whole recordings never trained on;
* ``time`` otherwise, with a printed warning and a manifest note naming the classes that rest on
  one recording / group: validation and test are then later time blocks of the recordings trained
  on, which measures memory of those recordings, not new ones.

A ``time`` split chosen explicitly gets a note that says what it measures. With few recordings per
class the grouping split still works: the test side takes about ``split.test_fraction`` of each
class's units (at least one), and validation mirrors it (``split.val_method = "auto"``: about
``val_fraction`` of the remaining units, at least one where two or more remain), e.g. 4 recordings
per class -> 2 train / 1 validation / 1 test recording per class; with 2 per class validation falls
back to time blocks of the training recording, with the warning of :mod:`diag.signal.windows`.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

from diag.config import SplitConfig
from diag.sources.base import Recording

#: what a time split measures (the note printed and stored whenever the split is ``time``)
TIME_MEANS = ("validation and test are later time blocks of the recordings trained on (after a guard gap): the "
              "scores measure how well the model recognises those recordings later in time, not how it does on "
              "a recording it never saw")


def groups_given(recordings: list[Recording]) -> bool:
    """Whether the recordings carry groups: two or more of them share one non-empty ``group``."""
    counts = Counter(r.group for r in recordings if r.group)
    return any(n > 1 for n in counts.values())


def units_per_class(recordings: list[Recording], kind: str) -> dict[str, int]:
    """``{class: number of distinct units}``, units being recordings (``kind = "recording"``, by
    ``source``) or groups (``"group"``, ``group`` or else ``source``)."""
    key = (lambda r: r.group or r.source) if kind == "group" else (lambda r: r.source)
    units: dict[str, set[str]] = {}
    for r in recordings:
        units.setdefault(r.label, set()).add(key(r))
    return {label: len(u) for label, u in sorted(units.items())}


def resolve_split(recordings: list[Recording], cfg: SplitConfig) -> tuple[SplitConfig, list[str], list[str]]:
    """``(config, notes, warnings)``: ``cfg`` with ``method = "auto"`` resolved (a copy; ``cfg`` is
    left as it is), what was decided and why (notes, stored in the manifest), and the warnings to
    print even when quiet (also among the notes). Any other method is returned as it is; ``time``
    gets the note of what it measures."""
    if cfg.method == "time":
        return cfg, [(f"split.method=time: {TIME_MEANS}; split.method=recording (or group) tests on recordings "
                      "never trained on")], []
    if cfg.method != "auto":
        return cfg, [], []
    kind = "group" if groups_given(recordings) else "recording"
    counts = units_per_class(recordings, kind)
    thin = [label for label, n in counts.items() if n < 2]
    if not thin:
        lo, hi = min(counts.values()), max(counts.values())
        note = (f"split.method=auto -> {kind}: every class has at least two {kind}s ({lo if lo == hi else f'{lo} to {hi}'}"
                f"{' each' if lo == hi else ''}), so the test side holds whole {kind}s never trained on and validation "
                f"mirrors it (set split.method=time to test on later time blocks of the training {kind}s instead)")
        return dataclasses.replace(cfg, method=kind), [note], []
    what = ", ".join(f"'{c}'" for c in thin[:5]) + (f" and {len(thin) - 5} more" if len(thin) > 5 else "")
    warning = (f"split.method=auto -> time: class(es) {what} rest on a single {kind}, so no {kind} can be held out "
               f"for every class; {TIME_MEANS}. Record at least two {kind}s per class to test on new ones, or "
               "choose split.method=condition / fault-size where those are the question")
    return dataclasses.replace(cfg, method="time"), [warning], [warning]
