"""How stable is the choice of `diag prepare --transform auto` across split seeds (split.seed 0-4)?

For each seed: the shipped validation probe (diag.signal.choose.score_candidates) and, for comparison, a grouped
cross-validation of the same probe over the training + validation recordings (never the test split).
Numbers in docs/findings/engineer-path.md. Usage (one CPU thread):
    PYTHONPATH=. python scripts/studies/probe_auto_seeds.py configs/bearing_sim.toml 'source.classes=["normal","inner","outer"]' source.recordings_per_class=4
"""
import dataclasses
import json
import sys

import numpy as np
from sklearn.metrics import f1_score

from diag.signal import choose
from diag.config import load_prepare_config, resolve_auto_norms
from diag.signal.recordings import load_recordings
from diag.signal.windows import harmonise, plan_split

cfgpath, sets = sys.argv[1], sys.argv[2:]
base = load_prepare_config(cfgpath, sets + ["transform.kind=\"auto\""])
raw = load_recordings(base.source); recs = harmonise(raw, base.windows)
resolve_auto_norms(base.windows, base.transform, recs[0].n_channels)
refs, _ = choose.order_refs(raw, base.transform)
for seed in range(5):
    cfg = dataclasses.replace(base, split=dataclasses.replace(base.split, seed=seed), transform=dataclasses.replace(base.transform))
    plan = plan_split(recs, cfg.windows, cfg.split)
    rows = choose.score_candidates(cfg, recs, plan, refs)
    # grouped CV over train+val units
    w = choose.probe_windows(recs, plan, seed)
    parts = [p for p in choose.PARTS if p in ("cwt", "stft") or p in refs]
    feats = {p: choose.part_features(p, cfg, recs, w, refs, None) for p in parts}
    rec_all = np.concatenate([w["train"][0], w["val"][0]]); y_all = np.concatenate([w["train"][2], w["val"][2]])
    units = sorted(set(rec_all.tolist()))
    fold = {}
    for k in np.unique(y_all):
        us = sorted(set(rec_all[y_all == k].tolist()))
        for i, u in enumerate(us): fold[u] = i
    f_of = np.array([fold[r] for r in rec_all]); nf = f_of.max() + 1
    cv = {}
    for kind in choose.candidate_kinds(parts):
        F = np.concatenate([np.concatenate([feats[p]["train"], feats[p]["val"]]) for p in kind.split("+")], axis=1)
        pred = np.empty_like(y_all)
        for f in range(nf):
            m = f_of == f
            if len(np.unique(y_all[~m])) < len(np.unique(y_all)): pred[m] = -1; continue
            pred[m] = choose.linear_probe(F[~m], y_all[~m], F[m])
        cv[kind] = round(float(f1_score(y_all, pred, average="macro")), 3)
    val = {r["kind"]: r["val_macro_f1"] for r in rows}
    print(f"split seed {seed}: val-probe chose {choose.pick(rows):14s} {json.dumps(val)}")
    print(f"              cv-probe best {max(cv, key=cv.get):14s} {json.dumps(cv)}  folds {nf}")
