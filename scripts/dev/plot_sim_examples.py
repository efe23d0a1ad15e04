"""Example figures of the two simulators: one row per class, time signal and time-frequency image.

    python scripts/dev/plot_sim_examples.py [--out docs/img/] [--seed 0] [--which bearing|inverter|both]

Writes ``sim_bearing.png`` and ``sim_inverter.png``. Each row is one recording of the default
dataset (same speed / fundamental level for every class, so rows are comparable): on the left a
few tens of milliseconds of the waveform, on the right the scalogram of one 2048-sample window made
with ``diag.signal.transforms`` (the CWT images the classifier sees), or a log spectrogram when that
module is not available.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import signal as sps  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from diag.simulate.bearing import simulate_bearing_recordings  # noqa: E402
from diag.simulate.inverter import simulate_inverter_recordings  # noqa: E402

WINDOW = 2048


def time_frequency(x: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray, str]:
    """``(image [H, W] with low frequencies in row 0, row centre frequencies in Hz, title)``."""
    try:
        from diag.config import TransformConfig
        from diag.signal.transforms import make_transform
    except ImportError:
        make_transform = None
    if make_transform is not None:
        cfg = TransformConfig(kind="cwt", size=[64, 128], n_scales=64, fmin=20.0)
        tf = make_transform(cfg, fs=fs, length=x.size)
        img = np.asarray(tf(x[None, None, :].astype(np.float32)), dtype=np.float64)[0, 0]
        freqs = np.asarray(tf.frequencies, dtype=float)
        if img.shape[0] != freqs.size:
            freqs = np.geomspace(freqs.min(), freqs.max(), img.shape[0])
        if not _low_frequencies_first(tf, fs, x.size, freqs):
            img = img[::-1]  # plotted with origin="lower": low frequencies at the bottom
        return img, freqs, "CWT scalogram (diag.signal.transforms)"
    f, _, S = sps.spectrogram(x, fs=fs, nperseg=256, noverlap=240)
    keep = f >= 20.0
    return 10 * np.log10(S[keep] + 1e-12 * S.max()), f[keep], "spectrogram, dB (scipy; diag.signal.transforms not found)"


def _low_frequencies_first(tf, fs: float, length: int, freqs: np.ndarray) -> bool:
    """Find the image's row order with a pure tone rather than assume it."""
    k = int(0.8 * (freqs.size - 1))
    tone = np.sin(2 * np.pi * freqs[k] * np.arange(length) / fs)[None, None, :].astype(np.float32)
    row = int(np.argmax(np.asarray(tf(tone), dtype=np.float64)[0, 0].mean(axis=1)))
    return abs(row - k) <= abs(row - (freqs.size - 1 - k))


def figure(recs, title: str, path: Path, span_s: float, channels_to_plot: int, note: str) -> None:
    n = len(recs)
    fig, axes = plt.subplots(n, 2, figsize=(12, 1.55 * n + 0.9), gridspec_kw={"width_ratios": [1.35, 1]},
                             squeeze=False)
    colors = ["tab:blue", "tab:orange", "tab:green"]
    tf_title = ""
    for row, rec in enumerate(recs):
        fs = rec.fs
        n_span = int(span_s * fs)
        start = rec.n_samples // 2
        t_ms = np.arange(n_span) / fs * 1e3
        ax = axes[row, 0]
        for c in range(min(channels_to_plot, rec.n_channels)):
            ax.plot(t_ms, rec.signal[c, start : start + n_span], lw=0.8, color=colors[c], label=rec.channels[c])
        ax.set_ylabel(rec.label, rotation=0, ha="right", va="center", fontsize=11, fontweight="bold")
        ax.tick_params(labelsize=8)
        ax.margins(x=0)
        ax.text(0.995, 0.04, f"{rec.condition}  {('severity ' + rec.fault_size) if rec.fault_size else ''}",
                transform=ax.transAxes, ha="right", va="bottom", fontsize=8, color="0.3")
        if row == 0 and channels_to_plot > 1:
            ax.legend(loc="upper left", fontsize=7, ncol=3, frameon=False)
        if row == n - 1:
            ax.set_xlabel("time (ms)")
        else:
            ax.set_xticklabels([])

        win = rec.signal[0, start : start + WINDOW]
        img, freqs, tf_title = time_frequency((win - win.mean()) / (win.std() + 1e-12), fs)
        ax = axes[row, 1]
        dur_ms = WINDOW / fs * 1e3
        if freqs.size == img.shape[0] and np.all(np.diff(freqs) > 0) and freqs[0] > 0 and tf_title.startswith("CWT"):
            # log-spaced rows: label the axis with the rows' centre frequencies
            ax.imshow(img, aspect="auto", origin="lower", cmap="magma", extent=[0, dur_ms, 0, img.shape[0]])
            ticks = [f for f in (50, 100, 200, 500, 1000, 2000, 5000) if freqs[0] <= f <= freqs[-1]]
            ax.set_yticks(np.interp(np.log(ticks), np.log(freqs), np.arange(freqs.size) + 0.5))
            ax.set_yticklabels([f"{t:g}" for t in ticks])
        else:  # linear frequency bins: draw them on a log axis, low-frequency content stays visible
            t_img = np.linspace(0, dur_ms, img.shape[1])
            ax.pcolormesh(t_img, freqs, img, cmap="magma", shading="auto", vmin=np.percentile(img, 5))
            ax.set_yscale("log")
        ax.tick_params(labelsize=8)
        ax.set_ylabel("Hz", fontsize=8)
        if row == n - 1:
            ax.set_xlabel(f"time (ms), one {WINDOW}-sample window, channel {rec.channels[0]}")
        else:
            ax.set_xticklabels([])
    axes[0, 0].set_title("waveform", fontsize=10)
    axes[0, 1].set_title(tf_title, fontsize=10)
    fig.suptitle(title, fontsize=12, fontweight="bold")
    fig.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=8, color="0.3")
    fig.tight_layout(rect=(0, 0.02, 1, 0.98))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/img/", help="output folder (default docs/img/)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--which", choices=("bearing", "inverter", "both"), default="both")
    args = ap.parse_args()
    out = Path(args.out)

    if args.which in ("bearing", "both"):
        # recording j = 4 of each class: speed level 0 (1797 rpm), the higher default severity
        recs = simulate_bearing_recordings(classes="all", recordings_per_class=5, duration=1.0, seed=args.seed)
        picked = recs[4::5]
        figure(picked, "Simulated bearing vibration (default dataset, one machine per class)",
               out / "sim_bearing.png", span_s=0.06, channels_to_plot=1,
               note="impacts at BPFO / BPFI / 2xBSF ring the structural resonances (2.5-5.5 kHz); "
                    "inner: shaft-rate modulation, ball: cage-rate modulation; noise at the machine's SNR")
    if args.which in ("both", "inverter"):
        # recording j = 3 of each class: fundamental level 50 Hz
        recs = simulate_inverter_recordings(recordings_per_class=4, duration=0.5, seed=args.seed)
        picked = recs[3::4]
        figure(picked, "Simulated inverter phase currents: normal and single open-switch faults",
               out / "sim_inverter.png", span_s=0.06, channels_to_plot=3,
               note="S1/S4 = phase A upper/lower, S3/S6 = phase B, S5/S2 = phase C; an open upper (lower) "
                    "switch removes the positive (negative) half-cycle of its phase current")


if __name__ == "__main__":
    main()
