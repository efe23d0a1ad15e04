"""Time-frequency images: batched analytic-Morlet CWT and STFT filter banks, dB scaling, area resizing.

Image layout (what the CNN sees)
--------------------------------
``Transform(x)`` maps windows ``x`` float32 ``[B, C, W]`` to images float32 ``[B, C*k, H, W_img]``:

* **rows = frequency, ascending**: row 0 is the *lowest* frequency (plot with ``origin="lower"``);
  ``Transform.frequencies[i]`` is the centre frequency of row ``i`` in Hz. CWT rows are log-spaced,
  STFT rows are linear from 0 Hz to ``fs/2``.
* **columns = time**: column ``j`` summarises samples ``[j*W/W_img, (j+1)*W/W_img)`` of the window.
* **channels, input-major**: output channel ``c*k + j`` is representation ``j`` (``cwt`` then ``stft``
  for ``cwt+stft``, ``k = 2``) of input channel ``c``; input channel order is kept.

Pixel values
------------
1. Power ``|W(s, t)|^2`` (CWT) or ``|S(f, t)|^2`` (STFT) is **area-averaged** onto the pixel grid (the
   mean power of the samples each pixel covers: no sample dropping, no aliasing stripes).
2. ``log = true``: ``10*log10`` of that mean power, i.e. dB re 1 (unit of x)^2 -- equivalently
   ``20*log10`` of the RMS magnitude. Floor: ``TOP_DB`` = 80 dB below the maximum of each image and
   channel (and an absolute floor ``AMIN_POWER``), so silence gives a flat image, not ``-inf``.
   ``log = false``: the RMS magnitude ``sqrt(mean power)`` in units of x.
3. ``norm = "image"``: each image and channel to zero mean, unit standard deviation (a constant image
   becomes all zeros). ``"image-joint"``: one mean and standard deviation over all channels of a
   window's image (per transform kind), so a channel that is 3 dB above another stays 3 dB above
   it. ``"none"`` keeps dB (or linear) values. ``"auto"`` (default): ``image`` for one input channel,
   ``image-joint`` for several (``diag prepare`` stores the resolved value).

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
:func:`resize_area` to a few percent of each row's maximum (tested to 5 %; the difference is the
coarser quadrature of the column mean, not aliasing).

STFT
----
Hann window of ``nperseg`` samples, hop ``nperseg - noverlap``, one-sided, amplitude-scaled by
``2/sum(window)`` (a tone of amplitude A gives ``|S| ~ A``). Frame ``m`` is centred on the hop
interval ``[m*hop, (m+1)*hop)`` (reflect padding at the edges), so with the defaults (hop 32 = 2048/64)
each frame is one image column. The Nyquist bin is dropped from images (bins ``0 .. nperseg/2 - 1``),
so 128-sample segments give exactly 64 rows.

Order images (``envorder``, ``harmonics``)
------------------------------------------
Rows are **orders** of a reference rate ``r`` Hz given per window (``Transform(x, ref_hz=...)``: the
shaft rate for ``envorder``, the electrical fundamental for ``harmonics``; see :func:`reference_hz`):
row ``i`` is the cell ``[o_i, o_{i+1})`` of ``H`` equal cells from ``order_min`` to ``order_max`` and
holds the mean spectral power over the frequencies ``[o_i r, o_{i+1} r)`` (cumulative-sum
interpolation of a 4x zero-padded spectrum), so a line at ``k r`` Hz sits in the same row at every
speed.

* ``envorder``: for each demodulation band ``[fc - B/2, fc + B/2]`` (ideal band-pass on the window's
  DFT bins), the analytic band signal ``z(t)`` (inverse DFT of those bins, ``L >= 2M`` samples for
  ``M`` bins: the squared envelope does not alias), its squared envelope ``e = |z|^2``, and the
  squared-envelope spectrum ``|DFT(hann * (e - mean e))|^2 / (mean e)^2`` (modulation depth squared:
  the resonance's energy cancels, only how strongly it is modulated at ``alpha`` Hz stays).
  ``env_mode = "bands"``: column ``j`` is band ``j``, centres ``fc_j`` evenly from ``B/2`` to
  ``fs/2 - B/2`` (``B = env_bandwidth``): a band x order map, so no band has to be chosen and the
  CNN sees the fault line at the same row in whichever columns the (bearing-specific) resonance sits.
  ``"sk"``: per window the band whose complex envelope has the highest spectral kurtosis
  ``mean|z|^4 / (mean|z|^2)^2 - 2`` (Antoni's SK, the kurtogram's criterion on one level of bands),
  its spectrum repeated in every column (candidate bands ``B`` wide, ``B/4`` apart). ``"fixed"``: the
  band ``env_band``, repeated. Orders above ``B / r`` are not representable by a band ``B`` Hz wide:
  the call refuses them. Why repeat rather than split the window into time columns: a 2048-sample
  window resolves 5.9 Hz (0.2 shaft orders at 29 Hz); a quarter of it would blur BPFO and BPFI
  (3.58 / 5.42 orders) together.
* ``harmonics``: ``|DFT(hann * x)|^2`` amplitude-scaled (a tone ``A cos`` gives ``A^2``), repeated in
  every column: current spectra in multiples of the fundamental, for converters.

Everything runs in torch: on the CPU for NumPy input (or a CPU tensor), on the GPU for a CUDA tensor
or with ``make_transform(..., device="cuda")``. On the CPU a batch is cut into cache-sized chunks that
run on ``torch.get_num_threads()`` Python threads (see :meth:`Transform._images`).
"""

from __future__ import annotations

import functools
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np
import scipy.fft as sfft
import torch
import torch.nn.functional as F

from diag.config import ORDER_PARTS, TransformConfig, auto_norms
from diag.errors import DiagError

