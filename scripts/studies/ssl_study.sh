#!/usr/bin/env bash
# Does self-supervised pretraining improve the features on the simulated bearing data, which method,
# and which views help? Four 50-epoch `diag pretrain` runs on the default bearing_sim dataset, side by
# side, each logging the k-NN probe (train-labelled bank, validation queries) every 5 epochs:
#   simclr:    the default: SimCLR with the default views (time crop-and-resize to 50-100 %, masks, gain, noise)
#   stretch50: BYOL with the same views
#   shift:     BYOL, time shift instead of a strong stretch (crop_min 0.9, shift 0.25)
#   rec:       as shift, with positives from two nearby windows of the same recording
# Meant for a GPU (about 2-3 minutes on an H100, the runs in parallel); on a 2-core CPU each run
# takes about 15 minutes: run them one at a time there (PARALLEL=0).
# Usage: bash scripts/studies/ssl_study.sh     (outputs in $OUT or runs/ssl_study; installed diag or PYTHONPATH)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-runs/ssl_study}
PARALLEL=${PARALLEL:-1}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 MPLBACKEND=Agg
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
D=$OUT/work
mkdir -p "$OUT"
# the split and images this study was measured on (the config's defaults are now auto -> recording, envorder)
$PY -m diag prepare --config configs/bearing_sim.toml --out $D/prepared --split time --transform cwt >/dev/null || exit 1
run() {
  name=$1
  shift
  $PY -m diag pretrain --config configs/bearing_sim.toml --data $D/prepared --out $D/$name --epochs 50 -q \
    --set pretrain.knn_every=5 --force "$@" || return
  cp $D/$name/metrics.csv "$OUT/$name.csv"
  $PY - "$D/$name/metrics.csv" "$name" <<'EOF'
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["knn_accuracy"] != "nan"]
print(sys.argv[2], "k-NN val accuracy by epoch:", " ".join(f"{r['epoch']}:{float(r['knn_accuracy']):.3f}" for r in rows))
EOF
}
views="--set pretrain.crop_min=0.9 --set pretrain.shift=0.25"
byol="--set pretrain.method=byol"
if [ "$PARALLEL" = 1 ]; then
  run simclr &
  run stretch50 $byol &
  run shift $byol $views &
  run rec $byol $views --set pretrain.positives=recording &
  wait
else
  run simclr
  run stretch50 $byol
  run shift $byol $views
  run rec $byol $views --set pretrain.positives=recording
fi
