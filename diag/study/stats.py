"""The statistics of a study: paired per-seed differences of test macro-F1 with a Student-t interval, and the
verdict computed from that interval.

For each pair of starts in each (labels per class, freeze, warmup) cell, seed ``s`` of one start is paired
with seed ``s`` of the other; the mean difference gets a 95 % Student-t interval over seeds
(``scipy.stats.t``, ``n - 1`` degrees of freedom). The ablations get the same rule, each paired seed by seed
with the main setting (the most-run freeze and warmup) of the same start and budget.

Power: the interval excludes 0 exactly when the paired two-sided t-test at level ``1 - confidence``
rejects, so the difference those seeds *could* have found is the one that test finds with probability
:data:`POWER` (0.8), computed from the measured spread of the per-seed differences with the noncentral
t distribution (:func:`detectable`). An interval that holds 0 only says "no measurable difference" when
that smallest detectable difference is no larger than the effect the question is about (``effect``,
default :data:`EFFECT` = 0.05 macro-F1); otherwise the verdict is "too few seeds to decide (would need
~N)", N from the same spread (:func:`seeds_needed`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from diag.study.names import budget_key, budget_label, init_key, warmup_name
from diag.study.runs import cell_of, main_setting

#: the direction of each pair of starts (first minus second); pairs not listed follow INIT_ORDER
PAIRS = (("imagenet", "scratch"), ("imagenet+ssl", "scratch"), ("ssl", "scratch"), ("imagenet", "ssl"),
         ("imagenet+ssl", "imagenet"), ("imagenet+ssl", "ssl"))
CONFIDENCE = 0.95
#: the probability of finding a difference that the "smallest detectable difference" is defined by
POWER = 0.8
#: the difference of test macro-F1 that matters by default (``diag report --effect``)
EFFECT = 0.05
#: more seeds than this are not counted: "would need more than 1000"
MAX_SEEDS = 1000


def power_of(delta: float, sd: float, n: int, confidence: float = CONFIDENCE) -> float:
    """Probability that the paired two-sided t-test over ``n`` seeds (level ``1 - confidence``) rejects, i.e.
    that the interval excludes 0, when the true mean difference is ``delta`` and the per-seed differences
    spread with standard deviation ``sd``: ``P(|T| > t_c)`` with ``T`` noncentral t, ``n - 1`` degrees of
    freedom, noncentrality ``delta * sqrt(n) / sd``."""
    from scipy import stats

    if n < 2:
        return math.nan
    if sd == 0:
        return 1.0 if delta else 1.0 - confidence
    df = n - 1
    tc = stats.t.ppf(1 - (1 - confidence) / 2, df)
    ncp = abs(delta) * math.sqrt(n) / sd
    upper = float(stats.nct.sf(tc, df, ncp))
    lower = float(stats.nct.cdf(-tc, df, ncp))  # the far tail: scipy returns NaN where it underflows
    if not math.isfinite(upper):
        upper = float(stats.norm.sf(tc - ncp))
    return upper + (lower if math.isfinite(lower) else 0.0)


def detectable(sd: float, n: int, confidence: float = CONFIDENCE, power: float = POWER) -> float:
    """The smallest true mean difference that ``n`` paired seeds with spread ``sd`` find (interval excluding
    0) with probability ``power``; NaN with fewer than 2 seeds (no spread measured), 0 when ``sd`` is 0."""
    from scipy.optimize import brentq

    if n < 2 or not math.isfinite(sd):
        return math.nan
    if sd == 0:
        return 0.0
    hi = sd
    while power_of(hi, sd, n, confidence) < power:
        hi *= 2
    return float(brentq(lambda d: power_of(d, sd, n, confidence) - power, 0.0, hi, xtol=1e-9 * sd))


def seeds_needed(effect: float, sd: float, confidence: float = CONFIDENCE, power: float = POWER) -> int | None:
    """The fewest paired seeds (>= 2) that find a true difference of ``effect`` with probability ``power``,
    given the spread ``sd`` measured so far; None when more than :data:`MAX_SEEDS` would be needed or the
    spread is unknown."""
    if not math.isfinite(sd) or effect <= 0:
        return None
    if power_of(effect, sd, MAX_SEEDS, confidence) < power:
        return None
    lo, hi = 2, MAX_SEEDS  # power grows with n: bisect for the first n that reaches it
    while lo < hi:
        mid = (lo + hi) // 2
        if power_of(effect, sd, mid, confidence) >= power:
            hi = mid
        else:
            lo = mid + 1
    return lo


def paired_difference(a: dict[int, float], b: dict[int, float], confidence: float = CONFIDENCE,
                      effect: float = EFFECT) -> dict[str, Any]:
    """Paired per-seed difference ``a[s] - b[s]`` over the seeds both have, with a Student-t interval and
    the power of those seeds.

    Returns ``{"n", "seeds", "mean", "std", "low", "high", "detectable", "effect", "seeds_needed",
    "decided", "verdict"}``; ``low``/``high``/``detectable`` are NaN when fewer than 2 seeds pair up (no
    interval can be computed). ``detectable``: the smallest difference these seeds find with probability
    :data:`POWER`; ``seeds_needed``: the seeds that would find ``effect`` (None: over :data:`MAX_SEEDS`
    or unknown); ``decided``: the interval excludes 0, or it holds 0 and ``detectable <= effect``.
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
    mdd = detectable(std, n, confidence)
    needed = seeds_needed(effect, std, confidence) if n > 1 else None
    decided = n > 1 and (low > 0 or high < 0 or mdd <= effect)
    return {"n": n, "seeds": seeds, "mean": mean, "std": std, "low": low, "high": high, "detectable": mdd,
            "effect": effect, "seeds_needed": needed, "decided": decided,
            "verdict": verdict(mean, low, high, n, mdd, effect, needed)}


