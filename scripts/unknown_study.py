"""Measure the "unknown" scores on a class the model never saw (README, "Scoring new recordings").

    python scripts/unknown_study.py RUN --held-out ball [--kind bearing_sim] [--seed 1]

RUN was trained on a prepared simulated set without the held-out class. Every method of
diag.unknown is fitted on RUN's training split and thresholded on its validation split (1 % / 5 %
false alarms there); then scored on the known classes' *test* windows (the run's prepared test split)
and on freshly simulated recordings of the held-out class (another seed), windowed and transformed
by diag.scoring's Predictor exactly as `diag predict` does. Prints AUROC and the rates per method.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from diag.dataset import PreparedDataset
from diag.scoring import Predictor, forward_parts
from diag.unknown import FARS, METHODS, auroc, dataset_outputs, fit_stats, scores_from
from diag.windows import normalize, resample, window_starts


def held_out_windows(pred: Predictor, kind: str, cls: str, seed: int, options: dict) -> tuple[np.ndarray, np.ndarray]:
    from diag.sources import get_reader

    recs = get_reader(kind)(None, classes=[cls], seed=seed, **options)
    feats, logits = [], []
    for r in recs:
        r = resample(r, pred.fs)
        st = window_starts(0, r.n_samples, pred.length, pred.hop)
        x = r.signal[:, st[:, None] + np.arange(pred.length)].transpose(1, 0, 2).astype(np.float32)
        img = pred.transform(normalize(x, pred.normalize))
        with torch.inference_mode():
            f, lg = forward_parts(pred.net, torch.from_numpy(img))
        feats.append(f.numpy())
        logits.append(lg.numpy())
    return np.concatenate(feats), np.concatenate(logits)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--held-out", required=True)
    ap.add_argument("--kind", default="bearing_sim")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--option", action="append", default=[], help="reader option key=json (e.g. recordings_per_class=4)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    options = {k: json.loads(v) for k, v in (o.split("=", 1) for o in a.option)}
    torch.set_grad_enabled(False)
    pred = Predictor(a.run, calibrate=False)
    ds = PreparedDataset(pred.meta["dataset"]["path"])
    tr_f, _ = dataset_outputs(pred.net, ds.images("train"), "cpu")
    va_f, va_l = dataset_outputs(pred.net, ds.images("val"), "cpu")
    te_f, te_l = dataset_outputs(pred.net, ds.images("test"), "cpu")
    ho_f, ho_l = held_out_windows(pred, a.kind, a.held_out, a.seed, options)
    te_y = ds.labels("test")
    print(f"run {a.run}: classes {pred.classes}; held-out class '{a.held_out}' ({len(ho_f)} windows, seed {a.seed}); "
          f"known test windows {len(te_f)} (accuracy {float((te_l.argmax(1) == te_y).mean()):.3f}); val {len(va_f)}")
    rows = {}
    for m in METHODS:
        stats = fit_stats(m, tr_f, ds.labels("train"), len(pred.classes))
        s = {k: scores_from(m, torch.from_numpy(lg), torch.from_numpy(f), stats).numpy()
             for k, (f, lg) in {"val": (va_f, va_l), "test": (te_f, te_l), "held": (ho_f, ho_l)}.items()}
        row = {"auroc": auroc(s["test"], s["held"])}
        for far in FARS:
            th = float(np.quantile(s["val"], 1 - far))
            row[f"far{far:g}"] = {"known_test_flagged": float((s["test"] > th).mean()),
                                  "held_out_detected": float((s["held"] > th).mean())}
        rows[m] = row
        print(f"{m:12s} AUROC {row['auroc']:.3f}  | 1 % val: known test flagged {row['far0.01']['known_test_flagged']:.3f}, "
              f"held-out detected {row['far0.01']['held_out_detected']:.3f}  | 5 % val: known test flagged "
              f"{row['far0.05']['known_test_flagged']:.3f}, held-out detected {row['far0.05']['held_out_detected']:.3f}")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
