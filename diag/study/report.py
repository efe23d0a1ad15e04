"""``diag report RUNS``: what a set of finished runs says, as ``report.html`` + ``report.md``.

Reads every finished ``diag train`` run under a folder (a ``diag compare --out``, or any runs of one
prepared dataset; old ``<init>-<budget>-s<seed>`` folders too: everything is read from each run's
``model.json``, ``test_metrics.json`` and ``metrics.jsonl``, never from folder names) and writes

* ``report.html`` and ``report.md``: self-contained (figures are PNGs embedded as base64; no
  network), written atomically. In order: the data (source, split and what it tests, class counts
  per side), **the answer** (a paragraph generated from the verdicts below), the main table (mean ±
  std over seeds of the validation and *test* scores), the paired comparisons of starts, the
  label-efficiency plot, warmup vs none (learning-rate schedule and validation curves), freeze
  modes, each warmup / freeze ablation paired with the main setting of the same start, a confusion
  matrix per start, example images of each class, and the exact commands, the
  training config and package versions.
* ``answer.txt``: the answer paragraph alone (what ``scripts/demo.sh`` prints).
* ``runs.csv`` (one row per run), ``summary.csv`` / ``summary.md`` (the main table) and
  ``comparison.png``, as before.

Statistics: for each pair of starts in each (labels per class, freeze, warmup) cell, the paired
per-seed difference of test macro-F1 (seed ``s`` of one start against seed ``s`` of the other),
its mean and a 95 % Student-t interval over seeds (``scipy.stats.t``, ``n - 1`` degrees of
freedom). The verdict follows from the interval alone: above 0 -> "better by X (interval excludes
0)", below 0 -> "worse by X (interval excludes 0)", containing 0 -> "no measurable difference"; with
one seed there is no interval and the verdict says so. The ablations get the same rule, each paired
seed by seed with the main setting (the most-run freeze and warmup) of the same start and budget.
Test scores are each run's own
``test_metrics.json`` (scored once with the checkpoint the validation split chose); nothing here
uses a test score to choose anything.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from diag.signal.audit import audit_lines
from diag.errors import DiagError
from diag.storage import atomic_write_bytes, atomic_write_text
from diag.study.names import COMPARE_RECORD, INIT_LABEL, INIT_ORDER, budget_name, budget_words, warmup_name

INIT_COLORS = {"imagenet": "tab:blue", "ssl": "tab:orange", "scratch": "tab:gray"}
PAIRS = (("imagenet", "scratch"), ("ssl", "scratch"), ("imagenet", "ssl"))
CONFIDENCE = 0.95

SPLIT_TESTS = {
    "time": "later time blocks of the same recordings (generalisation in time within recordings seen in "
            "training; the most optimistic of the leakage-free splits)",
    "recording": "whole recordings never seen in training (unseen recordings of known conditions)",
    "group": "whole groups (machines, bearings) never seen in training",
    "condition": "operating conditions never trained on (transfer to an unseen condition)",
    "fault-size": "fault sizes never trained on (unseen damaged bearings)",
    "random": "randomly drawn windows (LEAKY: neighbouring windows of one recording sit on both sides; optimistic)",
}


def _init_key(init: str) -> int:
    return INIT_ORDER.index(init) if init in INIT_ORDER else len(INIT_ORDER)


def _budget_key(b: int) -> int:
    return b if b else 10**9


# ------------------------------------------------------------------------------------------------
# Reading runs


def collect_runs(root: str | Path) -> list[dict[str, Any]]:
    """One row per finished run (a folder with model.json and test_metrics.json) under ``root``."""
    root = Path(root)
    rows = []
    for mj in sorted(root.rglob("model.json")):
        rd = mj.parent
        tm = rd / "test_metrics.json"
        if not tm.is_file():
            continue
        try:
            model = json.loads(mj.read_text(encoding="utf-8"))
            test = json.loads(tm.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DiagError(f"{rd}: unreadable run record ({exc}); delete that run folder or train it again") from None
        bad = [k for k in ("accuracy", "macro_f1") if isinstance(test.get(k), float) and not math.isfinite(test[k])]
        if bad:
            raise DiagError(f"{tm}: test {bad[0]} is {test[bad[0]]} (not a number), so no spread or comparison over "
                            f"runs can include run {rd.relative_to(root)}; train that run again or delete its folder")
        tr = model.get("train", {})
        history = []
        mf = rd / "metrics.jsonl"
        if mf.is_file():
            history = [json.loads(line) for line in mf.read_text(encoding="utf-8").splitlines() if line.strip()]
        rows.append({
            "run": str(rd.relative_to(root)),
            "init": tr.get("init", "?"),
            "freeze": tr.get("freeze", "none"),
            "warmup": float(tr.get("warmup", 0.0)),
            "model": model.get("model", "?"),
            "labels_per_class": int(tr.get("labels_per_class", 0) or 0),
            "label_fraction": float(tr.get("label_fraction", 0.0) or 0.0),
            "labeled": model.get("labeled", {}).get("n"),
            "seed": int(tr.get("seed", 0)),
            "epochs": int(model.get("schedule", {}).get("epochs") or tr.get("epochs", 0)),
            "min_steps": int(tr.get("min_steps", 0) or 0),
            "epochs_run": len(history),
            "steps": history[-1].get("step") if history else None,
            "selected_epoch": model.get("selected", {}).get("epoch"),
            "val_accuracy": model.get("selected", {}).get("val_accuracy"),
            "val_macro_f1": model.get("selected", {}).get("val_macro_f1"),
            "test_accuracy": test.get("accuracy"),
            "test_macro_f1": test.get("macro_f1"),
            "test_n": test.get("n"),
            "confusion": test.get("confusion"),
            "classes": model.get("classes", []),
            "dataset": model.get("dataset", {}).get("fingerprint"),
            "dataset_path": model.get("dataset", {}).get("path"),
            "start": model.get("start", {}),
            "train": tr,
            "versions": model.get("versions", {}),
            "runtime": model.get("runtime", {}),
            "history": history,
        })
    return rows


def _mean_std(vals: Sequence[Any]) -> tuple[float, float]:
    a = np.asarray([v for v in vals if v is not None], dtype=float)
    if not len(a):
        return math.nan, math.nan
    return float(a.mean()), (float(a.std(ddof=1)) if len(a) > 1 else 0.0)


def cell_of(r: dict[str, Any]) -> tuple[int, str, float]:
    """The (labels per class, freeze, warmup) cell a run belongs to."""
    return r["labels_per_class"], r["freeze"], r["warmup"]


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± std (ddof=1) over seeds per (init, freeze, warmup, budget)."""
    keys = sorted({(r["init"], r["freeze"], r["warmup"], r["labels_per_class"]) for r in rows},
                  key=lambda k: (_budget_key(k[3]), k[1] != "none", k[1], -k[2], _init_key(k[0]), k[0]))
    out = []
    for init, freeze, warmup, budget in keys:
        rs = [r for r in rows if (r["init"], r["freeze"], r["warmup"], r["labels_per_class"]) == (init, freeze, warmup, budget)]
        acc, acc_sd = _mean_std([r["test_accuracy"] for r in rs])
        f1, f1_sd = _mean_std([r["test_macro_f1"] for r in rs])
        vf1, vf1_sd = _mean_std([r["val_macro_f1"] for r in rs])
        out.append({"init": init, "freeze": freeze, "warmup": warmup, "budget": budget_name(budget),
                    "labels_per_class": budget, "seeds": len(rs), "labeled": rs[0]["labeled"],
                    "steps": rs[0]["steps"],
                    "val_macro_f1": vf1, "val_macro_f1_std": vf1_sd,
                    "test_accuracy": acc, "test_accuracy_std": acc_sd,
                    "test_macro_f1": f1, "test_macro_f1_std": f1_sd})
    return out


