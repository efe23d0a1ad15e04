"""Peak memory of ``diag predict`` and ``diag prepare`` against the length of the file they read.

    python scripts/bench/bench_memory.py [--sizes 100,400] [--csv-sizes 100,400] [--prepare-sizes 25,100]

Builds a run whose preprocessing does everything that could hold a whole file (a band limit, and files
recorded at twice the model's rate so they are resampled), writes float32 .npy recordings of the given
sizes (MB) and one-column CSV recordings (``--csv-sizes`` for predict, ``--prepare-sizes`` for prepare),
and runs each command in a child process, reporting its peak resident memory (``ru_maxrss`` of the
child, as ``resource.getrusage(RUSAGE_CHILDREN)`` would see it). Goals (issue 26): predict's peak within 10 % between a
100 MB and a 400 MB file; prepare's peak proportional to the samples it keeps (float32), not to the text
(printed as the slope between the two prepare sizes: MB of peak per added MB of CSV, and per added MB of
float32 samples). ``--sizes '' --csv-sizes ''`` measures prepare alone (no run is trained).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
FS_FILE = 24000.0  # the recordings' rate; the model's is 12 kHz (resampled on the way in)

CONFIG = """
[source]
kind = "files"
path = "{data}"

[windows]
fs = 12000
length = 2048
hop = 2048
normalize = "zscore"
band = [0, 5000]

[split]
method = "time"

[transform]
kind = "cwt"
size = [32, 32]
n_scales = 32
fmin = 40.0

[train]
model = "convnext_atto"
epochs = 1
batch_size = 32
"""


def child(args: list[str]) -> tuple[float, float]:
    """Peak RSS (MB) and seconds of ``python -m diag ARGS`` in a fresh child process: the ``ru_maxrss`` of
    that child alone (``os.wait4``; ``getrusage(RUSAGE_CHILDREN)`` would give the largest of all children)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen([sys.executable, "-m", "diag", *args], cwd=ROOT, stdout=log, stderr=log,
                                env=dict(os.environ, OMP_NUM_THREADS="1"))
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            log.seek(0)
            raise SystemExit(f"diag {' '.join(args)} failed:\n{log.read()[-3000:]}")
    return usage.ru_maxrss / 1024, time.perf_counter() - t0


def tiny_run(tmp: Path) -> Path:
    """A prepared set of short recordings (labels.csv at 24 kHz) and a one-epoch run on it."""
    from diag.sources.base import Recording
    from diag.sources.files import write_recordings

    rng = np.random.default_rng(0)
    recs = [Recording(signal=(rng.standard_normal(48000) * (1 + k)).astype(np.float32)[None], fs=FS_FILE,
                      label=lab, source=f"{lab}{k}", channels=("accel",))
            for lab in ("a", "b") for k in range(2)]
    write_recordings(recs, tmp / "data")
    (tmp / "cfg.toml").write_text(CONFIG.format(data=tmp / "data"))
    subprocess.run([sys.executable, "-m", "diag", "prepare", "--config", str(tmp / "cfg.toml"), "--out",
                    str(tmp / "prep"), "-q"], cwd=ROOT, check=True)
    subprocess.run([sys.executable, "-m", "diag", "train", "--config", str(tmp / "cfg.toml"), "--data",
                    str(tmp / "prep"), "--out", str(tmp / "run"), "-q"], cwd=ROOT, check=True,
                   env=dict(os.environ, OMP_NUM_THREADS="1"))
    return tmp / "run"


def npy_file(path: Path, mb: int) -> None:
    n = mb * 2**20 // 4
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n,))
    rng = np.random.default_rng(mb)
    for a in range(0, n, 1 << 22):
        arr[a : a + (1 << 22)] = rng.standard_normal(min(1 << 22, n - a)).astype(np.float32)
    arr.flush()
    del arr


def csv_file(path: Path, mb: int) -> int:
    """A one-column CSV of about ``mb`` MB (``%.6f`` numbers); returns its number of samples."""
    rng = np.random.default_rng(mb)
    rows, written = 0, 0
    with open(path, "w") as fh:
        fh.write("accel\n")
        while written < mb * 2**20:
            x = rng.standard_normal(1 << 20)
            text = "\n".join(f"{v:.6f}" for v in x) + "\n"
            fh.write(text)
            written += len(text)
            rows += len(x)
    return rows


