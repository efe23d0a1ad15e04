#!/usr/bin/env bash
# The shipped defaults on unseen recordings (numbers in docs/findings/engineer-path.md), per image kind and seed.
#   SETUP=bearing (default): the issue's engineer's commands -- configs/bearing_sim.toml, 3 classes x 4
#     recordings, the default split (auto -> recording), train 6 epochs; scored on the test split (whole
#     unseen recordings) and by `diag predict` on a fresh simulation (simulator seed 11, 4 recordings each
#     of normal/inner/outer and of the never-seen ball).
#   SETUP=inverter: configs/inverter_sim.toml (7 classes, polarity), 4 recordings per class, condition split
#     (train/validate at 20-40 Hz, test at the unseen 50 Hz), train 8 epochs without the step floor; scored
#     on the test split and on a fresh simulation at 50 Hz (seed 11, 2 recordings per class).
# One line per run: kind, seed, test accuracy / macro-F1, new known recordings named right, recordings of
# the never-seen class flagged unknown, known recordings flagged unknown, then every file's truth:verdict.
# Resumable: finished steps are reused. Outputs under OUT (default runs/defaults-SETUP).
# Usage: OMP_NUM_THREADS=1 [SETUP=inverter] [KINDS="cwt envorder"] [SEEDS="0 1 2"] bash scripts/studies/measure_defaults.sh
#        KINDS=config: no --transform (the config's own default)
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 MPLBACKEND=Agg
PY=${PY:-python3}
[ -x .venv/bin/python ] && PY=.venv/bin/python
SETUP=${SETUP:-bearing}
SEEDS=${SEEDS:-0 1 2}
FS=${FS-}   # e.g. FS="--fs 12000" for a diag predict that does not read fs from labels.csv
case $SETUP in
  bearing)
    CFG=configs/bearing_sim.toml; KINDS=${KINDS:-cwt envorder cwt+envorder}; EPOCHS=${EPOCHS:-6}; HELD=ball
    PREP=(--set 'source.classes=["normal","inner","outer"]' --set source.recordings_per_class=4)
    TRAIN=()
    NEWSIM=(bearing --set seed=11 --set recordings_per_class=4 --set 'classes=["normal","inner","outer","ball"]') ;;
  inverter)
    CFG=configs/inverter_sim.toml; KINDS=${KINDS:-cwt cwt+harmonics harmonics}; EPOCHS=${EPOCHS:-8}; HELD=none
    PREP=(--set source.recordings_per_class=4 --split condition --set 'split.test_conditions=["50Hz"]')
    TRAIN=(--set train.min_steps=0)
    NEWSIM=(inverter --set seed=11 --set recordings_per_class=2 --set 'f1=[50.0]') ;;
  *) echo "SETUP: bearing | inverter"; exit 2 ;;
esac
OUT=${OUT:-runs/defaults-$SETUP}
mkdir -p "$OUT"
NEW=$OUT/NEW
[ -f "$NEW/labels.csv" ] || $PY -m diag simulate "${NEWSIM[@]}" --out "$NEW" >/dev/null
for kind in $KINDS; do
  tag=${kind//+/-}
  P=$OUT/P-$tag
  TR=()
  [ "$kind" != config ] && TR=(--transform "$kind")
  [ -f "$P/manifest.json" ] || $PY -m diag prepare --config "$CFG" --out "$P" "${PREP[@]}" "${TR[@]}" -q
  for seed in $SEEDS; do
    R=$OUT/R-$tag-s$seed
    [ -f "$R/test_metrics.json" ] || $PY -m diag train --config "$CFG" --data "$P" --out "$R" --epochs "$EPOCHS" \
      --seed "$seed" "${TRAIN[@]}" -q
    [ -f "$R/new.json" ] || $PY -m diag predict "$R" "$NEW" --json "$R/new.json" $FS -q
    $PY - "$kind" "$seed" "$R" "$HELD" <<'PYEOF'
import json, sys
from pathlib import Path
kind, seed, r, held = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4]
t = json.loads((r / "test_metrics.json").read_text())
files = json.loads((r / "new.json").read_text())["files"]
truth = lambda f: Path(f["path"]).parent.name
known = [f for f in files if truth(f) != held]
new = [f for f in files if truth(f) == held]
right = sum(f["verdict"] == truth(f) for f in known)
verdicts = " ".join(f"{truth(f)}:{f['verdict']}" for f in sorted(files, key=lambda f: f["path"]))
print(f"{kind:14s} seed {seed}  test acc {t['accuracy']:.3f} F1 {t['macro_f1']:.3f}  new known right {right}/{len(known)}"
      + (f"  {held} unknown {sum(f['verdict'] == 'unknown' for f in new)}/{len(new)}" if new else "")
      + f"  known unknown {sum(f['verdict'] == 'unknown' for f in known)}/{len(known)}  | {verdicts}")
PYEOF
  done
done
