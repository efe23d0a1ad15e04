"""Scoring waveforms with a trained run: :class:`Predictor` (shared by ``diag predict``, ``diag evaluate``,
``diag export`` and :func:`diag.load_model`).

A few calls down: the run loaded (:func:`diag.serving.run.load_run`: network, fitted preprocessing, unknown
detector, classes); per file, the preprocessing checks it (the source checks of ``diag prepare``), finds
its reference rate (order images), makes it ready (channels, rate, band) and streams its images in
batches; the network scores them (class probabilities and an out-of-distribution score per window;
a window whose score exceeds the run's calibrated threshold is ``unknown``); the verdict rule
(:mod:`diag.serving.verdict`) turns the windows into one answer per file. The Predictor itself cuts no
window and computes no image: every step between a file and the model's input is the run's
:class:`~diag.signal.preprocessing.Preprocessing`, the same object ``diag prepare`` used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from diag.errors import DiagError
from diag.serving.engine import make_engine, prefetch
from diag.serving.run import load_run
from diag.serving.verdict import VERDICT_RULE, FileResult, WindowScores, file_verdict, unusable_result
from diag.signal.preprocessing import BATCH
from diag.sources.stream import Signal, open_signal

__all__ = ["Predictor", "load_model", "PROGRESS_WINDOWS"]

#: recordings with more windows than this show a progress bar
PROGRESS_WINDOWS = 2000


class Predictor:
    """A trained run ready to score waveforms: ``predict(signal, fs)``, ``predict_file(path)``, ``classes``.

    ``hop``: samples between windows (default the training hop). ``unknown`` is the run's calibrated
    out-of-distribution detector, or None when the run has none and its prepared dataset is gone (then
    no window is ever reported unknown, and ``notes`` says so).
    """

    def __init__(self, run: str | Path, device: str = "cpu", hop: int | None = None, calibrate: bool = True,
                 quiet: bool = True, batch_size: int = BATCH, engine: str = "torch", quantize: str = "none",
                 pipeline: bool = True):
        loaded = load_run(run, device, calibrate=calibrate, quiet=quiet)
        self.loaded = loaded
        self.run, self.net, self.device = loaded.dir.path, loaded.net, loaded.device
        self.pre, self.unknown, self.classes = loaded.preprocessing, loaded.unknown, loaded.classes
        self.meta = loaded.meta
        self.notes = list(loaded.notes)
        self.fs, self.length = self.pre.fs, self.pre.length
        self.hop = int(hop) if hop is not None else self.pre.hop
        if self.hop < 1:
            raise DiagError(f"--hop: must be >= 1 sample, got {self.hop}")
        self.batch_size = int(batch_size)
        #: what runs the network (diag.serving.engine): auto (ONNX Runtime on a CPU when installed, else torch),
        #: torch, or onnx; int8-quantised linear layers optionally. ``engine_name``: the one that runs.
        self.engine = make_engine(self.net, self.unknown_features, self.device, self.pre.image_shape, engine, quantize,
                                  weights=loaded.dir / loaded.dir.WEIGHTS, model=str(self.meta.get("model") or ""))
        self.engine_name = self.engine.name
        self.notes += self.engine.notes
        #: make the next batch of images while the network scores this one (a bounded background thread)
        self.pipeline = pipeline

    @property
    def unknown_features(self) -> str:
        """What the run's unknown score reads besides the logits (``forward_parts(..., features=...)``)."""
        return self.unknown.features if self.unknown is not None else "pooled"

    def score_images(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Model images ``[B, C, H, W]`` -> (probabilities ``[B, K]``, unknown scores ``[B]``)."""
        import torch

        feats, logits = self.engine(images)
        with torch.inference_mode():
            probs = torch.softmax(logits.float(), 1)
            score = (self.unknown.score(logits, feats) if self.unknown is not None
                     else torch.zeros(len(logits), device=logits.device))
        return probs.cpu().numpy(), score.float().cpu().numpy()

    def score_windows(self, x: np.ndarray, ref_hz: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Raw windows ``[B, C, L]`` at the model's rate -> (probabilities, unknown scores)."""
        return self.score_images(self.pre(x, ref_hz, device=self.device))

    def predict_signal(self, sig: Signal, channels: Sequence[str] | None = None,
                       progress: Callable[[int, int], None] | None = None, ref_hz: Any = None) -> FileResult:
        """Score one opened recording (see :func:`diag.sources.stream.open_signal`); ``ref_hz``: its reference
        rate for order images (:meth:`diag.signal.preprocessing.Preprocessing.reference_for`)."""
        pre = self.pre
        idx, notes = pre.select_channels(sig, channels)
        ready = pre.ready(sig, idx)
        n = ready.n_samples
        if n < self.length:
            raise DiagError(f"{sig.path}: {n} samples at {ready.fs:g} Hz ({n / ready.fs:.3g} s) is shorter than one "
                            f"{self.length}-sample window ({self.length / self.fs:.3g} s); record longer")
        problem = pre.check(sig, idx)
        if problem is not None and problem[0] != "warning":
            return unusable_result(sig.path, self.fs, sig.fs, sig.n_samples / sig.fs, len(self.classes), problem[1],
                                   list(sig.notes) + notes)
        if problem is not None:
            notes.append(f"warning: {problem[1]}")
        ref = pre.reference_for(sig, ref_hz, idx)
        starts = pre.starts(n, self.hop)
        probs, scores = [], []
        batches = pre.stream_images(ready, starts, ref, self.batch_size, self.device)
        for st, images in (prefetch(batches) if self.pipeline else batches):
            p, s = self.score_images(images)
            probs.append(p)
            scores.append(s)
            if progress is not None:
                progress(sum(map(len, probs)), len(starts))
        P, S = np.concatenate(probs), np.concatenate(scores)
        U = (S > self.unknown.threshold) if self.unknown is not None else np.zeros(len(S), bool)
        ws = WindowScores(starts, P, S, U)
        return FileResult(path=sig.path, fs=self.fs, fs_original=sig.fs, duration_s=n / self.fs, windows=ws,
                          notes=list(ready.notes) + notes + ref.notes, channels=list(channels or []),
                          ref_hz=list(ref.pair) if ref.pair is not None else None, ref_from=ref.how,
                          **file_verdict(ws, self.classes, self.fs, self.length))

    def predict(self, signal: Any, fs: float, channels: Sequence[str] | None = None,
                name: str = "array", ref_hz: Any = None) -> FileResult:
        """Score a waveform array ``[samples]`` or ``[channels, samples]`` sampled at ``fs`` Hz.

        Returns a :class:`FileResult`: ``.windows.probs`` (per-window probabilities ``[N, K]``, columns in
        ``classes`` order), ``.windows.unknown``, ``.verdict``, ``.confidence``, ``.top``, ``.spans``.
        ``ref_hz``: for a run on order images, the recording's shaft rate (envorder) or electrical
        fundamental (harmonics) in Hz, or ``[start, end]`` for a linear speed ramp.
        """
        return self.predict_signal(Signal.from_array(signal, fs, name, channels), channels, ref_hz=ref_hz)

    def open(self, path: str | Path, fs: float | None = None, key: str | None = None,
             variable: str | None = None) -> Signal:
        """:func:`open_signal` with this run's reader hints (CWRU records for a CWRU-trained run)."""
        cwru = self.pre.reader.get("channels") if self.pre.reader.get("kind") == "cwru" else None
        return open_signal(path, fs, key, variable, cwru_channels=cwru)

    def predict_file(self, path: str | Path, fs: float | None = None, channels: Sequence[str] | None = None,
                     progress: Callable[[int, int], None] | None = None, key: str | None = None,
                     variable: str | None = None, ref_hz: Any = None) -> FileResult:
        return self.predict_signal(self.open(path, fs, key, variable), channels, progress, ref_hz=ref_hz)

    def describe(self) -> dict[str, Any]:
        return {"run": str(self.run), "model": self.meta.get("model"), "classes": self.classes, "fs": self.fs,
                "window": {"length": self.length, "hop": self.hop, "normalize": self.pre.normalize,
                           "channels": list(self.pre.channels)},
                "transform": self.pre.describe()["transform"],
                "unknown": self.unknown.describe() if self.unknown is not None else None,
                "engine": self.engine_name, "rule": VERDICT_RULE}


def load_model(run: str | Path, device: str = "cpu", hop: int | None = None) -> Predictor:
    """A trained run as an object with ``predict(signal, fs)`` and ``classes`` (the CLI's code path).

    >>> m = load_model("runs/bearing")
    >>> r = m.predict(x, fs=12000)          # x: [samples] or [channels, samples]
    >>> r.verdict, r.confidence, r.windows.probs.shape
    """
    return Predictor(run, device=device, hop=hop)
