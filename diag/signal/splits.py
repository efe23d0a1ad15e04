"""Leakage-free train / validation / test splits, decided on sample ranges of recordings before any
window is cut, and the windows of the plan (:func:`window_starts`, :func:`extract`).

The split is decided on *sample ranges of recordings* before any window is cut, so the guarantee is
structural: windows are cut inside one block of one recording and never straddle two blocks, and
blocks of the same recording on different sides are separated by a guard gap of at least one window
length. Hence no training window shares a sample with a validation or test window
(:func:`check_no_shared_samples` verifies it on the result).

Splits (``SplitConfig.method``):

``auto`` (default)
    ``group`` where groups are given, else ``recording``, wherever every class has at least two of
    them; else ``time``, with a warning (:mod:`diag.signal.split_auto`).
``time``
    every recording is cut into ``train | guard | val | guard | test`` (test at the end).
``recording`` / ``group``
    whole recordings (``recording``: each source is its own group; ``group``: ``Recording.group``)
    go to the test side; the rest is training.
``condition``
    recordings whose ``condition`` is in ``test_conditions`` are the test side.
``fault-size``
    faulty recordings whose ``fault_size`` is in ``test_fault_sizes`` are the test side.
``random``
    windows are shuffled across sides. Leaks: neighbouring windows overlap or correlate. Only with
    ``allow_leaky``, and a warning is printed.

For the grouping splits, a class that would end up on only one side (e.g. CWRU's only healthy
recording, or healthy data under ``fault-size``) is split by time instead, and the fact is recorded
in the plan's ``notes``. Validation always comes from the training side only. ``split.val_method``
``auto`` (default) mirrors the test side: whole recordings / groups / conditions / fault sizes of
the training side are held out for validation (about ``val_fraction`` of each class's units, at
least one, for the classes with two or more), so the validation score measures the same kind of
shift as the test score; the other classes, and ``val_method = "time"``, take the last
``val_fraction`` of each training recording (after a guard gap) or of its training block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from diag.config import SPLITS, SplitConfig, WindowConfig
from diag.errors import DiagError
from diag.sources.base import Recording
from diag.signal.split_auto import resolve_split

__all__ = ["window_starts", "Block", "WindowIndex", "SplitPlan", "plan_split", "check_no_shared_samples", "extract"]


def window_starts(start: int, stop: int, length: int, hop: int) -> np.ndarray:
    """First samples of every window of ``length`` samples, ``hop`` apart, inside ``[start, stop)``."""
    if stop - start < length:
        return np.zeros(0, dtype=np.int64)
    return np.arange(start, stop - length + 1, hop, dtype=np.int64)


@dataclass
class Block:
    """A contiguous range of samples ``[start, stop)`` of recording ``rec`` assigned to ``side``."""

    rec: int
    start: int
    stop: int
    side: str


@dataclass
class WindowIndex:
    """Every window of a prepared dataset: recording index, first sample, and side."""

    rec: np.ndarray  # int64 [N]
    start: np.ndarray  # int64 [N]
    side: np.ndarray  # <U5 [N]: train | val | test

    def select(self, side: str) -> "WindowIndex":
        m = self.side == side
        return WindowIndex(self.rec[m], self.start[m], self.side[m])

    def __len__(self) -> int:
        return len(self.rec)


@dataclass
class SplitPlan:
    blocks: list[Block]
    windows: WindowIndex
    guard: int
    notes: list[str] = field(default_factory=list)
    leaky: bool = False
    val_by: str = "time"  # how validation was chosen: time | recording | group | condition | fault-size (+time)
    warnings: list[str] = field(default_factory=list)  # also in notes; printed by prepare
    method: str = ""  # the split method used (split.method, with auto resolved: diag.signal.split_auto)


def _time_blocks(i: int, n: int, length: int, guard: int, test_fraction: float, val_fraction: float,
                 source: str, with_test: bool = True) -> list[Block]:
    """``train | guard | val | guard | test`` blocks of one recording of ``n`` samples."""
    t = int(round(n * test_fraction)) if with_test else 0
    v = int(round(n * val_fraction))
    gaps = (guard if t else 0) + (guard if v else 0)
    tr = n - t - v - gaps
    what = "train | val | test" if with_test else "train | val"
    short = []
    if v and v < length:
        short.append(f"its validation block (split.val_fraction={val_fraction:g} of {n} = {v} samples) is shorter "
                     f"than one {length}-sample window (val_fraction >= {length / n:.3f} needed)")
    if t and t < length:
        short.append(f"its test block (split.test_fraction={test_fraction:g} of {n} = {t} samples) is shorter "
                     f"than one {length}-sample window (test_fraction >= {length / n:.3f} needed)")
    if tr < length:
        short.append(f"after the validation ({v}) and test ({t}) blocks and {gaps} guard samples, {max(tr, 0)} "
                     f"samples remain for training, fewer than one {length}-sample window")
    if short:
        raise DiagError(
            f"{source}: {n} samples is too short for a {what} time split: " + "; ".join(short) + ". Use shorter "
            "windows or other fractions, hold out whole recordings for validation instead "
            "(split.val_method=recording, with a grouping split.method), or drop this recording"
        )
    blocks = [Block(i, 0, tr, "train")]
    pos = tr
    if v:
        pos += guard
        blocks.append(Block(i, pos, pos + v, "val"))
        pos += v
    if t:
        pos += guard
        blocks.append(Block(i, pos, n, "test"))
    return blocks


def _unit_key(kind: str):
    """The unit a grouping split holds out whole: recording, group, condition or fault size."""
    return {"recording": lambda r: r.source, "group": lambda r: r.group or r.source,
            "condition": lambda r: r.condition, "fault-size": lambda r: r.fault_size}[kind]


def _stratified_holdout(labels: list[str], units: list[str], fraction: float, rng: np.random.Generator,
                        skip: frozenset[str] = frozenset()) -> set[str]:
    """Seeded, stratified choice of units to hold out (``labels[i]``, ``units[i]``: one per recording).

    Per class, hold out about ``fraction`` of its units (at least one when the class has two or
    more). A unit is held out for every class it holds, so a unit is never drawn if that would
    leave some class without a remaining unit, or if a class with this one unit only needs it.
    Units in ``skip`` (e.g. the empty fault size of healthy data) are never drawn.
    """
    held: set[str] = set()
    by_label: dict[str, list[str]] = {}
    for lab, g in zip(labels, units):
        by_label.setdefault(lab, [])
        if g not in by_label[lab]:
            by_label[lab].append(g)
    by_label = {k: sorted(v) for k, v in by_label.items()}
    single = {gs[0] for gs in by_label.values() if len(gs) == 1}

    def can_hold_out(g: str) -> bool:
        return g not in single and g not in skip and all(any(x not in held and x != g for x in gs)
                                                         for gs in by_label.values() if g in gs)

    for label in sorted(by_label):
        gs = by_label[label]
        if len(gs) < 2:
            continue
        k = min(len(gs) - 1, max(1, int(round(len(gs) * fraction))))
        for _ in range(k - sum(g in held for g in gs)):
            candidates = [g for g in gs if g not in held and can_hold_out(g)]
            if not candidates:
                break
            held.add(str(rng.choice(candidates)))
    return held


def _val_assignment(recordings: list[Recording], sides: list[str], cfg: SplitConfig
                    ) -> tuple[dict[int, str], str, list[str], list[str]]:
    """Validation for the training-side recordings of a grouping split.

    Returns ``({recording: "val" | "train" | "carve"}, val_by, notes, warnings)``: whole units of
    the ``val_method`` kind (``auto``: the test side's kind) are held out for validation for the
    classes that have at least two such units on the training side; the training recordings of
    the other classes are carved by time (``"carve"``: ``train | guard | val``).
    """
    train = [i for i, sd in enumerate(sides) if sd == "train"]
    if cfg.val_fraction == 0 or not train:
        return {i: "train" if cfg.val_fraction == 0 else "carve" for i in train}, "none", [], []
    kind = cfg.method if cfg.val_method == "auto" else cfg.val_method
    if kind == "time":
        return {i: "carve" for i in train}, "time", [], []
    key = _unit_key(kind)
    labels = [recordings[i].label for i in train]
    units = [key(recordings[i]) for i in train]
    # a unit that also holds recordings split by time (or tested) is never a validation unit: it
    # would share that unit with the training (or test) side
    elsewhere = frozenset(key(r) for r, sd in zip(recordings, sides) if sd != "train")
    held = _stratified_holdout(labels, units, cfg.val_fraction, np.random.default_rng([cfg.seed, 1]),
                               skip=frozenset({""}) | elsewhere)
    assign = {i: ("val" if u in held else "train") for i, u in zip(train, units)}
    with_val = {recordings[i].label for i in train if assign[i] == "val"}
    notes: list[str] = []
    warnings: list[str] = []
    fallback = sorted({recordings[i].label for i in train} - with_val)
    if not with_val:
        if cfg.val_method != "auto":
            raise DiagError(f"split.val_method={kind}: no class has two or more {kind} units on the training side "
                            "to hold one out for validation; use split.val_method=time or auto")
        msg = (f"validation by time blocks of the training recordings: no class has two or more {kind} units on "
               "the training side to hold one out; validation scores measure memory of known recordings")
        return {i: "carve" for i in train}, "time", [msg], [msg]
    for i in train:
        if recordings[i].label in fallback:
            assign[i] = "carve"
    notes.append(f"validation holds out whole {kind} units of the training side: {sorted(held)}")
    if fallback:
        msg = (f"class(es) {fallback} have fewer than two {kind} units on the training side; their validation "
               "windows are time blocks of their training recordings")
        notes.append(msg)
        warnings.append(msg)
    return assign, kind if not fallback else f"{kind}+time", notes, warnings


def _holdout_sides(recordings: list[Recording], cfg: SplitConfig) -> tuple[list[str], list[str]]:
    """For grouping splits: ``'train'``/``'test'`` per recording, plus notes."""
    notes: list[str] = []
    m = cfg.method
    if m == "condition":
        known = {r.condition for r in recordings}
        missing = [c for c in cfg.test_conditions if c not in known]
        if missing:
            raise DiagError(
                f"split.test_conditions: {missing} not found; the recordings' conditions are {sorted(known)}"
            )
        return ["test" if r.condition in cfg.test_conditions else "train" for r in recordings], notes
    if m == "fault-size":
        known = {r.fault_size for r in recordings if r.fault_size}
        missing = [s for s in cfg.test_fault_sizes if s not in known]
        if missing:
            raise DiagError(
                f"split.test_fault_sizes: {missing} not found; the recordings' fault sizes are {sorted(known)}"
            )
        return ["test" if r.fault_size and r.fault_size in cfg.test_fault_sizes else "train" for r in recordings], notes
    # recording / group
    key = (lambda r: r.source) if m == "recording" else (lambda r: r.group or r.source)
    groups = [key(r) for r in recordings]
    if cfg.test_groups:
        unknown = [g for g in cfg.test_groups if g not in set(groups)]
        if unknown:
            raise DiagError(f"split.test_groups: {unknown[:3]} not found among the {len(set(groups))} groups")
        test = set(cfg.test_groups)
    else:
        test = _stratified_holdout([r.label for r in recordings], groups, cfg.test_fraction,
                                   np.random.default_rng(cfg.seed))
    return ["test" if g in test else "train" for g in groups], notes


def plan_split(recordings: list[Recording], wcfg: WindowConfig, scfg: SplitConfig) -> SplitPlan:
    """Assign sample blocks of every recording to train/val/test and list the windows.

    ``recordings`` must already be at the target rate (see :func:`harmonise`). ``split.method = "auto"``
    is resolved first (:func:`diag.signal.split_auto.resolve_split`); ``plan.method`` is the method used.
    """
    scfg, auto_notes, auto_warnings = resolve_split(recordings, scfg)  # auto -> group | recording | time
    plan = _plan_split(recordings, wcfg, scfg)
    plan.notes[:0], plan.warnings[:0], plan.method = auto_notes, auto_warnings, scfg.method
    return plan


def _plan_split(recordings: list[Recording], wcfg: WindowConfig, scfg: SplitConfig) -> SplitPlan:
    """:func:`plan_split` for a resolved ``split.method``."""
    length, hop = wcfg.length, wcfg.hop
    guard = int(math.ceil(scfg.guard_windows * length))
    blocks: list[Block] = []
    notes: list[str] = []

    if scfg.method == "random":
        if not scfg.allow_leaky:
            raise DiagError("split.method=random leaks neighbouring windows across train/test; "
                            "set split.allow_leaky=true (--allow-leaky) to use it anyway")
        rng = np.random.default_rng(scfg.seed)
        recs, starts = [], []
        for i, r in enumerate(recordings):
            s = window_starts(0, r.n_samples, length, hop)
            if not len(s):
                raise DiagError(f"{r.source}: {r.n_samples} samples is shorter than one {length}-sample window")
            recs.append(np.full(len(s), i)), starts.append(s)
            blocks.append(Block(i, 0, r.n_samples, "mixed"))
        rec, start = np.concatenate(recs), np.concatenate(starts)
        u = rng.random(len(rec))
        side = np.where(u < scfg.test_fraction, "test",
                        np.where(u < scfg.test_fraction + scfg.val_fraction, "val", "train"))
        notes.append("random window split: overlapping/neighbouring windows sit on both sides; accuracy is optimistic")
        return SplitPlan(blocks, WindowIndex(rec, start, side.astype("<U5")), 0, notes, leaky=True)

    val_by, warnings = ("time" if scfg.val_fraction else "none"), []
    if scfg.method == "time":
        for i, r in enumerate(recordings):
            blocks += _time_blocks(i, r.n_samples, length, guard, scfg.test_fraction, scfg.val_fraction, r.source)
    else:
        sides, notes = _holdout_sides(recordings, scfg)
        # A class with nothing held out (healthy data under fault-size, a class recorded at one
        # condition or on one bearing) is split by time instead, and the plan says so. A class that
        # would only be tested is an error: the model would never see it.
        labels = sorted({r.label for r in recordings})
        what = {"condition": "test_conditions", "fault-size": "test_fault_sizes"}.get(scfg.method, "held-out groups")
        for label in labels:
            s = {sd for r, sd in zip(recordings, sides) if r.label == label}
            if s == {"test"}:
                raise DiagError(f"split.{scfg.method}: every recording of class '{label}' is in the {what}, so it "
                                "would never be trained on; hold out less, or (fault-size) label by fault type "
                                "(source.label_by=type), not by type and size")
            if s == {"train"}:
                notes.append(f"class '{label}' has nothing in the {what}; its recordings are split by time instead")
                for i, r in enumerate(recordings):
                    if r.label == label:
                        sides[i] = "time"
        if all(sd == "time" for sd in sides):
            raise DiagError(f"split.{scfg.method}: nothing is held out for any class; use split.method=time or "
                            f"other {what}")
        # (A held-out group is held out for every class it holds, and a class moved to the time
        # split had all its recordings on the training side, so no group ends up on both sides.
        # The same holds for the units held out for validation, drawn from the training side.)
        val_assign, val_by, vnotes, warnings = _val_assignment(recordings, sides, scfg)
        notes += vnotes
        for i, (r, sd) in enumerate(zip(recordings, sides)):
            if sd == "time":
                blocks += _time_blocks(i, r.n_samples, length, guard, scfg.test_fraction, scfg.val_fraction, r.source)
            elif sd == "test":
                blocks.append(Block(i, 0, r.n_samples, "test"))
            elif val_assign[i] == "carve":
                blocks += _time_blocks(i, r.n_samples, length, guard, 0.0, scfg.val_fraction, r.source, with_test=False)
            else:
                blocks.append(Block(i, 0, r.n_samples, val_assign[i]))

    recs, starts, sides_w = [], [], []
    for b in blocks:
        s = window_starts(b.start, b.stop, length, hop)
        recs.append(np.full(len(s), b.rec, dtype=np.int64))
        starts.append(s)
        sides_w.append(np.full(len(s), b.side, dtype="<U5"))
    idx = WindowIndex(np.concatenate(recs), np.concatenate(starts), np.concatenate(sides_w))
    labels = np.array([r.label for r in recordings], dtype=object)
    for side in SPLITS:
        if scfg.val_fraction == 0 and side == "val":
            continue
        if not (idx.side == side).any():
            raise DiagError(f"split.{scfg.method}: the {side} side has no windows; check the split settings")
        missing = sorted(set(labels) - set(labels[idx.rec[idx.side == side]]))
        if missing:
            raise DiagError(f"split.{scfg.method}: class(es) {missing[:3]} have no windows on the {side} side "
                            "(recordings too short for a window there?); adjust windows.length/hop or the fractions")
    return SplitPlan(blocks, idx, guard, notes, val_by=val_by, warnings=warnings)


def check_no_shared_samples(plan: SplitPlan, length: int) -> None:
    """Raise ``AssertionError`` if a window on one side overlaps a window on another side.

    Per recording, the sample intervals ``[start, start + length)`` of each side are merged and
    checked pairwise for intersection. The leaky ``random`` split fails this check by design.
    """
    w = plan.windows
    for rec in np.unique(w.rec):
        spans = {}
        for side in SPLITS:
            m = (w.rec == rec) & (w.side == side)
            if m.any():
                st = np.sort(w.start[m])
                spans[side] = (st, st + length)
        sides = list(spans)
        for a in range(len(sides)):
            for b in range(a + 1, len(sides)):
                sa, ea = spans[sides[a]]
                sb, eb = spans[sides[b]]
                # For sorted intervals: any overlap iff some interval of b starts before an
                # interval of a ends and ends after it starts.
                j = np.searchsorted(sa, eb, side="left")  # intervals of a starting before eb
                overlap = (j > 0) & (ea[np.maximum(j - 1, 0)] > sb)
                # Check the latest-ending a-interval starting before eb (ends ascend with starts
                # because all intervals have the same length).
                if overlap.any():
                    k = int(np.argmax(overlap))
                    raise AssertionError(
                        f"recording {rec}: {sides[b]} window at {sb[k]} overlaps a {sides[a]} window"
                    )


def extract(recordings: list[Recording], rec: np.ndarray, start: np.ndarray, length: int) -> np.ndarray:
    """Windows ``[B, C, length]`` (float32) for the given recording indices and first samples."""
    c = recordings[0].n_channels
    out = np.empty((len(rec), c, length), dtype=np.float32)
    offs = np.arange(length)
    for r in np.unique(rec):
        m = np.nonzero(rec == r)[0]
        sig = recordings[int(r)].signal
        out[m] = sig[:, start[m, None] + offs].transpose(1, 0, 2)
    return out