#: dynamic range kept by the dB scaling, below each image's maximum
TOP_DB = 80.0
#: absolute power floor for the dB scaling ((unit of x)^2)
AMIN_POWER = 1e-20
#: default ``fmax`` as a fraction of ``fs`` when the config says 0
FMAX_FRACTION = 0.45
#: half-width of each CWT band in Gaussian standard deviations (gain at the edge exp(-8) = 3.4e-4)
SUPPORT_SIGMAS = 4.0
#: minimum CWT samples per image column in the fast path
MIN_SAMPLES_PER_COLUMN = 2
#: zero-padding factor of the order spectra (spectrum samples per DFT bin of the window)
ORDER_PAD = 4
#: per-chunk working memory of the fast path, bytes (CPU: small enough to stay in cache; a GPU gets 64x)
_CHUNK_BYTES = 12 * 2**20

__all__ = [
    "Transform",
    "make_transform",
    "cwt_frequencies",
    "frequency_to_scale",
    "scale_to_frequency",
    "pywt_wavelet_name",
    "morlet_filter_bank",
    "cwt",
    "cwt_scalogram",
    "stft_magnitude",
    "resize_area",
    "power_to_db",
    "standardize_images",
    "reference_hz",
    "window_reference_hz",
    "order_spectrum",
]


# ---------------------------------------------------------------------------------------------------
# Small helpers: frequencies and scales


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


# ---------------------------------------------------------------------------------------------------
# Input checks


def _check_real_array(x: Any, name: str, axis: int) -> tuple[np.ndarray, int]:
    x = np.asarray(x)
    if x.ndim == 0:
        raise DiagError(f"{name}: x must have a time axis, got a scalar")
    if np.iscomplexobj(x) or not np.issubdtype(x.dtype, np.number):
        raise DiagError(f"{name}: x must be real-valued numbers, got dtype {x.dtype}")
    if not -x.ndim <= axis < x.ndim:
        raise DiagError(f"{name}: axis {axis} out of range for x with {x.ndim} dimensions")
    ax = axis % x.ndim
    if x.shape[ax] < 2:
        raise DiagError(f"{name}: the time axis needs at least 2 samples, got {x.shape[ax]}")
    if not np.isfinite(x).all():
        raise DiagError(f"{name}: x contains {int((~np.isfinite(x)).sum())} NaN or infinite values")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    return x, ax


def _check_freqs(freqs: Any, fs: float, name: str) -> np.ndarray:
    f = np.atleast_1d(np.asarray(freqs, dtype=np.float64))
    if f.ndim != 1 or f.size == 0:
        raise DiagError(f"{name}: freqs must be a non-empty 1-D array of Hz, got shape {f.shape}")
    if not fs > 0:
        raise DiagError(f"{name}: fs must be > 0 Hz, got {fs}")
    if not ((f > 0) & (f < fs / 2)).all():
        raise DiagError(f"{name}: every frequency must be in (0, fs/2 = {fs / 2:g}) Hz; got {f.min():g}..{f.max():g}")
    return f


# ---------------------------------------------------------------------------------------------------
# Reference CWT (full resolution, NumPy/SciPy)


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
    x, ax = _check_real_array(x, "cwt", axis)
    f = _check_freqs(freqs, fs, "cwt")
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


# ---------------------------------------------------------------------------------------------------
# Area resampling


def _area_matrix(edges_in: np.ndarray, edges_out: np.ndarray) -> np.ndarray:
    """``A[i, j]`` = length of (input cell j) ∩ (output cell i) / length of output cell i.

    Cells are ``[edges[k], edges[k+1])``; ``A @ v`` is the mean of the piecewise-constant ``v`` over
    each output cell (area / box resampling)."""
    lo = np.maximum(edges_out[:-1, None], edges_in[None, :-1])
    hi = np.minimum(edges_out[1:, None], edges_in[None, 1:])
    return np.clip(hi - lo, 0.0, None) / np.diff(edges_out)[:, None]


@functools.lru_cache(maxsize=256)
def _uniform_area_matrix(n_in: int, n_out: int) -> np.ndarray:
    return _area_matrix(np.arange(n_in + 1, dtype=np.float64), np.linspace(0.0, n_in, n_out + 1))


def resize_area(x: Any, shape: Sequence[int], axes: Sequence[int] = (-2, -1)) -> Any:
    """Resize ``x`` along ``axes`` to ``shape`` by area averaging (box resampling).

    Output cell ``i`` of an axis of ``n_in`` samples resized to ``n_out`` covers input coordinates
    ``[i*n_in/n_out, (i+1)*n_in/n_out)`` and is the overlap-weighted mean of the input samples
    (each a cell of width 1) it covers. The mean over each axis is preserved exactly; content above
    the new Nyquist rate averages out instead of aliasing (an alternating +1/-1 pattern pooled by a
    factor >= 2 becomes ~0, not stripes). Upsampling repeats samples (box interpolation).

    Works on NumPy arrays and torch tensors (same device), in the input's floating dtype (integers
    become float64). ``shape`` and ``axes`` have the same length. Cost: one small matrix product per
    resized axis.
    """
    if len(shape) != len(axes):
        raise DiagError(f"resize_area: shape {tuple(shape)} and axes {tuple(axes)} differ in length")
    is_t = isinstance(x, torch.Tensor)
    if not is_t:
        x = np.asarray(x)
        if not np.issubdtype(x.dtype, np.floating):
            x = x.astype(np.float64)
    nd = x.ndim
    for n_out, axis in zip(shape, axes):
        if not -nd <= axis < nd:
            raise DiagError(f"resize_area: axis {axis} out of range for an array with {nd} dimensions")
        n_out = int(n_out)
        n_in = x.shape[axis]
        if n_out < 1 or n_in < 1:
            raise DiagError(f"resize_area: sizes must be >= 1, got {n_in} -> {n_out}")
        if n_out == n_in:
            continue
        a = _uniform_area_matrix(n_in, n_out)
        if is_t:
            at = torch.as_tensor(a, dtype=x.dtype, device=x.device)
            x = torch.movedim(torch.movedim(x, axis, -1) @ at.T, -1, axis)
        else:
            x = np.moveaxis(np.moveaxis(x, axis, -1) @ a.T.astype(x.dtype, copy=False), -1, axis)
    return x


# ---------------------------------------------------------------------------------------------------
# dB and per-image standardisation (torch or NumPy, last two axes = one image)


