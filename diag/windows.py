"""Resampling, windowing and leakage-free train / validation / test splits.

The split is decided on *sample ranges of recordings* before any window is cut, so the guarantee is
structural: windows are cut inside one block of one recording and never straddle two blocks, and
blocks of the same recording on different sides are separated by a guard gap of at least one window
length. Hence no training window shares a sample with a validation or test window
(:func:`check_no_shared_samples` verifies it on the result).

Splits (``SplitConfig.method``):

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
in the plan's ``notes``. Validation always comes from the training side only: the last
``val_fraction`` of each training recording (after a guard gap) or of its training block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly

from diag.config import SplitConfig, WindowConfig
from diag.errors import DiagError
from diag.sources.base import Recording

SIDES = ("train", "val", "test")


# ------------------------------------------------------------------------------------------------
# Resampling


def rational_ratio(fs_from: float, fs_to: float, max_denominator: int = 10_000) -> tuple[int, int]:
    """``(up, down)`` with ``fs_to / fs_from == up / down`` exactly (to 1 ppm), smallest terms."""
    frac = Fraction(fs_to / fs_from).limit_denominator(max_denominator)
    if frac.numerator == 0 or abs(frac.numerator / frac.denominator * fs_from - fs_to) > 1e-6 * fs_to:
        raise DiagError(
            f"cannot resample {fs_from:g} Hz to {fs_to:g} Hz by a rational factor; "
            "choose a target windows.fs that is a simple ratio of the recording's rate"
        )
    return frac.numerator, frac.denominator


def resample(rec: Recording, fs: float) -> Recording:
    """Polyphase-resample ``rec`` to ``fs`` Hz (Kaiser-windowed anti-alias FIR, ``scipy.signal.resample_poly``).

    Returns ``rec`` itself when the rate already matches. The original rate is kept in
    ``meta["fs_original"]``.
    """
    if fs <= 0 or abs(rec.fs - fs) <= 1e-9 * fs:
        return rec
    up, down = rational_ratio(rec.fs, fs)
    y = resample_poly(rec.signal.astype(np.float64, copy=False), up, down, axis=-1)
    meta = dict(rec.meta, fs_original=rec.fs)
    return Recording(
        signal=y.astype(np.float32),
        fs=fs,
        label=rec.label,
        group=rec.group,
        condition=rec.condition,
        source=rec.source,
        fault_size=rec.fault_size,
        channels=rec.channels,
        meta=meta,
    )


def harmonise(recordings: list[Recording], cfg: WindowConfig) -> list[Recording]:
    """Validate, check channel counts agree, and bring every recording to the target rate.

    With ``cfg.fs == 0`` the recordings must already share one rate: mixing rates without
    resampling plants a trivial cue (CWRU's 48 kHz healthy baseline among 12 kHz faults).
    """
    if not recordings:
        raise DiagError("no recordings were read; check source.path and the reader options")
    for r in recordings:
        r.validate()
    first = recordings[0]
    for r in recordings[1:]:
        if r.n_channels != first.n_channels:
            raise DiagError(
                f"{r.source}: {r.n_channels} channels but {first.source} has {first.n_channels}; "
                "select the same channels for every recording"
            )
    if cfg.fs == 0:
        for r in recordings[1:]:
            if abs(r.fs - first.fs) > 1e-9 * first.fs:
                raise DiagError(
                    f"inconsistent sampling rates: {first.source} is {first.fs:g} Hz, {r.source} is {r.fs:g} Hz; "
                    "set windows.fs to resample them all to one rate"
                )
        return list(recordings)
    out = []
    for r in recordings:
        if r.fs < cfg.fs:
            # Upsampling invents no information but changes what the images show; allow it only
            # up to a factor of 4 and say so in the manifest via meta.
            if cfg.fs / r.fs > 4:
                raise DiagError(
                    f"{r.source}: sampled at {r.fs:g} Hz, far below the target windows.fs={cfg.fs:g} Hz; "
                    "lower windows.fs"
                )
        out.append(resample(r, cfg.fs))
    return out


# ------------------------------------------------------------------------------------------------
# Windows


def window_starts(start: int, stop: int, length: int, hop: int) -> np.ndarray:
    """First samples of every window of ``length`` samples, ``hop`` apart, inside ``[start, stop)``."""
    if stop - start < length:
        return np.zeros(0, dtype=np.int64)
    return np.arange(start, stop - length + 1, hop, dtype=np.int64)


def normalize(x: np.ndarray, method: str) -> np.ndarray:
    """Per-window, per-channel normalisation of ``x`` with shape ``[..., W]`` (windows on the last axis).

    * ``zscore``: ``(x - mean) / std``
    * ``rms``: ``x / sqrt(mean(x**2))`` (keeps the DC level)
    * ``minmax``: affine map of ``[min, max]`` to ``[-1, 1]``
    * ``none``: unchanged

    Constant windows (std, rms or range 0) are left at zero rather than divided by zero.
    """
    x = x.astype(np.float32, copy=False)
    if method == "none":
        return x
    if method == "zscore":
        mu = x.mean(axis=-1, keepdims=True)
        sd = x.std(axis=-1, keepdims=True)
        return np.where(sd > 0, (x - mu) / np.where(sd > 0, sd, 1), 0).astype(np.float32)
    if method == "rms":
        rms = np.sqrt(np.mean(np.square(x), axis=-1, keepdims=True))
        return np.where(rms > 0, x / np.where(rms > 0, rms, 1), 0).astype(np.float32)
    if method == "minmax":
        lo = x.min(axis=-1, keepdims=True)
        hi = x.max(axis=-1, keepdims=True)
        rng = hi - lo
        return np.where(rng > 0, 2 * (x - lo) / np.where(rng > 0, rng, 1) - 1, 0).astype(np.float32)
    raise DiagError(f"windows.normalize: unknown '{method}'")


# ------------------------------------------------------------------------------------------------
# Split plan


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


def _time_blocks(i: int, n: int, length: int, guard: int, test_fraction: float, val_fraction: float,
                 source: str, with_test: bool = True) -> list[Block]:
    """``train | guard | val | guard | test`` blocks of one recording of ``n`` samples."""
    t = int(round(n * test_fraction)) if with_test else 0
    v = int(round(n * val_fraction))
    gaps = (guard if t else 0) + (guard if v else 0)
    tr = n - t - v - gaps
    need = length * (1 + (1 if t else 0) + (1 if v else 0)) + gaps
    if n < need or tr < length or (t and t < length) or (v and v < length):
        what = "train | val | test" if with_test else "train | val"
        raise DiagError(
            f"{source}: {n} samples is too short for a {what} time split of {length}-sample windows "
            f"with a {guard}-sample guard (needs at least {need}); use shorter windows, smaller "
            "fractions, or drop this recording"
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
        # Seeded, stratified: per class, hold out about test_fraction of its groups (at least one
        # when the class has two or more). A group is held out for every class it holds, so a
        # group is never drawn if that would leave some class without a training group, or if a
        # class with this one group only needs it (that class is split by time, on both sides).
        rng = np.random.default_rng(cfg.seed)
        test: set[str] = set()
        by_label: dict[str, list[str]] = {}
        for r, g in zip(recordings, groups):
            by_label.setdefault(r.label, [])
            if g not in by_label[r.label]:
                by_label[r.label].append(g)
        by_label = {k: sorted(v) for k, v in by_label.items()}
        single = {gs[0] for gs in by_label.values() if len(gs) == 1}

        def can_hold_out(g: str) -> bool:
            return g not in single and all(any(x not in test and x != g for x in gs)
                                           for gs in by_label.values() if g in gs)

        for label in sorted(by_label):
            gs = by_label[label]
            if len(gs) < 2:
                continue
            k = min(len(gs) - 1, max(1, int(round(len(gs) * cfg.test_fraction))))
            for _ in range(k - sum(g in test for g in gs)):
                candidates = [g for g in gs if g not in test and can_hold_out(g)]
                if not candidates:
                    break
                test.add(str(rng.choice(candidates)))
    return ["test" if g in test else "train" for g in groups], notes


def plan_split(recordings: list[Recording], wcfg: WindowConfig, scfg: SplitConfig) -> SplitPlan:
    """Assign sample blocks of every recording to train/val/test and list the windows.

    ``recordings`` must already be at the target rate (see :func:`harmonise`).
    """
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
        # split had all its recordings on the training side, so no group ends up on both sides.)
        for i, (r, sd) in enumerate(zip(recordings, sides)):
            if sd == "time":
                blocks += _time_blocks(i, r.n_samples, length, guard, scfg.test_fraction, scfg.val_fraction, r.source)
            elif sd == "test":
                blocks.append(Block(i, 0, r.n_samples, "test"))
            else:
                blocks += _time_blocks(i, r.n_samples, length, guard, 0.0, scfg.val_fraction, r.source, with_test=False)

    recs, starts, sides_w = [], [], []
    for b in blocks:
        s = window_starts(b.start, b.stop, length, hop)
        recs.append(np.full(len(s), b.rec, dtype=np.int64))
        starts.append(s)
        sides_w.append(np.full(len(s), b.side, dtype="<U5"))
    idx = WindowIndex(np.concatenate(recs), np.concatenate(starts), np.concatenate(sides_w))
    labels = np.array([r.label for r in recordings], dtype=object)
    for side in SIDES:
        if scfg.val_fraction == 0 and side == "val":
            continue
        if not (idx.side == side).any():
            raise DiagError(f"split.{scfg.method}: the {side} side has no windows; check the split settings")
        missing = sorted(set(labels) - set(labels[idx.rec[idx.side == side]]))
        if missing:
            raise DiagError(f"split.{scfg.method}: class(es) {missing[:3]} have no windows on the {side} side "
                            "(recordings too short for a window there?); adjust windows.length/hop or the fractions")
    return SplitPlan(blocks, idx, guard, notes)


def check_no_shared_samples(plan: SplitPlan, length: int) -> None:
    """Raise ``AssertionError`` if a window on one side overlaps a window on another side.

    Per recording, the sample intervals ``[start, start + length)`` of each side are merged and
    checked pairwise for intersection. The leaky ``random`` split fails this check by design.
    """
    w = plan.windows
    for rec in np.unique(w.rec):
        spans = {}
        for side in SIDES:
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