# ------------------------------------------------------------------------------------------------
# Statistics


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
    cells = sorted({cell_of(r) for r in rows}, key=lambda c: (_budget_key(c[0]), c[1] != "none", c[1], -c[2]))
    for cell in cells:
        by_init: dict[str, dict[int, float]] = {}
        for r in rows:
            if cell_of(r) == cell and r["test_macro_f1"] is not None:
                by_init.setdefault(r["init"], {})[r["seed"]] = float(r["test_macro_f1"])
        inits = sorted(by_init, key=_init_key)
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
            scores.items(), key=lambda kv: (_budget_key(kv[0][1]), _init_key(kv[0][0]), kv[0][2] != "none",
                                            kv[0][2], -kv[0][3])):
        main = scores.get((init, budget, *base))
        if (freeze, warmup) == base or main is None:
            continue
        setting, against = setting_name(freeze, warmup, base)
        out.append({"init": init, "labels_per_class": budget, "budget": budget_name(budget), "freeze": freeze,
                    "warmup": warmup, "setting": setting, "against": against,
                    **paired_difference(seeds, main, confidence)})
    return out


def ablation_sentences(settings: list[dict[str, Any]]) -> list[str]:
    """One sentence per ablation setting and budget, from the verdicts of :func:`compare_settings`."""
    out = []
    for key in dict.fromkeys((s["labels_per_class"], s["setting"], s["against"]) for s in settings):
        same = [s for s in settings if (s["labels_per_class"], s["setting"], s["against"]) == key]
        said = "; ".join(f"{INIT_LABEL.get(s['init'], s['init'])}: {s['verdict']}" for s in same)
        out.append(f"{key[1][0].upper() + key[1][1:]} instead of {key[2]} ({budget_words(key[0])}): {said}.")
    return out


