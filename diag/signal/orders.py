"""Order images: envelope spectra (bearings) and harmonic spectra (converters) on an order axis
(:class:`OrderBank`, :func:`order_spectrum`); the reference rates themselves come from :mod:`diag.signal.refrate`.

Order images (``envorder``, ``harmonics``)
------------------------------------------
Rows are **orders** of a reference rate ``r`` Hz given per window (``Transform(x, ref_hz=...)``: the
shaft rate for ``envorder``, the electrical fundamental for ``harmonics``; see :func:`diag.signal.refrate.reference_hz`):
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
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from diag.config import ORDER_PARTS, TransformConfig
from diag.errors import DiagError
from diag.signal.tfbase import as_signals, next_5_smooth

#: zero-padding factor of the order spectra (spectrum samples per DFT bin of the window)
ORDER_PAD = 4

__all__ = ["ORDER_PAD", "OrderBank", "order_spectrum", "check_ref"]


class OrderBank:
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
            self.n_env = next_5_smooth(2 * self.m)  # |z|^2 spans 2M - 1 bins: no aliasing
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
    sig, lead, _ = as_signals(x, "order_spectrum", axis)
    bank = OrderBank(kind, sig.shape[-1], fs, cfg, int(cfg.size[0]), int(cfg.size[1]))
    ref = check_ref(ref_hz, sig.shape[0], "order_spectrum", bank)
    with torch.inference_mode():
        p = bank.power(sig, torch.as_tensor(ref, dtype=torch.float32)).mean(-1)
    return bank.orders.copy(), p.numpy().reshape(*lead, bank.height)


def check_ref(ref_hz: Any, n: int, where: str, bank: OrderBank | None) -> np.ndarray:
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