def power_to_db(power: Any, top_db: float = TOP_DB, amin: float = AMIN_POWER) -> Any:
    """``10*log10(max(p, amin, max(p over the image) * 10**(-top_db/10)))``, dB re 1 (unit of x)^2.

    One image = the last two axes; the floor keeps ``top_db`` dB below each image's maximum.
    """
    if isinstance(power, torch.Tensor):
        peak = power.amax(dim=(-2, -1), keepdim=True)
        floor = torch.clamp(peak * 10.0 ** (-top_db / 10.0), min=amin)
        return 10.0 * torch.log10(torch.maximum(power, floor))
    p = np.asarray(power)
    floor = np.maximum(p.max(axis=(-2, -1), keepdims=True) * 10.0 ** (-top_db / 10.0), amin)
    return 10.0 * np.log10(np.maximum(p, floor))


def standardize_images(img: Any) -> Any:
    """Per image (last two axes): ``(v - mean) / (std + 1e-6 * max|v| + 1e-12)``; constant -> zeros."""
    if isinstance(img, torch.Tensor):
        mean = img.mean(dim=(-2, -1), keepdim=True)
        std = (img - mean).square().mean(dim=(-2, -1), keepdim=True).sqrt()  # (torch.std is slower on CPU)
        eps = 1e-6 * img.abs().amax(dim=(-2, -1), keepdim=True) + 1e-12
        return (img - mean) / (std + eps)
    v = np.asarray(img)
    mean = v.mean(axis=(-2, -1), keepdims=True)
    std = v.std(axis=(-2, -1), keepdims=True)
    eps = 1e-6 * np.abs(v).max(axis=(-2, -1), keepdims=True) + 1e-12
    return (v - mean) / (std + eps)


# ---------------------------------------------------------------------------------------------------
# Fast banded CWT (torch; CPU and CUDA)


def _next_5_smooth(n: int) -> int:
    """Smallest integer >= n whose prime factors are 2, 3, 5 (fast FFT lengths)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


class _CwtBank:
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
            r = _next_5_smooth(max(int(min_per_col), math.ceil(m / (2 * self.n_cols))))
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


class _StftBank:
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


def _as_signals(x: Any, name: str, axis: int) -> tuple[torch.Tensor, tuple[int, ...], int]:
    """Validated NumPy input -> float32 torch ``[R, N]`` plus the other axes' shape and the axis."""
    x, ax = _check_real_array(x, name, axis)
    xm = np.moveaxis(x, ax, -1)
    lead = xm.shape[:-1]
    return torch.from_numpy(np.ascontiguousarray(xm, dtype=np.float32).reshape(-1, xm.shape[-1])), lead, ax


