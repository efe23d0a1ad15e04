#!/usr/bin/env bash
# transform.polarity on the inverter simulator (docs/images.md, "Polarity"): magnitude images cannot tell an
# open upper switch from the open lower switch of the same leg (mirror images half a period apart).
#   1. the 7 single-switch classes, recording split (test on drives never trained on), convnext_atto from
#      scratch with the config's schedule, polarity off vs on, SEEDS (default 0 1): test accuracy / macro-F1
#   2. "unknown" on a held-out switch (HELD_OUT, default S1) with polarity on: the documented protocol
#      (4 drives per class, time split, scripts/unknown_study.py)
# Resumable: finished steps are reused. Outputs under OUT (default runs/polarity).
# Usage: bash scripts/studies/measure_polarity.sh        OMP_NUM_THREADS=1 SEEDS="0 1 2" bash scripts/studies/measure_polarity.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 MPLBACKEND=Agg
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
OUT=${OUT:-runs/polarity}
SEEDS=${SEEDS:-0 1}
HELD_OUT=${HELD_OUT:-S1}
CFG=configs/inverter_sim.toml

for pol in false true; do
  d=$OUT/rec-polarity-$pol
  [ -f "$d/manifest.json" ] || $PY -m diag prepare --config $CFG --out "$d" --split recording \
    --set transform.polarity=$pol --transform cwt >/dev/null
  for s in $SEEDS; do
    [ -f "$d-s$s/test_metrics.json" ] || $PY -m diag train --data "$d" --out "$d-s$s" --config $CFG --seed "$s" -q
  done
done

known=$($PY -c "import json, sys; print(json.dumps([c for c in ['normal','S1','S2','S3','S4','S5','S6'] if c != sys.argv[1]]))" "$HELD_OUT")
d=$OUT/unknown-no$HELD_OUT
[ -f "$d/manifest.json" ] || $PY -m diag prepare --config $CFG --out "$d" --set "source.classes=$known" \
  --set source.recordings_per_class=4 --set transform.polarity=true --transform cwt >/dev/null
[ -f "$d-run/test_metrics.json" ] || $PY -m diag train --data "$d" --out "$d-run" --config $CFG --epochs 10 -q

echo "== 7 classes, recording split (unseen drives): test accuracy / macro-F1"
for pol in false true; do
  for s in $SEEDS; do
    $PY -c "import json, sys; m = json.load(open(sys.argv[1])); print(f'polarity={sys.argv[2]:5s} seed {sys.argv[3]}: '
             f'{m[\"accuracy\"]:.3f} / {m[\"macro_f1\"]:.3f} (selected epoch {m[\"selected_epoch\"]})')" \
      "$OUT/rec-polarity-$pol-s$s/test_metrics.json" $pol "$s"
  done
done
echo "== unknown: $HELD_OUT held out, polarity on"
$PY scripts/unknown_study.py "$d-run" --held-out "$HELD_OUT" --kind inverter_sim --option recordings_per_class=4
