#!/usr/bin/env bash
# Wall time of one small compare grid with --jobs 1 vs --jobs 2 (issue 24), and whether every run's
# weights and test metrics are identical either way.
#   the demo's data (scripts/demo.sh: 22 inverter classes, CWT, test at the unseen 50 Hz) and model
#   (tf_efficientnet_lite0), its three starts (imagenet from the packaged weights, ssl, scratch) x 2 seeds,
#   EPOCHS fine-tuning epochs (default 2) on BUDGET labels per class (default all), SSL weights from a
#   PRETRAIN_EPOCHS pretraining (default 2);
#   then JOBS1_THREADS=2 also times --jobs 1 with 2 threads per run (what one compare did before).
#   GRIDS="jobs2 jobs1" (default) picks the grids; each line of times.txt also carries the 1-minute load
#   average before and after that grid (a busy machine inflates the times: say so with the numbers).
# Usage: bash scripts/bench/bench_grid.sh     (outputs in runs/bench_grid/; prints a table)
set -euo pipefail
cd "$(dirname "$0")/../.."
DIAG=${DIAG:-.venv/bin/diag}
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/bench_grid}
EPOCHS=${EPOCHS:-2}
BUDGET=${BUDGET:-all}
PRETRAIN_EPOCHS=${PRETRAIN_EPOCHS:-2}
MODEL=tf_efficientnet_lite0
CONFIG=configs/inverter_sim.toml
mkdir -p "$OUT"
DATA=${DATA:-$OUT/prepared}
SSL=${SSL:-$OUT/ssl}
if [ ! -f "$DATA/manifest.json" ]; then
  $DIAG prepare --config $CONFIG --out "$DATA" --set 'source.classes="all"' --set source.recordings_per_class=4 \
    --set source.duration=1.5 --set windows.hop=1024 --split condition --set 'split.test_conditions=["50Hz"]' \
    --transform cwt --device cpu -q
fi
[ -f "$SSL/backbone.safetensors" ] || $DIAG pretrain --config $CONFIG --data "$DATA" --out "$SSL" --model $MODEL \
  --epochs "$PRETRAIN_EPOCHS" --device cpu -q
grid() {  # $1 = folder, then extra options
  local dir=$1; shift
  if [ -e "$OUT/$dir" ]; then  # only a compare folder of an earlier run of this script is removed
    [ -f "$OUT/$dir/compare.json" ] || { echo "$OUT/$dir exists and is not a compare folder; move it" >&2; exit 2; }
    rm -rf "${OUT:?}/$dir"
  fi
  local t0; t0=$(date +%s.%N)
  $DIAG compare --config $CONFIG --data "$DATA" --out "$OUT/$dir" --inits imagenet,ssl,scratch --seeds 0,1 \
    --labels-per-class "$BUDGET" \
    --ssl-weights "$SSL" --set "train.model=\"$MODEL\"" --set "train.epochs=$EPOCHS" --set train.min_steps=0 \
    --set 'train.device="cpu"' -q "$@" > /dev/null
  echo "$dir $(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.0f}')" "$t0" "$(date +%s.%N)") $load0 $(cut -d' ' -f1 /proc/loadavg)"
}
{
  for g in ${GRIDS:-jobs2 jobs1}; do
    load0=$(cut -d' ' -f1 /proc/loadavg)
    case $g in
      jobs2) grid jobs2 --jobs 2 ;;
      jobs1) grid jobs1 --jobs 1 ;;
      *) echo "GRIDS: unknown grid $g (jobs2, jobs1)" >&2; exit 2 ;;
    esac
  done
  if [ -n "${JOBS1_THREADS:-}" ]; then load0=$(cut -d' ' -f1 /proc/loadavg); grid jobs1t2 --jobs 1 --set "compare.threads=$JOBS1_THREADS"; fi
} | tee "$OUT/times.txt"
"$PY" - "$OUT" <<'EOF'
import hashlib, json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = [line.split() for line in (out / "times.txt").read_text().splitlines()]
times = {r[0]: r[1] for r in rows}
for r in rows:
    print(f"{r[0]}: {r[1]} s (load average {r[2]} before, {r[3]} after)")
def runs(d):
    return {p.name: p for p in sorted((out / d).iterdir()) if (p / "test_metrics.json").is_file()}
if not {"jobs1", "jobs2"} <= times.keys():
    sys.exit(0)
one, two = runs("jobs1"), runs("jobs2")
print(f"--jobs 1: {times['jobs1']} s, --jobs 2: {times['jobs2']} s, speed-up {int(times['jobs1']) / int(times['jobs2']):.2f}x"
      + (f"; --jobs 1 with 2 threads per run: {times['jobs1t2']} s" if "jobs1t2" in times else ""))
print("| run | test macro-F1 --jobs 1 | --jobs 2 | weights identical | test metrics identical |")
print("|---|---|---|---|---|")
for name in sorted(one.keys() | two.keys()):
    a, b = one.get(name), two.get(name)
    ma = json.loads((a / "test_metrics.json").read_text()) if a else {}
    mb = json.loads((b / "test_metrics.json").read_text()) if b else {}
    same_w = bool(a and b) and hashlib.sha256((a / "model.safetensors").read_bytes()).digest() == \
        hashlib.sha256((b / "model.safetensors").read_bytes()).digest()
    print(f"| {name} | {ma.get('macro_f1', float('nan')):.4f} | {mb.get('macro_f1', float('nan')):.4f} | "
          f"{'yes' if same_w else 'NO'} | {'yes' if ma == mb and ma else 'NO'} |")
if "jobs1t2" in times:
    three = runs("jobs1t2")
    diff = [n for n in three if json.loads((three[n] / "test_metrics.json").read_text())
            != json.loads((one[n] / "test_metrics.json").read_text())]
    print(f"2 threads per run vs 1: test metrics differ in {len(diff)} of {len(three)} runs ({', '.join(diff)})")
EOF
