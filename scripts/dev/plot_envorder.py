#!/usr/bin/env python
"""docs/img/envorder_speeds.png: CWT vs envorder images of a simulated outer-race fault at three speeds."""

import sys
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import matplotlib.pyplot as plt  # noqa: E402

from diag.config import TransformConfig  # noqa: E402
from diag.simulate.bearing import simulate_bearing  # noqa: E402
from diag.signal.transforms import make_transform  # noqa: E402

tf_c = make_transform(TransformConfig(kind="cwt"), 12000, 2048)
tf_e = make_transform(TransformConfig(kind="envorder"), 12000, 2048)
fig, ax = plt.subplots(2, 3, figsize=(10, 6.2), constrained_layout=True)
o = tf_e.row_orders["envorder"]
for j, rpm in enumerate((900, 1750, 2600)):
    x, info = simulate_bearing(fault="outer", rpm=rpm, duration=0.5, snr_db=0.0, seed=j + 1)
    w = x[None, None, 1000:3048].astype(np.float32)
    c = tf_c(w)[0, 0]; e = tf_e(w, ref_hz=rpm / 60)[0, 0]
    f = tf_c.frequencies
    ax[0, j].imshow(c, origin="lower", aspect="auto", extent=[0, 2048 / 12, 0, 63])
    ax[0, j].set_yticks([0, 21, 42, 63], [f"{f[i]:.0f}" for i in (0, 21, 42, 63)])
    ax[0, j].set_title(f"outer race, {rpm} rpm: CWT"); ax[0, j].set_xlabel("ms"); ax[0, j].set_ylabel("Hz")
    ax[1, j].imshow(e, origin="lower", aspect="auto", extent=[0, 64, o[0] - (o[1] - o[0]) / 2, o[-1] + (o[1] - o[0]) / 2])
    ax[1, j].axhline(info["orders"]["bpfo"], color="w", ls=":", lw=0.8)
    ax[1, j].set_title(f"envorder, BPFO {info['orders']['bpfo']:.2f} dotted"); ax[1, j].set_xlabel("column (repeated)"); ax[1, j].set_ylabel("shaft order")
fig.savefig(Path(__file__).resolve().parents[2] / "docs/img/envorder_speeds.png", dpi=80)
