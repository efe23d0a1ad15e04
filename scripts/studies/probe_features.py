"""The probe of --transform auto on prepared datasets, row means only vs mean + std over time, fit on train,
scored on val and test (docs/findings/engineer-path.md). Usage: PYTHONPATH=. python scripts/studies/probe_features.py DIR...
"""
import sys

import numpy as np
from sklearn.metrics import f1_score

from diag.signal.choose import linear_probe, row_profile
from diag.signal.dataset import PreparedDataset

for d in sys.argv[1:]:
    ds = PreparedDataset(d)
    X = {s: np.asarray(ds.images(s), dtype=np.float32) for s in ds.splits}; Y = {s: ds.labels(s) for s in ds.splits}
    out = []
    for spread in (False, True):
        for s in ("val", "test"):
            p = linear_probe(row_profile(X["train"], spread), Y["train"], row_profile(X[s], spread))
            out.append(f"{'mean+std' if spread else 'mean'} {s} {f1_score(Y[s], p, average='macro'):.3f}")
    print(d, ds.manifest["transform"]["kind"], " | ".join(out))
