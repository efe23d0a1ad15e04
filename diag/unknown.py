"""The honest "unknown": an out-of-distribution score per window and its calibrated threshold.

Scores (higher = less like the training data), computed from one forward pass:

``msp``          ``1 - max softmax probability``
``energy``       ``-logsumexp(logits)`` (Liu et al. 2020)
``mahalanobis``  smallest Mahalanobis distance of the pooled pre-classifier features to a class mean,
                 with one shared covariance (Ledoit-Wolf shrinkage) estimated on the training split
``knn``          ``1 -`` cosine similarity to the ``KNN_K``-th nearest training feature vector

The threshold is the ``1 - far`` quantile of the score on the *validation* windows (known classes,
never trained on), so about ``far`` of in-distribution windows are flagged ``unknown`` (the stated
false-alarm rate, default 5 %). :func:`calibrate_run` (called at the end of ``diag train``) writes
``unknown.json`` (method, thresholds at 1 % and 5 %, the validation numbers, the sha256 of the weights
it was computed for) and, for the feature-space methods, ``unknown.safetensors`` (class means and
precision matrix, or training features) into the run.

The default, ``energy``, was chosen by measurement (README, "Scoring new recordings"): on the
simulated bearing set with the ball fault held out it had the best AUROC (0.68; msp 0.65,
mahalanobis 0.53, knn 0.49); on the tone set of the tests all four exceed 0.95.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from diag.errors import DiagError
from diag.storage import atomic_file, atomic_write_json, file_sha256

METHODS = ("energy", "msp", "mahalanobis", "knn")
#: chosen by measurement (README): best AUROC on the simulated bearing set with a held-out fault class
DEFAULT_METHOD = "energy"
DEFAULT_FAR = 0.05
FARS = (0.01, 0.05)
KNN_K = 10
KNN_MAX_TRAIN = 20_000
UNKNOWN_JSON = "unknown.json"
UNKNOWN_STATS = "unknown.safetensors"


def save_tensors(path: Path, tensors: dict[str, Any]) -> None:
    """A safetensors file written atomically (:func:`diag.storage.atomic_file`)."""
    from safetensors.torch import save_file

    with atomic_file(path, suffix=".safetensors") as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))


def scores_from(method: str, logits: Any, feats: Any, stats: dict[str, Any]) -> Any:
    """Score ``[B]`` (torch) for ``method`` from logits ``[B, K]``, features ``[B, D]`` and fitted ``stats``."""
    import torch

    logits = logits.float()
    if method == "msp":
        return 1.0 - torch.softmax(logits, 1).max(1).values
    if method == "energy":
        return -torch.logsumexp(logits, 1)
    f = feats.float()
    if method == "mahalanobis":
        mu, prec = stats["means"].to(f.device), stats["precision"].to(f.device)
        d = f[:, None, :] - mu[None]  # [B, K, D]
        m = torch.einsum("bkd,de,bke->bk", d, prec, d)
        return m.min(1).values
    if method == "knn":
        bank = stats["bank"].to(f.device).float()
        q = torch.nn.functional.normalize(f, dim=1)
        sim = q @ bank.T
        k = min(KNN_K, bank.shape[0])
        return 1.0 - sim.topk(k, dim=1).values[:, -1]
    raise DiagError(f"unknown method: '{method}'; choose one of {', '.join(METHODS)}")


def fit_stats(method: str, train_feats: np.ndarray, train_y: np.ndarray, n_classes: int) -> dict[str, Any]:
    """What ``method`` needs from the training features (empty for msp/energy)."""
    import torch

    if method == "mahalanobis":
        from sklearn.covariance import LedoitWolf

        f = train_feats.astype(np.float64)
        means = np.stack([f[train_y == k].mean(0) if (train_y == k).any() else f.mean(0) for k in range(n_classes)])
        centred = f - means[train_y]
        prec = LedoitWolf(assume_centered=True).fit(centred).precision_
        return {"means": torch.as_tensor(means, dtype=torch.float32), "precision": torch.as_tensor(prec, dtype=torch.float32)}
    if method == "knn":
        f = torch.as_tensor(train_feats, dtype=torch.float32)
        if len(f) > KNN_MAX_TRAIN:
            idx = np.random.default_rng(0).choice(len(f), KNN_MAX_TRAIN, replace=False)
            f = f[np.sort(idx)]
        return {"bank": torch.nn.functional.normalize(f, dim=1).half()}
    return {}


def forward_parts(net: Any, x: Any) -> tuple[Any, Any]:
    """(pooled pre-classifier features ``[B, D]``, logits ``[B, K]``) of a timm classifier in one pass."""
    feats = net.forward_head(net.forward_features(x), pre_logits=True)
    return feats, net.get_classifier()(feats)


def dataset_outputs(net: Any, images: np.ndarray, device: Any, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(features ``[N, D]``, logits ``[N, K]``) of prepared images (float16 memmap ok), in order: the
    batched inference of :func:`diag.evaluate.predict_images` for the features, then the classifier."""
    import torch

    from diag.evaluate import predict_images

    if len(images) == 0:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
    feats, logits = [], []
    for i in range(0, len(images), batch):
        # one call per batch: only one batch of a (float16, memory-mapped) split is in float32 at a time
        f = predict_images(net, np.array(images[i : i + batch], dtype=np.float32), batch_size=batch, device=device, features=True)
        with torch.inference_mode():
            logits.append(net.get_classifier()(f).float().cpu().numpy())
        feats.append(f.float().cpu().numpy())
    return np.concatenate(feats), np.concatenate(logits)


