#!/usr/bin/env bash
# SSL methods against each other on real ITSC motor currents (issue 23, section 1): each method's probe on
# validation (epoch 0 = initialisation) and, optionally, a 5-labels-per-class fine-tune from each against
# scratch. Small on purpose (CPU budget): EPOCHS pretraining epochs, FT_EPOCHS fine-tuning epochs.
#   bash scripts/studies/ssl_methods.sh [OUT] ; METHODS="simclr moco" EPOCHS=6 SEEDS="0 1" FINETUNE=1 ...
# Results: OUT/<method>/pretrain.json (probe block), OUT/ft/<start>-s<seed>/test_metrics.json, OUT/summary.txt
set -euo pipefail
OUT=${1:-runs/ssl_methods}
METHODS=${METHODS:-"simclr moco vicreg byol msm"}
EPOCHS=${EPOCHS:-6}
SEEDS=${SEEDS:-"0"}
FINETUNE=${FINETUNE:-0}
FT_EPOCHS=${FT_EPOCHS:-10}
MODEL=${MODEL:-convnext_atto}
DIAG=${DIAG:-"python -m diag"}
CFG=configs/itsc.toml
mkdir -p "$OUT"
$DIAG prepare --config "$CFG" --out "$OUT/data" -q
for m in $METHODS; do
  $DIAG pretrain --config "$CFG" --data "$OUT/data" --out "$OUT/$m" --method "$m" --model "$MODEL" \
    --epochs "$EPOCHS" --device cpu --quiet
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
    pr = json.loads(p.read_text())["probe"]
    curve = " ".join(f"{c['accuracy']:.3f}" for c in pr["curve"])
    print(f"{p.parent.name:8s} probe {pr['initial']:.3f} -> best {pr['best']:.3f} (epoch {pr['best_epoch']}), "
          f"margin {pr['margin']:.3f}, learned {pr['learned']}; curve {curve}")
for p in sorted(out.glob("ft/*/test_metrics.json")):
    t = json.loads(p.read_text())
    print(f"fine-tune {p.parent.name:12s} test accuracy {t['accuracy']:.3f} macro-F1 {t['macro_f1']:.3f}")
PY
