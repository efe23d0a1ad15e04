"""``transform.kind = "auto"``: pick the image kind by a cheap probe on the validation split.

For a user who does not know which image suits the signal, ``diag prepare --transform auto`` scores
every candidate kind before any image is written:

* candidates: ``cwt``, ``stft``, and ``envorder`` / ``harmonics`` where every recording's reference
  rate is known (its ``rpm`` / ``f1`` metadata, ``transform.ref_hz`` or ``transform.ref_search``), each
  alone and every pair of them (``cwt+envorder``, ...; ``envorder+harmonics`` is not a valid kind);
* features: each image's row profile -- the mean and the standard deviation over time of every row
  of every channel (:func:`row_profile`), fixed, no training;
* probe: logistic regression on standardised features (:func:`linear_probe`), fitted on a seeded
  sample of the **training** windows, scored (macro-F1) on a sample of the **validation** windows.
  Validation mirrors the test's shift (``split.val_method = "auto"``), so the probe asks the test's
  question without looking at the test split: its windows are never cut, transformed or read.

The best macro-F1 wins; a kind with more parts must beat a simpler one by more than
:data:`TOLERANCE` (ties go to fewer image channels, then to the listed order). The table of
candidates is printed and stored in the manifest (``transform_choice``). Cost on the 2-core CPU:
seconds to a minute (at most :data:`PER_CLASS` windows per class and side, each kind transformed once).
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from typing import Any

import numpy as np

from diag.config import ORDER_PARTS, PrepareConfig, TransformConfig
from diag.errors import DiagError
from diag.sources.base import Recording
from diag.signal.windows import NormalizationStats, SplitPlan, apply_normalization, extract, plan_split

#: the single kinds tried, in preference order for ties
PARTS = ("cwt", "stft", "envorder", "harmonics")
#: at most this many windows per class and side are transformed for the probe
PER_CLASS = 150
#: a candidate with more parts must beat the best simpler one by more than this macro-F1
TOLERANCE = 0.01
BATCH = 256


def row_profile(images: np.ndarray, spread: bool = True) -> np.ndarray:
    """Fixed features of images ``[B, C, H, W]``: the mean over time (columns) of every row of every
    channel, and with ``spread`` also the standard deviation over time; ``[B, C*H]`` or ``[B, 2*C*H]``."""
    x = np.asarray(images, dtype=np.float32)
    feats = [x.mean(axis=3).reshape(len(x), -1)]
    if spread:
        feats.append(x.std(axis=3).reshape(len(x), -1))
    return np.concatenate(feats, axis=1)


def linear_probe(f_fit: np.ndarray, y_fit: np.ndarray, f_score: np.ndarray, balanced: bool = False,
                 c: float = 0.1) -> np.ndarray:
    """Predicted class of each row of ``f_score`` ``[N, F]`` by a logistic regression (inverse
    regularisation ``c``) fitted on standardised ``f_fit`` ``[M, F]`` with classes ``y_fit`` ``[M]``;
    ``balanced`` weighs classes by 1 / frequency."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(f_fit)
    clf = LogisticRegression(max_iter=3000, C=c, class_weight="balanced" if balanced else None)
    clf.fit(scaler.transform(f_fit), y_fit)
    return clf.predict(scaler.transform(f_score))


def candidate_kinds(parts: list[str]) -> list[str]:
    """Every single part and every pair of ``parts`` (in :data:`PARTS` order) that is a valid kind."""
    singles = [p for p in PARTS if p in parts]
    pairs = ["+".join(p) for p in itertools.combinations(singles, 2) if not set(p) >= set(ORDER_PARTS)]
    return singles + pairs


def order_refs(raw: list[Recording], tcfg: TransformConfig) -> tuple[dict[str, list[tuple[float, float]]], list[str]]:
    """``({part: [(start_hz, end_hz) per recording]}, notes)`` for the order parts whose reference rate
    every recording of ``raw`` (as read, before resampling) has; a part some recording lacks is left out
    and the note says which recording."""
    from diag.signal.transforms import reference_hz

    refs: dict[str, list[tuple[float, float]]] = {}
    notes = []
    for part in ORDER_PARTS:
        cfg = dataclasses.replace(tcfg, kind=part)
        pairs = []
        for r in raw:
            try:
                pair, _ = reference_hz(r.meta, cfg, r.signal, r.fs)
            except DiagError as exc:
                pair, why = None, str(exc)
            else:
                why = "no rpm / f1 in its meta, no transform.ref_hz or ref_search"
            if pair is None:
                notes.append(f"transform=auto: {part} not tried: {r.source} has no reference rate ({why})")
                break
            pairs.append(pair)
        else:
            refs[part] = pairs
    return refs, notes


