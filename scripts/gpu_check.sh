#!/usr/bin/env bash
# The CUDA checks, in one run on a GPU machine that has torch/timm but not this package installed:
#   CUDA tests (AMP bf16/fp16, channels_last, GPU-resident data, GPU transforms, pretraining),
#   the transform and training benchmarks on the GPU, and the demo (simulate -> prepare -> BYOL ->
#   fine-tune scratch/ssl over 3 seeds) timed end to end. Logs go to $OUT (or runs/gpu_check).
# Usage: bash scripts/gpu_check.sh      (wheels for missing packages, if any, in .whl/)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_check}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 MPLBACKEND=Agg
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, timm, numpy; print('torch', torch.__version__, 'timm', timm.__version__, 'numpy', numpy.__version__)" | tee -a "$OUT/gpu.txt"

echo "== CUDA tests"
python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_envorder.py "tests/test_transforms.py::test_cuda_path_matches_cpu" 2>&1 | tee "$OUT/pytest_cuda.log"

echo "== transforms benchmark"
python3 scripts/bench/bench_transforms.py --threads 16 2>&1 | tee "$OUT/bench_transforms.log"

echo "== training benchmark (convnext_atto, 64x64)"
python3 scripts/bench/bench_train.py --device cuda 2>&1 | tee "$OUT/bench_train.log"

echo "== scoring benchmark (diag predict end to end vs bare forward)"
python3 scripts/bench/bench_predict.py --device cuda 2>&1 | tee "$OUT/bench_predict.log"

echo "== demo on the GPU"
D=/tmp/gpu_demo
t0=$(date +%s)
python3 -m diag prepare --config configs/bearing_sim.toml --out $D/prepared 2>&1 | tail -3
t1=$(date +%s)
python3 -m diag pretrain --config configs/bearing_sim.toml --data $D/prepared --out $D/ssl 2>&1 | tail -12
t2=$(date +%s)
python3 -m diag compare --config configs/bearing_sim.toml --data $D/prepared --out $D/compare \
  --inits scratch,ssl --seeds 0,1,2 --ssl-weights $D/ssl 2>&1 | tail -25
t3=$(date +%s)
echo "demo seconds: prepare $((t1 - t0)), pretrain $((t2 - t1)), compare (2 starts x 3 seeds) $((t3 - t2))" | tee "$OUT/demo_times.txt"
cp $D/compare/summary.md "$OUT/demo_summary.md" 2>/dev/null
cp $D/ssl/pretrain.json "$OUT/demo_pretrain.json" 2>/dev/null
cp $D/compare/runs.csv "$OUT/demo_runs.csv" 2>/dev/null