@functools.lru_cache(maxsize=16)
def _cached_cwt_bank(length: int, fs: float, freqs: tuple, w0: float, n_cols: int, support: float,
                     min_per_col: int) -> _CwtBank:
    return _CwtBank(length, fs, np.asarray(freqs), w0, n_cols, support, min_per_col)


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
    sig, lead, ax = _as_signals(x, "cwt_scalogram", axis)
    f = _check_freqs(freqs, fs, "cwt_scalogram")
    if n_cols < 1:
        raise DiagError(f"cwt_scalogram: n_cols must be >= 1, got {n_cols}")
    bank = _cached_cwt_bank(sig.shape[-1], float(fs), tuple(f.tolist()), float(w0), int(n_cols),
                            float(support), int(min_per_col))
    chunk = max(1, _CHUNK_BYTES // bank.work_per_signal)
    with torch.inference_mode():
        p = torch.cat([bank.power(sig[a : a + chunk]) for a in range(0, len(sig), chunk)] or [bank.power(sig)])
    out = p.sqrt().numpy().reshape(*lead, len(f), n_cols)
    return np.moveaxis(out, (-2, -1), (ax, ax + 1))


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
    sig, lead, ax = _as_signals(x, "stft_magnitude", axis)
    if nperseg > sig.shape[-1]:
        raise DiagError(f"stft_magnitude: nperseg={nperseg} exceeds the {sig.shape[-1]} samples of x")
    bank = _StftBank(sig.shape[-1], fs, nperseg, noverlap)
    with torch.inference_mode():
        mag = bank.power(sig).sqrt().numpy()
    t = (np.arange(bank.n_frames) * bank.hop + (bank.hop - 1) / 2) / fs
    s = np.moveaxis(mag.reshape(*lead, *mag.shape[-2:]), (-2, -1), (ax, ax + 1))
    return bank.freqs, t, s


# ---------------------------------------------------------------------------------------------------
# Order images: envelope spectra (bearings) and harmonic spectra (converters) on an order axis


class _OrderBank:
    """Order-axis spectra for one (kind, length, fs, config, H, W) configuration (see module doc).

    ``power(x, ref)`` maps signals ``[R, N]`` and reference rates ``ref`` ``[R]`` (Hz) to float32
    ``[R, H, W]``: mean spectral power per order cell (rows) and band (columns; repeated for one band).
    """

    def __init__(self, kind: str, length: int, fs: float, cfg: TransformConfig, height: int, width: int):
        self.kind, self.length, self.fs = kind, int(length), float(fs)
        self.height, self.width = int(height), int(width)
        n = self.length
        self.df = fs / n  # DFT bin spacing of the window, Hz
        self.order_edges = np.linspace(cfg.order_min, cfg.order_max, self.height + 1)
        self.orders = 0.5 * (self.order_edges[:-1] + self.order_edges[1:])
        self.mode = cfg.env_mode if kind == "envorder" else "one"
        self.bands: np.ndarray | None = None  # [n_bands, 2] Hz
        if kind == "envorder":
            nyq_bin = n // 2
            if self.mode == "fixed":
                lo, hi = (float(v) for v in cfg.env_band)
                if hi > fs / 2:
                    raise DiagError(f"transform.env_band: {lo:g}..{hi:g} Hz reaches above the Nyquist frequency "
                                    f"fs/2 = {fs / 2:g} Hz; lower its upper edge")
                k_lo = np.array([max(1, math.ceil(lo / self.df))])
                m = min(math.floor(hi / self.df), nyq_bin) - int(k_lo[0]) + 1
                if m < 4:
                    raise DiagError(f"transform.env_band: {lo:g}..{hi:g} Hz spans {max(m, 0)} DFT bins of "
                                    f"{self.df:g} Hz; make it at least {4 * self.df:g} Hz wide")
            else:
                bw = float(cfg.env_bandwidth)
                m = int(round(bw / self.df))
                if bw >= fs / 2 or m < 4:
                    raise DiagError(f"transform.env_bandwidth: {bw:g} Hz must be below fs/2 = {fs / 2:g} Hz and at "
                                    f"least 4 DFT bins ({4 * self.df:g} Hz) wide")
                # "bands": one band per column; "sk": candidate bands a quarter bandwidth apart (enough
                # overlap that an impulsive band is never missed, 3x fewer than 64 columns' worth)
                n_bands = self.width if self.mode == "bands" else max(2, int(round((fs / 2 - bw) / (bw / 4))) + 1)
                centres = np.linspace(bw / 2, fs / 2 - bw / 2, n_bands)
                k_lo = np.clip(np.round((centres - bw / 2) / self.df).astype(np.int64), 1, nyq_bin - m + 1)
            self.k_lo, self.m = k_lo.astype(np.int64), int(m)
            self.bands = np.stack([self.k_lo * self.df, (self.k_lo + self.m - 1) * self.df], axis=1)
            self.n_env = _next_5_smooth(2 * self.m)  # |z|^2 spans 2M - 1 bins: no aliasing
            self.n_spec = ORDER_PAD * self.n_env
            self.alpha_max = (self.m - 1) * self.df  # highest modulation frequency a band can carry
            win = np.hanning(self.n_env + 1)[:-1]
        else:  # harmonics: the window's own spectrum
            self.n_spec = ORDER_PAD * n
            self.alpha_max = fs / 2
            win = np.hanning(n + 1)[:-1]
        self.window = win / win.sum() * 2.0  # amplitude scaling: a tone A cos gives |X| = A
        self.d_alpha = self.df / ORDER_PAD  # spacing of the zero-padded spectrum, Hz
        self.n_alpha = self.n_spec // 2 + 1
        per_band = 8 * (2 * self.n_env + 2 * self.n_alpha) if kind == "envorder" else 8 * (2 * self.n_alpha)
        n_bands = len(self.k_lo) if kind == "envorder" else 1
        self.work_per_signal = 8 * (n + 2) + 2 * per_band * n_bands
        self._dev: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def max_order_hz(self, ref: float) -> float:
        return float(self.order_edges[-1] * ref)

    def _on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = str(device)
        if key not in self._dev:
            self._dev[key] = (torch.as_tensor(self.window, dtype=torch.float32, device=device),
                              torch.as_tensor(self.order_edges, dtype=torch.float32, device=device))
        return self._dev[key]

    def _cell_means(self, p: torch.Tensor, ref: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
        """Mean of the piecewise-constant spectrum ``p`` ``[R, K, A]`` (bin ``a`` covers
        ``[(a - 1/2), (a + 1/2)) * d_alpha`` Hz) over each order cell -> ``[R, K, H]``."""
        r, k, a = p.shape
        cum = F.pad(torch.cumsum(p.double(), dim=-1), (1, 0))  # cum[j] = sum of bins < j
        u = (edges[None, :].double() * ref[:, None].double() / self.d_alpha + 0.5).clamp(0, a)  # [R, H+1]
        j = u.floor().long().clamp(max=a - 1)
        frac = u - j
        ji = j[:, None, :].expand(r, k, -1)
        c = torch.gather(cum, -1, ji) + frac[:, None, :] * torch.gather(p.double(), -1, ji)
        width = (u[:, 1:] - u[:, :-1]).clamp(min=1e-12)[:, None, :]
        return ((c[..., 1:] - c[..., :-1]) / width).float()

    def power(self, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        r = x.shape[0]
        win, edges = self._on(x.device)
        if r == 0:
            return torch.empty(0, self.height, self.width, dtype=torch.float32, device=x.device)
        if self.kind == "harmonics":
            spec = torch.fft.rfft(x * win, n=self.n_spec, dim=-1)
            p = torch.view_as_real(spec).square().sum(-1)[:, None, :]  # [R, 1, A]
            rows = self._cell_means(p, ref, edges)  # [R, 1, H]
            return rows.transpose(1, 2).expand(r, self.height, self.width).contiguous()
        spec = F.pad(torch.fft.rfft(x, dim=-1), (0, self.m))
        k_lo = torch.as_tensor(self.k_lo, device=x.device)
        y = spec.unfold(-1, self.m, 1)[:, k_lo]  # [R, n_bands, M]: the bins of each band
        z = torch.fft.ifft(y, n=self.n_env, dim=-1, norm="forward")  # analytic band signals (baseband)
        e = torch.view_as_real(z).square().sum(-1)  # squared envelope [R, n_bands, L]
        mean = e.mean(-1, keepdim=True)
        if self.mode == "sk":
            kurt = (e.square().mean(-1) / mean[..., 0].square().clamp(min=1e-30)) - 2.0  # [R, n_bands]
            pick = kurt.argmax(-1)
            e, mean = e[torch.arange(r, device=x.device), pick][:, None], mean[torch.arange(r, device=x.device), pick][:, None]
        es = torch.fft.rfft((e - mean) * win, n=self.n_spec, dim=-1)
        p = torch.view_as_real(es).square().sum(-1) / mean.square().clamp(min=1e-30)  # [R, K, A]
        rows = self._cell_means(p, ref, edges)  # [R, K, H]
        if rows.shape[1] == 1:
            return rows.transpose(1, 2).expand(r, self.height, self.width).contiguous()
        return rows.transpose(1, 2).contiguous()  # [R, H, W]: rows = orders, columns = bands

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "rows": f"orders of the reference rate, {self.height} equal cells "
                    f"{self.order_edges[0]:g}..{self.order_edges[-1]:g}; pixel = mean power over the cell",
            "orders": [round(float(v), 4) for v in self.orders],
            "zero_padding": ORDER_PAD,
            "highest_frequency_hz": round(float(self.alpha_max), 2),
        }
        if self.kind == "envorder":
            d.update({
                "env_mode": self.mode,
                "pixel": "squared-envelope spectrum / (mean squared envelope)^2 of the band-passed window",
                "columns": {"bands": "demodulation band j (see bands_hz)",
                            "sk": "the band of highest spectral kurtosis among bands_hz (per window), repeated",
                            "fixed": "the one band, repeated"}[self.mode],
                "bands_hz": [[round(float(a), 2), round(float(b), 2)] for a, b in self.bands],
                "envelope_samples": self.n_env,
            })
        else:
            d.update({"pixel": "Hann-window power spectrum (tone A cos -> A^2)", "columns": "repeated"})
        return d


def order_spectrum(x: Any, fs: float, ref_hz: Any, kind: str = "envorder", cfg: TransformConfig | None = None,
                   axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """One order spectrum per signal: ``(orders, power)`` with ``power`` float32 ``[..., H]``.

    ``kind`` ``"envorder"`` (the envelope spectrum of ``cfg.env_mode``'s band; for ``"bands"`` the mean
    over the bands) or ``"harmonics"``; ``ref_hz`` the reference rate (scalar or one per signal).
    ``cfg`` gives ``size`` (``H`` = ``size[0]``), ``order_min``/``order_max`` and the band settings
    (default :class:`TransformConfig`). For plots and checks; images use :class:`Transform`.
    """
    cfg = cfg or TransformConfig()
    cfg.validate()
    if kind not in ORDER_PARTS:
        raise DiagError(f"order_spectrum: kind must be one of {', '.join(ORDER_PARTS)}, got {kind!r}")
    sig, lead, _ = _as_signals(x, "order_spectrum", axis)
    bank = _OrderBank(kind, sig.shape[-1], fs, cfg, int(cfg.size[0]), int(cfg.size[1]))
    ref = _check_ref(ref_hz, sig.shape[0], "order_spectrum", bank)
    with torch.inference_mode():
        p = bank.power(sig, torch.as_tensor(ref, dtype=torch.float32)).mean(-1)
    return bank.orders.copy(), p.numpy().reshape(*lead, bank.height)


def _check_ref(ref_hz: Any, n: int, where: str, bank: _OrderBank | None) -> np.ndarray:
    """``ref_hz`` (scalar or ``[n]``) -> float64 ``[n]``, each finite, > 0 and within the bank's reach."""
    try:
        ref = np.asarray(ref_hz, dtype=np.float64)
    except (TypeError, ValueError):
        raise DiagError(f"{where}: ref_hz must be a number or one number per window (Hz), got {ref_hz!r}") from None
    if ref.ndim == 0:
        ref = np.full(n, float(ref))
    if ref.shape != (n,):
        raise DiagError(f"{where}: ref_hz must be a number or one per window ({n}), got shape {ref.shape}")
    if n and not (np.isfinite(ref).all() and (ref > 0).all()):
        raise DiagError(f"{where}: ref_hz (shaft rate / fundamental) must be finite and > 0 Hz, got "
                        f"{ref[~(np.isfinite(ref) & (ref > 0))][:3].tolist()}")
    if n and bank is not None and bank.max_order_hz(ref.max()) > bank.alpha_max + 1e-9:
        top = bank.max_order_hz(ref.max())
        fix = ("widen transform.env_bandwidth (or env_band)" if bank.kind == "envorder"
               else "raise windows.fs")
        raise DiagError(
            f"{where}: order {bank.order_edges[-1]:g} x ref_hz {ref.max():g} Hz = {top:g} Hz is above the "
            f"{bank.alpha_max:g} Hz this {bank.kind} image can carry; lower transform.order_max or {fix}"
        )
    return ref


_RPM_KEYS = {"envorder": (("shaft_hz", 1.0), ("rpm", 1.0 / 60.0)),
             "harmonics": (("f1", 1.0), ("fundamental_hz", 1.0))}


#: ``transform.ref_search``: the rate is estimated from the first this many seconds of a recording
REF_SECONDS = 10.0
#: harmonics summed by the estimate, and the least mean height (natural log of power over the local
#: median) of its line: white or brown noise reach 0.4-0.7, CWRU's shaft lines 4-9
REF_HARMONICS = 5
REF_MIN_PROMINENCE = 1.5


def estimate_reference_hz(x: np.ndarray, fs: float, search: Sequence[float],
                          harmonics: int = REF_HARMONICS) -> tuple[float, float]:
    """Estimate a shaft rate or electrical fundamental from a recording ``x`` ``[C, N]`` at ``fs`` Hz.

    Harmonic sum on a whitened spectrum: the Welch power spectrum (4 s Hann segments, 0.25 Hz, or the
    whole signal when shorter; zero-padded 4x; channels averaged in log) minus its running median over 10 Hz, so each bin
    reads "how far this line stands above the local floor" (log units); the rate ``f`` in ``search =
    [lo, hi]`` (0.01 Hz grid) that maximises the mean height of ``f, 2f, ..., harmonics x f`` wins.
    Measured on the 37 CWRU 12 kHz drive-end records (first 10 s, search 15-45 Hz): every estimate within
    0.04 Hz of the file's ``X<rec>RPM`` / 60 (median 0.01 Hz; prominence 4.6-9); searching 10-60 Hz
    instead, 4 of 37 landed on another line,
    hence the advice to search within a factor of ~1.5 of the nominal rate. Returns ``(hz, prominence)``:
    the mean height of the winning harmonics (noise alone: 0.4-0.7; see :data:`REF_MIN_PROMINENCE`).
    """
    from scipy.ndimage import median_filter
    from scipy.signal import welch

    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    lo, hi = float(search[0]), float(search[1])
    nper = int(min(x.shape[-1], round(fs * 4.0)))
    # zero-padded 4x: the Hann main lobe is sampled finely enough to place a line between FFT bins
    f, p = welch(x - x.mean(axis=-1, keepdims=True), fs=fs, nperseg=nper, noverlap=nper // 2, nfft=4 * nper, axis=-1)
    keep = f <= min(fs / 2, harmonics * hi + 20.0)
    f, logp = f[keep], np.log(p[..., keep] + 1e-300).mean(axis=0)
    df = f[1] - f[0]
    height = logp - median_filter(logp, size=max(3, int(round(10.0 / df)) | 1), mode="nearest")
    cand = np.arange(lo, hi + 1e-9, 0.01)
    score = np.mean([np.interp(k * cand, f, height, right=0.0) for k in range(1, harmonics + 1)], axis=0)
    i = int(np.argmax(score))
    return float(cand[i]), float(score[i])


def reference_hz(meta: dict[str, Any], cfg: TransformConfig, signal: np.ndarray | None = None,
                 fs: float | None = None) -> tuple[tuple[float, float] | None, str]:
    """The reference rate of one recording for order images, as ``((start_hz, end_hz), how)``.

    ``envorder`` takes the shaft rate from the recording's ``meta``: ``shaft_hz`` (Hz) or ``rpm``
    (a number, or ``[start, end]`` for a speed ramp -- the bearing simulator writes both, the CWRU
    reader writes ``rpm``, ``diag simulate`` files keep them in labels.csv); ``harmonics`` takes the
    electrical fundamental ``f1`` (the inverter simulator) or ``fundamental_hz``. Otherwise
    ``transform.ref_hz`` when set (``how = "config transform.ref_hz"``); or, with ``transform.ref_search``
    and the recording's ``signal`` ``[C, N]`` as read (its rate ``fs``), the rate estimated from its
    first :data:`REF_SECONDS` (:func:`estimate_reference_hz`; ``how`` names the estimate and its
    prominence; a line too faint to trust raises a DiagError naming the recording); else ``(None, "none")``.
    Transforms without an order part give ``(None, "not needed")``.
    """
    parts = [p for p in cfg.parts if p in ORDER_PARTS]
    if not parts:
        return None, "not needed"
    for key, scale in _RPM_KEYS[parts[0]]:
        v = meta.get(key) if isinstance(meta, dict) else None
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            pair = (float(v) * scale, float(v) * scale)
        elif isinstance(v, (list, tuple)) and len(v) == 2 and all(
                isinstance(a, (int, float)) and not isinstance(a, bool) for a in v):
            pair = (float(v[0]) * scale, float(v[1]) * scale)
        else:
            continue
        if all(math.isfinite(a) and a > 0 for a in pair):
            return pair, f"recording meta '{key}'"
    if cfg.ref_hz > 0:
        return (float(cfg.ref_hz), float(cfg.ref_hz)), "config transform.ref_hz"
    if cfg.ref_search and signal is not None and fs:
        x = np.asarray(signal)[..., : int(round(REF_SECONDS * fs))]
        hz, prominence = estimate_reference_hz(x, fs, cfg.ref_search)
        lo, hi = cfg.ref_search
        what = "electrical fundamental" if parts[0] == "harmonics" else "shaft rate"
        if not prominence >= REF_MIN_PROMINENCE:  # (NaN too: a recording with non-finite samples)
            raise DiagError(f"no clear {what} line between {lo:g} and {hi:g} Hz in the first {REF_SECONDS:g} s "
                            f"(best {hz:.2f} Hz stands {prominence:.2f} above the spectrum's floor, needs "
                            f"{REF_MIN_PROMINENCE:g}); give the rate (rpm / f1 in the meta, --ref-hz) or widen "
                            "transform.ref_search")
        return (hz, hz), f"estimated from the spectrum ({lo:g}-{hi:g} Hz search, prominence {prominence:.1f})"
    return None, "none"


def window_reference_hz(ref: tuple[Any, Any], starts: Any, length: int, n_samples: Any) -> np.ndarray:
    """Reference rate (Hz) of each window starting at ``starts`` (samples) of a recording of
    ``n_samples``: ``start_hz`` + (``end_hz`` - ``start_hz``) x (window centre / recording length),
    i.e. a linear speed ramp evaluated at each window's centre; constant when start = end.
    ``ref`` parts and ``n_samples`` may be arrays (one per window) as well as numbers."""
    c = (np.asarray(starts, dtype=np.float64) + length / 2.0) / np.maximum(np.asarray(n_samples, np.float64), 1.0)
    lo, hi = np.asarray(ref[0], np.float64), np.asarray(ref[1], np.float64)
    return lo + (hi - lo) * c


# ---------------------------------------------------------------------------------------------------
# The Transform used by `diag prepare` and `diag predict`


class Transform:
    """Windows ``[B, C, W]`` -> images ``[B, C*k, H, W_img]`` for one configuration (see module doc).

    Build with :func:`make_transform`. Filter banks are built once here and cached per device.
    Call with a NumPy array (computed on ``device``, default CPU; returns NumPy float32) or a torch
    tensor (computed on the tensor's device; returns a float32 tensor there).
    """

    def __init__(self, cfg: TransformConfig, fs: float, length: int, device: str | torch.device | None = None,
                 threads: int | None = None):
        cfg.validate()
        if cfg.kind == "auto":
            raise DiagError("transform.kind=auto: diag prepare picks the kind (diag.signal.choose); build a Transform for one")
        if threads is not None and threads < 1:
            raise DiagError(f"transform: threads must be >= 1, got {threads}")
        self.threads = threads  # CPU worker threads; None: torch.get_num_threads() at call time
        if not fs > 0:
            raise DiagError(f"transform: sampling rate must be > 0 Hz, got {fs}")
        if int(length) < 16:
            raise DiagError(f"transform: window length must be >= 16 samples, got {length}")
        self.cfg = cfg
        self.fs = float(fs)
        self.length = int(length)
        self.height, self.width = (int(v) for v in cfg.size)
        self.kinds: tuple[str, ...] = cfg.parts
        #: image channels per input channel: every representation, of each half-wave with ``polarity``
        self.out_channels_per_input = len(self.kinds) * (2 if cfg.polarity else 1)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.row_frequencies: dict[str, np.ndarray] = {}
        self._cwt: _CwtBank | None = None
        self._stft: _StftBank | None = None
        self._order: dict[str, _OrderBank] = {}
        #: row coordinate of each order representation (orders of ``ref_hz``, ascending)
        self.row_orders: dict[str, np.ndarray] = {}
        for kind in self.kinds:
            if kind in ORDER_PARTS:
                self._order[kind] = _OrderBank(kind, self.length, self.fs, cfg, self.height, self.width)
                self.row_orders[kind] = self._order[kind].orders
        #: whether calls need ``ref_hz`` (the shaft rate / fundamental of every window)
        self.needs_ref = bool(self._order)
        if "cwt" in self.kinds:
            self.cwt_freqs = cwt_frequencies(self.fs, cfg.fmin, cfg.fmax, cfg.n_scales)
            self._cwt = _CwtBank(self.length, self.fs, self.cwt_freqs, cfg.w0, self.width)
            # rows resampled by area in the log-frequency index: row centre -> log-interpolated frequency
            pos = (np.arange(self.height) + 0.5) * cfg.n_scales / self.height - 0.5
            self.row_frequencies["cwt"] = np.exp(np.interp(pos, np.arange(cfg.n_scales), np.log(self.cwt_freqs)))
        if "stft" in self.kinds:
            if cfg.nperseg > self.length:
                raise DiagError(f"transform.nperseg: {cfg.nperseg} exceeds the window length {self.length} samples")
            if cfg.nperseg < 4:
                raise DiagError(f"transform.nperseg: must be >= 4 samples, got {cfg.nperseg}")
            self._stft = _StftBank(self.length, self.fs, cfg.nperseg, cfg.noverlap)
            self._stft_bins = cfg.nperseg // 2 if cfg.nperseg % 2 == 0 else cfg.nperseg // 2 + 1  # no Nyquist
            bin_hz = self.fs / cfg.nperseg
            # bin k covers [(k - 1/2), (k + 1/2)) * bin_hz; rows resample those cells uniformly
            centre = (np.arange(self.height) + 0.5) * self._stft_bins / self.height - 0.5  # in bins
            self.row_frequencies["stft"] = centre * bin_hz
            self._stft_time = _area_matrix(self._stft.frame_edges, np.linspace(0.0, self.length, self.width + 1))
        first = self.kinds[0]
        #: rows of the first representation: Hz for cwt/stft, orders of ``ref_hz`` for envorder/harmonics
        self.row_units = "order" if first in ORDER_PARTS else "Hz"
        self.frequencies: np.ndarray = (self.row_orders if first in ORDER_PARTS else self.row_frequencies)[first]
        self._dev_mats: dict[str, torch.Tensor] = {}

    # -- call ----------------------------------------------------------------------------------------

    def _check(self, x: Any) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            try:
                x = np.asarray(x)
            except (TypeError, ValueError):
                raise DiagError(f"transform: expected an array of windows, got {type(x).__name__}") from None
        shape = tuple(x.shape)
        want = f"[batch, channels, {self.length}]"
        if len(shape) != 3:
            raise DiagError(f"transform: expected windows shaped {want}, got shape {shape}")
        if shape[2] != self.length:
            raise DiagError(
                f"transform: windows have {shape[2]} samples but this transform was built for {self.length}; "
                "use the window length of the config / checkpoint"
            )
        if shape[1] < 1:
            raise DiagError(f"transform: expected at least one channel, got shape {shape}")
        if isinstance(x, torch.Tensor):
            if x.is_complex() or x.dtype == torch.bool:
                raise DiagError(f"transform: windows must be real numbers, got {x.dtype}")
            t = x.to(torch.float32)
        else:
            a = np.asarray(x)
            if np.iscomplexobj(a) or not np.issubdtype(a.dtype, np.number):
                raise DiagError(f"transform: windows must be real numbers, got dtype {a.dtype}")
            t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(self.device)
        bad = int((~torch.isfinite(t)).sum())
        if bad:
            raise DiagError(f"transform: windows contain {bad} NaN or infinite samples; clean or drop them first")
        return t

    def _mat(self, name: str, a: np.ndarray, device: torch.device) -> torch.Tensor:
        key = f"{name}@{device}"
        if key not in self._dev_mats:
            self._dev_mats[key] = torch.as_tensor(a, dtype=torch.float32, device=device)
        return self._dev_mats[key]

    def _images(self, sig: torch.Tensor, ref: torch.Tensor | None = None, per_image: bool = False) -> torch.Tensor:
        """Final float32 images ``[R, k, H, W_img]`` for signals ``[R, N]``, chunk by chunk.

        On the CPU, chunks run on ``threads`` Python threads with torch's intra-op threads set to 1
        for the duration of the call (restored after): many small OpenMP regions stall badly when
        other processes share the cores, whole chunks per thread do not.
        """
        nr = sig.shape[0]
        out = torch.empty(nr, len(self.kinds), self.height, self.width, dtype=torch.float32, device=sig.device)
        per_signal = max([64 * self.length] + [b.work_per_signal for b in (self._cwt, *self._order.values()) if b])
        on_gpu = sig.device.type != "cpu"
        chunk = max(1, (_CHUNK_BYTES * (64 if on_gpu else 1)) // per_signal)
        threads = 1 if on_gpu else (self.threads or torch.get_num_threads())
        chunk = max(1, min(chunk, -(-nr // threads)))  # at least one chunk per thread
        starts = range(0, nr, chunk)

        def work(a: int) -> None:
            with torch.inference_mode():
                s = sig[a : a + chunk]
                for j, kind in enumerate(self.kinds):
                    if kind == "cwt":
                        p = self._cwt.power(s)  # [r, n_scales, W_img]
                        if self.cfg.n_scales != self.height:
                            p = resize_area(p, (self.height,), axes=(-2,))
                    elif kind in self._order:
                        p = self._order[kind].power(s, ref[a : a + chunk])  # [r, H, W_img]
                    else:
                        p = self._stft.power(s)[:, : self._stft_bins]  # [r, bins, frames]
                        p = resize_area(p, (self.height,), axes=(-2,))
                        p = p @ self._mat("stft_time", self._stft_time.T, s.device)
                    p = power_to_db(p) if self.cfg.log else p.sqrt()
                    out[a : a + chunk, j] = standardize_images(p) if per_image else p  # joint: below

        workers = min(threads, len(starts))
        if workers <= 1:
            for a in starts:
                work(a)
            return out
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(work, starts))
        finally:
            torch.set_num_threads(before)
        return out

    def __call__(self, x: Any, ref_hz: Any = None) -> Any:
        """``x`` float32 ``[B, C, W]`` -> float32 ``[B, C*k, H, W_img]`` (``[B, 2*C*k, ...]`` with
        ``polarity``; NumPy in, NumPy out).

        ``ref_hz``: the reference rate of each window in Hz (a number, or ``[B]``): the shaft rate for
        ``envorder``, the electrical fundamental for ``harmonics`` (see :func:`reference_hz` and
        :func:`window_reference_hz`). Required when the kind has an order part, ignored otherwise.
        """
        is_tensor = isinstance(x, torch.Tensor)
        t = self._check(x)
        norm = self.cfg.norm  # auto (direct callers; diag prepare stores it resolved): joint for several channels
        if norm == "auto":
            norm = auto_norms(t.shape[1])[1]
        if self.cfg.polarity:  # channel c -> 2c (positive half-wave), 2c + 1 (negative half-wave)
            t = torch.stack([t.clamp(min=0), (-t).clamp(min=0)], dim=2).reshape(t.shape[0], -1, t.shape[2])
        b, c, n = t.shape
        ref = None
        if self.needs_ref:
            if ref_hz is None:
                raise DiagError(f"transform: kind '{self.cfg.kind}' puts rows on an order axis and needs ref_hz, the "
                                "shaft rate (envorder) or fundamental (harmonics) of every window in Hz")
            if isinstance(ref_hz, torch.Tensor):
                ref_hz = ref_hz.detach().cpu().numpy()
            r = np.zeros(b)
            for bank in self._order.values():
                r = _check_ref(ref_hz, b, "transform", bank)
            ref = torch.as_tensor(np.repeat(r, c), dtype=torch.float32, device=t.device)
        with torch.inference_mode():
            img = self._images(t.reshape(b * c, n), ref, per_image=norm == "image")
            img = img.reshape(b, c * len(self.kinds), self.height, self.width)
            if norm == "image-joint":  # one mean/std over all channels of a window, per kind
                k = len(self.kinds)
                img = standardize_images(img.reshape(b, c, k, self.height, self.width).transpose(1, 2)
                                         .reshape(b, k, c * self.height, self.width))
                img = img.reshape(b, k, c, self.height, self.width).transpose(1, 2).reshape(b, c * k, self.height, self.width)
        if is_tensor:
            return img.clone()  # a normal tensor (not an inference tensor) for autograd users downstream
        return img.cpu().numpy()

    # -- description ---------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description of the images for the dataset manifest / checkpoint."""
        d: dict[str, Any] = {
            "kind": self.cfg.kind,
            "fs": self.fs,
            "length": self.length,
            "size": [self.height, self.width],
            "out_channels_per_input": self.out_channels_per_input,
            "channel_order": ("input-major: output channel (2c + h)*k + j = representation j of half-wave h "
                              "(0 positive, 1 negative) of input channel c" if self.cfg.polarity else
                              "input-major: output channel c*k + j = representation j of input channel c"),
            "polarity": ("each input channel split into max(x, 0) and max(-x, 0) before the transform"
                         if self.cfg.polarity else "none (magnitude images: blind to the sign of x)"),
            "representations": list(self.kinds),
            "row_order": "ascending frequency, or order for envorder/harmonics (row 0 = lowest)",
            "pixel": "area-averaged power over the pixel",
            "log": (f"10*log10(mean power), dB re 1 unit^2, floor {TOP_DB:g} dB below each image max"
                    if self.cfg.log else "none (RMS magnitude)"),
            "norm": self.cfg.norm,
            "frequencies_hz": {k: [round(float(v), 4) for v in f] for k, f in self.row_frequencies.items()},
        }
        for kind, bank in self._order.items():
            d[kind] = bank.describe()
        if self._order:
            d["reference"] = ("ref_hz per window: shaft rate (envorder) / electrical fundamental (harmonics), "
                              "from each recording's meta, else transform.ref_hz; see manifest recordings[].ref_hz")
        if self._cwt is not None:
            d["cwt"] = {
                "wavelet": "analytic Morlet, L1 (amplitude) normalised",
                "w0": self.cfg.w0,
                "fmin": float(self.cwt_freqs[0]),
                "fmax": float(self.cwt_freqs[-1]),
                "n_scales": self.cfg.n_scales,
                "padding": "symmetric (period 2N)",
                "pywt_equivalent": pywt_wavelet_name(self.cfg.w0),
                "band_support_sigmas": SUPPORT_SIGMAS,
                # below this the wavelet's +-3 s.d. (6 s = 6 w0 / (2 pi f) s) exceed the window, so those
                # rows mostly see the symmetric extension (cone of influence)
                "edge_free_fmin_hz": round(3 * self.cfg.w0 / (np.pi * self.length / self.fs), 2),
            }
        if self._stft is not None:
            d["stft"] = {
                "window": "hann",
                "nperseg": self.cfg.nperseg,
                "noverlap": self.cfg.noverlap,
                "hop": self._stft.hop,
                "frames": self._stft.n_frames,
                "bins": self._stft_bins,
                "fmax": float(self.fs / 2),
            }
        return d

    def __repr__(self) -> str:
        return (f"Transform(kind={self.cfg.kind!r}, fs={self.fs:g}, length={self.length}, "
                f"size={[self.height, self.width]}, device={str(self.device)!r})")


def make_transform(cfg: TransformConfig, fs: float, length: int,
                   device: str | torch.device | None = None, threads: int | None = None) -> Transform:
    """Build the :class:`Transform` for ``cfg`` at sampling rate ``fs`` (Hz) and window ``length``
    (samples). ``device`` (e.g. ``"cuda"``) is where NumPy input is computed; tensors use their own.
    ``threads``: CPU threads (default ``torch.get_num_threads()``)."""
    return Transform(cfg, fs, length, device=device, threads=threads)