def main_setting(rows: list[dict[str, Any]]) -> tuple[str, float]:
    """The (freeze, warmup) of the main matrix: the one with the most runs (ablations sit at one budget)."""
    counts: dict[tuple[str, float], int] = {}
    for r in rows:
        counts[(r["freeze"], r["warmup"])] = counts.get((r["freeze"], r["warmup"]), 0) + 1
    return max(counts, key=lambda k: (counts[k], k[0] == "none", k[1]))


def answer_paragraph(rows: list[dict[str, Any]], stats: list[dict[str, Any]], data: dict[str, Any],
                     settings: list[dict[str, Any]] | None = None) -> str:
    """The answer in a few sentences, generated from the verdicts of the main setting (``stats``,
    :func:`compare_starts`) and of the ablations (``settings``, :func:`compare_settings`; computed
    from ``rows`` when not given)."""
    freeze, warmup = main_setting(rows)
    models = sorted({r["model"] for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    inits = sorted({r["init"] for r in rows}, key=_init_key)
    parts = [f"On {data.get('name', 'this dataset')} (test split: {data.get('split_tests', 'see below')}), "
             f"{', '.join(INIT_LABEL.get(i, i) for i in inits)} starts of {', '.join(models)} were compared on "
             f"test macro-F1 over {len(seeds)} seed(s) (fine-tuning {'everything' if freeze == 'none' else 'with freeze=' + freeze}, "
             f"warmup {warmup_name(warmup)})."]
    main = [s for s in stats if (s["freeze"], s["warmup"]) == (freeze, warmup)]
    for budget in sorted({s["labels_per_class"] for s in main}, key=_budget_key, reverse=True):
        said = [f"{INIT_LABEL.get(s['a'], s['a'])} vs {INIT_LABEL.get(s['b'], s['b'])}: {s['verdict']}"
                for s in main if s["labels_per_class"] == budget]
        parts.append(f"With {budget_words(budget)}: " + "; ".join(said) + ".")
    for start in ("imagenet", "ssl"):
        against = [s for s in main if s["a"] == start and s["b"] == "scratch"]
        if against and all(s["n"] > 1 for s in against):
            if not any(s["verdict"].startswith("better") for s in against):
                parts.append(f"{INIT_LABEL[start]} did not help here: at no label budget was it measurably better "
                             "than training from scratch.")
            else:
                where = [budget_words(s["labels_per_class"]) for s in against if s["verdict"].startswith("better")]
                parts.append(f"{INIT_LABEL[start]} helped measurably with {', '.join(where)}.")
    parts += ablation_sentences(compare_settings(rows) if settings is None else settings)
    parts.append(training_budget(rows))
    spread = [s for s in summarise(rows) if s["seeds"] > 1 and (s["freeze"], s["warmup"]) == (freeze, warmup)]
    if spread:
        worst = max(spread, key=lambda s: s["test_macro_f1_std"])
        parts.append(f"Seed spread: the standard deviation of test macro-F1 over seeds is at most "
                     f"{worst['test_macro_f1_std']:.3f} ({INIT_LABEL.get(worst['init'], worst['init'])}, "
                     f"{budget_words(worst['labels_per_class'])}).")
    else:
        parts.append("Only one seed per setting: no interval and no seed spread; differences are not tested.")
    return " ".join(parts)


def training_budget(rows: list[dict[str, Any]]) -> str:
    """One sentence on how long the runs trained (the step budget, or its absence)."""
    mins = sorted({r["min_steps"] for r in rows})
    steps = [r["steps"] for r in rows if r["steps"]]
    span = f" ({min(steps)}-{max(steps)} optimiser steps per run)" if steps else ""
    if mins == [0]:
        eps = sorted({int(r["train"].get("epochs", 0)) for r in rows})
        return (f"Training: a fixed {', '.join(map(str, eps))} epoch(s) with no step budget{span}, so small label "
                "budgets had fewer optimiser steps; selection on validation.")
    return (f"Training: at least {', '.join(map(str, mins))} optimiser steps per run (train.min_steps: small label "
            f"budgets get more epochs){span}; the epoch selected on validation.")


# ------------------------------------------------------------------------------------------------
# The data the runs were trained on


def describe_data(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Source, split and what it tests, class counts per side -- from the prepared dataset's manifest."""
    path = next((r["dataset_path"] for r in rows if r.get("dataset_path")), None)
    info: dict[str, Any] = {"path": path, "name": Path(path).name if path else "the prepared dataset",
                            "fingerprint": rows[0]["dataset"], "classes": rows[0]["classes"]}
    mf = Path(path) / "manifest.json" if path else None
    if mf is None or not mf.is_file():
        info["missing"] = f"{path}: prepared dataset not found; data details unavailable"
        return info
    m = json.loads(mf.read_text(encoding="utf-8"))
    counts = m.get("counts")
    if not counts:  # older manifests: count the labels
        from diag.signal.dataset import PreparedDataset

        ds = PreparedDataset(path)
        counts = {s: {c: int((ds.labels(s) == k).sum()) for k, c in enumerate(ds.classes)} for s in ds.splits}
    cfg = m.get("config", {})
    src = cfg.get("source", {})
    split = cfg.get("split", {})
    method = (m.get("split") or {}).get("method") or split.get("method", "?")
    detail = {"condition": split.get("test_conditions"), "fault-size": split.get("test_fault_sizes"),
              "group": split.get("test_groups"), "recording": split.get("test_groups")}.get(method)
    info.update({
        "source": src.get("kind", "?") + (f" ({src['path']})" if src.get("path") else ""),
        "source_options": {k: v for k, v in src.items() if k not in ("kind", "path")},
        "split": method + (f" (test: {', '.join(map(str, detail))})" if detail else ""),
        "split_tests": SPLIT_TESTS.get(method, f"a '{method}' split (not described in the manifest)"),
        "counts": counts,
        "sizes": m.get("sizes") or {},
        "fs": m.get("fs"), "window": m.get("window"), "transform": m.get("transform"),
        "image_shape": m.get("image_shape"), "recordings": len(m.get("recordings", [])),
        "audit": audit_lines(m),  # the data audit's findings (diag.signal.audit); None: never audited
        "name": f"{src.get('kind', '?')} data ({Path(path).name})",
    })
    return info


# ------------------------------------------------------------------------------------------------
# Figures (PNG bytes; embedded in the report)


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def _starts(rows: list[dict[str, Any]]) -> list[str]:
    return sorted({r["init"] for r in rows}, key=lambda i: (_init_key(i), i))


def fig_label_efficiency(rows: list[dict[str, Any]]) -> bytes:
    """Test macro-F1 against labels per class, one line per start (mean ± std over seeds; dots: seeds)."""
    from matplotlib.figure import Figure

    freeze, warmup = main_setting(rows)
    main = [r for r in rows if (r["freeze"], r["warmup"]) == (freeze, warmup)]
    budgets = sorted({r["labels_per_class"] for r in main}, key=_budget_key)
    xs = {b: k for k, b in enumerate(budgets)}
    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    for j, init in enumerate(_starts(main)):
        ss = [s for s in summarise(main) if s["init"] == init]
        ss.sort(key=lambda s: _budget_key(s["labels_per_class"]))
        x = [xs[s["labels_per_class"]] for s in ss]
        ax.errorbar(x, [s["test_macro_f1"] for s in ss], yerr=[s["test_macro_f1_std"] for s in ss], marker="o",
                    capsize=3, label=INIT_LABEL.get(init, init), color=INIT_COLORS.get(init))
        for r in main:
            if r["init"] == init and r["test_macro_f1"] is not None:
                ax.plot(xs[r["labels_per_class"]] + (j - 1) * 0.04, r["test_macro_f1"], ".", ms=4,
                        color=INIT_COLORS.get(init, "k"), alpha=0.6)
    ax.set_xticks(range(len(budgets)), [budget_name(b) for b in budgets])
    ax.set_xlabel("labelled windows per class")
    ax.set_ylabel("test macro-F1")
    ax.set_ylim(0, 1.02)
    ax.set_title("Label efficiency (test split; mean ± std over seeds, dots: seeds)")
    ax.legend(title="start")
    return _png(fig)


def fig_warmup(rows: list[dict[str, Any]], budget: int, freeze: str) -> bytes:
    """Learning rate per epoch and validation macro-F1 per epoch, warmup settings side by side."""
    from matplotlib.figure import Figure

    sel = [r for r in rows if r["labels_per_class"] == budget and r["freeze"] == freeze and r["history"]]
    fig = Figure(figsize=(11, 4))
    ax1, ax2 = fig.subplots(1, 2)
    styles = {}
    for k, w in enumerate(sorted({r["warmup"] for r in sel}, reverse=True)):
        styles[w] = ["-", "--", ":", "-."][k % 4]
    from matplotlib.ticker import MaxNLocator

    from diag.learning.runtime import lr_at, warmup_steps

    for w, ls in styles.items():  # the schedule each run followed, step by step (recomputed from its config)
        r = next((x for x in sel if x["warmup"] == w and x["steps"]), None)
        if r is None:
            continue
        total, peak = int(r["steps"]), float(r["train"].get("lr", 1e-3))
        wu = warmup_steps(w, total)
        ax1.plot(range(1, total + 1), [lr_at(k, total, wu, peak) for k in range(total)], ls, color="k",
                 label=f"warmup {warmup_name(w)} ({wu} of {total} steps)")
    for init in _starts(sel):
        for w, ls in styles.items():
            hs = [r["history"] for r in sel if r["init"] == init and r["warmup"] == w]
            if not hs:
                continue
            n = min(len(h) for h in hs)
            ep = np.arange(1, n + 1)
            lab = f"{INIT_LABEL.get(init, init)}, warmup {warmup_name(w)}"
            f1 = np.array([[e.get("val_macro_f1", np.nan) for e in h[:n]] for h in hs])
            ax2.plot(ep, f1.mean(0), ls, color=INIT_COLORS.get(init), label=lab)
    ax1.set_xlabel("optimiser step")
    ax1.set_ylabel("learning rate")
    ax1.set_title("Learning-rate schedule")
    ax1.legend(fontsize="small")
    ax2.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation macro-F1 (mean over seeds)")
    ax2.set_ylim(0, 1.02)
    ax2.set_title(f"Validation curves ({budget_words(budget)}, freeze {freeze})")
    ax2.legend(fontsize="small")
    return _png(fig)


def fig_confusion(confusion: list[list[int]], classes: Sequence[str], title: str) -> bytes:
    from matplotlib.figure import Figure

    cm = np.asarray(confusion, dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    k = len(classes)
    fig = Figure(figsize=(1.2 + 0.45 * k, 1.0 + 0.42 * k))
    ax = fig.subplots()
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            if cm[i, j]:
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), classes, rotation=90, fontsize=7)
    ax.set_yticks(range(k), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    return _png(fig)


def fig_examples(dataset_path: str, classes: Sequence[str], per_class: int = 2) -> bytes | None:
    """The first training image(s) of each class (channel 0), as the models saw them."""
    from matplotlib.figure import Figure

    from diag.signal.dataset import PreparedDataset

    try:
        ds = PreparedDataset(dataset_path)
        x, y = ds.images("train"), ds.labels("train")
    except (DiagError, OSError):
        return None
    k = len(classes)
    fig = Figure(figsize=(1.4 * per_class * min(k, 6), 1.6 * math.ceil(k / 6)))
    axes = fig.subplots(math.ceil(k / 6), per_class * min(k, 6), squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    for c in range(k):
        idx = np.flatnonzero(y == c)[:per_class]
        for j, i in enumerate(idx):
            ax = axes[c * per_class + j]
            ax.imshow(np.asarray(x[i][0], dtype=np.float32), aspect="auto", origin="lower", cmap="magma")
            ax.set_title(classes[c], fontsize=7)
    return _png(fig)


# ------------------------------------------------------------------------------------------------
# Writing the report


def _f(v: Any, nd: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def _pm(m: float, s: float, n: int) -> str:
    if math.isnan(m):
        return "—"
    return f"{m:.3f} ± {s:.3f}" if n > 1 else f"{m:.3f}"


class _Doc:
    """The report built once, rendered to HTML and Markdown side by side."""

    def __init__(self) -> None:
        self.html: list[str] = []
        self.md: list[str] = []

    def h(self, level: int, text: str) -> None:
        self.html.append(f"<h{level}>{html.escape(text)}</h{level}>")
        self.md += ["#" * level + " " + text, ""]

    def p(self, text: str, strong: bool = False) -> None:
        body = html.escape(text)
        self.html.append(f"<p class='answer'><strong>{body}</strong></p>" if strong else f"<p>{body}</p>")
        self.md += [f"**{text}**" if strong else text, ""]

    def ul(self, items: list[str]) -> None:
        self.html.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>")
        self.md += [f"- {i}" for i in items] + [""]

    def table(self, header: list[str], rows: list[list[str]], cls: str = "") -> None:
        th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
        self.html.append(f"<table class='{cls}'><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>")
        self.md += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        self.md += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows] + [""]

    def img(self, png: bytes | None, alt: str) -> None:
        if png is None:
            return
        b64 = base64.b64encode(png).decode("ascii")
        self.html.append(f"<figure><img alt='{html.escape(alt)}' src='data:image/png;base64,{b64}'/>"
                         f"<figcaption>{html.escape(alt)}</figcaption></figure>")
        self.md += [f"![{alt}](data:image/png;base64,{b64})", ""]

    def pre(self, text: str) -> None:
        self.html.append(f"<pre>{html.escape(text)}</pre>")
        self.md += ["```", text, "```", ""]


CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
       "table{border-collapse:collapse;margin:0.8em 0;font-size:0.9em}td,th{border:1px solid #ccc;padding:3px 8px;"
       "text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}.answer{font-size:1.1em;"
       "background:#eef6ff;padding:0.8em;border-left:4px solid #3a7bd5}img{max-width:100%}pre{background:#f6f6f6;"
       "padding:0.6em;overflow-x:auto;font-size:0.85em}figure{margin:1em 0}")


def write_report(root: str | Path, quiet: bool = False) -> dict[str, Any]:
    """Write ``report.html``, ``report.md``, ``runs.csv``, ``summary.csv``/``.md`` and ``comparison.png``
    for the runs under ``root``; returns the rows, summary, statistics and answer."""
    root = Path(root)
    if not root.is_dir():
        raise DiagError(f"{root}: no such folder; give the --out folder of `diag compare` or of several `diag train` runs")
    rows = collect_runs(root)
    if not rows:
        raise DiagError(f"{root}: no finished runs (folders with model.json and test_metrics.json) found")
    fingerprints = {r["dataset"] for r in rows}
    if len(fingerprints) > 1:
        raise DiagError(f"{root}: runs were trained on {len(fingerprints)} different prepared datasets; "
                        "report runs of one dataset only (one folder each)")
    record: dict[str, Any] = {}
    if (root / COMPARE_RECORD).is_file():
        record = json.loads((root / COMPARE_RECORD).read_text(encoding="utf-8"))
    skipped: dict[str, str] = record.get("skipped", {})
    summary = summarise(rows)
    stats = compare_starts(rows)
    data = describe_data(rows)
    settings = compare_settings(rows)
    answer = answer_paragraph(rows, stats, data, settings)

    _write_tables(root, rows, summary, skipped)
    label_png = fig_label_efficiency(rows)
    atomic_write_bytes(root / "comparison.png", label_png)

    doc = _Doc()
    doc.h(1, f"Which start helps? {data['name']}")
    doc.p(f"Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')} by `diag report {root}` from "
          f"{len(rows)} finished run(s). Every test number is the run's own test_metrics.json (the test split, "
          "scored once with the checkpoint chosen on the validation split).")
    doc.h(2, "The answer")
    doc.p(answer, strong=True)
    for init, why in skipped.items():
        doc.p(f"{INIT_LABEL.get(init, init)} start skipped: {why}")

    doc.h(2, "The data")
    if "missing" in data:
        doc.p(data["missing"])
    else:
        doc.ul([f"source: {data['source']}" + (f" {json.dumps(data['source_options'])}" if data["source_options"] else ""),
                f"split: {data['split']}: the test split holds {data['split_tests']}",
                f"{data['recordings']} recordings, fs {data['fs']} Hz, window {json.dumps(data['window'])}",
                f"images {data['image_shape']}, transform {json.dumps(data['transform'])}",
                f"prepared dataset: {data['path']} (fingerprint {data['fingerprint']})"])
        sides = [s for s in ("train", "val", "test") if s in data["counts"]]
        doc.table(["class"] + sides, [[c] + [str(data["counts"][s].get(c, 0)) for s in sides] for c in data["classes"]]
                  + [["total"] + [str(sum(data["counts"][s].values())) for s in sides]], cls="counts")

    doc.h(2, "Data audit")
    audit = data.get("audit")
    doc.p("The prepared dataset is not available here; no data audit." if "missing" in data else
          "Never audited (prepared before the data audit; `diag audit PREPARED` runs it)." if audit is None else
          "No findings: no class rests on one recording / group / condition, no single image row or per-recording "
          "statistic separates a class trivially, no class alone was resampled, no one-sided class or condition."
          if not audit else "What `diag prepare` found in this data (`diag audit PREPARED` re-runs it):")
    if audit:
        doc.ul(audit)

    doc.h(2, "Main table")
    doc.p("Mean ± standard deviation over seeds (one value: one seed). val = validation split (selects the epoch); "
          "test = test split, scored once.")
    doc.table(["start", "freeze", "warmup", "labels/class", "labelled windows", "steps", "seeds", "val macro-F1",
               "test accuracy", "test macro-F1"],
              [[s["init"], s["freeze"], warmup_name(s["warmup"]), s["budget"], _f(s["labeled"]), _f(s["steps"]),
                str(s["seeds"]), _pm(s["val_macro_f1"], s["val_macro_f1_std"], s["seeds"]),
                _pm(s["test_accuracy"], s["test_accuracy_std"], s["seeds"]),
                _pm(s["test_macro_f1"], s["test_macro_f1_std"], s["seeds"])] for s in summary], cls="main")

    doc.h(2, "Starts compared (paired over seeds)")
    doc.p(f"Difference of test macro-F1, first start minus second, paired by seed; {int(CONFIDENCE * 100)} % "
          "Student-t interval over seeds (scipy.stats.t, n-1 degrees of freedom). The verdict is computed from "
          "the interval.")
    doc.table(["labels/class", "freeze", "warmup", "first", "second", "seeds", "mean difference", "95 % interval",
               "verdict"],
              [[s["budget"], s["freeze"], warmup_name(s["warmup"]), s["a"], s["b"], str(s["n"]), _f(s["mean"]),
                "—" if math.isnan(s["low"]) else f"[{s['low']:.3f}, {s['high']:.3f}]", s["verdict"]] for s in stats],
              cls="stats")

    doc.h(2, "Label efficiency")
    doc.img(label_png, "test macro-F1 vs labelled windows per class, one line per start")

    freeze, warmup = main_setting(rows)
    doc.h(2, "Warmup vs none")
    wcells = sorted({(r["labels_per_class"], r["freeze"]) for r in rows
                     if len({x["warmup"] for x in rows if (x["labels_per_class"], x["freeze"]) ==
                             (r["labels_per_class"], r["freeze"])}) > 1}, key=lambda c: _budget_key(c[0]))
    if wcells:
        for budget, fz in wcells:
            doc.img(fig_warmup(rows, budget, fz), f"learning rate and validation macro-F1 per epoch, "
                                                  f"{budget_words(budget)}, freeze {fz}")
    else:
        doc.p(f"Only one warmup setting was run ({warmup_name(warmup)}); run `diag compare --warmup 0.1,0` for this "
              "ablation.")
        doc.img(fig_warmup(rows, max((r["labels_per_class"] for r in rows), key=_budget_key), freeze),
                "learning rate and validation macro-F1 per epoch")

    doc.h(2, "Freeze modes")
    fz = [s for s in summary if len({x["freeze"] for x in summary if x["labels_per_class"] == s["labels_per_class"]
                                     and x["warmup"] == s["warmup"]}) > 1]
    if fz:
        doc.table(["start", "labels/class", "warmup", "freeze", "seeds", "val macro-F1", "test macro-F1"],
                  [[s["init"], s["budget"], warmup_name(s["warmup"]), s["freeze"], str(s["seeds"]),
                    _pm(s["val_macro_f1"], s["val_macro_f1_std"], s["seeds"]),
                    _pm(s["test_macro_f1"], s["test_macro_f1_std"], s["seeds"])] for s in fz], cls="freeze")
    else:
        doc.p(f"Only one freeze mode was run ({freeze}); run `diag compare --freeze none,stages:1,backbone` for "
              "this ablation.")

    doc.h(2, "Warmup and freeze against the main setting (paired over seeds)")
    if settings:
        doc.p("Change of test macro-F1 when one start is trained with another warmup or freeze mode than the main "
              f"setting, paired by seed (same start, labelled subset and seed); {int(CONFIDENCE * 100)} % Student-t "
              "interval over seeds. The verdict is computed from the interval.")
        doc.table(["start", "labels/class", "setting", "against", "seeds", "mean change", "95 % interval", "verdict"],
                  [[s["init"], s["budget"], s["setting"], s["against"], str(s["n"]), _f(s["mean"]),
                    "—" if math.isnan(s["low"]) else f"[{s['low']:.3f}, {s['high']:.3f}]", s["verdict"]]
                   for s in settings], cls="settings")
    else:
        doc.p("No ablation: every run used the main setting.")

    doc.h(2, "Confusion matrices (test split)")
    top = max((r["labels_per_class"] for r in rows), key=_budget_key)
    for init in _starts(rows):
        rs = [r for r in rows if r["init"] == init and cell_of(r) == (top, freeze, warmup) and r["confusion"]]
        if not rs:
            continue
        cm = np.sum([np.asarray(r["confusion"]) for r in rs], axis=0).tolist()
        doc.img(fig_confusion(cm, rs[0]["classes"], f"{INIT_LABEL.get(init, init)}, {budget_words(top)}, "
                                                    f"summed over {len(rs)} seed(s)"),
                f"confusion matrix of the {init} start ({budget_words(top)}, test split, summed over seeds)")

    doc.h(2, "Example images of each class")
    ex = fig_examples(data["path"], data["classes"]) if data.get("path") else None
    if ex is None:
        doc.p("The prepared dataset is not available here; no example images.")
    doc.img(ex, "training images, channel 0, as the models saw them")

    doc.h(2, "How this was made")
    cmds = record.get("commands", [])
    doc.pre("\n".join(cmds) if cmds else "(no compare.json: runs made by `diag train` directly)")
    doc.p(training_budget(rows))
    doc.p(f"diag report {root}")
    base = rows[0]["train"]
    varying = sorted({k for r in rows for k in r["train"] if r["train"].get(k) != base.get(k)})
    doc.p("Training config (the settings shared by every run; per run varying: " + ", ".join(varying) + "):")
    doc.pre(json.dumps({k: v for k, v in base.items() if k not in varying}, indent=1))
    starts = {}
    for r in rows:
        st = r["start"]
        if st.get("weights"):
            starts[r["init"]] = f"{st.get('weights_source', st['weights'])}; sha256 {st.get('weights_sha256', '?')}"
    if starts:
        doc.ul([f"{INIT_LABEL.get(k, k)} weights: {v}" for k, v in sorted(starts.items(), key=lambda kv: _init_key(kv[0]))])
    devices = sorted({r["runtime"].get("device", "?") for r in rows})
    doc.p(f"Device(s): {', '.join(devices)}. Package versions (first run):")
    doc.pre("\n".join(f"{k} {v}" for k, v in rows[0]["versions"].items()))

    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>diag report</title>"
            f"<style>{CSS}</style></head><body>" + "\n".join(doc.html) + "</body></html>\n")
    atomic_write_text(root / "report.html", page)
    atomic_write_text(root / "report.md", "\n".join(doc.md))
    atomic_write_text(root / "answer.txt", answer + "\n")
    if not quiet:
        _print(root, summary, answer, skipped)
    return {"runs": rows, "summary": summary, "stats": stats, "settings": settings, "answer": answer,
            "skipped": skipped,
            "html": root / "report.html", "md": root / "report.md"}


def _csv(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.4f}" if isinstance(v, float) and k != "warmup" else v) for k, v in r.items() if k in columns})
    return buf.getvalue()


def _write_tables(root: Path, rows: list[dict[str, Any]], summary: list[dict[str, Any]], skipped: dict[str, str]) -> None:
    run_cols = ["run", "init", "freeze", "warmup", "model", "labels_per_class", "labeled", "seed", "epochs", "min_steps",
                "steps",
                "selected_epoch", "val_macro_f1", "test_accuracy", "test_macro_f1", "test_n"]
    atomic_write_text(root / "runs.csv", _csv(rows, run_cols))
    sum_cols = ["init", "freeze", "warmup", "budget", "labeled", "steps", "seeds", "val_macro_f1", "val_macro_f1_std",
                "test_accuracy", "test_accuracy_std", "test_macro_f1", "test_macro_f1_std"]
    atomic_write_text(root / "summary.csv", _csv(summary, sum_cols))
    md = ["| start | freeze | warmup | labels/class | labelled windows | seeds | val macro-F1 | **test** accuracy | **test** macro-F1 |",
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in summary:
        md.append(f"| {s['init']} | {s['freeze']} | {warmup_name(s['warmup'])} | {s['budget']} | {s['labeled']} | "
                  f"{s['seeds']} | {_pm(s['val_macro_f1'], s['val_macro_f1_std'], s['seeds'])} | "
                  f"{_pm(s['test_accuracy'], s['test_accuracy_std'], s['seeds'])} | "
                  f"{_pm(s['test_macro_f1'], s['test_macro_f1_std'], s['seeds'])} |")
    for init, why in skipped.items():
        md.append(f"| {init} | — | — | — | — | 0 | skipped: {why} | | |")
    md += ["", "Mean ± standard deviation over seeds. Test scores: the test split, scored once per run with the "
               "checkpoint chosen on the validation split."]
    atomic_write_text(root / "summary.md", "\n".join(md) + "\n")


def _print(root: Path, summary: list[dict[str, Any]], answer: str, skipped: dict[str, str]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    con.print(f"[bold]{root}[/]: test split scores (mean ± std over seeds), model chosen on validation")
    t = Table()
    for c in ("start", "freeze", "warmup", "labels", "seeds", "val F1", "test acc", "test F1"):
        t.add_column(c, justify="left" if c in ("start", "freeze") else "right")
    for s in summary:
        t.add_row(s["init"], s["freeze"], warmup_name(s["warmup"]), s["budget"], str(s["seeds"]),
                  _pm(s["val_macro_f1"], s["val_macro_f1_std"], s["seeds"]),
                  _pm(s["test_accuracy"], s["test_accuracy_std"], s["seeds"]),
                  _pm(s["test_macro_f1"], s["test_macro_f1_std"], s["seeds"]))
    con.print(t)
    for init, why in skipped.items():
        con.print(f"[yellow]{init} skipped:[/] {why}")
    con.print(f"[bold]Answer:[/] {answer}", soft_wrap=True)
    con.print(f"report: {root / 'report.html'} (and report.md)")
