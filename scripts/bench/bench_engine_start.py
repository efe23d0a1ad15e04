"""Start-up + scoring time of `diag predict` per engine and ONNX cache state, in one process.

    python scripts/bench/bench_engine_start.py --run RUN REC.npy [REC2.npy ...] [--rounds 4]

Per round, interleaved: torch; ``--engine auto`` with an empty cache (exports the graph); ``--engine auto``
with the graph cached. Prints each round's loading time and the median (and all values) of loading the run
and of ``predict_file`` per recording. What decides whether ``auto`` needs a size rule (docs/speed.md).
The caches are temporary folders (``DIAG_CACHE_DIR``), removed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("recordings", type=Path, nargs="+")
    ap.add_argument("--rounds", type=int, default=4)
    a = ap.parse_args()
    warnings.filterwarnings("ignore")  # the ONNX tracer's notices, not results
    import onnxruntime  # noqa: F401 -- imported once, as one diag predict process would

    from diag.serving.predictor import Predictor

    res: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cold, warm = Path(tmp) / "cold", Path(tmp) / "warm"
        for rnd in range(a.rounds):
            for mode in ("torch", "onnx cold", "onnx warm"):
                if mode == "onnx cold":
                    shutil.rmtree(cold, ignore_errors=True)
                os.environ["DIAG_CACHE_DIR"] = str(cold if mode == "onnx cold" else warm)
                t0 = time.perf_counter()
                p = Predictor(a.run, engine="torch" if mode == "torch" else "auto")
                res.setdefault((mode, "load run"), []).append(time.perf_counter() - t0)
                for f in a.recordings:
                    t1 = time.perf_counter()
                    n = len(p.predict_file(f).windows.start)
                    res.setdefault((mode, f"{f.name} ({n} windows)"), []).append(time.perf_counter() - t1)
                print(rnd, mode, p.engine_name, getattr(p.engine, "source", "-"),
                      f"load {res[(mode, 'load run')][-1]:.2f} s, load average {os.getloadavg()[0]:.1f}", flush=True)
    for (mode, what), v in sorted(res.items()):
        print(f"{mode:10s} {what:40s} median {statistics.median(v):.3f} s  {[round(x, 3) for x in v]}")


if __name__ == "__main__":
    main()
