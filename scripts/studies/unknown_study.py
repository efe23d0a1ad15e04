"""Measure the "unknown" scores on a class the model never saw (README, "Scoring new recordings").

    python scripts/studies/unknown_study.py RUN --held-out ball [--kind bearing_sim] [--seed 1] [--option k=json]
    python scripts/studies/unknown_study.py RUN --held-out IR --held-data PREPARED     (real recordings)

RUN was trained on a prepared simulated set without the held-out class. Every method of
diag.learning.unknown is fitted on RUN's training split and thresholded on its validation split (1 % / 5 %
false alarms, bounded with 90 % confidence by diag.learning.unknown.bounded_threshold; the plain validation
quantile is printed beside it), exactly as calibrate_run does at the end of `diag train`; then scored on the
known classes' *test* windows (the run's prepared test split) and on freshly simulated recordings of
the held-out class (another seed), windowed and turned into images by diag.serving.scoring's Predictor, the
code of `diag predict` -- or, with --held-data, on every window of the held-out class in a dataset
prepared with the same preprocessing (e.g. the same recordings with that class included). Prints, per method, the window AUROC, the rates at the two thresholds, and a
per-recording AUROC (mean score of each recording's windows: known test recordings vs held-out ones).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from diag.signal.dataset import PreparedDataset
from diag.serving.predictor import Predictor
from diag.sources.stream import Signal
from diag.learning.unknown import (FARS, METHODS, auroc, bounded_threshold, dataset_outputs, features_of, fit_stats, forward_parts,
                          layer_sizes, scores_from)


def held_out_outputs(pred: Predictor, kind: str, cls: str, seed: int, options: dict, features: str):
    """(features, logits, recording index per window) of freshly simulated recordings of ``cls``."""
    from diag.signal.recordings import get_reader

    from diag.signal.transforms import reference_hz

    feats, logits, rec = [], [], []
    pre = pred.pre
    for i, r in enumerate(get_reader(kind)(None, classes=[cls], seed=seed, **options)):
        pair = reference_hz(r.meta, pre.transform)[0] if pre.needs_ref else None  # order images: the simulated rate
        sig = Signal.from_array(r.signal, r.fs, name=f"{cls}-{i}")
        idx = pre.select_channels(sig)[0]
        ref = pre.reference_for(sig, list(pair) if pair else None, idx)
        ready = pre.ready(sig, idx)
        # the windows and images of diag predict (Preprocessing.stream_images), with the features the study needs
        for st, images in pre.stream_images(ready, pre.starts(ready.n_samples, pred.hop), ref):
            with torch.inference_mode():
                f, lg = forward_parts(pred.net, torch.from_numpy(images), features=features)
            feats.append(f.numpy())
            logits.append(lg.numpy())
            rec.append(np.full(len(st), i))
    return np.concatenate(feats), np.concatenate(logits), np.concatenate(rec)


def held_windows(pred: Predictor, data: str, cls: str) -> tuple[np.ndarray, np.ndarray]:
    """(images, recording index per window) of every window of class ``cls`` in prepared dataset ``data``."""
    from diag.errors import DiagError

    ds = PreparedDataset(data)
    diff = pred.pre.difference(ds.preprocessing, ("run", "dataset"))
    if diff:
        raise DiagError(f"{data}: prepared with other preprocessing than the run ({diff})")
    if cls not in ds.classes or cls in pred.classes:
        raise DiagError(f"--held-out {cls}: must be a class of {data} ({', '.join(ds.classes)}) that the run "
                        f"does not know ({', '.join(pred.classes)})")
    k = ds.classes.index(cls)
    imgs, rec = [], []
    for s in ds.splits:
        m = ds.labels(s) == k
        imgs.append(np.asarray(ds.images(s))[m])
        rec.append(np.asarray(ds.meta(s)["source"])[m])
    _, r = np.unique(np.concatenate(rec), return_inverse=True)
    return np.concatenate(imgs), r


def per_recording(scores: np.ndarray, rec: np.ndarray) -> np.ndarray:
    return np.array([scores[rec == r].mean() for r in np.unique(rec)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--held-out", required=True)
    ap.add_argument("--kind", default="bearing_sim")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--option", action="append", default=[], help="reader option key=json (e.g. recordings_per_class=4)")
    ap.add_argument("--held-data", default=None, help="a prepared dataset (same preprocessing) whose windows of "
                    "the held-out class are scored, instead of simulating them")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    options = {k: json.loads(v) for k, v in (o.split("=", 1) for o in a.option)}
    torch.set_grad_enabled(False)
    pred = Predictor(a.run, calibrate=False)
    ds = PreparedDataset(pred.meta["dataset"]["path"])
    te_y = ds.labels("test")
    te_rec = np.asarray(ds.meta("test")["rec"])
    out: dict[str, dict] = {}
    held = held_windows(pred, a.held_data, a.held_out) if a.held_data else None
    cache: dict[str, dict] = {}
    for feat in sorted({features_of(m) for m in METHODS}):
        o = {s: dataset_outputs(pred.net, ds.images(s), "cpu", features=feat) for s in ("train", "val", "test")}
        o["held"] = (held_out_outputs(pred, a.kind, a.held_out, a.seed, options, feat) if held is None else
                     (*dataset_outputs(pred.net, held[0], "cpu", features=feat), held[1]))
        cache[feat] = o
    ho_rec = cache["pooled"]["held"][2]
    te_l = cache["pooled"]["test"][1]
    print(f"run {a.run}: classes {pred.classes}; held-out class '{a.held_out}' ({len(ho_rec)} windows of "
          f"{len(np.unique(ho_rec))} recordings, {a.held_data or f'simulated, seed {a.seed}'}); known test windows {len(te_y)} (accuracy "
          f"{float((te_l.argmax(1) == te_y).mean()):.3f}); val {len(ds.labels('val'))}")
    for m in METHODS:
        o = cache[features_of(m)]
        (tr_f, _), (va_f, va_l), (te_f, te_lg) = o["train"], o["val"], o["test"]
        ho_f, ho_l, _ = o["held"]
        sizes = layer_sizes(pred.net, tuple(ds.image_shape)) if features_of(m) == "layers" else None
        stats = fit_stats(m, tr_f, ds.labels("train"), len(pred.classes), sizes=sizes, val_feats=va_f, val_logits=va_l)
        s = {k: scores_from(m, torch.from_numpy(lg), torch.from_numpy(f), stats).numpy()
             for k, (f, lg) in {"val": (va_f, va_l), "test": (te_f, te_lg), "held": (ho_f, ho_l)}.items()}
        row = {"auroc": auroc(s["test"], s["held"])}
        if te_rec is not None:
            row["auroc_recordings"] = auroc(per_recording(s["test"], te_rec), per_recording(s["held"], ho_rec))
            row["recordings"] = {"known_test": int(len(np.unique(te_rec))), "held_out": int(len(np.unique(ho_rec)))}
        for far in FARS:  # diag's rule (bounded_threshold), and the plain validation quantile beside it
            th, _, ok = bounded_threshold(s["val"], far)
            q = float(np.quantile(s["val"], 1 - far))
            row[f"far{far:g}"] = {"known_test_flagged": float((s["test"] > th).mean()),
                                  "held_out_detected": float((s["held"] > th).mean()), "guaranteed": ok,
                                  "quantile": {"known_test_flagged": float((s["test"] > q).mean()),
                                               "held_out_detected": float((s["held"] > q).mean())}}
        out[m] = row
        rec = f"  | per recording AUROC {row['auroc_recordings']:.3f}" if "auroc_recordings" in row else ""
        rates = "  | ".join(
            f"{100 * far:g} % {'bound' if row[f'far{far:g}']['guaranteed'] else 'max (too few val)'}: known test flagged "
            f"{row[f'far{far:g}']['known_test_flagged']:.3f}, held-out detected {row[f'far{far:g}']['held_out_detected']:.3f} "
            f"(quantile {row[f'far{far:g}']['quantile']['known_test_flagged']:.3f} / "
            f"{row[f'far{far:g}']['quantile']['held_out_detected']:.3f})" for far in FARS)
        print(f"{m:12s} AUROC {row['auroc']:.3f}  | {rates}{rec}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
