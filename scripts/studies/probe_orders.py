#!/usr/bin/env python
"""Cheap checks of prepared image datasets, no CNN: what the order-image figures of docs/images.md were measured with.

    probe DIR...   the probe of `diag prepare --transform auto` (diag.signal.choose.linear_probe: logistic regression,
                   C = 0.1, standardised features) on each image's row means (every channel concatenated),
                   fit on train, scored on test: accuracy, macro-F1 and per-class F1. --balanced weighs
                   classes by 1/frequency.
    lines DIR      for an envorder dataset: per split and class, the mean height of the rows at the
                   6205's defect orders (BPFO, BPFI, 2xBSF, 2xBPFO, 2xBPFI, 1x) above each window's row
                   median (image std units), and the four highest rows.

    python scripts/studies/probe_orders.py probe prepared/a prepared/b [--balanced]
    python scripts/studies/probe_orders.py lines prepared/cwru-size-env [--channel 0]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np


def load(d: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.load(d / f"{split}.npy", mmap_mode="r").astype(np.float32)
    with open(d / f"{split}.csv", newline="", encoding="utf-8") as fh:
        y = np.array([int(r["y"]) for r in csv.DictReader(fh)])
    return x, y


def probe(dirs: list[Path], balanced: bool) -> None:
    """The probe of ``diag prepare --transform auto`` (diag.signal.choose), on a prepared dataset's test split, with
    the row means only (the documented figures were measured so; --transform auto adds the rows' spread)."""
    from sklearn.metrics import accuracy_score, f1_score

    from diag.signal.choose import linear_probe, row_profile

    for d in dirs:
        classes = json.loads((d / "manifest.json").read_text())["classes"]
        (xtr, ytr), (xte, yte) = load(d, "train"), load(d, "test")
        p = linear_probe(row_profile(xtr, spread=False), ytr, row_profile(xte, spread=False), balanced=balanced)
        per = f1_score(yte, p, average=None, labels=range(len(classes)), zero_division=0)
        print(f"{d.name:20s} test acc {accuracy_score(yte, p):.3f} macro-F1 {f1_score(yte, p, average='macro'):.3f}  "
              + " ".join(f"{c}={v:.2f}" for c, v in zip(classes, per)))


def lines(d: Path, channel: int) -> None:
    m = json.loads((d / "manifest.json").read_text())
    orders = np.array(m["transform"]["envorder"]["orders"])
    targets = {"BPFO": 3.5848, "BPFI": 5.4152, "2BSF": 4.7135, "2BPFO": 7.1696, "2BPFI": 10.8304, "1x": 1.0}
    rows = {n: int(np.argmin(abs(orders - o))) for n, o in targets.items()}
    for split in ("train", "test"):
        x, y = load(d, split)
        prof = x[:, channel].mean(axis=2)
        prof = prof - np.median(prof, axis=1, keepdims=True)
        for k, c in enumerate(m["classes"]):
            p = prof[y == k]
            if len(p):
                print(f"{split:5s} {c:8s} " + " ".join(f"{n}={p[:, r].mean():5.2f}" for n, r in rows.items())
                      + "   top rows (orders): " + " ".join(f"{o:.2f}" for o in orders[np.argsort(p.mean(0))[::-1][:4]]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("probe")
    a.add_argument("dirs", nargs="+", type=Path)
    a.add_argument("--balanced", action="store_true")
    b = sub.add_parser("lines")
    b.add_argument("dir", type=Path)
    b.add_argument("--channel", type=int, default=0)
    args = ap.parse_args()
    if args.cmd == "probe":
        probe(args.dirs, args.balanced)
    else:
        lines(args.dir, args.channel)


if __name__ == "__main__":
    main()
