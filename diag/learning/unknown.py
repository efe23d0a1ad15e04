"""The honest "unknown": an out-of-distribution score per window and its calibrated threshold.

Scores (higher = less like the training data), computed from one forward pass:

``msp``          ``1 - max softmax probability``
``energy``       ``-logsumexp(logits)`` (Liu et al. 2020)
``mahalanobis``  smallest Mahalanobis distance of the pooled pre-classifier features to a class mean,
                 with one shared covariance (Ledoit-Wolf shrinkage) estimated on the training split
``knn``          ``1 -`` cosine similarity to the ``KNN_K``-th nearest training feature vector
``layers``       energy plus Mahalanobis distances inside the backbone: for every stage output (timm
                 ``forward_intermediates``) three vectors -- its channel means, its channel standard
                 deviations and its frequency profile (each channel's mean over time, per row) -- each
                 with its own class means and shared Ledoit-Wolf covariance from the training split.
                 Every part (energy and each distance) is standardised on the validation windows; the
                 score is ``z(energy) + sum(z(distance_j)) / sqrt(J)``. Shallow stages keep what the
                 classifier learnt to ignore (the band or modulation of a fault it never saw), so an
                 unseen class shows there even when the last layer maps it onto a known one
``rows``         input space, no network: the largest standardised excess of the model's input image's row
                 profile (each channel's mean over columns, per row) over its training-split mean, in
                 training standard deviations: ``max_r (p_r - mean_r) / std_r``. On order images
                 (``envorder``) a fault is a line in a row (its impact rate in shaft orders), so a fault
                 type never trained on puts energy in a row where no training window had any, on any
                 machine: the network's features, trained to tell the known lines apart, map it onto a
                 known class instead (measured, docs/scoring.md "The honest unknown")

The threshold is set on the *validation* windows (known classes, never trained on) so that the stated
false-alarm rate ``far`` (default 5 %) is a promise, not a hope (:func:`bounded_threshold`): the plain
``1 - far`` quantile of ``n`` validation scores flags a new in-distribution window with a probability
that is itself random (Beta-distributed; with n = 120 and far = 5 % it exceeds 8 % one time in
seven), so diag takes the highest order statistic whose false-alarm rate is at most ``far`` with
``CONFIDENCE`` (90 %) for exchangeable windows (the training-conditional conformal bound, Vovk 2012).
With too few validation windows for that (n < log(1 - CONFIDENCE) / log(1 - far): 45 at 5 %, 230 at
1 %) the threshold is the largest validation score and ``unknown.json`` says the rate is not
guaranteed. :func:`calibrate_run` (called at the end of ``diag train``) writes
``unknown.json`` (method, thresholds at 1 % and 5 %, the validation numbers, the sha256 of the weights
it was computed for) and, for the feature-space methods, ``unknown.safetensors`` (class means and
precision matrix, or training features) into the run.

The default is chosen by measurement (docs/scoring.md, ``scripts/studies/unknown_study.py``,
``diag evaluate --held-out``):
``rows`` for ``envorder`` images, else ``layers`` where the model has stage outputs (every timm CNN diag
uses), else ``energy`` (:func:`default_method`).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from diag.errors import DiagError
from diag.storage import atomic_file, atomic_write_json, file_sha256
from diag.signal.dataset import MANIFEST

METHODS = ("energy", "msp", "mahalanobis", "knn", "layers", "rows")
#: what each score reads besides the logits (:func:`forward_parts` ``features=``): the pooled
#: pre-classifier features, the stage statistics, or the input image's row profile
FEATURES = {"energy": "pooled", "msp": "pooled", "mahalanobis": "pooled", "knn": "pooled", "layers": "layers",
            "rows": "rows"}
FITTED = ("mahalanobis", "knn", "layers", "rows")  # need statistics of the training split
#: chosen by measurement (docs/scoring.md): best AUROC on the simulated bearing set with a held-out fault class
DEFAULT_METHOD = "layers"
FALLBACK_METHOD = "energy"  # for models without stage outputs (no timm forward_intermediates)
#: transforms whose default is ``rows`` (measured on unseen recordings: envorder 0.97-0.99 AUROC for every
#: held-out bearing class, where ``layers`` reached 0.66-0.69; on CWT and ``harmonics`` images it is near
#: 0.5 and is not the default there)
ROWS_TRANSFORMS = ("envorder",)
DEFAULT_FAR = 0.05
FARS = (0.01, 0.05)
CONFIDENCE = 0.9  # of the false-alarm bound (bounded_threshold)
KNN_K = 10
KNN_MAX_TRAIN = 20_000
LAYER_PART_MAX = 1024  # largest part of the ``layers`` feature vector (its covariance is part x part)
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
    if method == "layers":
        parts = layer_parts(logits, f, stats)
        z = (parts - stats["z_mean"].to(f.device)) / stats["z_std"].to(f.device)
        return z[:, 0] + z[:, 1:].sum(1) / (z.shape[1] - 1) ** 0.5
    if method == "rows":
        return ((f - stats["mean"].to(f.device)) / stats["std"].to(f.device)).max(1).values
    raise DiagError(f"unknown method: '{method}'; choose one of {', '.join(METHODS)}")


def layer_parts(logits: Any, feats: Any, stats: dict[str, Any]) -> Any:
    """``[B, 1 + J]``: energy and the class-nearest Mahalanobis distance of each of the J stage-statistic
    vectors (``feats`` from :func:`forward_parts` with ``features="layers"``; J = ``len(stats["sizes"])``)."""
    import torch

    out = [-torch.logsumexp(logits.float(), 1)]
    a = 0
    for j, n in enumerate(stats["sizes"].tolist()):
        part = {"means": stats[f"means.{j}"], "precision": stats[f"precision.{j}"]}
        out.append(scores_from("mahalanobis", logits, feats[:, a : a + int(n)], part))
        a += int(n)
    return torch.stack(out, 1)


def _class_gaussian(f: np.ndarray, y: np.ndarray, n_classes: int) -> dict[str, Any]:
    """Class means and the shared Ledoit-Wolf precision of features ``f`` (float64) with labels ``y``."""
    import torch
    from sklearn.covariance import LedoitWolf

    means = np.stack([f[y == k].mean(0) if (y == k).any() else f.mean(0) for k in range(n_classes)])
    prec = LedoitWolf(assume_centered=True).fit(f - means[y]).precision_
    return {"means": torch.as_tensor(means, dtype=torch.float32), "precision": torch.as_tensor(prec, dtype=torch.float32)}


def fit_stats(method: str, train_feats: np.ndarray, train_y: np.ndarray, n_classes: int,
              sizes: list[int] | None = None, val_feats: np.ndarray | None = None,
              val_logits: np.ndarray | None = None) -> dict[str, Any]:
    """What ``method`` needs from the training features (empty for msp/energy). ``layers`` also needs
    the part ``sizes`` of its feature vector and the validation outputs (to standardise each part)."""
    import torch

    if method == "mahalanobis":
        return _class_gaussian(train_feats.astype(np.float64), train_y, n_classes)
    if method == "layers":
        if sizes is None or val_feats is None or val_logits is None:
            raise DiagError("unknown method 'layers': needs the stage sizes and the validation outputs")
        stats: dict[str, Any] = {"sizes": torch.as_tensor(sizes, dtype=torch.int64)}
        a = 0
        for j, n in enumerate(sizes):
            g = _class_gaussian(train_feats[:, a : a + n].astype(np.float64), train_y, n_classes)
            stats[f"means.{j}"], stats[f"precision.{j}"] = g["means"], g["precision"]
            a += n
        parts = layer_parts(torch.from_numpy(val_logits), torch.from_numpy(val_feats), stats)
        stats["z_mean"] = parts.mean(0)
        stats["z_std"] = parts.std(0).clamp_min(1e-6)
        return stats
    if method == "rows":
        f = train_feats.astype(np.float64)
        sd = f.std(0)
        # a row that never moved in training (e.g. a constant border) must not make every change infinite
        sd = np.maximum(sd, 1e-3 * float(np.median(sd)) + 1e-12)
        return {"mean": torch.as_tensor(f.mean(0), dtype=torch.float32), "std": torch.as_tensor(sd, dtype=torch.float32)}
    if method == "knn":
        f = torch.as_tensor(train_feats, dtype=torch.float32)
        if len(f) > KNN_MAX_TRAIN:
            idx = np.random.default_rng(0).choice(len(f), KNN_MAX_TRAIN, replace=False)
            f = f[np.sort(idx)]
        return {"bank": torch.nn.functional.normalize(f, dim=1).half()}
    return {}


def has_layers(net: Any) -> bool:
    """Whether ``net`` gives its stage outputs (timm ``forward_intermediates``), as ``layers`` needs."""
    return callable(getattr(net, "forward_intermediates", None))


def features_of(method: str | None) -> str:
    """What ``method`` reads besides the logits: ``pooled``, ``layers`` or ``rows`` (:data:`FEATURES`)."""
    return FEATURES.get(method or "", "pooled")


def default_method(net: Any, transform_kind: str | None = None) -> str:
    """The measured default score for a model and its input images (module docstring)."""
    if transform_kind in ROWS_TRANSFORMS:
        return "rows"
    return DEFAULT_METHOD if has_layers(net) else FALLBACK_METHOD


def row_profile(x: Any) -> Any:
    """``[B, C * H]``: each channel's mean over the columns of images ``[B, C, H, W]``, row by row."""
    return x.float().mean(3).flatten(1)


