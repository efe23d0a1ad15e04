"""Continuous wavelet transform with the analytic Morlet: the full-resolution reference (:func:`cwt`) and
the fast banded filter bank of the images (:class:`CwtBank`, :func:`cwt_scalogram`).

CWT
---
Analytic Morlet with parameter ``w0`` (radians), L1 ("amplitude") normalisation, frequency domain::

    Psi_s(f) = 2 * exp(-0.5 * (2*pi*f*s - w0)^2)     0 < f < fs/2      (half that at f = fs/2)
    Psi_s(f) = 0                                     f <= 0
    W(s, t)  = IDFT_k[ X(f_k) * Psi_s(f_k) ](t)      (f_k = DFT bin frequencies, Hz)

equivalently ``W(s, t) = int x(tau) (1/s) psi*((tau - t)/s) dtau`` with
``psi(t) = sqrt(2/pi) exp(i w0 t - t^2/2)`` (analytic part). ``s`` is the scale in seconds; the centre
(peak) frequency is exactly ``f = w0 / (2*pi*s)`` Hz, the Gaussian's standard deviation is ``f/w0`` Hz
in frequency and ``s`` seconds in time. A tone ``A*cos(2*pi*f*t)`` gives ``|W| = A`` at its own scale,
so a tone peaks in the row whose centre frequency is ``f`` whatever the scale.

PyWavelets equivalent: ``'cmor2.0-C'`` with ``C = w0/(2*pi)`` (0.9549 for w0 = 6), pywt scale
``a = s*fs`` samples; ``|pywt| = |W| * sqrt(a)/2`` (pywt uses L2-style ``1/sqrt(a)`` normalisation).
No admissibility correction term is applied (as in pywt's ``cmor``); it is below 1.5e-8 for w0 = 6.

Edges: the window is extended symmetrically (``x[0..N-1], x[N-1..0]``, period 2N) before the FFT, so
the circular convolution sees no jump at the edges; the lowest rows still see mirrored signal within
about ``3*s`` seconds of either edge (cone of influence).

Fast path (``Transform``, :func:`cwt_scalogram`)
------------------------------------------------
``Psi_s`` is a Gaussian band: outside ``f*(1 -/+ SUPPORT_SIGMAS/w0)`` its gain is below
``exp(-SUPPORT_SIGMAS^2/2)`` (3.4e-4 for 4 sigma), so each scale only needs the ``M`` DFT bins of its
band. An inverse DFT of length ``L >= M`` over those bins gives the CWT *exactly* (up to the
truncated tails) at ``L`` equally spaced times -- a decimated but alias-free output, with an
irrelevant phase rotation. ``L`` is chosen per scale as ``2 * W_img * r`` (``r`` = samples per image
column, at least ``MIN_SAMPLES_PER_COLUMN``), the sample times are shifted (a phase ramp folded into
the filter) so every column's samples are centred in it, and scales sharing ``L`` form one batched
FFT. The filter bank is built once per configuration (and device) and applied to every batch. The
mean power per column then agrees with the full-resolution computation pooled by
:func:`diag.signal.pixels.resize_area` to a few percent of each row's maximum (tested to 5 %; the difference is the
coarser quadrature of the column mean, not aliasing).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import scipy.fft as sfft
import torch
import torch.nn.functional as F

from diag.errors import DiagError
from diag.signal.tfbase import CHUNK_BYTES, as_signals, check_real_array, next_5_smooth

#: default ``fmax`` as a fraction of ``fs`` when the config says 0
FMAX_FRACTION = 0.45
#: half-width of each CWT band in Gaussian standard deviations (gain at the edge exp(-8) = 3.4e-4)
SUPPORT_SIGMAS = 4.0
#: minimum CWT samples per image column in the fast path
MIN_SAMPLES_PER_COLUMN = 2

__all__ = ["FMAX_FRACTION", "SUPPORT_SIGMAS", "MIN_SAMPLES_PER_COLUMN", "cwt_frequencies", "frequency_to_scale",
           "scale_to_frequency", "pywt_wavelet_name", "morlet_filter_bank", "check_freqs", "cwt", "CwtBank",
           "cwt_scalogram"]


def cwt_frequencies(fs: float, fmin: float, fmax: float = 0.0, n: int = 64) -> np.ndarray:
    """``n`` log-spaced CWT centre frequencies in Hz, ascending: ``fmin * (fmax/fmin)**(i/(n-1))``.

    ``fmax = 0`` means ``FMAX_FRACTION * fs`` (0.45 fs). ``fmax`` must stay below the Nyquist
    frequency ``fs/2`` and above ``fmin``; otherwise :class:`DiagError`.
    """
    fmax_eff = FMAX_FRACTION * fs if not fmax else float(fmax)
    if not fs > 0:
        raise DiagError(f"transform: sampling rate must be > 0 Hz, got {fs}")
    if not 0 < fmin < fmax_eff:
        raise DiagError(f"transform.fmin: must be in (0, fmax={fmax_eff:g}) Hz, got {fmin}")
    if fmax_eff >= fs / 2:
        raise DiagError(
            f"transform.fmax: must be below the Nyquist frequency fs/2 = {fs / 2:g} Hz, got {fmax_eff:g} "
            f"(0 means {FMAX_FRACTION} * fs)"
        )
    if n < 2:
        raise DiagError(f"transform.n_scales: must be >= 2, got {n}")
    return np.geomspace(float(fmin), fmax_eff, int(n))


def frequency_to_scale(freqs: Any, w0: float = 6.0, fs: float | None = None) -> np.ndarray:
    """Morlet scale of centre frequency ``f`` (Hz): ``s = w0 / (2*pi*f)`` seconds, or ``s*fs`` samples
    if ``fs`` is given (the scale to pass to ``pywt.cwt`` with :func:`pywt_wavelet_name`)."""
    f = np.asarray(freqs, dtype=np.float64)
    s = w0 / (2 * np.pi * f)
    return s * fs if fs is not None else s


def scale_to_frequency(scales: Any, w0: float = 6.0, fs: float | None = None) -> np.ndarray:
    """Centre frequency (Hz) of Morlet scale ``s``: ``f = w0 / (2*pi*s)`` with ``s`` in seconds, or in
    samples if ``fs`` is given (then ``f = w0*fs / (2*pi*s)``). Inverse of :func:`frequency_to_scale`."""
    s = np.asarray(scales, dtype=np.float64)
    if fs is not None:
        s = s / fs
    return w0 / (2 * np.pi * s)


def pywt_wavelet_name(w0: float = 6.0) -> str:
    """PyWavelets complex-Morlet name with the same shape as diag's Morlet: ``cmor2.0-{w0/(2 pi)}``.

    pywt's ``cmorB-C`` is ``exp(-t^2/B) exp(i 2 pi C t) / sqrt(pi B)``; B = 2 gives the unit-variance
    Gaussian envelope and ``2 pi C = w0`` the same carrier. At pywt scale ``a = s*fs`` samples,
    ``|pywt| = |W| * sqrt(a)/2 * sinc(f/fs)``: ``sqrt(a)`` from pywt's L2-style normalisation, and
    ``sinc(f/fs)`` (0.83 at fs/3) because pywt differences the integrated wavelet, a one-sample box
    filter. pywt also samples its wavelet on ``2**precision`` points, which is coarse at small scales
    (use ``precision=16`` to compare), and the frequencies it returns come from a numerically estimated
    centre frequency (0.9375 instead of 0.9549 for w0 = 6, i.e. 1.8 % low): use the scales.
    """
    return f"cmor2.0-{w0 / (2 * np.pi):.12g}"


def morlet_filter_bank(n: int, fs: float, freqs: Any, w0: float = 6.0) -> np.ndarray:
    """Analytic Morlet frequency responses on the ``n``-point DFT grid, float64 ``[len(freqs), n]``.

    Bin ``k`` has frequency ``f_k = scipy.fft.fftfreq(n, 1/fs)[k]`` Hz; for centre frequency ``fc``
    (scale ``s = w0/(2 pi fc)`` seconds)::

        Psi(f_k) = 2 exp(-0.5 (2 pi f_k s - w0)^2)   for 0 < f_k < fs/2,
                   exp(-0.5 (2 pi f_k s - w0)^2)     at f_k = fs/2 (even n),   0 for f_k <= 0.

    Peak 2 at ``f_k = fc`` (L1 / amplitude normalisation, see the module docstring).
    """
    if n < 2:
        raise DiagError(f"morlet_filter_bank: n must be >= 2 samples, got {n}")
    fc = np.atleast_1d(np.asarray(freqs, dtype=np.float64))
    s = frequency_to_scale(fc, w0)
    fk = sfft.fftfreq(int(n), 1.0 / fs)
    bank = 2.0 * np.exp(-0.5 * (2 * np.pi * fk[None, :] * s[:, None] - w0) ** 2)
    bank[:, fk <= 0] = 0.0
    if n % 2 == 0:  # fftfreq puts the Nyquist bin at -fs/2: give it the positive-frequency half weight
        bank[:, n // 2] = 0.5 * 2.0 * np.exp(-0.5 * (2 * np.pi * (fs / 2) * s - w0) ** 2)
    return bank


def check_freqs(freqs: Any, fs: float, name: str) -> np.ndarray:
    f = np.atleast_1d(np.asarray(freqs, dtype=np.float64))
    if f.ndim != 1 or f.size == 0:
        raise DiagError(f"{name}: freqs must be a non-empty 1-D array of Hz, got shape {f.shape}")
    if not fs > 0:
        raise DiagError(f"{name}: fs must be > 0 Hz, got {fs}")
    if not ((f > 0) & (f < fs / 2)).all():
        raise DiagError(f"{name}: every frequency must be in (0, fs/2 = {fs / 2:g}) Hz; got {f.min():g}..{f.max():g}")
    return f


def cwt(x: Any, fs: float, freqs: Any, w0: float = 6.0, axis: int = -1, pad: str = "symmetric") -> np.ndarray:
    """Continuous wavelet transform with the analytic Morlet, full time resolution.

    ``W(s, t) = IDFT_k[ X(f_k) Psi_s(f_k) ](t)`` with ``Psi_s`` from :func:`morlet_filter_bank` and
    ``s = w0/(2 pi f)`` for each centre frequency ``f`` in ``freqs`` (Hz). A tone ``A cos(2 pi f t)``
    gives ``|W| = A`` at its own scale.

    Parameters
    ----------
    x : array ``[..., N, ...]``, real; ``axis`` is time (samples at ``fs`` Hz).
    fs : sampling rate, Hz.
    freqs : centre frequencies, Hz, each in ``(0, fs/2)``; any order (output rows follow it).
    w0 : Morlet parameter (radians): ``w0/(2 pi)`` carrier cycles per Gaussian standard deviation ``s``.
    pad : edge handling before the FFT: ``"symmetric"`` (default; ``x`` then ``x`` reversed, period 2N,
        no jump at the edges -- what :class:`Transform` uses), ``"periodic"`` (no padding, circular),
        ``"zero"`` (zeros to at least 2N: linear convolution, like ``pywt.cwt(method="fft")``).

    Returns
    -------
    complex ndarray, ``x.shape`` with a scales axis of ``len(freqs)`` inserted before the time axis;
    complex64 for float32 input, else complex128. This is the plain full-resolution reference
    (memory ``len(freqs) * 2N`` complex values per signal); images use :func:`cwt_scalogram`'s fast path.
    """
    x, ax = check_real_array(x, "cwt", axis)
    f = check_freqs(freqs, fs, "cwt")
    xm = np.moveaxis(x, ax, -1)
    n = xm.shape[-1]
    if pad == "symmetric":
        ext, p = np.concatenate([xm, xm[..., ::-1]], axis=-1), 2 * n
    elif pad == "periodic":
        ext, p = xm, n
    elif pad == "zero":
        p = sfft.next_fast_len(2 * n)
        ext = xm
    else:
        raise DiagError(f"cwt: pad must be 'symmetric', 'periodic' or 'zero', got {pad!r}")
    spec = sfft.fft(ext, n=p, axis=-1)
    bank = morlet_filter_bank(p, fs, f, w0)
    out = sfft.ifft(spec[..., None, :] * bank, axis=-1)[..., :n]
    out = out.astype(np.complex64 if x.dtype == np.float32 else np.complex128, copy=False)
    return np.moveaxis(out, (-2, -1), (ax, ax + 1))


class CwtBank:
    """The banded CWT filter bank for one (length, fs, freqs, w0, n_cols) configuration.

    Built once in float64 NumPy; moved to each device on first use and cached there.
    """

    def __init__(self, length: int, fs: float, freqs: np.ndarray, w0: float, n_cols: int,
                 support: float = SUPPORT_SIGMAS, min_per_col: int = MIN_SAMPLES_PER_COLUMN):
        n, p = int(length), 2 * int(length)  # symmetric extension: period 2N
        self.length, self.n_cols, self.n_freqs = n, int(n_cols), len(freqs)
        df = fs / p
        d = n / self.n_cols  # samples per image column
        s = frequency_to_scale(freqs, w0)
        plan: dict[int, list[tuple[int, np.ndarray, int]]] = {}
        for i, fc in enumerate(freqs):
            k_lo = max(1, math.ceil(fc * (1 - support / w0) / df))
            k_hi = min(p // 2, math.floor(fc * (1 + support / w0) / df))
            if k_hi < k_lo:  # band narrower than one bin: keep the nearest bin
                k_lo = k_hi = int(np.clip(round(fc / df), 1, p // 2))
            m = k_hi - k_lo + 1
            r = next_5_smooth(max(int(min_per_col), math.ceil(m / (2 * self.n_cols))))
            big_l = 2 * self.n_cols * r
            k = np.arange(k_lo, k_hi + 1)
            gain = 2.0 * np.exp(-0.5 * (2 * np.pi * k * df * s[i] - w0) ** 2)
            gain[k == p // 2] *= 0.5
            delta = d / (2 * r) - 0.5  # centre the r samples of each column (samples)
            filt = np.zeros(big_l, np.complex128)
            # ifft(norm="forward") is an unscaled sum: fold the 1/P of the length-P inverse DFT in here
            filt[:m] = gain * np.exp(2j * np.pi * k * delta / p) / p
            plan.setdefault(big_l, []).append((i, filt, k_lo))
        self.groups = []
        for big_l, items in sorted(plan.items()):
            rows = np.array([it[0] for it in items], np.int64)
            filt = np.stack([it[1] for it in items])
            k0 = np.array([it[2] for it in items], np.int64)
            self.groups.append((big_l, big_l // (2 * self.n_cols), rows, k0, filt))
        self.pad = max(g[0] for g in self.groups)
        self.work_per_signal = 8 * ((n + 1 + self.pad) + 3 * max(len(g[2]) * g[0] for g in self.groups))
        self.total_bins = int(sum(len(g[2]) * g[0] for g in self.groups))
        self._dev: dict[str, list] = {}

    def _on(self, device: torch.device) -> list:
        key = str(device)
        if key not in self._dev:
            self._dev[key] = [
                (big_l, r, torch.as_tensor(rows, device=device), torch.as_tensor(k0, device=device),
                 torch.as_tensor(filt, dtype=torch.complex64, device=device),
                 torch.full((2 * r, 1), 1.0 / r, dtype=torch.float32, device=device))
                for big_l, r, rows, k0, filt in self.groups
            ]
        return self._dev[key]

    def power(self, x: torch.Tensor) -> torch.Tensor:
        """Mean CWT power per image column: float32 ``[R, n_freqs, n_cols]`` from ``x`` ``[R, N]``."""
        nr = x.shape[0]
        out = torch.empty(nr, self.n_freqs, self.n_cols, dtype=torch.float32, device=x.device)
        if nr == 0:
            return out
        spec = torch.fft.rfft(torch.cat([x, x.flip(-1)], dim=-1), dim=-1)  # bins 0..N of period 2N
        spec = F.pad(spec, (0, self.pad))
        for big_l, r, rows, k0, filt, mean_r in self._on(x.device):
            y = spec.unfold(-1, big_l, 1)[:, k0]  # [R, n_g, L]: bins k0 .. k0+L-1 of each scale
            y.mul_(filt)
            z = torch.fft.ifft(y, dim=-1, norm="forward")  # CWT at t = m*2N/L + delta (phase-rotated)
            # first half = times [0, N); per column: r complex samples = 2r reals; mean of re^2 + im^2
            v = torch.view_as_real(z)[:, :, : big_l // 2].reshape(nr, len(rows), self.n_cols, 2 * r)
            out[:, rows] = (v.square() @ mean_r).squeeze(-1)  # a matmul beats .sum(-1) over tiny 2r
        return out


@functools.lru_cache(maxsize=16)
def _cached_cwt_bank(length: int, fs: float, freqs: tuple, w0: float, n_cols: int, support: float,
                     min_per_col: int) -> CwtBank:
    return CwtBank(length, fs, np.asarray(freqs), w0, n_cols, support, min_per_col)


def cwt_scalogram(x: Any, fs: float, freqs: Any, n_cols: int, w0: float = 6.0, axis: int = -1,
                  support: float = SUPPORT_SIGMAS, min_per_col: int = MIN_SAMPLES_PER_COLUMN) -> np.ndarray:
    """RMS CWT magnitude per image column, computed with the fast banded filter bank.

    ``out[..., i, j] = sqrt(mean_{t in column j} |W(s_i, t)|^2)``, column ``j`` covering samples
    ``[j*N/n_cols, (j+1)*N/n_cols)``; ``W`` as in :func:`cwt` with ``pad="symmetric"``. Each scale is
    evaluated at ``r >= min_per_col`` centred instants per column from its band of DFT bins
    (``fc*(1 -/+ support/w0)``), see the module docstring. Agrees with
    ``sqrt(resize_area(abs(cwt(x, ...))**2, (len(freqs), n_cols)))`` to a few percent of each row's
    maximum; a large ``min_per_col`` (``>= N/n_cols``) makes it exact up to the truncated tails.

    Returns float32, ``x.shape`` with the time axis replaced by ``(len(freqs), n_cols)``.
    """
    sig, lead, ax = as_signals(x, "cwt_scalogram", axis)
    f = check_freqs(freqs, fs, "cwt_scalogram")
    if n_cols < 1:
        raise DiagError(f"cwt_scalogram: n_cols must be >= 1, got {n_cols}")
    bank = _cached_cwt_bank(sig.shape[-1], float(fs), tuple(f.tolist()), float(w0), int(n_cols),
                            float(support), int(min_per_col))
    chunk = max(1, CHUNK_BYTES // bank.work_per_signal)
    with torch.inference_mode():
        p = torch.cat([bank.power(sig[a : a + chunk]) for a in range(0, len(sig), chunk)] or [bank.power(sig)])
    out = p.sqrt().numpy().reshape(*lead, len(f), n_cols)
    return np.moveaxis(out, (-2, -1), (ax, ax + 1))
