#!/usr/bin/env bash
# SSL methods against each other (issue 23, section 1): each method's k-NN probe on validation (epoch 0 =
# the initialisation) and, optionally, a 5-labels-per-class fine-tune from each against scratch.
# Small on purpose (CPU budget): EPOCHS pretraining epochs, FT_EPOCHS fine-tuning epochs.
#   bash scripts/studies/ssl_methods.sh [OUT]
#   SET=itsc|converter|bearings (default itsc): ITSC motor currents (configs/itsc.toml); the demo's inverter
#     set (22 classes, 50 Hz held out, CWT); the simulated bearings, small (CWT)
#   METHODS="simclr vicreg" MODEL=tf_efficientnet_lite0 INIT=scratch|imagenet EPOCHS=6 SEEDS="0 1" FINETUNE=1
# Results: OUT/<method>/pretrain.json (probe block), OUT/ft/<start>-s<seed>/test_metrics.json, OUT/summary.txt
set -euo pipefail
OUT=${1:-runs/ssl_methods}
SET=${SET:-itsc}
METHODS=${METHODS:-"simclr moco vicreg byol msm"}
EPOCHS=${EPOCHS:-6}
SEEDS=${SEEDS:-"0"}
FINETUNE=${FINETUNE:-0}
FT_EPOCHS=${FT_EPOCHS:-10}
MODEL=${MODEL:-convnext_atto}
INIT=${INIT:-scratch}
DIAG=${DIAG:-"python -m diag"}
case $SET in
  itsc) CFG=configs/itsc.toml; PREP=() ;;
  converter) CFG=configs/inverter_sim.toml
    PREP=(--set 'source.classes="all"' --set source.recordings_per_class=4 --set source.duration=1.5
          --set windows.hop=1024 --split condition --set 'split.test_conditions=["50Hz"]' --transform cwt) ;;
  bearings) CFG=configs/bearing_sim.toml
    PREP=(--set source.recordings_per_class=4 --set source.duration=1.5 --set windows.hop=1024 --transform cwt) ;;
  *) echo "SET: itsc | converter | bearings, got '$SET'"; exit 2 ;;
esac
mkdir -p "$OUT"
[ -f "$OUT/data/manifest.json" ] || $DIAG prepare --config "$CFG" --out "$OUT/data" "${PREP[@]}" -q
for m in $METHODS; do
  [ -f "$OUT/$m/pretrain.json" ] && continue
  $DIAG pretrain --config "$CFG" --data "$OUT/data" --out "$OUT/$m" --method "$m" --model "$MODEL" \
    --init "$INIT" --epochs "$EPOCHS" --device cpu --quiet
done
if [ "$FINETUNE" = 1 ]; then
  for s in $SEEDS; do
    $DIAG train --config "$CFG" --data "$OUT/data" --out "$OUT/ft/scratch-s$s" --init scratch --model "$MODEL" \
      --labels-per-class 5 --epochs "$FT_EPOCHS" --seed "$s" --device cpu --quiet
    for m in $METHODS; do
      $DIAG train --config "$CFG" --data "$OUT/data" --out "$OUT/ft/$m-s$s" --init ssl --weights "$OUT/$m" \
        --model "$MODEL" --labels-per-class 5 --epochs "$FT_EPOCHS" --seed "$s" --device cpu --quiet
    done
  done
fi
python "$(dirname "$0")/ssl_summary.py" "$OUT" | tee "$OUT/summary.txt"
