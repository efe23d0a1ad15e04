"""Inference and scores: the one batched inference function, metrics and figures.

:func:`predict_images` runs a model over images in batches (logits, or pooled features) -- used by
validation and test scoring in ``diag train``, by the k-NN probe of ``diag pretrain``, and by
anything else that scores images. Metrics take plain arrays; every reported number names its split.
Figures are drawn with matplotlib's object API (no global pyplot state) and written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from diag.signal.dataset import SplitImages
from diag.learning.models import features as pooled_features
from diag.learning.runtime import autocast, batch_plan
from diag.storage import atomic_file


@torch.no_grad()
def predict_images(model: nn.Module, images: SplitImages | torch.Tensor | np.ndarray, *, batch_size: int,
                   device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                   channels_last: bool = False, features: bool = False) -> torch.Tensor:
    """Logits ``[N, K]`` (or, with ``features=True``, pooled backbone features ``[N, D]``) of ``images``
    ``[N, C, H, W]``, in order, as float32 on ``device``.

    ``images``: a :class:`~diag.signal.dataset.SplitImages` (served on its own device) or an array/tensor
    of any float dtype on any device (moved batch by batch). ``dtype``: the autocast dtype (None =
    full precision). The model runs in eval mode; its train/eval mode is restored afterwards.
    """
    if isinstance(images, SplitImages):
        device = images.device
        batches = images.iterate(batch_plan(len(images), batch_size, None, min_last=1))
    else:
        device = torch.device(device or "cpu")
        data = torch.from_numpy(np.asarray(images)) if not isinstance(images, torch.Tensor) else images
        batches = (data[i:i + batch_size].to(device).float() for i in range(0, len(data), batch_size))
    was_training = model.training
    model.eval()
    out = []
    for x in batches:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, dtype):
            out.append((pooled_features(model, x) if features else model(x)).float())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, 0, device=device)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str], split: str) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix.

    Macro-F1 averages over the classes present in ``y_true`` (a class absent from the split cannot
    be scored); the per-class report lists every class. ``confusion[i][j]`` counts windows of true
    class ``i`` predicted as ``j``.
    """
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    k = len(classes)
    present = np.unique(y_true)
    n = len(y_true)
    acc = float((y_true == y_pred).mean()) if n else float("nan")
    f1 = float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)) if n else float("nan")
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=np.arange(k), zero_division=0)
    return {
        "split": split,
        "n": int(n),
        "accuracy": acc,
        "macro_f1": f1,
        "per_class": {
            c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, c in enumerate(classes)
        },
        "confusion": confusion_matrix(y_true, y_pred, labels=np.arange(k)).tolist(),
        "classes": list(classes),
    }


def accuracy_f1(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float]:
    """(accuracy, macro-F1 over the classes present in ``y_true``) -- the per-epoch numbers."""
    from sklearn.metrics import f1_score

    if len(y_true) == 0:
        return float("nan"), float("nan")
    acc = float((np.asarray(y_true) == np.asarray(y_pred)).mean())
    f1 = float(f1_score(y_true, y_pred, labels=np.unique(y_true), average="macro", zero_division=0))
    return acc, f1


def save_figure(fig, path: str | Path) -> None:
    """Render ``fig`` to ``path`` (PNG) atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with atomic_file(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")


def plot_confusion(confusion: Sequence[Sequence[int]], classes: Sequence[str], path: str | Path, title: str) -> None:
    """Confusion matrix (rows: true class, columns: predicted), counts in the cells, row-normalised colour."""
    from matplotlib.figure import Figure

    cm = np.asarray(confusion, dtype=float)
    k = len(classes)
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    size = max(4.0, 0.55 * k + 2.0)
    fig = Figure(figsize=(size, size))
    ax = fig.add_subplot()
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), labels=list(classes), rotation=45, ha="right")
    ax.set_yticks(range(k), labels=list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(k):
        for j in range(k):
            if cm[i, j]:
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center",
                        color="white" if frac[i, j] > 0.5 else "black", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    save_figure(fig, path)


def plot_curves(history: list[dict[str, Any]], path: str | Path, title: str = "") -> None:
    """Training curves: train/val loss, val accuracy and macro-F1, learning rate -- per epoch."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    ep = [h["epoch"] for h in history]
    fig = Figure(figsize=(12, 3.8), layout="constrained")
    ax1, ax2, ax3 = fig.subplots(1, 3)
    ax1.plot(ep, [h["train_loss"] for h in history], marker="o", label="train (smoothed labels, augmented)")
    ax1.plot(ep, [h["val_loss"] for h in history], marker="o", label="val")
    ax1.set_title("loss")
    ax1.legend()
    ax2.plot(ep, [h["val_accuracy"] for h in history], marker="o", label="val accuracy")
    ax2.plot(ep, [h["val_macro_f1"] for h in history], marker="o", label="val macro-F1")
    ax2.set_ylim(0, 1.02)
    ax2.set_title("validation (dotted: selected epoch)")
    ax2.legend()
    ax3.plot(ep, [h["lr"] for h in history], marker="o")
    ax3.set_title("learning rate (end of epoch)")
    ax3.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    selected = [h["epoch"] for h in history if h.get("selected")]
    for ax in (ax1, ax2, ax3):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if selected:
            ax.axvline(selected[-1], color="grey", ls=":", lw=1)
    if title:
        fig.suptitle(title)
    save_figure(fig, path)
