"""The names a study is written and read with, in one place: the starts and their order, the compare record,
label budgets, and the run folder of each point of the grid. ``diag compare`` writes with them,
``diag report`` reads with them; neither imports the other."""

from __future__ import annotations

from pathlib import Path

__all__ = ["INIT_ORDER", "INIT_LABEL", "COMPARE_RECORD", "budget_name", "budget_words", "freeze_name",
           "warmup_name", "run_dir", "init_key", "budget_key"]

#: the starts, in the order every table shows them
INIT_ORDER = ("imagenet", "ssl", "scratch")
INIT_LABEL = {"imagenet": "ImageNet", "ssl": "SSL", "scratch": "scratch"}
#: what a compare folder records: the dataset, the model, every command that filled it, skipped starts
COMPARE_RECORD = "compare.json"


def init_key(init: str) -> int:
    """Sort key of a start: its place in :data:`INIT_ORDER` (unknown starts last)."""
    return INIT_ORDER.index(init) if init in INIT_ORDER else len(INIT_ORDER)


def budget_key(labels_per_class: int) -> int:
    """Sort key of a label budget: fewest labels first, ``all`` (0) last."""
    return labels_per_class if labels_per_class else 10**9


def budget_name(labels_per_class: int) -> str:
    """``5pc`` for 5 labels per class, ``all`` for every training window labelled (0)."""
    return "all" if not labels_per_class else f"{labels_per_class}pc"


def budget_words(labels_per_class: int) -> str:
    return "all labels" if not labels_per_class else f"{labels_per_class} labels per class"


def freeze_name(freeze: str) -> str:
    """A folder-safe name for a freeze mode (``stages:1`` -> ``stages1``)."""
    return freeze.replace(":", "")


def warmup_name(warmup: float) -> str:
    return f"{float(warmup):g}"


def run_dir(out: Path, init: str, labels_per_class: int, seed: int, freeze: str = "none", warmup: float = 0.05) -> Path:
    """The folder of one run of a compare grid, named by every axis (``imagenet-5pc-stages1-w0.1-s0``)."""
    return Path(out) / f"{init}-{budget_name(labels_per_class)}-{freeze_name(freeze)}-w{warmup_name(warmup)}-s{seed}"
