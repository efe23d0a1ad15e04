"""Where the time of a compare run goes, phase by phase, in a fresh process and then in the same (warm) one.

Starts itself as a fresh ``spawn``-like child (``python scripts/bench/grid_phases.py --child ...``) and
reports, per run of the given grid, the seconds of: the process start (interpreter up to the first line
of this script), ``import torch``, ``import timm``, the rest of diag's imports, and inside each run:
setup (settings, run folder), dataset load (``SplitImages`` of train and val), model build (start weights,
optimiser), training epochs, validation per epoch, checkpoints, test scoring, plots, unknown calibration,
and what is left. The runs go one after another in that one process, so the first run pays the cold
costs and the others show what a persistent worker would pay. Usage:

    python scripts/bench/grid_phases.py --data runs/bench_grid/prepared --ssl runs/bench_grid/ssl \\
        --out runs/bench_grid/phases --inits imagenet,ssl,scratch --seeds 0 --epochs 1 --budget 5
"""

from __future__ import annotations

import time

T_MAIN = time.time()

import argparse
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--ssl", default="")
    p.add_argument("--out", required=True)
    p.add_argument("--inits", default="imagenet,ssl,scratch")
    p.add_argument("--seeds", default="0")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--budget", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--model", default="tf_efficientnet_lite0")
    p.add_argument("--child", type=float, default=0.0, help=argparse.SUPPRESS)
    return p.parse_args()


def _timed(table: dict[str, float], module, name: str, phase: str) -> None:
    """Wrap ``module.name`` so that its seconds add up under ``phase`` (outermost wrapped call only)."""
    fn = getattr(module, name)
    depth = [0]

    def wrapper(*a, **k):
        t0 = time.perf_counter()
        depth[0] += 1
        try:
            return fn(*a, **k)
        finally:
            depth[0] -= 1
            table[phase] += time.perf_counter() - t0
    setattr(module, name, wrapper)


def child(args: argparse.Namespace) -> None:
    cold = {"process start": T_MAIN - args.child}
    t = time.perf_counter()
    import torch
    cold["import torch"] = time.perf_counter() - t
    t = time.perf_counter()
    import timm  # noqa: F401
    cold["import timm"] = time.perf_counter() - t
    t = time.perf_counter()
    from diag.learning import session, train
    from diag.study import grid
    cold["import diag (rest)"] = time.perf_counter() - t

    table: dict[str, float] = defaultdict(float)
    _timed(table, session, "_data", "dataset load")
    _timed(table, session, "_model", "model build")
    _timed(table, train, "train_epoch", "training")
    _timed(table, train, "evaluate_split", "validation + test forward")
    _timed(table, train, "checkpoint", "checkpoints")
    _timed(table, train, "plot_curves", "plots")
    _timed(table, train, "plot_confusion", "plots")
    _timed(table, train, "calibrate_run", "unknown calibration")
    _timed(table, train, "finish_run", "finish (test, plots, calibration)")
    _timed(table, session, "start", "setup + dataset + model")

    from diag.config import CompareConfig  # noqa: F401 -- the same path compare takes
    from diag.signal.dataset import PreparedDataset

    axes = {"budgets": [args.budget], "inits": args.inits.split(","), "freezes": ["none"], "warmups": [0.1],
            "seeds": [int(s) for s in args.seeds.split(",")]}
    over = [f'train.model="{args.model}"', f"train.epochs={args.epochs}", "train.min_steps=0", 'train.device="cpu"']
    fp = PreparedDataset(args.data).manifest.get("fingerprint")
    specs = grid.expand(Path(args.out), args.data, axes, {"ssl": args.ssl}, ROOT / "configs/inverter_sim.toml",
                        over, fp, args.threads)
    rows = []
    for spec in specs:
        table.clear()
        t = time.perf_counter()
        grid.run_one(spec)
        total = time.perf_counter() - t
        row = {"run": spec.name, "total": total, **table}
        row["val + test forward"] = row.pop("validation + test forward", 0.0)
        rows.append(row)
    print(json.dumps({"cold": cold, "torch_threads": torch.get_num_threads(), "runs": rows}))


def main() -> None:
    args = _args()
    if args.child:
        return child(args)
    if Path(args.out).exists():
        sys.exit(f"{args.out} exists; give a new --out (its runs would be reused, not timed)")
    cmd = [sys.executable, __file__, *sys.argv[1:], "--child", repr(time.time())]
    res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True,
                                    env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout.splitlines()[-1])
    print("cold start of a process (paid once per process):")
    for k, v in res["cold"].items():
        print(f"  {k:<22} {v:6.2f} s")
    print(f"  {'sum':<22} {sum(res['cold'].values()):6.2f} s")
    keys = ["total", "setup + dataset + model", "dataset load", "model build", "training", "val + test forward",
            "checkpoints", "finish (test, plots, calibration)", "plots", "unknown calibration"]
    print("per run, one after another in that process (s):")
    print("| run | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for r in res["runs"]:
        print(f"| {r['run']} | " + " | ".join(f"{r.get(k, 0.0):.2f}" for k in keys) + " |")


if __name__ == "__main__":
    main()