def image_row_profiles(images: np.ndarray, batch: int = 1024) -> np.ndarray:
    """:func:`row_profile` of prepared images (float16 memmap ok), a batch at a time, without the network."""
    import torch

    out = [row_profile(torch.from_numpy(np.asarray(images[i : i + batch], dtype=np.float32))).numpy()
           for i in range(0, len(images), batch)]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def forward_parts(net: Any, x: Any, features: str = "pooled") -> tuple[Any, Any]:
    """(features, logits ``[B, K]``) of a timm classifier in one pass. ``features``: ``pooled`` -- the
    pooled pre-classifier features ``[B, D]``; ``layers`` -- :func:`stage_statistics` of every stage
    output, concatenated (:func:`layer_sizes` gives the parts); ``rows`` -- :func:`row_profile` of the
    input images (:func:`features_of` names the one a score method reads)."""
    import torch

    if features not in ("pooled", "layers", "rows"):
        raise ValueError(f"features must be pooled, layers or rows, got {features!r}")
    if features == "rows":
        return row_profile(x), net(x)
    if features == "pooled":
        feats = net.forward_head(net.forward_features(x), pre_logits=True)
        return feats, net.get_classifier()(feats)
    final, stages = net.forward_intermediates(x)
    logits = net.get_classifier()(net.forward_head(final, pre_logits=True))
    return torch.cat(stage_statistics(stages), 1), logits


