#!/usr/bin/env bash
# The main job end to end on the embedded default: simulated bearing faults, no downloads.
#   simulate + prepare (64x64 CWT, time-block split) -> self-supervised pretraining on the training
#   windows -> fine-tune from ssl, from scratch (and from ImageNet when weights are available) ->
#   comparison table and plot.
# Usage: bash scripts/demo.sh            (outputs in runs/demo/; re-running reuses finished steps)
#        DIAG_IMAGENET_WEIGHTS=convnext_atto.safetensors bash scripts/demo.sh   (adds the ImageNet start)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DIAG=.venv/bin/diag
OUT=${OUT:-runs/demo}
CONFIG=${CONFIG:-configs/bearing_sim.toml}
SEEDS=${SEEDS:-0}                 # e.g. SEEDS=0,1,2
start=$(date +%s)

echo "== 1/3 prepare: simulate recordings, window, split by time blocks, CWT images"
$DIAG prepare --config "$CONFIG" --out "$OUT/prepared"

echo "== 2/3 pretrain: self-supervised (SimCLR) on the unlabelled training windows"
finished() {  # pretrain.json says so (or, written by an older diag, all its epochs are done)
  .venv/bin/python -c "import json, sys; m = json.load(open(sys.argv[1]))
sys.exit(0 if m.get('finished', m.get('epochs_done', 0) >= m['pretrain']['epochs']) else 1)" "$1" 2>/dev/null
}
if finished "$OUT/ssl/pretrain.json"; then  # reused if it has the same settings; else diag refuses to overwrite it
  $DIAG pretrain --config "$CONFIG" --data "$OUT/prepared" --out "$OUT/ssl"
elif [ -f "$OUT/ssl/last.pt" ]; then
  $DIAG pretrain --out "$OUT/ssl" --resume   # interrupted earlier: continue it
else  # nothing there, or a run that stopped before its first checkpoint
  $DIAG pretrain --config "$CONFIG" --data "$OUT/prepared" --out "$OUT/ssl" --force
fi

echo "== 3/3 compare: fine-tune from each start, select on validation, score the test split once"
$DIAG compare --config "$CONFIG" --data "$OUT/prepared" --out "$OUT/compare" \
  --inits scratch,ssl,imagenet --seeds "$SEEDS" --ssl-weights "$OUT/ssl"

echo "== done in $(( $(date +%s) - start )) s: $OUT/compare/summary.md, $OUT/compare/comparison.png"
