#!/usr/bin/env bash
# Issue 11 measurements, resumable: every prepared dataset is reused when its config is unchanged, every
# finished training run (test_metrics.json present) is skipped, an interrupted one is resumed.
#   val:   CWRU fault-size (unseen 0.014 in) and condition (unseen 3 HP) splits, and the two simulators'
#          condition splits, with split.val_method=time (the old validation) vs auto (held-out units
#          of the same kind as the test side): how far the selected-epoch test score moves
#   band:  CWRU fault-size split without / with windows.band (the healthy acquisition cue)
#   norm:  inverter single+motor (inter-turn shorts), 50 Hz held out: per-channel vs joint vs dataset scales
#   features: the short measurement behind the inverter default (logistic regression on per-phase window
#          features, no training; about a minute on a 2-core CPU) -- the cheapest step
# Usage: STEPS="features val band norm" SEEDS="0 1 2" EPOCHS=10 DEVICE=auto CWRU=../shared/data/cwru12k \
#        bash scripts/studies/measure_generalisation.sh        (outputs in $OUT, default runs/generalisation)
# At the end it prints one table of every finished run: selected epoch, validation and test macro-F1.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-runs/generalisation}
STEPS=${STEPS:-"features val band norm"}
SEEDS=${SEEDS:-"0 1 2"}
EPOCHS=${EPOCHS:-10}
DEVICE=${DEVICE:-auto}
CWRU=${CWRU:-../shared/data/cwru12k}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 MPLBACKEND=Agg
PY=${PY:-python3}
[ -x .venv/bin/python ] && PY=.venv/bin/python
mkdir -p "$OUT/data" "$OUT/runs"
has() { case " $STEPS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

prep() {  # prep NAME CONFIG [prepare options...]
  local name=$1 config=$2
  shift 2
  $PY -m diag prepare --config "$config" --out "$OUT/data/$name" --force "$@" >"$OUT/data/$name.log" 2>&1 \
    || { echo "prepare $name failed: see $OUT/data/$name.log"; return 1; }
}
fit() {  # fit DATA CONFIG [train options...]: one run per seed
  local data=$1 config=$2
  shift 2
  for seed in $SEEDS; do
    local run="$OUT/runs/$data-s$seed"
    [ -f "$run/test_metrics.json" ] && continue
    local again=(--force)
    [ -f "$run/last.pt" ] && again=(--resume)
    echo "train $data seed $seed"
    $PY -m diag train --data "$OUT/data/$data" --out "$run" --config "$config" --epochs "$EPOCHS" --seed "$seed" \
      --device "$DEVICE" -q "${again[@]}" "$@" >"$run.log" 2>&1 || echo "train $data seed $seed failed: see $run.log"
  done
}

if has features; then
  echo "== features: what each normalisation keeps (inverter single+motor, 50 Hz held out, seeds 0 1)"
  for s in 0 1; do
    $PY - "$s" <<'EOF'
import sys
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from diag.simulate.inverter import simulate_inverter_recordings
from diag.signal.windows import NormalizationStats, apply_normalization, extract, window_starts

seed, L = int(sys.argv[1]), 2048
recs = simulate_inverter_recordings(classes="single+motor", recordings_per_class=8, duration=1.0, seed=seed)
classes = sorted({r.label for r in recs})

def windows(rs):
    starts = [window_starts(0, r.n_samples, L, 512) for r in rs]
    x = np.concatenate([extract([r], np.zeros(len(s), int), s, L) for r, s in zip(rs, starts)])
    return x, np.concatenate([np.full(len(s), classes.index(r.label)) for r, s in zip(rs, starts)])

def features(x):  # per phase: mean, log power at the fundamental, at 2x, and of the rest
    p = np.abs(np.fft.rfft((x - x.mean(-1, keepdims=True)) * np.hanning(L), axis=-1)) ** 2
    k = p.sum(1).argmax(-1)
    band = lambda c: np.stack([p[i, :, max(c[i] - 3, 0):c[i] + 4].sum(-1) for i in range(len(p))])  # noqa: E731
    f1, f2 = band(k), band(2 * k)
    rest = np.maximum(p.sum(-1) - f1 - f2, 1e-20)
    return np.concatenate([x.mean(-1), np.log(f1 + 1e-20), np.log(f2 + 1e-20), np.log(rest)], 1)

xtr, ytr = windows([r for r in recs if r.condition != "50Hz"])
xte, yte = windows([r for r in recs if r.condition == "50Hz"])
acc = NormalizationStats(["ia", "ib", "ic"], [])
acc.update(xtr)
stats = acc.result()
for m in ("zscore", "rms", "none", "zscore-joint", "rms-joint", "dataset"):
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    clf.fit(features(apply_normalization(xtr, m, stats)), ytr)
    pred = clf.predict(features(apply_normalization(xte, m, stats)))
    per = f1_score(yte, pred, average=None)
    itsc = " ".join(f"{per[classes.index(c)]:.2f}" for c in ("itsc_a", "itsc_b", "itsc_c"))
    print(f"seed {seed}  {m:13s} test accuracy {(pred == yte).mean():.3f}  macro-F1 {f1_score(yte, pred, average='macro'):.3f}"
          f"  F1 itsc_a/b/c {itsc}")
EOF
  done
fi

CW=(--data "$CWRU")
FS=(--split fault-size --set source.label_by=type --set 'split.test_fault_sizes=["0.014"]')
CO=(--split condition --set 'split.test_conditions=["3HP"]')
if has val; then
  for v in time auto; do
    prep "cwru-faultsize-val$v" configs/cwru.toml "${CW[@]}" "${FS[@]}" --set "split.val_method=\"$v\"" \
      && fit "cwru-faultsize-val$v" configs/cwru.toml
    prep "cwru-condition-val$v" configs/cwru.toml "${CW[@]}" "${CO[@]}" --set "split.val_method=\"$v\"" \
      && fit "cwru-condition-val$v" configs/cwru.toml
    prep "bearing-condition-val$v" configs/bearing_sim.toml --split condition --transform cwt \
      --set 'split.test_conditions=["1730rpm"]' --set "split.val_method=\"$v\"" \
      && fit "bearing-condition-val$v" configs/bearing_sim.toml
    prep "inverter-condition-val$v" configs/inverter_sim.toml --split condition --transform cwt \
      --set 'split.test_conditions=["50Hz"]' --set "split.val_method=\"$v\"" \
      && fit "inverter-condition-val$v" configs/inverter_sim.toml
  done
fi
if has band; then
  prep cwru-faultsize-noband configs/cwru.toml "${CW[@]}" "${FS[@]}" --set 'windows.band=[]' --set transform.fmax=0 \
    && fit cwru-faultsize-noband configs/cwru.toml
  prep cwru-faultsize-band configs/cwru.toml "${CW[@]}" "${FS[@]}" && fit cwru-faultsize-band configs/cwru.toml
fi
if has norm; then
  for nm in zscore/image rms/image rms-joint/image-joint zscore-joint/image-joint dataset/image-joint dataset/none; do
    w=${nm%/*} t=${nm#*/}
    prep "inverter-motor-$w-$t" configs/inverter_sim.toml --split condition --set 'split.test_conditions=["50Hz"]' \
      --set 'source.classes="single+motor"' --set "windows.normalize=\"$w\"" --set "transform.norm=\"$t\"" \
      && fit "inverter-motor-$w-$t" configs/inverter_sim.toml
  done
fi

echo "== finished runs (selected on validation; test scored once)"
$PY - "$OUT" <<'EOF'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
rows = []
for run in sorted((out / "runs").glob("*")):
    if not (run / "test_metrics.json").is_file() or not (run / "model.json").is_file():
        continue
    test, model = json.loads((run / "test_metrics.json").read_text()), json.loads((run / "model.json").read_text())
    data = run.name.rsplit("-s", 1)[0]
    mf = out / "data" / data / "manifest.json"
    val_by = json.loads(mf.read_text())["split"].get("val_by", "?") if mf.is_file() else "?"
    sel = model.get("selected", {})
    rows.append((data, run.name.rsplit("-s", 1)[1], val_by, sel.get("epoch"), sel.get("val_macro_f1"),
                 test.get("accuracy"), test.get("macro_f1")))
print(f"{'dataset':40s} {'seed':>4s} {'val by':>14s} {'epoch':>5s} {'val F1':>7s} {'test acc':>8s} {'test F1':>7s}")
f = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
for r in rows:
    print(f"{r[0]:40s} {r[1]:>4s} {r[2]:>14s} {f(r[3]):>5s} {f(r[4]):>7s} {f(r[5]):>8s} {f(r[6]):>7s}")
EOF
