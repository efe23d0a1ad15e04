#!/usr/bin/env bash
# Issue 11 part 3: do envelope-order images transfer to bearings the model never saw?
# CWRU 12 kHz drive end (../shared/data/cwru12k or $DATA), convnext_atto, images:
#   cwt            the existing 64x64 CWT scalogram
#   envorder       squared-envelope spectrum on a shaft-order axis (spectral-kurtosis band; rows 0.5..12 orders)
#   cwt+envorder   both, as two channels
# on three splits: fault-size (train 0.007/0.021 in, test the unseen 0.014 in bearings, 4 classes by type:
# the protocol of the published anchors 0.45-0.60), condition (train 0-2 HP, test 3 HP, 10 classes) and
# time (last 20 % of every recording, 10 classes); inits scratch (and ssl with INITS=scratch,ssl: SimCLR
# on each dataset's training windows first); SEEDS seeds. Prints test accuracy / macro-F1 / per-class F1
# (mean +- std over seeds) and the validation macro-F1 the epoch was selected on.
# Resumable: finished runs are reused. CPU: ~1 min per run of 8 epochs; GPU: much less.
# Usage: TRAIN_EXTRA="--label-fraction 0.25" SEEDS="0 1 2" EPOCHS=8 INITS=scratch,ssl bash scripts/studies/measure_envorder.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-../shared/data/cwru12k}
OUT=${OUT:-runs/envorder}
SEEDS=${SEEDS:-0 1 2}
EPOCHS=${EPOCHS:-8}
INITS=${INITS:-scratch,ssl}
SPLITS=${SPLITS:-fault-size condition time}
KINDS=${KINDS:-cwt envorder cwt+envorder}
SSL_EPOCHS=${SSL_EPOCHS:-20}
TRAIN_EXTRA=${TRAIN_EXTRA:-}     # e.g. "--label-fraction 0.25" for a shorter CPU run
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 MPLBACKEND=Agg
PY=${PY:-python3}
[ -x .venv/bin/python ] && PY=.venv/bin/python
mkdir -p "$OUT"
split_args() {
  case $1 in
    fault-size) echo "--split fault-size --set split.test_fault_sizes=[\"0.014\"] --set source.label_by=type" ;;
    condition) echo "--split condition --set split.test_conditions=[\"3HP\"]" ;;
    time) echo "--split time" ;;
  esac
}
for split in $SPLITS; do
  for kind in $KINDS; do
    d=$OUT/prepared/$split/${kind/+/_}
    # shellcheck disable=SC2046
    $PY -m diag prepare --config configs/cwru.toml --data "$DATA" --out "$d" --transform "$kind" $(split_args $split) \
      >/dev/null || exit 1
    if [[ $INITS == *ssl* ]]; then
      # an identical finished pretraining run is reused by diag pretrain itself
      $PY -m diag pretrain --data "$d" --out "$OUT/ssl/$split/${kind/+/_}" --epochs "$SSL_EPOCHS" -q || exit 1
    fi
    # one diag train per start and seed (diag compare sets the label budget itself, so it would refuse a
    # train.label_fraction); finished runs are reused, an interrupted one resumes
    for init in ${INITS//,/ }; do
      for seed in $SEEDS; do
        r=$OUT/runs/$split/${kind/+/_}/$init-s$seed
        if [ -f "$r/test_metrics.json" ]; then continue; fi
        if [ -f "$r/last.pt" ]; then
          $PY -m diag train --out "$r" --resume -q || exit 1
          continue
        fi
        w=()
        [ "$init" = ssl ] && w=(--weights "$OUT/ssl/$split/${kind/+/_}")
        # shellcheck disable=SC2086
        $PY -m diag train --data "$d" --out "$r" --init "$init" "${w[@]}" --seed "$seed" --epochs "$EPOCHS" \
          --lr 2e-3 $TRAIN_EXTRA --force -q || exit 1
        echo "$split $kind $init seed $seed: done $(date +%H:%M:%S)"
      done
    done
  done
done
$PY - "$OUT/runs" <<'PY'
import json, sys
from pathlib import Path
import numpy as np
rows = {}
for tm in sorted(Path(sys.argv[1]).rglob("test_metrics.json")):
    run = tm.parent
    rel = run.relative_to(sys.argv[1]).parts  # split / kind / cell...
    t = json.loads(tm.read_text())
    if not t.get("n"):
        continue
    m = json.loads((run / "model.json").read_text()) if (run / "model.json").is_file() else {}
    init = next((p for p in ("ssl", "scratch", "imagenet") if p in run.name), run.name)
    val = m.get("selected", {}).get("val_macro_f1", m.get("val", {}).get("val_macro_f1", float("nan")))
    rows.setdefault((rel[0], rel[1].replace("_", "+"), init), []).append(
        (t["accuracy"], t["macro_f1"], val, {c: v["f1"] for c, v in t["per_class"].items()}))
print(f"{'split':11s} {'images':13s} {'init':8s} seeds  test acc        test macro-F1   val macro-F1  per-class test F1 (mean)")
for (split, kind, init), r in sorted(rows.items()):
    a = np.array([x[0] for x in r]); f = np.array([x[1] for x in r]); v = np.array([x[2] for x in r], float)
    pc = {c: np.mean([x[3][c] for x in r]) for c in r[0][3]}
    print(f"{split:11s} {kind:13s} {init:8s} {len(r):5d}  {a.mean():.3f} ± {a.std():.3f}  {f.mean():.3f} ± {f.std():.3f}  "
          f"{np.nanmean(v):.3f}        " + " ".join(f"{c}={x:.2f}" for c, x in pc.items()))
PY
