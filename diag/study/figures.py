"""The figures of a study's report, as PNG bytes (embedded in the report): label efficiency, the warmup
schedule and validation curves, confusion matrices, example images."""

from __future__ import annotations

import io
import math
from typing import Any, Sequence

import numpy as np

from diag.errors import DiagError
from diag.study.names import INIT_LABEL, budget_key, budget_words, warmup_name
from diag.study.runs import main_setting, starts, summarise

INIT_COLORS = {"imagenet": "tab:blue", "imagenet+ssl": "tab:green", "ssl": "tab:orange", "scratch": "tab:gray"}


def png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def fig_label_efficiency(rows: list[dict[str, Any]]) -> bytes:
    """Test macro-F1 against labels per class, one line per start (mean ± std over seeds; dots: seeds)."""
    from matplotlib.figure import Figure

    freeze, warmup = main_setting(rows)
    main = [r for r in rows if (r["freeze"], r["warmup"]) == (freeze, warmup)]
    budgets = sorted({r["labels_per_class"] for r in main}, key=budget_key)
    xs = {b: k for k, b in enumerate(budgets)}
    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    for j, init in enumerate(starts(main)):
        ss = [s for s in summarise(main) if s["init"] == init]
        ss.sort(key=lambda s: budget_key(s["labels_per_class"]))
        x = [xs[s["labels_per_class"]] for s in ss]
        ax.errorbar(x, [s["test_macro_f1"] for s in ss], yerr=[s["test_macro_f1_std"] for s in ss], marker="o",
                    capsize=3, label=INIT_LABEL.get(init, init), color=INIT_COLORS.get(init))
        for r in main:
            if r["init"] == init and r["test_macro_f1"] is not None:
                ax.plot(xs[r["labels_per_class"]] + (j - 1) * 0.04, r["test_macro_f1"], ".", ms=4,
                        color=INIT_COLORS.get(init, "k"), alpha=0.6)
    ax.set_xticks(range(len(budgets)), [str(b) if b else "all" for b in budgets])
    ax.set_xlabel("labelled windows per class")
    ax.set_ylabel("test macro-F1")
    ax.set_ylim(0, 1.02)
    ax.set_title("Label efficiency (test split; mean ± std over seeds, dots: seeds)")
    ax.legend(title="start")
    return png(fig)


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
    for init in starts(sel):
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
    return png(fig)


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
    return png(fig)


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
    return png(fig)


