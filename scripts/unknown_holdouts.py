"""The network-free unknown scores, with every class held out in turn (README, "The honest unknown").

    python scripts/unknown_holdouts.py PREPARED [--method rows] [--far 0.05]

PREPARED is a dataset prepared with every class on a recording split (whole recordings in validation
and test). For each class ``c`` in turn, ``c`` plays the fault type never trained on: the score is
fitted on the training windows of the *other* classes (diag.learning.unknown.fit_stats), its threshold set on
their validation windows (diag.learning.unknown.bounded_threshold, as at the end of ``diag train``), and it is
scored on their test windows (known classes, unseen recordings) against every window of ``c`` (none of
which the score saw). Only scores that read the input images alone (``rows``) can be measured this
way without training one model per held-out class; their numbers do not depend on the model.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from diag.signal.dataset import PreparedDataset
from diag.learning.unknown import auroc, bounded_threshold, features_of, fit_stats, image_row_profiles, scores_from


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("prepared")
    ap.add_argument("--method", default="rows")
    ap.add_argument("--far", type=float, default=0.05)
    a = ap.parse_args()
    if features_of(a.method) != "rows":
        raise SystemExit(f"--method {a.method}: reads the network's features; use scripts/unknown_study.py")
    ds = PreparedDataset(a.prepared)
    P = {s: image_row_profiles(ds.images(s)) for s in ("train", "val", "test")}
    Y = {s: ds.labels(s) for s in P}
    kind = ds.manifest["transform"].get("kind")
    print(f"{a.prepared}: {kind} images, classes {ds.classes}; score {a.method}, {100 * a.far:g} % bound")
    for c, name in enumerate(ds.classes):
        known = {s: Y[s] != c for s in P}
        stats = fit_stats(a.method, P["train"][known["train"]], Y["train"][known["train"]], len(ds.classes))

        def score(p: np.ndarray) -> np.ndarray:
            return scores_from(a.method, torch.zeros(len(p), 1), torch.from_numpy(p), stats).numpy()

        s_val, s_test = score(P["val"][known["val"]]), score(P["test"][known["test"]])
        s_held = score(np.concatenate([P[s][~known[s]] for s in P]))
        th, _, ok = bounded_threshold(s_val, a.far)
        print(f"held out {name:10s} AUROC {auroc(s_test, s_held):.3f} | known test windows flagged "
              f"{(s_test > th).mean():.3f} ({len(s_test)}) | held-out windows detected {(s_held > th).mean():.3f} "
              f"({len(s_held)}){'' if ok else ' | too few validation windows for the bound'}")


if __name__ == "__main__":
    main()
