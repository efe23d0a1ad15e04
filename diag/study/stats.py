"""The statistics of a study: paired per-seed differences of test macro-F1 with a Student-t interval, and the
verdict computed from that interval.

For each pair of starts in each (labels per class, freeze, warmup) cell, seed ``s`` of one start is paired
with seed ``s`` of the other; the mean difference gets a 95 % Student-t interval over seeds
(``scipy.stats.t``, ``n - 1`` degrees of freedom). The ablations get the same rule, each paired seed by seed
with the main setting (the most-run freeze and warmup) of the same start and budget."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from diag.study.names import budget_key, budget_name, init_key, warmup_name
from diag.study.runs import cell_of, main_setting

PAIRS = (("imagenet", "scratch"), ("ssl", "scratch"), ("imagenet", "ssl"))
CONFIDENCE = 0.95


def paired_difference(a: dict[int, float], b: dict[int, float], confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Paired per-seed difference ``a[s] - b[s]`` over the seeds both have, with a Student-t interval.

    Returns ``{"n", "seeds", "mean", "std", "low", "high", "verdict"}``; ``low``/``high`` are NaN
    when fewer than 2 seeds pair up (no interval can be computed).
    """
    from scipy import stats

    seeds = sorted(set(a) & set(b))
    d = np.array([a[s] - b[s] for s in seeds], dtype=float)
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    std = float(d.std(ddof=1)) if n > 1 else math.nan
    low = high = math.nan
    if n > 1:
        if std == 0.0:
            low = high = mean
        else:
            low, high = (float(v) for v in stats.t.interval(confidence, n - 1, loc=mean, scale=std / math.sqrt(n)))
    return {"n": n, "seeds": seeds, "mean": mean, "std": std, "low": low, "high": high,
            "verdict": verdict(mean, low, high, n)}


def verdict(mean: float, low: float, high: float, n: int) -> str:
    """The words for a paired difference: computed from the interval, never chosen by hand."""
    if n == 0:
        return "no paired seeds"
    if n == 1:
        return f"one seed: no interval (difference {mean:+.3f}, not tested)"
    if low > 0:
        return f"better by {mean:.3f} (interval excludes 0)"
    if high < 0:
        return f"worse by {-mean:.3f} (interval excludes 0)"
    return "no measurable difference"


def compare_starts(rows: list[dict[str, Any]], confidence: float = CONFIDENCE) -> list[dict[str, Any]]:
    """For every cell (budget, freeze, warmup) and every pair of starts present in it: the paired
    difference of test macro-F1 over seeds (:func:`paired_difference`)."""
    out = []
    cells = sorted({cell_of(r) for r in rows}, key=lambda c: (budget_key(c[0]), c[1] != "none", c[1], -c[2]))
    for cell in cells:
        by_init: dict[str, dict[int, float]] = {}
        for r in rows:
            if cell_of(r) == cell and r["test_macro_f1"] is not None:
                by_init.setdefault(r["init"], {})[r["seed"]] = float(r["test_macro_f1"])
        inits = sorted(by_init, key=init_key)
        pairs = [p for p in PAIRS if p[0] in by_init and p[1] in by_init]
        pairs += [(x, y) for i, x in enumerate(inits) for y in inits[i + 1:] if (x, y) not in pairs and (y, x) not in pairs]
        for a, b in pairs:
            res = paired_difference(by_init[a], by_init[b], confidence)
            out.append({"labels_per_class": cell[0], "budget": budget_name(cell[0]), "freeze": cell[1],
                        "warmup": cell[2], "a": a, "b": b, **res})
    return out


def setting_name(freeze: str, warmup: float, base: tuple[str, float]) -> tuple[str, str]:
    """How an ablation setting differs from the main one, and the main one's values of the same parts:
    e.g. ``("warmup 0", "warmup 0.1")`` or ``("freeze stages:1", "freeze none")``."""
    said, against = [], []
    if freeze != base[0]:
        said.append(f"freeze {freeze}")
        against.append(f"freeze {base[0]}")
    if warmup != base[1]:
        said.append(f"warmup {warmup_name(warmup)}")
        against.append(f"warmup {warmup_name(base[1])}")
    return ", ".join(said), ", ".join(against)


def compare_settings(rows: list[dict[str, Any]], confidence: float = CONFIDENCE) -> list[dict[str, Any]]:
    """The warmup and freeze ablations against the main setting (:func:`main_setting`), start by start:
    for every start, budget and other (freeze, warmup), the paired per-seed difference of test macro-F1
    (ablation minus main; same start, budget and seed, so the same labelled subset) with its interval."""
    base = main_setting(rows)
    scores: dict[tuple[str, int, str, float], dict[int, float]] = {}
    for r in rows:
        if r["test_macro_f1"] is not None:
            scores.setdefault((r["init"], *cell_of(r)), {})[r["seed"]] = float(r["test_macro_f1"])
    out = []
    for (init, budget, freeze, warmup), seeds in sorted(
            scores.items(), key=lambda kv: (budget_key(kv[0][1]), init_key(kv[0][0]), kv[0][2] != "none",
                                            kv[0][2], -kv[0][3])):
        main = scores.get((init, budget, *base))
        if (freeze, warmup) == base or main is None:
            continue
        setting, against = setting_name(freeze, warmup, base)
        out.append({"init": init, "labels_per_class": budget, "budget": budget_name(budget), "freeze": freeze,
                    "warmup": warmup, "setting": setting, "against": against,
                    **paired_difference(seeds, main, confidence)})
    return out


