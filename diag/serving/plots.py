"""``diag predict --plot DIR``: one PNG per file -- waveform, scalogram, class probabilities over time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

MAX_POINTS = 20_000  # waveform points drawn (min/max envelope beyond that)
MAX_IMAGES = 400  # windows whose images make up the scalogram strip


def plot_result(pred: Any, res: Any, path: str | Path) -> None:
    """Three stacked panels sharing the time axis (seconds of the recording at the model's rate).

    The scalogram strip is the model's own images (first channel) of non-overlapping windows, side by
    side; windows flagged unknown are shaded grey in the probability panel.
    """
    from matplotlib.figure import Figure

    from diag.errors import DiagError
    from diag.learning.evaluate import save_figure
    from diag.signal.preprocessing import Reference

    path = Path(path)
    pre = pred.pre
    try:
        sig = pred.open(res.path, res.fs_original)
        idx = pre.select_channels(sig, res.channels or None)[0]
        ch = idx[0]
    except DiagError:  # e.g. an array given to the API, or a file that needed --key / --variable
        sig, ch = None, 0
    fig = Figure(figsize=(11, 7.5), layout="constrained")
    ax1, ax2, ax3 = fig.subplots(3, 1, sharex=True, height_ratios=[1, 1.3, 1.3])
    L, fs = pred.length, res.fs
    if sig is not None:
        n = min(sig.n_samples, 2_000_000)
        x = np.asarray(sig.read(0, n), dtype=np.float64)[ch]
        t_end = n / sig.fs
        if len(x) > MAX_POINTS:
            k = len(x) // (MAX_POINTS // 2)
            m = len(x) // k * k
            blocks = x[:m].reshape(-1, k)
            tt = (np.arange(len(blocks)) * k + k / 2) / sig.fs
            ax1.fill_between(tt, blocks.min(1), blocks.max(1), lw=0, color="C0")
        else:
            ax1.plot(np.arange(len(x)) / sig.fs, x, lw=0.5)
        ax1.set_xlim(0, max(t_end, res.duration_s))
        ax1.set_ylabel(f"{sig.channels[ch]}")
        # scalogram strip: the model's images of windows spaced one window apart
        transform = pre.transformer()
        if abs(sig.fs - fs) <= 1e-9 * fs:
            ready = pre.ready(sig, idx)
            starts = pre.starts(ready.n_samples, L)[:MAX_IMAGES]
            if len(starts):
                # order images: each window's reference rate, as scored
                ref = Reference(tuple(res.ref_hz)) if res.ref_hz else None
                img = np.concatenate([im[:, 0] for _, im in pre.stream_images(ready, starts, ref)])  # [n, H, W]
                strip = np.concatenate(list(img), axis=1)
                fr = transform.frequencies
                ax2.imshow(strip, aspect="auto", origin="lower", cmap="magma",
                           extent=(0, (int(starts[-1]) + L) / fs, 0, len(fr)))
                ticks = np.linspace(0, len(fr) - 1, 5).astype(int)
                ax2.set_yticks(ticks + 0.5, labels=[f"{fr[i]:.3g}" if transform.row_units == "order"
                                              else f"{fr[i]:.0f}" for i in ticks])
        else:
            ax2.text(0.5, 0.5, "scalogram shown only at the model's sampling rate", ha="center",
                     transform=ax2.transAxes)
    ax2.set_ylabel(("order" if pre.transformer().row_units == "order" else "frequency (Hz)")
                   + ("\n(positive half-wave)" if pre.transform.polarity else ""))
    ax1.set_title(f"{Path(res.path).name}: {res.verdict} ({res.confidence:.2f}); "
                  f"{100 * res.unknown_share:.0f} % of windows unknown")
    centres = (res.windows.start + L / 2) / fs
    for k, c in enumerate(pred.classes):
        ax3.plot(centres, res.windows.probs[:, k], lw=1.2, label=c)
    half = pred.hop / fs / 2
    for c0, u in zip(centres, res.windows.unknown):
        if u:
            ax3.axvspan(c0 - half, c0 + half, color="grey", alpha=0.3, lw=0)
    ax3.set_ylim(-0.02, 1.02)
    ax3.set_ylabel("probability")
    ax3.set_xlabel("time (s)")
    ax3.legend(loc="upper right", fontsize=8, ncol=min(len(pred.classes), 5),
               title="grey: unknown windows" if res.windows.unknown.any() else None)
    save_figure(fig, path)