def verdict(mean: float, low: float, high: float, n: int, detectable: float = math.nan, effect: float | None = None,
            needed: int | None = None) -> str:
    """The words for a paired difference: computed from the interval and, where it holds 0, from the
    smallest difference the seeds could detect against ``effect`` -- never chosen by hand."""
    if n == 0:
        return "no paired seeds"
    if n == 1:
        return f"one seed: no interval (difference {mean:+.3f}, not tested)"
    if low > 0:
        return f"better by {mean:.3f} (interval excludes 0)"
    if high < 0:
        return f"worse by {-mean:.3f} (interval excludes 0)"
    if effect is not None and not detectable <= effect:
        more = f"~{needed}" if needed else f"more than {MAX_SEEDS}"
        return f"too few seeds to decide (would need {more} to detect {effect:g}; these {n} detect {detectable:.3f})"
    if effect is not None:
        return f"no measurable difference (the seeds detect {detectable:.3f} or more)"
    return "no measurable difference"


def compare_starts(rows: list[dict[str, Any]], confidence: float = CONFIDENCE,
                   effect: float = EFFECT) -> list[dict[str, Any]]:
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
            res = paired_difference(by_init[a], by_init[b], confidence, effect)
            out.append({"labels_per_class": cell[0], "budget": budget_label(cell[0]), "freeze": cell[1],
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


def compare_settings(rows: list[dict[str, Any]], confidence: float = CONFIDENCE,
                     effect: float = EFFECT) -> list[dict[str, Any]]:
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
        out.append({"init": init, "labels_per_class": budget, "budget": budget_label(budget), "freeze": freeze,
                    "warmup": warmup, "setting": setting, "against": against,
                    **paired_difference(seeds, main, confidence, effect)})
    return out




def power_record(stats: list[dict[str, Any]], settings: list[dict[str, Any]], effect: float,
                 confidence: float = CONFIDENCE) -> dict[str, Any]:
    """What ``power.json`` holds: for every paired verdict (starts, and ablations against the main setting)
    the spread of the per-seed differences, the smallest difference those seeds detect with probability
    :data:`POWER`, and the seeds a difference of ``effect`` would need; ``seeds_needed`` at the top is the
    most any undecided comparison of starts asks for (None: every one is decided, or over MAX_SEEDS)."""
    keep = ("n", "seeds", "mean", "std", "low", "high", "detectable", "seeds_needed", "decided", "verdict")

    def clean(v: Any) -> Any:
        return None if isinstance(v, float) and not math.isfinite(v) else v

    pairs = [{k: clean(s[k]) for k in ("budget", "freeze", "warmup", "a", "b") + keep} for s in stats]
    ablations = [{k: clean(s[k]) for k in ("init", "budget", "setting", "against") + keep} for s in settings]
    undecided = [s["seeds_needed"] for s in stats if not s["decided"] and s["seeds_needed"]]
    return {"format": "diag-power/1", "effect": effect, "power": POWER, "confidence": confidence,
            "method": "paired two-sided t-test over seeds; detectable = smallest true mean difference found with "
                      "probability `power` given the measured standard deviation of the per-seed differences "
                      "(noncentral t)",
            "seeds_needed": max(undecided) if undecided else None,
            "undecided": sum(1 for s in stats if not s["decided"]), "pairs": pairs, "ablations": ablations}