def stage_statistics(stages: list[Any]) -> list[Any]:
    """The ``layers`` parts of each stage output ``[B, C, H, W]`` (H = frequency rows, W = time):
    the channel means and (unless H = W = 1) the channel standard deviations over the image
    (``[B, C]`` each), and the frequency profile, the mean over time of every channel and row
    (``[B, C * H']``; rows averaged in groups to H' <= 1024 / C so that no part exceeds 1024 numbers)."""
    import torch.nn.functional as F

    out = []
    for s in stages:
        s = s.float()
        c, h = s.shape[1], s.shape[2]
        rows = max(1, min(h, LAYER_PART_MAX // c))
        over_time = s.mean(3)  # [B, C, H]; the channel mean is its mean over rows (one pass over s, not two)
        prof = F.adaptive_avg_pool1d(over_time, rows) if rows < h else over_time
        out.append(over_time.mean(2))
        if s.shape[2] * s.shape[3] > 1:  # a 1 x 1 output has no spread
            out.append(s.std((2, 3)))
        out.append(prof.flatten(1))
    return out


def layer_sizes(net: Any, image_shape: tuple[int, ...]) -> list[int]:
    """Part sizes of the ``layers`` feature vector (:func:`stage_statistics` of each stage, in order)."""
    import torch

    from diag.learning.models import probing

    p = next(net.parameters())
    with probing(net), torch.inference_mode():
        _, stages = net.forward_intermediates(torch.zeros((1, *image_shape), device=p.device, dtype=p.dtype))
    return [int(t.shape[1]) for t in stage_statistics(stages)]


def dataset_outputs(net: Any, images: np.ndarray, device: Any, batch: int = 256,
                    features: str = "pooled") -> tuple[np.ndarray, np.ndarray]:
    """(features ``[N, D]``, logits ``[N, K]``) of prepared images (float16 memmap ok), in order: the
    batched inference of :func:`diag.learning.evaluate.predict_images` for the pooled features, then the
    classifier; for ``features`` ``layers`` / ``rows`` those of :func:`forward_parts`."""
    import torch

    from diag.learning.evaluate import predict_images

    if len(images) == 0:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
    feats, logits = [], []
    was_training = net.training
    net.eval()
    for i in range(0, len(images), batch):
        # one call per batch: only one batch of a (float16, memory-mapped) split is in float32 at a time
        x = np.array(images[i : i + batch], dtype=np.float32)
        with torch.inference_mode():
            if features != "pooled":
                f, lg = forward_parts(net, torch.from_numpy(x).to(device), features=features)
            else:
                f = predict_images(net, x, batch_size=batch, device=device, features=True)
                lg = net.get_classifier()(f)
        logits.append(lg.float().cpu().numpy())
        feats.append(f.float().cpu().numpy())
    net.train(was_training)
    return np.concatenate(feats), np.concatenate(logits)


def bounded_threshold(scores: np.ndarray, far: float, confidence: float = CONFIDENCE) -> tuple[float, int, bool]:
    """The threshold on validation ``scores`` that keeps the false-alarm rate at most ``far`` with ``confidence``.

    With ``m`` validation scores above the threshold ``t`` (an order statistic), the probability that a
    new window from the same distribution exceeds ``t`` is Beta(m + 1, n - m) distributed (continuous
    scores, exchangeable windows). The largest ``m`` with ``P(rate <= far) >= confidence`` is taken.
    Returns ``(threshold, m, guaranteed)``; ``guaranteed`` is False when even ``m = 0`` (the largest
    score) falls short, i.e. there are too few validation windows for the promise.
    """
    from scipy.stats import beta

    s = np.sort(np.asarray(scores, dtype=np.float64))
    n = len(s)
    if n == 0:
        raise DiagError("no validation scores to set the unknown threshold on")
    m = np.arange(n)  # exceedances when the threshold is s[n - 1 - m]
    ok = beta.cdf(far, m + 1, n - m) >= confidence
    if not ok.any():
        return float(s[-1]), 0, False
    k = int(m[ok].max())
    return float(s[n - 1 - k]), k, True


class UnknownDetector:
    """A calibrated score: ``score(logits, feats)`` and ``threshold`` (windows above it are unknown)."""

    def __init__(self, method: str, threshold: float, stats: dict[str, Any], info: dict[str, Any]):
        self.method, self.threshold, self.stats, self.info = method, float(threshold), stats, info

    @property
    def features(self) -> str:
        """What the score reads besides the logits (``forward_parts(..., features=...)``)."""
        return features_of(self.method)

    def score(self, logits: Any, feats: Any) -> Any:
        return scores_from(self.method, logits, feats, self.stats)

    def describe(self) -> dict[str, Any]:
        far = self.info.get("far")
        guaranteed = (self.info.get("guaranteed") or {}).get(f"{far:g}") if far is not None else None
        return {"method": self.method, "threshold": self.threshold, "false_alarm_rate": far,
                "confidence": self.info.get("confidence") if guaranteed else None,
                "calibrated_on": self.info.get("calibrated_on")}

    @classmethod
    def load(cls, run: Path, far: float | None = None) -> "UnknownDetector":
        from safetensors.torch import load_file

        info = _read_unknown_json(run)
        method = info["method"]
        far = info["far"] if far is None else far
        th = info["thresholds"].get(f"{far:g}")
        if th is None:
            raise DiagError(f"{run / UNKNOWN_JSON}: no threshold for a false-alarm rate of {far:g} "
                            f"(has {', '.join(info['thresholds'])}); calibrate again")
        stats = {}
        if (run / UNKNOWN_STATS).is_file():
            try:
                stats = load_file(str(run / UNKNOWN_STATS))
            except Exception as exc:  # noqa: BLE001 -- safetensors' errors on a truncated or damaged file
                raise DiagError(f"{run / UNKNOWN_STATS}: damaged or truncated ({type(exc).__name__}); not used and not "
                                f"overwritten; {RECALIBRATE}") from None
        if method in FITTED and not stats:
            raise DiagError(f"{run / UNKNOWN_STATS}: missing; calibrate the run again")
        return cls(method, th, stats, dict(info, far=far))

    @classmethod
    def for_run(cls, run: Path, net: Any, meta: dict[str, Any], device: Any = "cpu", calibrate: bool = True,
                quiet: bool = True) -> "UnknownDetector | None":
        """The run's stored detector; else calibrated now from its prepared dataset if still there; else None."""
        path = run / UNKNOWN_JSON
        if path.is_file():  # a damaged file is refused, never silently recalibrated over
            if _read_unknown_json(run).get("weights_sha256") == file_sha256(run / "model.safetensors"):
                return cls.load(run)
        if not calibrate:
            return None
        data = Path((meta.get("dataset") or {}).get("path") or "")
        if not data.name or not (data / MANIFEST).is_file():
            return None
        from diag.signal.dataset import PreparedDataset

        ds = PreparedDataset(data)
        if "val" not in ds.splits or len(ds.labels("val")) == 0:  # e.g. a refit: nothing held out to calibrate on
            return None
        if not quiet:
            from diag.show import console as make_console
            from diag.show import tagged

            make_console(stderr=True).print(tagged("[yellow]note:[/]", f"{run} has no unknown threshold yet; "
                                                   f"calibrating it on the validation split of {data}"))
        calibrate_run(run, data, net=net, meta=meta, device=device)
        return cls.load(run)


RECALIBRATE = "calibrate it again on purpose with `diag predict RUN FILE --calibrate PREPARED_DATA` (it replaces the file)"


def _read_unknown_json(run: Path) -> dict[str, Any]:
    """A run's unknown.json, checked: a damaged one is a one-line DiagError, never a reason to recalibrate."""
    path = run / UNKNOWN_JSON
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DiagError(f"{path}: damaged (not valid JSON: {exc.__class__.__name__}); not used and not overwritten; "
                        f"{RECALIBRATE}") from None
    ok = (isinstance(info, dict) and isinstance(info.get("method"), str) and isinstance(info.get("thresholds"), dict)
          and isinstance(info.get("far"), (int, float)))
    if not ok:
        raise DiagError(f"{path}: damaged (no method, far or thresholds); not used and not overwritten; {RECALIBRATE}")
    return info


def auroc(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """Area under the ROC curve of separating ``out`` (positive) from ``in`` by score (higher = out)."""
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.zeros(len(in_scores)), np.ones(len(out_scores))]
    return float(roc_auc_score(y, np.r_[in_scores, out_scores]))


def calibrate_run(run: str | Path, data: str | Path | None = None, far: float = DEFAULT_FAR,
                  method: str | None = None, net: Any = None, meta: dict[str, Any] | None = None,
                  device: Any = "cpu") -> dict[str, Any]:
    """Fit ``method`` on the training split, set thresholds on the validation split; write them into ``run``.

    ``data``: the run's prepared dataset (default: the one ``model.json`` names); its fingerprint must be
    the run's. Returns the written ``unknown.json`` content.
    """
    from diag.signal.dataset import PreparedDataset
    from diag.learning.models import load_trained

    run = Path(run)
    if method is not None and method not in METHODS:
        raise DiagError(f"unknown method: '{method}'; choose one of {', '.join(METHODS)}")
    if not 0 < far < 1:
        raise DiagError(f"false-alarm rate must be in (0, 1), got {far}")
    if net is None or meta is None:
        net, meta = load_trained(run, device)
    kind = ((meta.get("preprocessing") or {}).get("transform") or {}).get("kind")
    if method is None:  # the measured default for these images, where the model can give it
        method = default_method(net, kind)
    elif method == "layers" and not has_layers(net):
        raise DiagError(f"unknown method 'layers': {meta.get('model')} gives no stage outputs "
                        f"(timm forward_intermediates); choose {FALLBACK_METHOD}")
    data = Path(data) if data is not None else Path((meta.get("dataset") or {}).get("path") or "")
    if not data.name or not (data / MANIFEST).is_file():
        raise DiagError(f"{run}: its prepared dataset {data or '(none recorded)'} is gone; pass the dataset "
                        "it was trained on to calibrate the unknown threshold")
    ds = PreparedDataset(data)
    want = (meta.get("dataset") or {}).get("fingerprint")
    if want and ds.manifest.get("fingerprint") != want:
        raise DiagError(f"{data}: not the dataset {run} was trained on (fingerprint differs); pass that one")
    if "val" not in ds.splits or len(ds.labels("val")) == 0:
        raise DiagError(f"{data}: no validation windows to calibrate the unknown threshold on")
    classes = list(meta["classes"])
    feat = features_of(method)
    va_f, va_l = dataset_outputs(net, ds.images("val"), device, features=feat)
    stats: dict[str, Any] = {}
    if method in FITTED:  # fitted on the training split's features
        if feat == "rows":  # input space: the training split needs no forward pass
            tr_f = image_row_profiles(ds.images("train"))
        else:
            tr_f, _ = dataset_outputs(net, ds.images("train"), device, features=feat)
        sizes = layer_sizes(net, tuple(ds.image_shape)) if feat == "layers" else None
        stats = fit_stats(method, tr_f, ds.labels("train"), len(classes), sizes=sizes, val_feats=va_f, val_logits=va_l)
    import torch

    s_val = scores_from(method, torch.from_numpy(va_l), torch.from_numpy(va_f), stats).numpy()
    fars = sorted(set(FARS) | {far})
    bounds = {f"{a:g}": bounded_threshold(s_val, a) for a in fars}
    thresholds = {k: b[0] for k, b in bounds.items()}
    va_pred = va_l.argmax(1)
    info = {
        "format": "diag-unknown/2",
        "method": method,
        "far": far,
        "thresholds": thresholds,
        "rule": f"a window is unknown when its score exceeds the threshold: the highest validation score order "
                f"statistic at which the false-alarm rate is at most far with {CONFIDENCE:g} confidence "
                f"(Beta bound on the order statistic, exchangeable windows)",
        "confidence": CONFIDENCE,
        "guaranteed": {k: b[2] for k, b in bounds.items()},
        "quantile_thresholds": {f"{a:g}": float(np.quantile(s_val, 1 - a)) for a in fars},
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