def probe_windows(recordings: list[Recording], plan: SplitPlan, seed: int, per_class: int = PER_CLASS
                  ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``{"train" | "val": (rec, start, y)}``: a seeded sample of at most ``per_class`` windows per
    class of the training and validation sides of ``plan``. The test side is never touched."""
    labels = sorted({r.label for r in recordings})
    y_rec = np.array([labels.index(r.label) for r in recordings])
    rng = np.random.default_rng([seed, 21])
    out = {}
    for side in ("train", "val"):
        w = plan.windows.select(side)
        if not len(w):
            raise DiagError(f"transform.kind=auto: the {side} split has no windows; the probe needs both training "
                            "and validation windows (split.val_fraction > 0)")
        y = y_rec[w.rec]
        keep = np.concatenate([rng.permutation(np.nonzero(y == k)[0])[:per_class] for k in np.unique(y)])
        keep.sort()
        out[side] = (w.rec[keep], w.start[keep], y[keep])
    return out


def part_features(part: str, cfg: PrepareConfig, recordings: list[Recording], windows: dict, refs: dict,
                  norm_stats: dict | None) -> dict[str, np.ndarray]:
    """Row-profile features ``{side: [n, F]}`` of the probe's windows as ``part`` images."""
    from diag.signal.transforms import make_transform, window_reference_hz

    tcfg = dataclasses.replace(cfg.transform, kind=part)
    length = cfg.windows.length
    transform = make_transform(tcfg, fs=recordings[0].fs, length=length)
    rec_len = np.array([r.n_samples for r in recordings])
    out = {}
    for side, (rec, start, _) in windows.items():
        feats = []
        for i in range(0, len(rec), BATCH):
            r, s = rec[i : i + BATCH], start[i : i + BATCH]
            x = apply_normalization(extract(recordings, r, s, length), cfg.windows.normalize, norm_stats)
            if part in refs:
                lo = np.array([refs[part][j][0] for j in r])
                hi = np.array([refs[part][j][1] for j in r])
                img = transform(x, ref_hz=window_reference_hz((lo, hi), s, length, rec_len[r]))
            else:
                img = transform(x)
            feats.append(row_profile(img))
        out[side] = np.concatenate(feats)
    return out


def _macro_f1(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return float(f1_score(y, p, average="macro")), float(accuracy_score(y, p))


def score_candidates(cfg: PrepareConfig, recordings: list[Recording], plan: SplitPlan,
                     refs: dict[str, list[tuple[float, float]]]) -> list[dict[str, Any]]:
    """One row per candidate kind: ``{"kind", "parts", "val_macro_f1", "val_accuracy"}``, in candidate
    order; probe fitted on training windows, scored on validation windows (never the test split)."""
    windows = probe_windows(recordings, plan, cfg.split.seed)
    norm_stats = None
    if cfg.windows.normalize == "dataset":  # from the probe's training windows only
        acc = NormalizationStats(recordings[0].channels, cfg.windows.channel_groups)
        acc.update(extract(recordings, windows["train"][0], windows["train"][1], cfg.windows.length))
        norm_stats = acc.result()
    parts = [p for p in PARTS if p in ("cwt", "stft") or p in refs]
    feats = {p: part_features(p, cfg, recordings, windows, refs, norm_stats) for p in parts}
    y_fit, y_val = windows["train"][2], windows["val"][2]
    if len(np.unique(y_fit)) < 2:
        raise DiagError("transform.kind=auto: the training split holds one class; nothing to choose between")
    rows = []
    for kind in candidate_kinds(parts):
        ks = kind.split("+")
        f_fit = np.concatenate([feats[k]["train"] for k in ks], axis=1)
        f_val = np.concatenate([feats[k]["val"] for k in ks], axis=1)
        f1, accuracy = _macro_f1(y_val, linear_probe(f_fit, y_fit, f_val))
        rows.append({"kind": kind, "parts": len(ks), "val_macro_f1": round(f1, 4), "val_accuracy": round(accuracy, 4)})
    return rows


def pick(rows: list[dict[str, Any]], tolerance: float = TOLERANCE) -> str:
    """The chosen kind: the highest validation macro-F1, where a kind with more parts must beat every
    simpler kind by more than ``tolerance`` (ties: fewer parts, then the candidate order)."""
    best = max(r["val_macro_f1"] for r in rows)
    for n in sorted({r["parts"] for r in rows}):
        near = [r for r in rows if r["parts"] == n and r["val_macro_f1"] >= best - tolerance]
        if near:
            return max(near, key=lambda r: r["val_macro_f1"])["kind"]
    raise AssertionError("unreachable: the best row is near itself")


def choose_transform(raw: list[Recording], recordings: list[Recording], cfg: PrepareConfig) -> dict[str, Any]:
    """Resolve ``transform.kind = "auto"`` in ``cfg`` (in place) by the validation probe; returns the
    record for the manifest: candidates with their scores, the choice, the split it was scored on,
    what was left out and why, and the seconds it took. ``raw``: the recordings as read (their
    reference rates); ``recordings``: resampled and band-limited (what is windowed)."""
    t0 = time.perf_counter()
    plan = plan_split(recordings, cfg.windows, cfg.split)
    refs, notes = order_refs(raw, cfg.transform)
    rows = score_candidates(cfg, recordings, plan, refs)
    kind = pick(rows)
    cfg.transform.kind = kind
    val_by = plan.val_by
    if val_by in ("time", "none"):
        notes.append(f"transform=auto: validation is {val_by} blocks of the training recordings, so the probe "
                     "scored memory of known recordings, not new ones")
    return {"chosen": kind, "candidates": rows, "scored_on": "validation", "val_by": val_by,
            "probe": f"logistic regression (C=0.1) on the row profile (mean and std over time of every image row), "
                     f"fit on <= {PER_CLASS} training windows per class, macro-F1 on <= {PER_CLASS} validation "
                     f"windows per class; more parts must win by > {TOLERANCE}",
            "notes": notes, "seconds": round(time.perf_counter() - t0, 2)}


def choice_table(record: dict[str, Any]):
    """A rich Table of the candidates of a :func:`choose_transform` record (the chosen one marked)."""
    from rich.table import Table

    t = Table(title=f"transform=auto: candidates scored on the validation split ({record['val_by']})")
    t.add_column("kind")
    t.add_column("val macro-F1", justify="right")
    t.add_column("val accuracy", justify="right")
    t.add_column("")
    for r in sorted(record["candidates"], key=lambda r: -r["val_macro_f1"]):
        t.add_row(r["kind"], f"{r['val_macro_f1']:.3f}", f"{r['val_accuracy']:.3f}",
                  "chosen" if r["kind"] == record["chosen"] else "")
    return t
