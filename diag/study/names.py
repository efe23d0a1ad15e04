"""The names a study is written and read with, in one place: the starts and their order, the compare record,
label budgets, and the run folder of each point of the grid. ``diag compare`` writes with them,
``diag report`` reads with them; neither imports the other."""

from __future__ import annotations

from pathlib import Path

__all__ = ["INIT_ORDER", "INIT_LABEL", "SSL_STARTS", "COMPARE_RECORD", "train_init", "pretrained_from", "ssl_start",
           "budget_name", "budget_label", "budget_words", "freeze_name",
           "warmup_name", "run_dir", "init_key", "budget_key"]

#: the starts, in the order every table shows them. ``imagenet+ssl``: self-supervised pretraining on the
#: user's own signals continued from ImageNet weights (``diag pretrain --set pretrain.init="imagenet"``),
#: then fine-tuned -- hierarchical pretraining
INIT_ORDER = ("imagenet", "imagenet+ssl", "ssl", "scratch")
INIT_LABEL = {"imagenet": "ImageNet", "imagenet+ssl": "ImageNet+SSL", "ssl": "SSL", "scratch": "scratch"}
#: the starts fine-tuned from a ``diag pretrain`` folder (its pretrain.json says how pretraining went)
SSL_STARTS = ("ssl", "imagenet+ssl")
#: what a compare folder records: the dataset, the model, every command that filled it, skipped starts
COMPARE_RECORD = "compare.json"


def train_init(start: str) -> str:
    """The ``train.init`` a start is trained with: both SSL starts fine-tune from a ``diag pretrain`` folder
    (``ssl``); which one it is, the folder's pretrain.json says (:func:`pretrained_from`)."""
    return "ssl" if start in SSL_STARTS else start


def pretrained_from(meta: dict) -> str:
    """What a pretraining began from, read from its pretrain.json: ``imagenet`` or ``scratch`` (``init`` at the
    top in ``diag-ssl/2``, ``pretrain.init`` before; a record with neither began from scratch)."""
    return str(meta.get("init") or (meta.get("pretrain") or {}).get("init") or "scratch")


def ssl_start(meta: dict) -> str:
    """The start a run fine-tuned from this pretraining is: ``imagenet+ssl`` when it began from ImageNet."""
    return "imagenet+ssl" if pretrained_from(meta) == "imagenet" else "ssl"


def init_key(init: str) -> int:
    """Sort key of a start: its place in :data:`INIT_ORDER` (unknown starts last)."""
    return INIT_ORDER.index(init) if init in INIT_ORDER else len(INIT_ORDER)


def budget_key(labels_per_class: int) -> int:
    """Sort key of a label budget: fewest labels first, ``all`` (0) last."""
    return labels_per_class if labels_per_class else 10**9


def budget_name(labels_per_class: int) -> str:
    """``5pc`` for 5 labels per class, ``all`` for every training window labelled (0)."""
    return "all" if not labels_per_class else f"{labels_per_class}pc"


def budget_label(labels_per_class: int) -> str:
    """What a table shows for a label budget: ``5/class``, or ``all`` (0). Folder names use :func:`budget_name`."""
    return "all" if not labels_per_class else f"{labels_per_class}/class"


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
