"""Resampling, windowing and leakage-free train / validation / test splits.

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

Before windowing, every recording may be band-limited (``windows.band``, :func:`band_limit`);
windows are normalised by :func:`apply_normalization` (per window and channel, per window jointly,
or with fixed training-split statistics per channel group).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly

from diag.config import SPLITS, SplitConfig, WindowConfig, auto_norms
from diag.errors import DiagError
from diag.sources.base import Recording
from diag.signal.split_auto import resolve_split


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
    return dataclasses.replace(rec, signal=y.astype(np.float32), fs=fs, meta=meta)


#: transition band of the band-limit filter, as a fraction of the sampling rate (60 Hz at 12 kHz): it lies
#: inside the band, so everything outside ``[lo, hi]`` is attenuated by at least BAND_ATTENUATION_DB
BAND_TRANSITION = 0.005
BAND_ATTENUATION_DB = 100.0


@functools.lru_cache(maxsize=32)
def band_filter(fs: float, lo: float, hi: float) -> np.ndarray:
    """The linear-phase FIR of :func:`band_limit` (float64 taps, odd length) at ``fs`` Hz for the band
    ``[lo, hi]`` Hz (``lo = 0``: low-pass, keeps DC; ``hi = 0``: high-pass).

    A Kaiser-window design (``scipy.signal.kaiserord`` / ``firwin``) with at least
    :data:`BAND_ATTENUATION_DB` dB of stop-band attenuation outside the band and its transition
    (:data:`BAND_TRANSITION` x ``fs`` wide) inside it: about 1,300 taps at any rate.
    """
    from scipy.signal import firwin, kaiserord

    nyq = fs / 2
    if hi and hi >= nyq:
        raise DiagError(f"windows.band: upper edge {hi:g} Hz is at or above the Nyquist frequency {nyq:g} Hz "
                        f"({fs:g} Hz); choose a lower edge or 0 for none")
    if lo >= (hi or nyq):
        raise DiagError(f"windows.band: lower edge {lo:g} Hz must be below the upper edge {(hi or nyq):g} Hz")
    tw = BAND_TRANSITION * fs
    if lo >= (hi or nyq) - (2 * tw if lo and hi else tw):
        raise DiagError(f"windows.band: [{lo:g}, {hi:g}] Hz is narrower than the filter's transition bands "
                        f"({tw:g} Hz each at {fs:g} Hz); widen it")
    numtaps, beta = kaiserord(BAND_ATTENUATION_DB, tw / nyq)
    numtaps |= 1  # odd (type I): a whole-sample delay, so the centred filter has zero phase
    if lo > 0 and hi > 0:
        cut, pass_zero = [lo + tw / 2, hi - tw / 2], False
    elif hi > 0:
        cut, pass_zero = hi - tw / 2, True
    else:
        cut, pass_zero = lo + tw / 2, False
    return firwin(numtaps, cut, window=("kaiser", beta), pass_zero=pass_zero, fs=fs)


def band_edges(band: list[float] | tuple[float, ...] | None) -> tuple[float, float] | None:
    """``windows.band`` as ``(lo, hi)`` Hz, or None when it is off (empty, or both edges 0)."""
    lo, hi = (float(band[0]), float(band[1])) if band else (0.0, 0.0)
    return None if lo <= 0 and hi <= 0 else (lo, hi)


def filter_segment(x: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """``x`` ``[C, M + len(taps) - 1]`` (float64) filtered by the centred ``taps``: ``[C, M]`` float32 (the
    'valid' part of the convolution; :func:`band_limit` pads the recording's ends, the streaming reader
    of :mod:`diag.signal.stream` reads its neighbours)."""
    from scipy.signal import oaconvolve

    return oaconvolve(x, taps[None, :], mode="valid", axes=-1).astype(np.float32)


def symmetric_index(idx: np.ndarray, n: int) -> np.ndarray:
    """Sample indices ``idx`` (may lie up to ``n`` before 0 or after ``n - 1``) reflected into ``[0, n)``
    as ``numpy.pad(mode="symmetric")`` extends a signal (the edge sample repeated)."""
    idx = np.where(idx < 0, -idx - 1, idx)
    return np.where(idx >= n, 2 * n - idx - 1, idx)


def band_limit(rec: Recording, band: list[float] | tuple[float, ...]) -> Recording:
    """Remove everything outside ``band = [lo, hi]`` Hz from the whole recording (zero phase).

    A linear-phase FIR (:func:`band_filter`, at least 100 dB down outside the band), centred, over the
    recording extended by mirroring at both ends (``numpy.pad`` ``symmetric``, so the filter sees no
    jump at the edges). ``lo = 0`` keeps DC (no high-pass); ``hi = 0`` means no low-pass. Every
    recording gets the same operation, so a cue that differs only outside the band is gone from all
    of them (CWRU: two acquisition chains whose anti-alias edges differ around 5.0-5.6 kHz).

    An FIR rather than an FFT brick wall over the whole recording: its reach is finite (half its
    length, about 640 samples), so ``diag predict`` applies exactly the same filter to a file of any
    length in chunks, with bounded memory (:class:`diag.signal.stream.BandLimitedReader`); and rather
    than a Butterworth ``sosfiltfilt``, whose transition band would let part of a cue at the limit through.
    """
    edges = band_edges(band)
    if edges is None:
        return rec
    try:
        taps = band_filter(float(rec.fs), *edges)
    except DiagError as exc:
        raise DiagError(f"{rec.source}: {exc}") from None
    h = len(taps) // 2
    x = rec.signal.astype(np.float64, copy=False)
    n = x.shape[-1]
    ext = x[:, symmetric_index(np.arange(-h, n + h), n)] if n >= h else np.pad(x, ((0, 0), (h, h)), "symmetric")
    y = filter_segment(ext, taps)
    return dataclasses.replace(rec, signal=y, meta=dict(rec.meta, band=list(edges)))


def harmonise(recordings: list[Recording], cfg: WindowConfig) -> list[Recording]:
    """Validate, check channel counts agree, bring every recording to the target rate, band-limit.

    With ``cfg.fs == 0`` the recordings must already share one rate: mixing rates without
    resampling plants a trivial cue (CWRU's 48 kHz healthy baseline among 12 kHz faults).
    ``cfg.band`` (when set) is applied to every recording after resampling (:func:`band_limit`).
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
        return [band_limit(r, cfg.band) for r in recordings]
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
        out.append(band_limit(resample(r, cfg.fs), cfg.band))
    return out


# ------------------------------------------------------------------------------------------------
# Windows


def window_starts(start: int, stop: int, length: int, hop: int) -> np.ndarray:
    """First samples of every window of ``length`` samples, ``hop`` apart, inside ``[start, stop)``."""
    if stop - start < length:
        return np.zeros(0, dtype=np.int64)
    return np.arange(start, stop - length + 1, hop, dtype=np.int64)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.where(den > 0, num / np.where(den > 0, den, 1), 0).astype(np.float32)


def normalize(x: np.ndarray, method: str) -> np.ndarray:
    """Per-window normalisation of ``x`` with shape ``[..., C, W]`` (windows on the last axis).

    Per channel (each channel of each window on its own; ratios between channels are lost):

    * ``zscore``: ``(x - mean) / std``
    * ``rms``: ``x / sqrt(mean(x**2))`` (keeps the DC level)
    * ``minmax``: affine map of ``[min, max]`` to ``[-1, 1]``

    Joint (one map per window for all its channels; amplitude ratios, offsets and phase relations
    between channels are kept):

    * ``zscore-joint``: ``(x - m) / s`` with ``m``, ``s`` the mean and std over all channels and samples
    * ``rms-joint``: ``x / sqrt(mean over channels and samples of x**2)``

    * ``none``: unchanged. (``dataset`` needs statistics: see :func:`apply_normalization`.)
    * ``auto``: ``zscore`` for one channel, ``zscore-joint`` for several (the default; ``diag prepare``
      stores the resolved method)

    Constant windows (std, rms or range 0) are left at zero rather than divided by zero.
    """
    x = x.astype(np.float32, copy=False)
    if method == "auto":  # diag prepare stores the resolved method; this is for direct callers
        method = auto_norms(x.shape[-2] if x.ndim >= 2 else 1)[0]
    if method == "none":
        return x
    if method == "zscore":
        return _safe_div(x - x.mean(axis=-1, keepdims=True), x.std(axis=-1, keepdims=True))
    if method == "rms":
        return _safe_div(x, np.sqrt(np.mean(np.square(x), axis=-1, keepdims=True)))
    if method == "minmax":
        lo = x.min(axis=-1, keepdims=True)
        hi = x.max(axis=-1, keepdims=True)
        rng = hi - lo
        return np.where(rng > 0, 2 * (x - lo) / np.where(rng > 0, rng, 1) - 1, 0).astype(np.float32)
    if method in ("zscore-joint", "rms-joint"):
        if x.ndim < 2:
            raise DiagError(f"windows.normalize={method}: needs windows shaped [..., channels, samples]")
        axes = (-2, -1)
        if method == "zscore-joint":
            return _safe_div(x - x.mean(axis=axes, keepdims=True), x.std(axis=axes, keepdims=True))
        return _safe_div(x, np.sqrt(np.mean(np.square(x), axis=axes, keepdims=True)))
    if method == "dataset":
        raise DiagError("windows.normalize=dataset needs the training-split statistics; "
                        "call apply_normalization(windows, 'dataset', stats)")
    raise DiagError(f"windows.normalize: unknown '{method}'")


def channel_groups(channels: list[str] | tuple[str, ...], groups: list[list[str]]) -> list[list[int]]:
    """Channel indices of each group of ``windows.channel_groups`` (empty: all channels form one group).

    Every channel must be in exactly one group; a name that is not a channel is an error.
    """
    channels = list(channels)
    if not groups:
        return [list(range(len(channels)))]
    seen: dict[str, int] = {}
    out = []
    for g in groups:
        idx = []
        for name in g:
            if name not in channels:
                raise DiagError(f"windows.channel_groups: '{name}' is not a channel; the channels are {channels}")
            if name in seen:
                raise DiagError(f"windows.channel_groups: channel '{name}' is in two groups")
            seen[name] = len(out)
            idx.append(channels.index(name))
        out.append(idx)
    missing = [c for c in channels if c not in seen]
    if missing:
        raise DiagError(f"windows.channel_groups: channel(s) {missing} are in no group; list every channel once")
    return out


class NormalizationStats:
    """Running sums for the ``dataset`` normalisation: one mean and one std per channel group.

    Feed it the *training* windows (``update``), then ``result()`` gives the JSON-able statistics
    that :func:`apply_normalization` needs and the manifest stores (so predict applies the same).
    """

    def __init__(self, channels: list[str] | tuple[str, ...], groups: list[list[str]]):
        self.channels = list(channels)
        self.groups = channel_groups(self.channels, groups)
        self.n = np.zeros(len(self.channels))
        self.s1 = np.zeros(len(self.channels))
        self.s2 = np.zeros(len(self.channels))

    def update(self, x: np.ndarray) -> None:
        """Add windows ``[B, C, W]``."""
        x = np.asarray(x, dtype=np.float64)
        self.n += x.shape[0] * x.shape[-1]
        self.s1 += x.sum(axis=(0, 2))
        self.s2 += np.square(x).sum(axis=(0, 2))

    def result(self) -> dict:
        c = len(self.channels)
        center, scale = np.zeros(c), np.ones(c)
        for idx in self.groups:
            n = self.n[idx].sum()
            if n == 0:
                raise DiagError("windows.normalize=dataset: no training windows to compute the scale from")
            mean = self.s1[idx].sum() / n
            var = max(self.s2[idx].sum() / n - mean**2, 0.0)
            sd = float(np.sqrt(var))
            center[idx] = mean
            scale[idx] = sd if sd > 0 else 1.0
        return {"channels": self.channels, "groups": [[self.channels[i] for i in g] for g in self.groups],
                "center": [float(v) for v in center], "scale": [float(v) for v in scale]}


def apply_normalization(windows: np.ndarray, method: str, stats: dict | None = None) -> np.ndarray:
    """Normalise windows ``[B, C, W]`` the way a prepared dataset (and so its model) expects.

    Per-window methods (see :func:`normalize`) need no ``stats``. ``dataset``: one fixed affine map
    per channel group, ``(x - center) / scale`` with the mean and standard deviation of the group's
    channels over the training windows (``stats`` as stored in the manifest under
    ``window.normalization_stats``; :class:`NormalizationStats` computes them). It keeps the
    absolute level as well as the ratios between the channels of a group.
    """
    if method != "dataset":
        return normalize(windows, method)
    if not stats or "center" not in stats or "scale" not in stats:
        raise DiagError("windows.normalize=dataset: the training-split statistics are missing "
                        "(a dataset or checkpoint prepared without them); prepare the dataset again")
    x = np.asarray(windows, dtype=np.float32)
    center = np.asarray(stats["center"], dtype=np.float32)
    scale = np.asarray(stats["scale"], dtype=np.float32)
    if x.ndim < 2 or x.shape[-2] != len(center):
        raise DiagError(f"windows.normalize=dataset: the statistics are for {len(center)} channel(s) "
                        f"({stats.get('channels')}), the windows have shape {x.shape}")
    return ((x - center[:, None]) / scale[:, None]).astype(np.float32)


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
