"""The per-file verdict of ``diag predict``: windows' probabilities and unknown flags -> one answer per file.

* **verdict rule** ``mean-probability``: if at least half of the windows are unknown the file is
  ``unknown``; otherwise the class with the highest mean probability over the known windows.
  Averaging probabilities (rather than counting argmax votes) keeps the model's confidence and is
  robust to a few noisy windows; the unknown share decides first, so an unfamiliar recording is
  never forced into a confident wrong class.
* **unusable**: a file that fails the source checks the run was prepared with (a dead, flat-lined or
  constant channel; clipping where ``source.on_clipped`` refuses it) gets the verdict ``unusable`` and
  the check's finding instead of a class, in the same words as ``diag prepare``.
* **confidence**: the verdict's mean probability over the known windows (for ``unknown``: the share
  of unknown windows).
* **top**: the three classes with the highest mean probability; **shares**: the fraction of windows
  whose label (argmax or ``unknown``) is each class.
* **spans**: the window labels smoothed by a 3-window majority vote, then cut into runs of equal
  label (a run of fewer than 3 windows is folded into its longer neighbour: flicker is not a span;
  ``--windows`` keeps every window's own label), each with its start and end in seconds (a window
  stands for the stretch half-way to its neighbours' centres, so spans tile the recording) -- a
  recording that turns faulty halfway shows ``normal 0-5 s, inner 5-10 s``. ``verdict_span`` is the
  first to last second the verdict holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

__all__ = ["WindowScores", "FileResult", "file_verdict", "unusable_result", "UNKNOWN", "UNUSABLE", "VERDICT_RULE"]

UNKNOWN = "unknown"
UNUSABLE = "unusable"
VERDICT_RULE = ("mean-probability: unknown if at least half of the windows are unknown, else the class with "
                "the highest mean probability over the known windows; unusable if the file fails the source "
                "checks the run was prepared with")
SMOOTH = 3


@dataclass
class WindowScores:
    """Per-window results of one recording: starts (samples at the model's rate), probabilities, scores."""

    start: np.ndarray  # int64 [N]
    probs: np.ndarray  # float32 [N, K]
    score: np.ndarray  # float32 [N], higher = less like the training data
    unknown: np.ndarray  # bool [N]


@dataclass
class FileResult:
    path: str
    fs: float
    fs_original: float
    duration_s: float
    windows: WindowScores
    verdict: str
    confidence: float
    is_unknown: bool
    unknown_share: float
    top: list[dict[str, Any]]
    shares: dict[str, float]
    spans: list[dict[str, Any]]
    verdict_span: list[float] | None
    notes: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)  # the channels chosen with --channels, if any
    #: order images: the reference rate used, ``[start_hz, end_hz]`` (equal unless a speed ramp), and whence
    ref_hz: list[float] | None = None
    ref_from: str = ""
    #: why the file could not be scored (a failed source check), in diag prepare's words; empty when scored
    unusable: str = ""

    def to_dict(self, windows: bool = False, length: int = 0) -> dict[str, Any]:
        d = {"path": self.path, "verdict": self.verdict, "confidence": round(self.confidence, 4),
             "unknown": self.is_unknown, "unknown_share": round(self.unknown_share, 4),
             "top": self.top, "shares": self.shares, "spans": self.spans, "verdict_span": self.verdict_span,
             "n_windows": int(len(self.windows.start)), "duration_s": round(self.duration_s, 4),
             "fs": self.fs, "fs_original": self.fs_original, "ref_hz": self.ref_hz, "ref_from": self.ref_from,
             "notes": self.notes}
        if self.unusable:
            d["unusable"] = self.unusable
        if windows:
            d["windows"] = [
                {"start_s": round(float(s) / self.fs, 6), "end_s": round(float(s + length) / self.fs, 6),
                 "label": lab, "score": round(float(sc), 5), "unknown": bool(u),
                 "probs": [round(float(v), 5) for v in p]}
                for s, lab, sc, u, p in zip(self.windows.start, self.labels, self.windows.score,
                                            self.windows.unknown, self.windows.probs)
            ]
        return d


def _smooth(labels: list[str], width: int = SMOOTH) -> list[str]:
    """Majority vote over ``width`` neighbouring windows (ties keep the window's own label)."""
    if width < 2 or len(labels) < width:
        return list(labels)
    h = width // 2
    out = []
    for i, own in enumerate(labels):
        near = labels[max(0, i - h) : i + h + 1]
        best = max(set(near), key=lambda c: (near.count(c), c == own))
        out.append(best)
    return out


