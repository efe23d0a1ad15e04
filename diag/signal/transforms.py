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

The representations live in their own modules: :mod:`diag.signal.cwt` (CWT), :mod:`diag.signal.stft`
(STFT), :mod:`diag.signal.orders` (order images ``envorder``, ``harmonics``) with the reference rates
in :mod:`diag.signal.refrate`, and the pixel values in :mod:`diag.signal.pixels`. This module holds the
:class:`Transform` that composes them (the factory :func:`make_transform`) and re-exports the public
names of those modules, so ``from diag.signal.transforms import ...`` keeps working.

Everything runs in torch: on the CPU for NumPy input (or a CPU tensor), on the GPU for a CUDA tensor
or with ``make_transform(..., device="cuda")``. On the CPU a batch is cut into cache-sized chunks that
run on ``torch.get_num_threads()`` Python threads (see :meth:`Transform._images`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from diag.checks import check_finite, check_signal_array
from diag.config import ORDER_PARTS, TransformConfig, auto_norms
from diag.errors import DiagError
from diag.signal.cwt import (
    FMAX_FRACTION,
    MIN_SAMPLES_PER_COLUMN,
    SUPPORT_SIGMAS,
    CwtBank,
    cwt,
    cwt_frequencies,
    cwt_scalogram,
    frequency_to_scale,
    morlet_filter_bank,
    pywt_wavelet_name,
    scale_to_frequency,
)
from diag.signal.orders import ORDER_PAD, OrderBank, check_ref, order_spectrum
from diag.signal.pixels import AMIN_POWER, TOP_DB, area_matrix, power_to_db, resize_area, standardize_images
from diag.signal.refrate import (
    REF_HARMONICS,
    REF_MIN_PROMINENCE,
    REF_SECONDS,
    estimate_reference_hz,
    reference_hz,
    window_reference_hz,
)
from diag.signal.stft import StftBank, stft_magnitude
from diag.signal.tfbase import CHUNK_BYTES

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
    # re-exported constants and helpers (imported from here before the split by concern)
    "TOP_DB",
    "AMIN_POWER",
    "FMAX_FRACTION",
    "SUPPORT_SIGMAS",
    "MIN_SAMPLES_PER_COLUMN",
    "ORDER_PAD",
    "REF_SECONDS",
    "REF_HARMONICS",
    "REF_MIN_PROMINENCE",
    "estimate_reference_hz",
]


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
        self._cwt: CwtBank | None = None
        self._stft: StftBank | None = None
        self._order: dict[str, OrderBank] = {}
        #: row coordinate of each order representation (orders of ``ref_hz``, ascending)
        self.row_orders: dict[str, np.ndarray] = {}
        for kind in self.kinds:
            if kind in ORDER_PARTS:
                self._order[kind] = OrderBank(kind, self.length, self.fs, cfg, self.height, self.width)
                self.row_orders[kind] = self._order[kind].orders
        #: whether calls need ``ref_hz`` (the shaft rate / fundamental of every window)
        self.needs_ref = bool(self._order)
        if "cwt" in self.kinds:
            self.cwt_freqs = cwt_frequencies(self.fs, cfg.fmin, cfg.fmax, cfg.n_scales)
            self._cwt = CwtBank(self.length, self.fs, self.cwt_freqs, cfg.w0, self.width)
            # rows resampled by area in the log-frequency index: row centre -> log-interpolated frequency
            pos = (np.arange(self.height) + 0.5) * cfg.n_scales / self.height - 0.5
            self.row_frequencies["cwt"] = np.exp(np.interp(pos, np.arange(cfg.n_scales), np.log(self.cwt_freqs)))
        if "stft" in self.kinds:
            if cfg.nperseg > self.length:
                raise DiagError(f"transform.nperseg: {cfg.nperseg} exceeds the window length {self.length} samples")
            if cfg.nperseg < 4:
                raise DiagError(f"transform.nperseg: must be >= 4 samples, got {cfg.nperseg}")
            self._stft = StftBank(self.length, self.fs, cfg.nperseg, cfg.noverlap)
            self._stft_bins = cfg.nperseg // 2 if cfg.nperseg % 2 == 0 else cfg.nperseg // 2 + 1  # no Nyquist
            bin_hz = self.fs / cfg.nperseg
            # bin k covers [(k - 1/2), (k + 1/2)) * bin_hz; rows resample those cells uniformly
            centre = (np.arange(self.height) + 0.5) * self._stft_bins / self.height - 0.5  # in bins
            self.row_frequencies["stft"] = centre * bin_hz
            self._stft_time = area_matrix(self._stft.frame_edges, np.linspace(0.0, self.length, self.width + 1))
        first = self.kinds[0]
        #: rows of the first representation: Hz for cwt/stft, orders of ``ref_hz`` for envorder/harmonics
        self.row_units = "order" if first in ORDER_PARTS else "Hz"
        self.frequencies: np.ndarray = (self.row_orders if first in ORDER_PARTS else self.row_frequencies)[first]
        self._dev_mats: dict[str, torch.Tensor] = {}

    # -- call ----------------------------------------------------------------------------------------

    def _check(self, x: Any) -> torch.Tensor:
        """Windows ``[batch, channels, length]`` of real finite numbers as a float32 tensor (NumPy input:
        :func:`diag.checks.check_signal_array`, moved to ``self.device``; a tensor stays where it is)."""
        want = f"[batch, channels, {self.length}]"
        if isinstance(x, torch.Tensor):
            if x.ndim != 3:
                raise DiagError(f"transform: expected real samples shaped {want}, got shape {tuple(x.shape)}")
            if x.is_complex() or x.dtype == torch.bool:
                raise DiagError(f"transform: samples must be real numbers, got dtype {x.dtype}")
        else:
            x = check_signal_array(x, "transform", ndim=(3,), finite=False, shape_hint=want)
        if x.shape[2] != self.length:
            raise DiagError(
                f"transform: windows have {x.shape[2]} samples but this transform was built for {self.length}; "
                "use the window length of the config / checkpoint"
            )
        if x.shape[1] < 1:
            raise DiagError(f"transform: expected at least one channel, got shape {tuple(x.shape)}")
        fix = "clean or drop those windows first"
        if isinstance(x, torch.Tensor):
            t = x.to(torch.float32)
            n_bad = int((~torch.isfinite(t)).sum())
            if n_bad:
                raise DiagError(f"transform: {n_bad} NaN/Inf samples; {fix}")
            return t
        a = np.ascontiguousarray(x, dtype=np.float32)
        check_finite(a, "transform", fix=fix)  # after the cast: a float64 beyond float32's range is Inf here
        return torch.from_numpy(a).to(self.device)

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
        chunk = max(1, (CHUNK_BYTES * (64 if on_gpu else 1)) // per_signal)
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
                r = check_ref(ref_hz, b, "transform", bank)
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