class UnknownDetector:
    """A calibrated score: ``score(logits, feats)`` and ``threshold`` (windows above it are unknown)."""

    def __init__(self, method: str, threshold: float, stats: dict[str, Any], info: dict[str, Any]):
        self.method, self.threshold, self.stats, self.info = method, float(threshold), stats, info

    def score(self, logits: Any, feats: Any) -> Any:
        return scores_from(self.method, logits, feats, self.stats)

    def describe(self) -> dict[str, Any]:
        return {"method": self.method, "threshold": self.threshold, "false_alarm_rate": self.info.get("far"),
                "calibrated_on": self.info.get("calibrated_on")}

    @classmethod
    def load(cls, run: Path, far: float | None = None) -> "UnknownDetector":
        from safetensors.torch import load_file

        info = json.loads((run / UNKNOWN_JSON).read_text(encoding="utf-8"))
        method = info["method"]
        far = info["far"] if far is None else far
        th = info["thresholds"].get(f"{far:g}")
        if th is None:
            raise DiagError(f"{run / UNKNOWN_JSON}: no threshold for a false-alarm rate of {far:g} "
                            f"(has {', '.join(info['thresholds'])}); calibrate again")
        stats = load_file(str(run / UNKNOWN_STATS)) if (run / UNKNOWN_STATS).is_file() else {}
        if method in ("mahalanobis", "knn") and not stats:
            raise DiagError(f"{run / UNKNOWN_STATS}: missing; calibrate the run again")
        return cls(method, th, stats, dict(info, far=far))

    @classmethod
    def for_run(cls, run: Path, net: Any, meta: dict[str, Any], device: Any = "cpu", calibrate: bool = True,
                quiet: bool = True) -> "UnknownDetector | None":
        """The run's stored detector; else calibrated now from its prepared dataset if still there; else None."""
        path = run / UNKNOWN_JSON
        if path.is_file():
            try:
                info = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                info = {}
            if info.get("weights_sha256") == file_sha256(run / "model.safetensors"):
                return cls.load(run)
        if not calibrate:
            return None
        data = Path((meta.get("dataset") or {}).get("path") or "")
        if not data.name or not (data / "manifest.json").is_file():
            return None
        if not quiet:
            from rich.console import Console

            Console(stderr=True).print(f"[yellow]note:[/] {run} has no unknown threshold yet; calibrating it on "
                                       f"the validation split of {data}")
        calibrate_run(run, data, net=net, meta=meta, device=device)
        return cls.load(run)


