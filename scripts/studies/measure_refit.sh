#!/usr/bin/env bash
# Issue 11: with a validation side that holds out whole units (fault sizes, loads), the selected model never
# trained on them. Does refitting on every training unit after the epoch is chosen help on the test shift?
# For each image kind and seed of scripts/studies/measure_envorder.sh's runs of SPLIT (OUT/runs/SPLIT/KIND/scratch-sS):
# read the epoch that run selected on its held-out validation unit (fault-size: the 0.021" bearings;
# condition: the 2 HP load), prepare the same data with split.val_fraction=0 (train = every training unit,
# no validation; the test side -- the unseen 0.014" bearings / the 3 HP load -- is unchanged: diag checks
# it) and train a fresh model with the run's settings for exactly that many epochs (`diag train
# --refit-from RUN`); it is scored once on test. Prints, per kind, both test macro-F1s and the paired per-seed
# difference with a 95 % t interval. Resumable: finished runs are reused.
# Usage: KINDS="cwt envorder" [SPLIT=condition] bash scripts/studies/measure_refit.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-../shared/data/cwru12k}
OUT=${OUT:-runs/envorder}
SEEDS=${SEEDS:-0 1 2}
KINDS=${KINDS:-cwt envorder cwt+envorder}
SPLIT=${SPLIT:-fault-size}
case $SPLIT in
  fault-size) SPLIT_ARGS=(--split fault-size --set 'split.test_fault_sizes=["0.014"]' --set source.label_by=type) ;;
  condition) SPLIT_ARGS=(--split condition --set 'split.test_conditions=["3HP"]') ;;
  *) echo "SPLIT: fault-size or condition, got $SPLIT"; exit 2 ;;
esac
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 MPLBACKEND=Agg
PY=${PY:-python3}
[ -x .venv/bin/python ] && PY=.venv/bin/python
for kind in $KINDS; do
  k=${kind/+/_}
  d=$OUT/prepared/$SPLIT-refit/$k
  $PY -m diag prepare --config configs/cwru.toml --data "$DATA" --out "$d" --transform "$kind" "${SPLIT_ARGS[@]}" \
    --set split.val_fraction=0 -q || exit 1
  for seed in $SEEDS; do
    sel=$OUT/runs/$SPLIT/$k/scratch-s$seed
    if [ ! -f "$sel/test_metrics.json" ]; then echo "$sel: not finished; run scripts/studies/measure_envorder.sh first"; exit 1; fi
    r=$OUT/runs/$SPLIT-refit/$k/scratch-s$seed
    if [ -f "$r/test_metrics.json" ]; then continue; fi
    # the run's own settings (seed, start, label fraction, lr) for the epochs it selected (diag train --refit-from)
    $PY -m diag train --data "$d" --out "$r" --refit-from "$sel" --force -q || exit 1
    echo "refit $kind seed $seed: done $(date +%H:%M:%S)"
  done
done
$PY - "$OUT" "$SPLIT" $KINDS <<'PY'
import json, sys
from pathlib import Path
import numpy as np
from scipy import stats
out, split, kinds = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
for kind in kinds:
    k = kind.replace("+", "_")
    a, b, per = [], [], []
    for run in sorted((out / "runs" / f"{split}-refit" / k).glob("scratch-s*")):
        sel = out / "runs" / split / k / run.name
        ts, tr = (json.loads((p / "test_metrics.json").read_text()) for p in (sel, run))
        if ts["n"] != tr["n"]:
            sys.exit(f"{run}: {tr['n']} test windows but the selected run had {ts['n']}: not the same test side")
        a.append(ts["macro_f1"]); b.append(tr["macro_f1"])
        per.append({c: (ts["per_class"][c]["f1"], tr["per_class"][c]["f1"]) for c in ts["per_class"]})
    if not a:
        continue
    a, b = np.array(a), np.array(b)
    d = b - a
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
    pc = " ".join(f"{c}={np.mean([p[c][0] for p in per]):.2f}->{np.mean([p[c][1] for p in per]):.2f}" for c in per[0])
    print(f"{split:10s} {kind:13s} seeds {len(d)}  selected {a.mean():.3f} ± {a.std():.3f}  refit {b.mean():.3f} ± {b.std():.3f}  "
          f"refit - selected {d.mean():+.3f} [{d.mean() - half:+.3f}, {d.mean() + half:+.3f}]  per-class F1 {pc}")
PY