def _merge_short(spans: list[dict[str, Any]], min_windows: int) -> list[dict[str, Any]]:
    """Fold runs shorter than ``min_windows`` into their longer neighbour (flicker is not a span)."""
    spans = [dict(s) for s in spans]
    while len(spans) > 1:
        short = [i for i, s in enumerate(spans) if s["windows"] < min_windows]
        if not short:
            break
        i = min(short, key=lambda j: (spans[j]["windows"], j))
        left = spans[i - 1] if i > 0 else None
        right = spans[i + 1] if i + 1 < len(spans) else None
        into = left if right is None or (left is not None and left["windows"] >= right["windows"]) else right
        if into is left:
            left["end_s"], left["windows"] = spans[i]["end_s"], left["windows"] + spans[i]["windows"]
        else:
            right["start_s"], right["windows"] = spans[i]["start_s"], right["windows"] + spans[i]["windows"]
        del spans[i]
        # neighbours that now carry the same label become one span
        j = 0
        while j + 1 < len(spans):
            if spans[j]["label"] == spans[j + 1]["label"]:
                spans[j]["end_s"], spans[j]["windows"] = spans[j + 1]["end_s"], spans[j]["windows"] + spans[j + 1]["windows"]
                del spans[j + 1]
            else:
                j += 1
    return spans


def file_verdict(ws: WindowScores, classes: Sequence[str], fs: float, length: int) -> dict[str, Any]:
    """Verdict, confidence, top 3, shares and spans of one file's windows (rule: module docstring)."""
    n = len(ws.start)
    k = len(classes)
    labels = [UNKNOWN if u else classes[int(j)] for u, j in zip(ws.unknown, ws.probs.argmax(1))]
    unk_share = float(ws.unknown.mean()) if n else 0.0
    known = ~ws.unknown
    mean_p = ws.probs[known].mean(0) if known.any() else ws.probs.mean(0)
    order = np.argsort(-mean_p, kind="stable")
    top = [{"class": classes[int(i)], "p": round(float(mean_p[i]), 4)} for i in order[: min(3, k)]]
    if unk_share >= 0.5:
        verdict, conf = UNKNOWN, unk_share
    else:
        verdict, conf = classes[int(order[0])], float(mean_p[order[0]])
    shares = {c: round(labels.count(c) / n, 4) for c in list(classes) + [UNKNOWN] if labels.count(c)}
    smooth = _smooth(labels)
    spans: list[dict[str, Any]] = []
    # each window stands for the stretch around its centre, half-way to its neighbours' centres, so
    # spans tile the recording without overlapping (the first and last reach its ends)
    centre = (ws.start + length / 2) / fs
    edges = np.r_[0.0, (centre[1:] + centre[:-1]) / 2, (ws.start[-1] + length) / fs] if n else np.zeros(1)
    for i, lab in enumerate(smooth):
        s, e = float(edges[i]), float(edges[i + 1])
        if spans and spans[-1]["label"] == lab:
            spans[-1]["end_s"] = round(e, 4)
            spans[-1]["windows"] += 1
        else:
            spans.append({"label": lab, "start_s": round(s, 4), "end_s": round(e, 4), "windows": 1})
    spans = _merge_short(spans, SMOOTH)
    hold = [i for i, lab in enumerate(smooth) if lab == verdict]
    vspan = [round(float(edges[hold[0]]), 4), round(float(edges[hold[-1] + 1]), 4)] if hold else None
    return {"verdict": verdict, "confidence": conf, "is_unknown": verdict == UNKNOWN, "unknown_share": unk_share,
            "top": top, "shares": shares, "spans": spans, "verdict_span": vspan, "labels": labels}


def unusable_result(path: str, fs: float, fs_original: float, duration_s: float, n_classes: int, why: str,
                    notes: Sequence[str] = ()) -> FileResult:
    """The result of a file that failed the source checks: verdict ``unusable``, no windows scored."""
    empty = WindowScores(np.zeros(0, np.int64), np.zeros((0, n_classes), np.float32), np.zeros(0, np.float32),
                         np.zeros(0, bool))
    return FileResult(path=path, fs=fs, fs_original=fs_original, duration_s=duration_s, windows=empty,
                      verdict=UNUSABLE, confidence=0.0, is_unknown=False, unknown_share=0.0, top=[], shares={},
                      spans=[], verdict_span=None, notes=list(notes), unusable=why)
