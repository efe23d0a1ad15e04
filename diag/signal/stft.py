"""Short-time Fourier transform on the image grid: :class:`StftBank` (torch, CPU and CUDA) and
:func:`stft_magnitude`.

STFT
----
Hann window of ``nperseg`` samples, hop ``nperseg - noverlap``, one-sided, amplitude-scaled by
``2/sum(window)`` (a tone of amplitude A gives ``|S| ~ A``). Frame ``m`` is centred on the hop
interval ``[m*hop, (m+1)*hop)`` (reflect padding at the edges), so with the defaults (hop 32 = 2048/64)
each frame is one image column. The Nyquist bin is dropped from images (bins ``0 .. nperseg/2 - 1``),
so 128-sample segments give exactly 64 rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.fft as sfft
import torch
import torch.nn.functional as F

from diag.errors import DiagError
from diag.signal.tfbase import as_signals

__all__ = ["StftBank", "stft_magnitude"]


class StftBank:
    """Hann-window STFT power on the image grid for one (length, fs, nperseg, noverlap) config."""

    def __init__(self, length: int, fs: float, nperseg: int, noverlap: int):
        self.length, self.nperseg = int(length), int(nperseg)
        self.hop = int(nperseg) - int(noverlap)
        self.n_frames = -(-self.length // self.hop)
        first = (self.hop - self.nperseg) // 2  # start of frame 0: centred on [0, hop)
        self.pad_left = max(0, -first)
        last_end = first + (self.n_frames - 1) * self.hop + self.nperseg
        self.pad_right = max(0, last_end - self.length)
        self.offset = first + self.pad_left
        self.window = np.hanning(self.nperseg + 1)[:-1] if self.nperseg > 1 else np.ones(1)  # periodic Hann
        self.scale = 2.0 / self.window.sum()
        self.freqs = sfft.rfftfreq(self.nperseg, 1.0 / fs)
        # time cells of frames in samples: [m*hop, min((m+1)*hop, N))
        self.frame_edges = np.minimum(np.arange(self.n_frames + 1) * self.hop, self.length).astype(np.float64)
        self._dev: dict[str, torch.Tensor] = {}

    def power(self, x: torch.Tensor) -> torch.Tensor:
        """``|S|^2`` float32 ``[R, n_bins, n_frames]`` (amplitude-scaled, see module docstring)."""
        key = str(x.device)
        if key not in self._dev:
            self._dev[key] = torch.as_tensor(self.window * self.scale, dtype=torch.float32, device=x.device)
        win = self._dev[key]
        if x.shape[0] == 0:
            return torch.empty(0, self.nperseg // 2 + 1, self.n_frames, dtype=torch.float32, device=x.device)
        xp = x
        if self.pad_left or self.pad_right:
            mode = "reflect" if max(self.pad_left, self.pad_right) < self.length else "constant"
            xp = F.pad(x[:, None, :], (self.pad_left, self.pad_right), mode=mode)[:, 0]
        frames = xp[:, self.offset :].unfold(-1, self.nperseg, self.hop)[:, : self.n_frames]
        spec = torch.fft.rfft(frames * win, dim=-1)  # [R, n_frames, n_bins]
        return torch.view_as_real(spec).square().sum(-1).transpose(1, 2)


def stft_magnitude(x: Any, fs: float, nperseg: int = 128, noverlap: int = 96,
                   axis: int = -1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hann-window short-time Fourier magnitude, amplitude-scaled.

    ``S[k, m] = (2/sum(w)) |sum_n w[n] x[a_m + n] exp(-2 pi i k n / nperseg)|``, ``w`` the periodic Hann
    window, hop ``h = nperseg - noverlap``, frame ``m`` centred on the samples ``[m*h, (m+1)*h)``
    (reflect padding at the edges), ``ceil(N/h)`` frames. A tone ``A cos(2 pi f t)`` at a bin frequency
    gives ``S = A`` there (Hann scalloping: 0.85 A for a tone midway between two bins).

    Returns ``(f, t, S)``: bin frequencies ``f`` (Hz, ``0 .. fs/2``), frame centre times ``t``
    (seconds), and float32 ``S`` with ``x.shape`` where the time axis becomes ``(len(f), len(t))``.
    """
    if not 0 <= noverlap < nperseg:
        raise DiagError(f"stft_magnitude: noverlap must be in [0, nperseg={nperseg}), got {noverlap}")
    sig, lead, ax = as_signals(x, "stft_magnitude", axis)
    if nperseg > sig.shape[-1]:
        raise DiagError(f"stft_magnitude: nperseg={nperseg} exceeds the {sig.shape[-1]} samples of x")
    bank = StftBank(sig.shape[-1], fs, nperseg, noverlap)
    with torch.inference_mode():
        mag = bank.power(sig).sqrt().numpy()
    t = (np.arange(bank.n_frames) * bank.hop + (bank.hop - 1) / 2) / fs
    s = np.moveaxis(mag.reshape(*lead, *mag.shape[-2:]), (-2, -1), (ax, ax + 1))
    return bank.freqs, t, s
