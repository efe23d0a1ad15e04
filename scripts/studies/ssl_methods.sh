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
[ -f "$OUT/data/dataset.json" ] || $DIAG prepare --config "$CFG" --out "$OUT/data" "${PREP[@]}" -q
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
python - "$OUT" <<'PY' | tee "$OUT/summary.txt"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for p in sorted(out.glob("*/pretrain.json")):
    m = json.loads(p.read_text())
    pr = m["probe"]
    h = [r for r in m.get("history") or [] if r.get("epoch", 0) > 0]
    curve = " ".join(f"{c['accuracy']:.3f}" for c in pr["curve"])
    loss = f"loss {h[0]['loss']:.3f} -> {h[-1]['loss']:.3f}; " if h and "loss" in h[0] else ""
    print(f"{p.parent.name:8s} {m.get('model')} init {m.get('init')}: {loss}probe {pr['initial']:.3f} -> best "
          f"{pr['best']:.3f} (epoch {pr['best_epoch']}), margin {pr['margin']:.3f}, learned {pr['learned']}; curve {curve}")
for p in sorted(out.glob("ft/*/test_metrics.json")):
    t = json.loads(p.read_text())
    print(f"fine-tune {p.parent.name:12s} test accuracy {t['accuracy']:.3f} macro-F1 {t['macro_f1']:.3f}")
PY