def predict_peak(run: Path, f: Path, tmp: Path) -> dict:
    rss, sec = child(["predict", str(run), str(f), "--fs", str(FS_FILE), "--hop", "65536", "-q",
                      "--json", str(tmp / f"{f.name}.json")])
    return {"file_mb": round(f.stat().st_size / 2**20), "peak_mb": round(rss), "seconds": round(sec, 1)}


def prepare_peak(tmp: Path, mb: int) -> dict:
    d = tmp / f"csv{mb}" / "a"
    d.mkdir(parents=True)
    n = csv_file(d / "rec.csv", mb)
    cfg = tmp / f"csv{mb}.toml"
    cfg.write_text(CONFIG.format(data=tmp / f"csv{mb}").replace('kind = "files"',
                                                               'kind = "files"\nlabel_from = "folder"\nfs = 24000')
                   .replace('method = "time"', 'method = "time"\ntest_fraction = 0.2'))
    rss, sec = child(["prepare", "--config", str(cfg), "--out", str(tmp / f"prep{mb}"), "-q"])
    return {"file_mb": mb, "samples": n, "float32_mb": round(n * 4 / 2**20, 1), "peak_mb": round(rss),
            "peak_mb_per_csv_mb": round(rss / mb, 2), "seconds": round(sec, 1)}


def spread(rows: list[dict], what: str) -> None:
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        print(f"predict peak, {a['file_mb']} MB vs {b['file_mb']} MB {what}: {a['peak_mb']} vs {b['peak_mb']} MB "
              f"({100 * (b['peak_mb'] / a['peak_mb'] - 1):+.1f} %; goal within 10 %)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100,400", help="npy file sizes for predict (MB)")
    ap.add_argument("--csv-sizes", default="100,400", help="CSV file sizes for predict (MB)")
    ap.add_argument("--prepare-sizes", default="25,100", help="CSV file sizes for prepare (MB)")
    a = ap.parse_args()
    sizes = lambda text: [int(v) for v in text.split(",") if v]  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run = tiny_run(tmp) if sizes(a.sizes) or sizes(a.csv_sizes) else None  # prepare alone needs no run
        report: dict[str, list] = {"predict_npy": [], "predict_csv": [], "prepare_csv": []}
        for mb in sizes(a.sizes):
            f = tmp / f"rec{mb}.npy"
            npy_file(f, mb)
            report["predict_npy"].append(predict_peak(run, f, tmp))
            print("predict npy", report["predict_npy"][-1], flush=True)
            f.unlink()
        for mb in sizes(a.csv_sizes):
            f = tmp / f"rec{mb}.csv"
            csv_file(f, mb)
            report["predict_csv"].append(predict_peak(run, f, tmp))
            print("predict csv", report["predict_csv"][-1], flush=True)
            f.unlink()
        for mb in sizes(a.prepare_sizes):
            report["prepare_csv"].append(prepare_peak(tmp, mb))
            print("prepare csv", report["prepare_csv"][-1], flush=True)
    print(json.dumps(report, indent=1))
    spread(report["predict_npy"], "npy")
    spread(report["predict_csv"], "CSV")
    for r in report["prepare_csv"]:
        print(f"prepare, {r['file_mb']} MB CSV ({r['float32_mb']} MB as float32): peak {r['peak_mb']} MB = "
              f"{r['peak_mb_per_csv_mb']} MB per MB of CSV")
    rows = report["prepare_csv"]
    if len(rows) >= 2:  # the slope: what each added MB of CSV costs, without the interpreter's fixed share
        a, b = rows[0], rows[-1]
        per_csv = (b["peak_mb"] - a["peak_mb"]) / (b["file_mb"] - a["file_mb"])
        per_f32 = (b["peak_mb"] - a["peak_mb"]) / (b["float32_mb"] - a["float32_mb"])
        print(f"prepare, {a['file_mb']} -> {b['file_mb']} MB CSV: +{per_csv:.2f} MB of peak per added MB of CSV "
              f"= {per_f32:.2f} x the added float32 samples")


if __name__ == "__main__":
    main()
