"""Fingerprint diag's observable behaviour through its command line, to prove a refactor changes nothing.

Runs a fixed set of small cases (prepare -> train -> predict) with the `diag` CLI of the checkout it is
run from and prints one JSON document: sha256 of every prepared image array and meta table, of every
trained run's weights, its test metrics, and the predict JSON of fixed files (timings removed).
Compare two checkouts by running it in each and diffing the output:

    python scripts/dev/behaviour_fingerprint.py OUT_DIR > before.json   # at the old commit
    python scripts/dev/behaviour_fingerprint.py OUT_DIR > after.json    # at the new one
    diff before.json after.json

Same machine and thread count required (CPU float results differ between machines). One torch thread.
Takes about 3 minutes on a 2-core CPU.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CWRU = ROOT.parent / "shared" / "data" / "cwru12k"

# name -> (config, prepare overrides, simulate command for predict input or None)
CASES = {
    "inverter-polarity": ("configs/inverter_sim.toml",
                          ["--set", "source.recordings_per_class=4", "--set", "source.duration=1.0",
                           "--set", "windows.hop=2048", "--split", "condition",
                           "--set", 'split.test_conditions=["50Hz"]'],
                          ["inverter", "--set", "seed=7", "--set", "recordings_per_class=1", "--set", "duration=0.6"]),
    "bearing-envorder": ("configs/bearing_sim.toml",
                         ["--split", "time", "--set", "source.recordings_per_class=4", "--set", "source.duration=2.0",
                          "--set", 'transform.kind="envorder"', "--set", "windows.hop=2048"],
                         ["bearing", "--set", "seed=11", "--set", "recordings_per_class=1", "--set", "duration=1.0"]),
    "bearing-dataset-norm": ("configs/bearing_sim.toml",
                             ["--split", "time", "--set", "source.recordings_per_class=2", "--set", "source.duration=2.0",
                              "--set", 'windows.normalize="dataset"', "--set", 'transform.kind="stft"',
                              "--set", "windows.hop=2048", "--set", "windows.fs=10000",
                              "--set", "windows.band=[0, 4000]"],
                             ["bearing", "--set", "seed=12", "--set", "recordings_per_class=1", "--set", "duration=1.0"]),
}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def diag(*args: str) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    res = subprocess.run([sys.executable, "-m", "diag", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"diag {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}")


def scrub(obj, out: str):
    """The predict JSON without what changes from run to run (timings, the output folder's path) and the
    model description (its wording may change); the files' results are what is compared."""
    if isinstance(obj, dict):
        return {k: scrub(v, out) for k, v in obj.items() if k not in ("seconds", "created", "run", "windows_per_s")}
    if isinstance(obj, list):
        return [scrub(v, out) for v in obj]
    if isinstance(obj, float):
        return round(obj, 6)
    if isinstance(obj, str):
        return obj.replace(out, "OUT")
    return obj


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    result = {}
    cases = dict(CASES)
    if CWRU.is_dir():
        cases["cwru-band"] = ("configs/cwru.toml", ["--data", str(CWRU), "--set", "windows.hop=8192"], None)
    for name, (config, sets, sim) in cases.items():
        prep, run = out / f"{name}-prep", out / f"{name}-run"
        diag("prepare", "--config", config, "--out", str(prep), "-q", *sets, "--force")
        entry = {"arrays": {p.name: sha(p) for p in sorted(prep.glob("*.npy")) + sorted(prep.glob("*.csv"))}}
        diag("train", "--config", config, "--data", str(prep), "--out", str(run), "-q", "--force",
             "--set", "train.epochs=2", "--set", "train.min_steps=0", "--set", "train.batch_size=32")
        entry["weights"] = sha(run / "model.safetensors")
        tm = json.loads((run / "test_metrics.json").read_text())
        entry["test"] = {k: round(tm[k], 6) for k in ("accuracy", "macro_f1") if k in tm}
        if sim:
            new = out / f"{name}-new"
            if not new.exists():
                diag("simulate", *sim[:1], "--out", str(new), *sim[1:])
            js = out / f"{name}-predict.json"
            fs = "10000" if sim[0] == "inverter" else "12000"
            diag("predict", str(run), str(new), "--fs", fs, "--json", str(js), "-q", "--force")
            files = scrub(json.loads(js.read_text())["files"], str(out))
            entry["predict"] = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]
            entry["verdicts"] = [f["verdict"] for f in json.loads(js.read_text())["files"]]
        result[name] = entry
    print(json.dumps(result, indent=1, sort_keys=True))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/diag-fingerprint"))
