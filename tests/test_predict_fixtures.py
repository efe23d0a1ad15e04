"""A tiny trained run on easy synthetic recordings, built once per test session (shared by the
predict / evaluate / export tests; this module holds no tests of its own).

Classes are noisy tones whose frequency drifts a little per recording: ``low`` (~400 Hz) and
``high`` (~1500 Hz), 8 kHz, 512-sample windows, 32x32 CWT images. Tones at ~3500 Hz or white noise
are the never-seen "unknown" class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FS = 8000.0
TONES = {"low": 400.0, "high": 1500.0, "alien": 3500.0}
CLASSES = ("low", "high")
_CACHE: dict[str, Path] = {}


def tone(label: str, seconds: float, seed: int, fs: float = FS) -> np.ndarray:
    """A noisy tone of class ``label`` (float32 samples), reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * fs))
    t = np.arange(n) / fs
    f = TONES[label] * rng.uniform(0.95, 1.05)
    x = np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) * rng.uniform(0.5, 2.0)
    return (x + rng.normal(0, 0.4, n)).astype(np.float32)


def recordings(per_class: int, seconds: float, seed: int, labels=CLASSES):
    from diag.sources.base import Recording

    return [Recording(signal=tone(lab, seconds, seed * 1000 + 10 * k + j), fs=FS, label=lab,
                      source=f"{lab}_{seed}_{j}", channels=("mic",))
            for k, lab in enumerate(labels) for j in range(per_class)]


CONFIG = """
[source]
kind = "files"
path = "{data}"

[windows]
fs = {fs}
length = 512
hop = 256
normalize = "zscore"

[split]
method = "time"
test_fraction = 0.2
val_fraction = 0.2
guard_windows = 1.0

[transform]
kind = "cwt"
size = [32, 32]
n_scales = 32
fmin = 50.0
"""


def prepared(root: Path, fs: float = FS, name: str = "prepared") -> Path:
    from diag.commands.prepare import prepare
    from diag.sources.files import write_recordings

    data = root / "recordings"
    if not data.exists():
        write_recordings(recordings(3, 1.5, seed=0), data)
    cfg = root / f"{name}.toml"
    cfg.write_text(CONFIG.format(data=data, fs=fs))
    return prepare(cfg, root / name, quiet=True)


def trained_run(root: Path) -> Path:
    """The session's tiny run (trained once; later calls return the same folder)."""
    if "run" in _CACHE:
        return _CACHE["run"]
    import torch

    from diag.learning.train import TrainConfig, train

    root.mkdir(parents=True, exist_ok=True)
    data = prepared(root)
    torch.manual_seed(0)
    cfg = TrainConfig(epochs=3, batch_size=32, lr=2e-3, warmup=0.1, device="cpu", seed=0).validate()
    train(data, root / "run", cfg, quiet=True)
    _CACHE["run"] = root / "run"
    return _CACHE["run"]


# ------------------------------------------------------------------------------------------------
# A tiny run on envelope-order images: each recording carries its shaft speed (labels.csv meta rpm)

#: class -> the shaft order its envelope is modulated at (bearing-like: outer ~ BPFO, inner ~ BPFI)
ORDERS = {"outer": 3.58, "inner": 5.42}
#: recording (its group) -> rpm in labels.csv meta; outer0 runs up a speed ramp, the rest at one speed
RPM = {"outer0": [1680.0, 1920.0], "outer1": 1500.0, "outer2": 2100.0,
       "inner0": 1800.0, "inner1": 1620.0, "inner2": 1980.0}
ORDER_CONFIG = """
[source]
kind = "files"
path = "{data}"

[windows]
fs = 8000.0
length = 512
hop = 256
normalize = "zscore"

[split]
method = "group"
test_groups = ["outer0", "inner0"]
val_fraction = 0.3

[transform]
kind = "envorder"
size = [32, 32]
"""


def modulated(label: str, rpm: float | list[float], seconds: float, seed: int, fs: float = FS) -> np.ndarray:
    """Broadband noise whose envelope beats at ``ORDERS[label]`` x the shaft rate (a ramp for [start, end] rpm)."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * fs))
    lo, hi = (rpm, rpm) if np.isscalar(rpm) else rpm
    shaft_hz = (lo + (hi - lo) * (np.arange(n) + 0.5) / n) / 60.0
    phase = 2 * np.pi * ORDERS[label] * np.cumsum(shaft_hz) / fs
    x = rng.normal(0, 1, n) * (1 + 0.8 * np.cos(phase)) + rng.normal(0, 0.3, n)
    return x.astype(np.float32)


def order_run(root: Path) -> tuple[Path, Path]:
    """(run, recordings folder) of the session's tiny envorder run (trained once)."""
    if "order_run" in _CACHE:
        return _CACHE["order_run"], _CACHE["order_data"]
    import torch

    from diag.commands.prepare import prepare
    from diag.sources.base import Recording
    from diag.sources.files import write_recordings
    from diag.learning.train import TrainConfig, train

    root.mkdir(parents=True, exist_ok=True)
    data = root / "recordings"
    recs = [Recording(signal=modulated(g[:-1], rpm, 1.5, seed=k)[None], fs=FS, label=g[:-1], group=g, source=g,
                      channels=("acc",), meta={"rpm": rpm})
            for k, (g, rpm) in enumerate(RPM.items())]
    write_recordings(recs, data)
    cfg = root / "order.toml"
    cfg.write_text(ORDER_CONFIG.format(data=data))
    ds = prepare(cfg, root / "prepared", quiet=True)
    torch.manual_seed(0)
    train(ds, root / "run", TrainConfig(epochs=1, batch_size=16, device="cpu", seed=0).validate(), quiet=True)
    _CACHE["order_run"], _CACHE["order_data"] = root / "run", data
    return _CACHE["order_run"], _CACHE["order_data"]
