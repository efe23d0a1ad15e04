"""Checks every recording passes, whatever reader produced it: :func:`check_recordings`.

A sensor that was unplugged, a logger that held its last value, an amplifier driven into its rails:
such recordings read without error and become images of their class that teach a classifier
nothing true. These checks find them, per channel, with thresholds relative to the recording
itself (no units assumed):

============  =========================================================================  ===========
problem       rule (per channel of ``N`` samples)                                        governed by
============  =========================================================================  ===========
dead          every sample is exactly 0                                                  ``on_bad``
flat          the samples vary by no more than float rounding: ``max - min <=``          ``on_bad``
              ``FLAT_ULPS`` x eps(dtype) x ``max |x|``
constant      a run of identical consecutive samples longer than ``CONSTANT_FRACTION``   ``on_bad``
              of ``N`` and at least ``CONSTANT_MIN_RUN`` samples (a drop-out, a held
              value), unless the value is the channel's max or min (then: clipped)
clipped       more than ``CLIP_FRACTION`` of ``N`` (and at least ``CLIP_MIN_COUNT``)      ``on_clipped``
              samples sit exactly at the channel's maximum, or at its minimum (the rail)
============  =========================================================================  ===========

Actions: ``"error"`` stops with a one-line :class:`DiagError` naming the file, the channel, the
problem and the way out; ``"warn"`` keeps the recording and reports it; ``"skip"`` leaves the
recording out and reports it. Defaults: ``on_bad = "error"`` (a dead or flat-lined channel carries
no information, and a long constant stretch yields windows of nothing labelled as a class);
``on_clipped = "warn"`` (a clipped recording still carries its fault signature, only distorted at
the peaks; many real test rigs saturate on impacts now and then, so refusing by default would push
users to turn every check off).

Duplicates are always an error, whatever the settings: two recordings with identical samples
(the same file listed twice, a copy under another name or label) would put the same windows on
both sides of a split and, under two labels, teach a contradiction.

Every finding is a :class:`Finding`; :func:`diag.signal.recordings.load_recordings` collects them, together
with the readers' notes (:attr:`Recording.notes`), for the prepared dataset's manifest.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

from diag.config import ON_BAD_ACTIONS as ON_BAD
from diag.errors import DiagError
from diag.sources.base import Recording

__all__ = [
    "Finding",
    "ON_BAD",
    "check_signal",
    "scan_signal",
    "check_recordings",
    "signal_hash",
    "find_duplicates",
    "CLIP_FRACTION",
    "CLIP_MIN_COUNT",
    "CONSTANT_FRACTION",
    "CONSTANT_MIN_RUN",
    "FLAT_ULPS",
]

#: a channel is clipped when more than this fraction of its samples sit exactly at its max (or min)
CLIP_FRACTION = 0.01
#: ... and at least this many samples (short recordings)
CLIP_MIN_COUNT = 10
#: a run of identical samples longer than this fraction of the recording is a constant segment
CONSTANT_FRACTION = 0.01
#: ... and at least this many samples long
CONSTANT_MIN_RUN = 64
#: a channel varying by at most this many float eps (relative to its peak) is flat-lined
FLAT_ULPS = 8

#: which setting governs each problem
GOVERNED_BY = {"dead": "on_bad", "flat": "on_bad", "constant": "on_bad", "clipped": "on_clipped"}


@dataclass(frozen=True)
class Finding:
    """One thing found about one recording.

    ``problem``: ``dead`` / ``flat`` / ``constant`` / ``clipped`` from the checks, or ``note`` for a
    reader's remark (a followed symlink, a known defect of a published file). ``action``: what was
    done: ``error``, ``warn``, ``skip`` or ``note``. ``detail``: one human sentence.
    """

    source: str
    problem: str
    action: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @property
    def tag(self) -> str:
        """How to introduce it to the user: ``note``, ``warning`` or ``skipped``."""
        return {"note": "note", "skip": "skipped"}.get(self.action, "warning")

    def __str__(self) -> str:
        return f"{self.source}: {self.detail}"


#: samples of a channel scanned at a time by :func:`check_signal` / :func:`scan_signal`
SCAN_CHUNK = 1 << 20


class _ChannelScan:
    """The statistics of :func:`check_signal`, accumulated over consecutive chunks of one channel: range,
    samples at the max and at the min, and the (first) longest run of identical samples."""

    def __init__(self, eps: float):
        self.eps, self.n = eps, 0
        self.hi, self.lo, self.n_hi, self.n_lo = -np.inf, np.inf, 0, 0
        self.run_value, self.run_start, self.run_len = None, 0, 0
        self.best: tuple[int, int, float] = (0, 0, 0.0)  # the longest run: (length, start, value)

    def _close(self) -> None:
        if self.run_len > self.best[0]:  # strictly longer: the first of equally long runs stays
            self.best = (self.run_len, self.run_start, float(self.run_value))

    def update(self, x: np.ndarray) -> None:
        if x.size == 0:
            return
        hi, lo = float(x.max()), float(x.min())
        if hi > self.hi:
            self.hi, self.n_hi = hi, int(np.count_nonzero(x == hi))
        elif hi == self.hi:
            self.n_hi += int(np.count_nonzero(x == hi))
        if lo < self.lo:
            self.lo, self.n_lo = lo, int(np.count_nonzero(x == lo))
        elif lo == self.lo:
            self.n_lo += int(np.count_nonzero(x == lo))
        change = np.flatnonzero(x[1:] != x[:-1]) + 1
        starts = np.concatenate(([0], change))
        lengths = np.diff(np.concatenate((starts, [x.size])))
        if self.run_len and x[0] == self.run_value:  # the open run goes on into this chunk
            lengths[0] += self.run_len
            first_start = self.run_start
        else:
            self._close()
            first_start = self.n
        if len(lengths) > 1:  # every run but the last is closed: the first longest of them
            i = int(np.argmax(lengths[:-1]))
            self.run_value, self.run_len = x[starts[i]], int(lengths[i])
            self.run_start = first_start if i == 0 else self.n + int(starts[i])
            self._close()
        self.run_value, self.run_len = x[starts[-1]], int(lengths[-1])
        self.run_start = first_start if len(lengths) == 1 else self.n + int(starts[-1])
        self.n += x.size

    def result(self, fs: float | None) -> tuple[str, str] | None:
        self._close()
        self.run_len = 0
        n, hi, lo = self.n, self.hi, self.lo
        if n == 0:
            return None
        peak = max(abs(hi), abs(lo))
        if peak == 0.0:
            return "dead", "every sample is 0 (a dead or unplugged sensor)"
        if hi - lo <= FLAT_ULPS * self.eps * peak:
            return "flat", f"flat-lined: every sample is {hi:.6g} (to float rounding); the sensor recorded nothing"
        # a long run at the channel's max or min is a flat top: clipping (below), not a drop-out
        run, start, value = self.best
        if run >= CONSTANT_MIN_RUN and run > CONSTANT_FRACTION * n and value not in (hi, lo):
            length = f"{run / fs:.3g} s" if fs else f"{run} samples"
            at = f" at {start / fs:.3g} s" if fs else f" from sample {start}"
            return "constant", (
                f"constant segment: {run} identical samples ({length}, {100 * run / n:.1f} % of the recording)"
                f"{at} with value {value:.6g} (a drop-out or a held value)"
            )
        rail, count = (hi, self.n_hi) if self.n_hi >= self.n_lo else (lo, self.n_lo)
        if count >= CLIP_MIN_COUNT and count > CLIP_FRACTION * n:
            return "clipped", f"clipped: {count} samples ({100 * count / n:.1f} %) sit exactly at the rail {rail:.6g}"
        return None


def check_signal(x: np.ndarray, fs: float | None = None) -> tuple[str, str] | None:
    """The first problem of one channel ``x`` (1-D), as ``(problem, detail)``, or None if it is fine.

    See the module docstring for the rules; ``fs`` (Hz) only makes the detail say seconds. Scanned in
    parts of :data:`SCAN_CHUNK` samples (the run statistics hold several int64 arrays per sample
    scanned: 8 times a float32 channel's size if taken whole).
    """
    x = np.asarray(x)
    if x.dtype.kind not in "f":
        x = x.astype(np.float64)
    scan = _ChannelScan(float(np.finfo(x.dtype).eps))
    for a in range(0, x.size, SCAN_CHUNK):
        scan.update(x[a : a + SCAN_CHUNK])
    return scan.result(fs)


def scan_signal(read: Callable[[int, int], np.ndarray], n_samples: int, channels: Sequence[int],
                fs: float | None = None, chunk: int = SCAN_CHUNK) -> list[tuple[str, str] | None]:
    """:func:`check_signal` of the channels ``channels`` of a recording read in parts (``read(a, b) ->
    [C, b - a]``, float64, non-decreasing ranges), ``chunk`` samples at a time: memory bounded by the chunk."""
    scans = [_ChannelScan(float(np.finfo(np.float64).eps)) for _ in channels]
    for a in range(0, n_samples, chunk):
        x = np.asarray(read(a, min(n_samples, a + chunk)))
        for s, c in zip(scans, channels):
            s.update(x[c])
    return [s.result(fs) for s in scans]


def signal_hash(rec: Recording) -> str:
    """sha256 of a recording's samples as float32 (and its shape), for finding duplicates.

    float32 is the canonical form, so one recording exported twice, as float32 ``.npy`` and as a
    CSV that parses to float64, hashes the same (two different recordings never agree in every
    sample to float32 precision).
    """
    sig = np.ascontiguousarray(rec.signal, dtype=np.float32)
    h = hashlib.sha256(f"{sig.shape}".encode())
    h.update(memoryview(sig).cast("B"))
    return h.hexdigest()


def find_duplicates(recordings: Iterable[Recording]) -> None:
    """Raise a one-line DiagError naming both recordings if two hold identical samples."""
    seen: dict[str, Recording] = {}
    for rec in recordings:
        key = signal_hash(rec)
        if key in seen:
            other = seen[key]
            labels = (
                f"under two labels ('{other.label}' and '{rec.label}')"
                if other.label != rec.label else f"both labelled '{rec.label}'"
            )
            raise DiagError(
                f"{rec.source}: identical samples to {other.source} ({labels}); the same recording twice "
                "puts the same windows in training and test"
                + (" and teaches two labels for one signal" if other.label != rec.label else "")
                + "; keep one copy"
            )
        seen[key] = rec


def check_recordings(
    recordings: list[Recording],
    on_bad: str = "error",
    on_clipped: str = "warn",
    findings: list[Finding] | None = None,
) -> list[Recording]:
    """Check every recording (see the module docstring); return the ones kept.

    ``findings``, when given, receives one :class:`Finding` per problem found and per reader note.
    A recording with a problem whose action is ``error`` raises a one-line :class:`DiagError`;
    duplicates always do. If every recording is skipped that is an error too.
    """
    actions = {"on_bad": on_bad, "on_clipped": on_clipped}
    for key, value in actions.items():
        if value not in ON_BAD:
            raise DiagError(f"source.{key}: choose one of {', '.join(ON_BAD)}, got {value!r}")
    out: list[Recording] = []
    found: list[Finding] = []
    for rec in recordings:
        name = rec.source or "recording"
        for note in rec.notes:
            found.append(Finding(name, "note", "note", note))
        keep = True
        for c, ch in enumerate(rec.channels):
            problem = check_signal(rec.signal[c], rec.fs)
            if problem is None:
                continue
            kind, detail = problem
            setting = GOVERNED_BY[kind]
            action = actions[setting]
            where = f"channel {ch}: {detail}" if rec.n_channels > 1 else detail
            if action == "error":
                raise DiagError(
                    f"{name}: {where}; remove the file (or its row), or set source.{setting}=warn|skip "
                    f"(--set source.{setting}=skip) to keep or drop such recordings"
                )
            found.append(Finding(name, kind, action, where))
            if action == "skip":
                keep = False
        if keep:
            out.append(rec)
    if recordings and not out:
        first = next(f for f in found if f.action == "skip")
        raise DiagError(
            f"every one of the {len(recordings)} recordings was skipped by the source checks "
            f"(first: {first}); check the sensors and files"
        )
    find_duplicates(out)
    if findings is not None:
        findings.extend(found)
    return out
