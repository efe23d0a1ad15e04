#!/usr/bin/env bash
# Does a larger unlabelled pool make self-supervised pretraining better? (issue 23, section 1)
# The demo's inverter set (22 classes; train 20/40 Hz, validation 30 Hz, test 50 Hz), pretrained on its
# training windows plus a pool of K x as many *other* simulated recordings at the training conditions
# (diag simulate, another seed; never the test condition, never a test recording -- diag pretrain refuses
# those), then a 5-labels-per-class fine-tune from each against scratch.
#   bash scripts/studies/ssl_pool.sh [OUT]     SIZES="0 1 4" EPOCHS=6 SEEDS="0 1 2" FT_EPOCHS=10 MIN_STEPS=300
# Results: OUT/ssl-pool<K>/pretrain.json (probe, method_choice), OUT/ft/<start>-s<seed>/, OUT/summary.txt
set -euo pipefail
OUT=${1:-runs/ssl_pool}
SIZES=${SIZES:-"0 1 4"}
EPOCHS=${EPOCHS:-6}
SEEDS=${SEEDS-"0 1 2"}            # SEEDS= (empty): the probes only, no fine-tunes
FT_EPOCHS=${FT_EPOCHS:-10}
MIN_STEPS=${MIN_STEPS:-300}
MODEL=${MODEL:-tf_efficientnet_lite0}
DIAG=${DIAG:-"python -m diag"}
CFG=configs/inverter_sim.toml
mkdir -p "$OUT"
[ -f "$OUT/data/manifest.json" ] || $DIAG prepare --config "$CFG" --out "$OUT/data" -q --set 'source.classes="all"' \
  --set source.recordings_per_class=4 --set source.duration=1.5 --set windows.hop=1024 --split condition \
  --set 'split.test_conditions=["50Hz"]' --transform cwt
for k in $SIZES; do
  pool=()
  if [ "$k" != 0 ]; then  # 2 recordings per class at 20 and 40 Hz = as many as the labelled training side
    [ -f "$OUT/pool$k/labels.csv" ] || $DIAG simulate inverter --out "$OUT/pool$k" --seed $((100 + k)) \
      --set classes=all --set recordings_per_class=$((2 * k)) --set duration=1.5 --set 'f1=[20.0, 40.0]'
    pool=(--unlabelled "$OUT/pool$k" --fs 10000)
  fi
  [ -f "$OUT/ssl-pool$k/backbone.safetensors" ] || $DIAG pretrain --config "$CFG" --data "$OUT/data" \
    --out "$OUT/ssl-pool$k" --model "$MODEL" --epochs "$EPOCHS" --device cpu --quiet "${pool[@]}"
done
TRAIN=(--config "$CFG" --data "$OUT/data" --model "$MODEL" --labels-per-class 5 --epochs "$FT_EPOCHS"
       --set "train.min_steps=$MIN_STEPS" --device cpu --quiet)
for s in $SEEDS; do
  [ -f "$OUT/ft/scratch-s$s/test_metrics.json" ] || $DIAG train "${TRAIN[@]}" --out "$OUT/ft/scratch-s$s" --init scratch --seed "$s"
  for k in $SIZES; do
    [ -f "$OUT/ft/pool$k-s$s/test_metrics.json" ] || $DIAG train "${TRAIN[@]}" --out "$OUT/ft/pool$k-s$s" --init ssl \
      --weights "$OUT/ssl-pool$k" --seed "$s"
  done
done
python "$(dirname "$0")/ssl_summary.py" "$OUT" | tee "$OUT/summary.txt"