def auroc(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """Area under the ROC curve of separating ``out`` (positive) from ``in`` by score (higher = out)."""
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.zeros(len(in_scores)), np.ones(len(out_scores))]
    return float(roc_auc_score(y, np.r_[in_scores, out_scores]))


def calibrate_run(run: str | Path, data: str | Path | None = None, far: float = DEFAULT_FAR,
                  method: str = DEFAULT_METHOD, net: Any = None, meta: dict[str, Any] | None = None,
                  device: Any = "cpu") -> dict[str, Any]:
    """Fit ``method`` on the training split, set thresholds on the validation split; write them into ``run``.

    ``data``: the run's prepared dataset (default: the one ``model.json`` names); its fingerprint must be
    the run's. Returns the written ``unknown.json`` content.
    """
    from diag.dataset import PreparedDataset
    from diag.models import load_trained

    run = Path(run)
    if method not in METHODS:
        raise DiagError(f"unknown method: '{method}'; choose one of {', '.join(METHODS)}")
    if not 0 < far < 1:
        raise DiagError(f"false-alarm rate must be in (0, 1), got {far}")
    if net is None or meta is None:
        net, meta = load_trained(run, device)
    data = Path(data) if data is not None else Path((meta.get("dataset") or {}).get("path") or "")
    if not data.name or not (data / "manifest.json").is_file():
        raise DiagError(f"{run}: its prepared dataset {data or '(none recorded)'} is gone; pass the dataset "
                        "it was trained on to calibrate the unknown threshold")
    ds = PreparedDataset(data)
    want = (meta.get("dataset") or {}).get("fingerprint")
    if want and ds.manifest.get("fingerprint") != want:
        raise DiagError(f"{data}: not the dataset {run} was trained on (fingerprint differs); pass that one")
    if "val" not in ds.splits or len(ds.labels("val")) == 0:
        raise DiagError(f"{data}: no validation windows to calibrate the unknown threshold on")
    classes = list(meta["classes"])
    va_f, va_l = dataset_outputs(net, ds.images("val"), device)
    stats: dict[str, Any] = {}
    if method in ("mahalanobis", "knn"):  # fitted on the training split's features
        tr_f, _ = dataset_outputs(net, ds.images("train"), device)
        stats = fit_stats(method, tr_f, ds.labels("train"), len(classes))
    import torch

    s_val = scores_from(method, torch.from_numpy(va_l), torch.from_numpy(va_f), stats).numpy()
    thresholds = {f"{a:g}": float(np.quantile(s_val, 1 - a)) for a in sorted(set(FARS) | {far})}
    va_pred = va_l.argmax(1)
    info = {
        "format": "diag-unknown/1",
        "method": method,
        "far": far,
        "thresholds": thresholds,
        "rule": "a window is unknown when its score exceeds the threshold: the (1 - far) quantile of the "
                "validation windows' scores",
        "calibrated_on": {"dataset": str(data), "fingerprint": ds.manifest.get("fingerprint"), "split": "val",
                          "n": int(len(s_val))},
        "val_flagged": {k: float((s_val > t).mean()) for k, t in thresholds.items()},
        "val_accuracy_of_kept": float((va_pred == ds.labels("val"))[s_val <= thresholds[f"{far:g}"]].mean()),
        "weights_sha256": file_sha256(run / "model.safetensors"),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if stats:
        save_tensors(run / UNKNOWN_STATS, stats)
    else:
        (run / UNKNOWN_STATS).unlink(missing_ok=True)
    atomic_write_json(run / UNKNOWN_JSON, info)
    return info
