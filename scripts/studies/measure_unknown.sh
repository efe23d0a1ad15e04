#!/usr/bin/env bash
# The honest "unknown" on machines never trained on (docs/scoring.md, "The honest unknown", recording split):
# a fault class is left out of training, the model is trained on a recording split (validation = whole
# held-out recordings, test = other unseen recordings), and scripts/unknown_study.py scores the known
# classes' test windows against freshly simulated recordings (seed 1) of the left-out class.
#   inverter  configs/inverter_sim.toml (polarity on), the 7 single-switch classes without HELD_INV (S3)
#   bearings  configs/bearing_sim.toml, the 4 classes without HELD_BEAR (inner)
# The defaults were chosen before any of these runs, after the threshold rule (bounded_threshold) was fixed.
# Resumable: finished steps are reused. Outputs under OUT (default runs/unknown-rec).
# Usage: OMP_NUM_THREADS=1 bash scripts/studies/measure_unknown.sh [inverter] [bearings]
#        TRANSFORM=envorder bash scripts/studies/measure_unknown.sh bearings   (other images; folders get -envorder)
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 MPLBACKEND=Agg
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
OUT=${OUT:-runs/unknown-rec}
SEED=${SEED:-0}
HELD_INV=${HELD_INV:-S3}
HELD_BEAR=${HELD_BEAR:-inner}
TRANSFORM=${TRANSFORM:-}          # empty: CWT, the images the documented numbers were measured on
PREP=(--transform cwt)
[ -n "$TRANSFORM" ] && PREP=(--transform "$TRANSFORM")
KINDS=("$@")
[ ${#KINDS[@]} -eq 0 ] && KINDS=(inverter bearings)

one() {  # one NAME CONFIG KIND HELD ALL_CLASSES_JSON
  local name=$1 cfg=$2 kind=$3 held=$4 all=$5 known d
  known=$($PY -c "import json, sys; print(json.dumps([c for c in json.loads(sys.argv[1]) if c != sys.argv[2]]))" "$all" "$held")
  d=$OUT/$name-no$held${TRANSFORM:+-$TRANSFORM}
  [ -f "$d/manifest.json" ] || $PY -m diag prepare --config "$cfg" --out "$d" --split recording \
    --set "source.classes=$known" "${PREP[@]}" >/dev/null
  [ -f "$d-s$SEED/test_metrics.json" ] || $PY -m diag train --data "$d" --out "$d-s$SEED" --config "$cfg" --seed "$SEED" -q
  echo "== $name: $held held out, recording split, seed $SEED${TRANSFORM:+, $TRANSFORM images}"
  $PY scripts/unknown_study.py "$d-s$SEED" --held-out "$held" --kind "$kind" --json "$d-s$SEED/unknown_study.json"
}

for k in "${KINDS[@]}"; do
  case $k in
    inverter) one inverter configs/inverter_sim.toml inverter_sim "$HELD_INV" '["normal","S1","S2","S3","S4","S5","S6"]' ;;
    bearings) one bearings configs/bearing_sim.toml bearing_sim "$HELD_BEAR" '["normal","inner","outer","ball"]' ;;
    *) echo "unknown kind '$k' (inverter | bearings)"; exit 2 ;;
  esac
done
