#!/usr/bin/env python
"""Time diag's CWT against PyWavelets and ssqueezepy on the same windows, in one process.

Every library computes the analytic-Morlet CWT of the same windows on the same scales (same centre
frequencies, same w0) and then its magnitude pooled to the same H x W image (mean power per pixel,
square root); diag's time is its whole ``Transform`` call (CWT, pooling, dB, per-image norm).

* diag: ``diag.signal.transforms.make_transform`` (torch, banded filter bank, ``--threads`` threads).
* PyWavelets: ``pywt.cwt(x, scales, 'cmor2.0-C', method='fft', axis=-1)`` on the whole batch, C = w0/(2 pi).
  pywt 1.x calls ``numpy.fft`` and so runs on one thread whatever ``--threads`` says.
* ssqueezepy: ``ssqueezepy.cwt(x, Wavelet(('morlet', {'mu': w0})), scales=...)`` on the batch
  (reflect padding to 2N, as diag), its FFTs on ``--threads`` threads via ``SSQ_PARALLEL`` (0 = one
  thread, 1 = all cores) and the wavelet cached across calls (a ``Wavelet`` instance).

Methods are timed in interleaved rounds and the best round is reported (other jobs on the machine
only ever slow a round down). The STFT path is timed against ``scipy.signal.stft`` + the same
pooling, and, when a CUDA device is present, diag's GPU path too. The order images (``envorder``:
spectral-kurtosis band and the 64-band map; ``harmonics``) are timed next to a one-band envelope
spectrum with ``scipy.signal`` (Butterworth band-pass ``sosfiltfilt`` + ``hilbert`` + ``rfft``, no
order axis, no pooling), at a shaft rate of 29.5 Hz.

    python scripts/bench/bench_transforms.py [--windows 256] [--length 2048] [--scales 64] [--size 64]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--windows", type=int, default=256, help="windows per batch")
    p.add_argument("--length", type=int, default=2048, help="samples per window")
    p.add_argument("--scales", type=int, default=64, help="CWT scales (= image rows)")
    p.add_argument("--size", type=int, default=64, help="image width (columns); rows = --scales")
    p.add_argument("--fs", type=float, default=12000.0, help="sampling rate, Hz")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for diag and ssqueezepy")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (best one reported)")
    p.add_argument("--skip-pywt", action="store_true", help="leave PyWavelets out (slowest)")
    return p.parse_args()


ARGS = parse()
# ssqueezepy reads these when called / at import: set them first.
os.environ["SSQ_PARALLEL"] = "1" if ARGS.threads > 1 else "0"
os.environ.setdefault("NUMBA_NUM_THREADS", str(ARGS.threads))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
import scipy.signal  # noqa: E402
import torch  # noqa: E402

from diag.config import TransformConfig  # noqa: E402
from diag.signal.transforms import frequency_to_scale, make_transform, pywt_wavelet_name  # noqa: E402


def pool(power: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Mean over equal blocks of the last two axes (H and W must divide them)."""
    *lead, h, w = power.shape
    return power.reshape(*lead, shape[0], h // shape[0], shape[1], w // shape[1]).mean(axis=(-3, -1))


def main() -> None:
    a = ARGS
    torch.set_num_threads(a.threads)
    if a.length % a.size:
        raise SystemExit(f"--length {a.length} must be a multiple of --size {a.size} for the baselines' pooling")
    cfg = TransformConfig(kind="cwt", size=[a.scales, a.size], n_scales=a.scales)
    tf = make_transform(cfg, fs=a.fs, length=a.length)
    freqs = tf.cwt_freqs  # ascending, Hz
    w0 = cfg.w0
    scales = frequency_to_scale(freqs, w0, fs=a.fs)  # samples, descending
    x = np.random.default_rng(0).standard_normal((a.windows, a.length)).astype(np.float32)
    shape = (a.scales, a.size)

    def run_diag():
        return tf(x[:, None])

    cwt_only: dict[str, float] = {}  # seconds of the best round spent in the library's CWT call

    def run_pywt():
        import pywt

        t0 = time.perf_counter()
        coef, _ = pywt.cwt(x, scales, pywt_wavelet_name(w0), sampling_period=1 / a.fs, method="fft", axis=-1)
        cwt_only["pywt cwt"] = time.perf_counter() - t0
        coef = coef.transpose(1, 0, 2)  # [S, B, N] -> [B, S, N]
        return np.sqrt(pool(coef.real**2 + coef.imag**2, shape))

    ssq_wavelet = None

    def run_ssq():
        nonlocal ssq_wavelet
        from ssqueezepy import Wavelet, cwt

        if ssq_wavelet is None:
            ssq_wavelet = Wavelet(("morlet", {"mu": w0}))
        t0 = time.perf_counter()
        wx, _ = cwt(x, ssq_wavelet, scales=np.ascontiguousarray(scales[::-1], dtype=np.float32),
                    padtype="reflect", l1_norm=True)
        cwt_only["ssqueezepy cwt"] = time.perf_counter() - t0
        wx = np.asarray(wx)[:, ::-1]  # ascending frequency, as diag
        return np.sqrt(pool(wx.real**2 + wx.imag**2, shape))

    stft_cfg = TransformConfig(kind="stft", size=[a.scales, a.size])
    tf_stft = make_transform(stft_cfg, fs=a.fs, length=a.length)

    def run_diag_stft():
        return tf_stft(x[:, None])

    def run_scipy_stft():
        _, _, s = scipy.signal.stft(x, fs=a.fs, window="hann", nperseg=stft_cfg.nperseg,
                                    noverlap=stft_cfg.noverlap, axis=-1)
        return s

    methods = {"diag cwt": run_diag, "ssqueezepy cwt": run_ssq}
    if not a.skip_pywt:
        methods["pywt cwt"] = run_pywt
    methods |= {"diag stft": run_diag_stft, "scipy.signal.stft": run_scipy_stft}

    ref_hz = np.full(a.windows, 29.5)  # shaft rate (Hz) of every window
    tf_env = {mode: make_transform(TransformConfig(kind="envorder", env_mode=mode, size=[a.scales, a.size]),
                                   fs=a.fs, length=a.length) for mode in ("sk", "bands")}
    tf_harm = make_transform(TransformConfig(kind="harmonics", size=[a.scales, a.size]), fs=a.fs, length=a.length)
    sos = scipy.signal.butter(4, [2000.0, 3000.0], btype="bandpass", fs=a.fs, output="sos")

    def run_scipy_env():
        e = np.abs(scipy.signal.hilbert(scipy.signal.sosfiltfilt(sos, x, axis=-1), axis=-1)) ** 2
        return np.abs(np.fft.rfft((e - e.mean(-1, keepdims=True)) * np.hanning(a.length), axis=-1)) ** 2

    methods |= {"diag envorder sk": lambda: tf_env["sk"](x[:, None], ref_hz=ref_hz),
                "diag envorder bands": lambda: tf_env["bands"](x[:, None], ref_hz=ref_hz),
                "diag harmonics": lambda: tf_harm(x[:, None], ref_hz=ref_hz),
                "scipy envelope 1 band": run_scipy_env}

    # warm-up (plans, caches, numba compilation) and a check that the libraries agree
    outs = {name: fn() for name, fn in methods.items()}
    best = {name: float("inf") for name in methods}
    best_cwt_only: dict[str, float] = {}
    for _ in range(a.rounds):
        for name, fn in methods.items():
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            if dt < best[name]:
                best[name] = dt
                if name in cwt_only:
                    best_cwt_only[name] = cwt_only[name]

    threads = {"pywt cwt": 1, "scipy.signal.stft": 1, "scipy envelope 1 band": 1}
    print(f"{a.windows} windows x {a.length} samples at {a.fs:g} Hz, {a.scales} scales "
          f"{freqs[0]:g}..{freqs[-1]:g} Hz (w0 {w0:g}), images {a.scales}x{a.size}; "
          f"torch {torch.__version__}, {a.threads} thread(s); best of {a.rounds} rounds")
    print(f"{'method':<22}{'threads':>8}{'seconds':>10}{'windows/s':>12}")
    for name in methods:
        note = ""
        if name in best_cwt_only:
            note = f"   (its CWT call alone: {a.windows / best_cwt_only[name]:.0f} windows/s; rest = pooling)"
        elif name == "scipy.signal.stft":
            note = "   (complex STFT only: no pooling, dB or norm)"
        elif name.startswith("scipy envelope"):
            note = "   (one band, Hz axis: no order axis, pooling, dB or norm)"
        elif name.startswith("diag envorder") or name == "diag harmonics":
            note = "   (whole Transform: order axis, pooling, dB, per-image norm)"
        elif name == "diag cwt":
            note = "   (whole Transform: CWT, pooling, dB, per-image norm)"
        print(f"{name:<22}{threads.get(name, a.threads):>8}{best[name]:>10.3f}{a.windows / best[name]:>12.0f}{note}")

    gpu = {}
    if torch.cuda.is_available():
        for name, t in (("diag cwt (cuda)", tf), ("diag stft (cuda)", tf_stft),
                        ("diag envorder sk (cuda)", tf_env["sk"])):
            xg = torch.from_numpy(x[:, None]).cuda()
            kw = {"ref_hz": ref_hz} if t.needs_ref else {}
            t(xg, **kw)
            torch.cuda.synchronize()
            reps = 20
            t0 = time.perf_counter()
            for _ in range(reps):
                t(xg, **kw)
            torch.cuda.synchronize()
            gpu[name] = (time.perf_counter() - t0) / reps
            print(f"{name:<22}{'gpu':>8}{gpu[name]:>10.4f}{a.windows / gpu[name]:>12.0f}   "
                  f"({torch.cuda.get_device_name()}, tensor in/out on the device)")

    print("ratios (windows/s of diag / windows/s of the other):")
    print(f"  diag / ssqueezepy  cwt: {best['ssqueezepy cwt'] / best['diag cwt']:6.1f}x"
          f"   (vs its CWT call alone: {best_cwt_only['ssqueezepy cwt'] / best['diag cwt']:.1f}x)")
    if "pywt cwt" in best:
        print(f"  diag / pywt        cwt: {best['pywt cwt'] / best['diag cwt']:6.1f}x"
              f"   (vs its CWT call alone: {best_cwt_only['pywt cwt'] / best['diag cwt']:.1f}x)")
    print(f"  diag / scipy      stft: {best['scipy.signal.stft'] / best['diag stft']:6.1f}x")

    # Same images? Compare pooled RMS magnitudes, each row scaled to its maximum (the libraries use
    # different amplitude normalisations: pywt sqrt(a)/2 and a sinc(f/fs) gain, ssqueezepy its own).
    ref = make_transform(TransformConfig(kind="cwt", size=[a.scales, a.size], n_scales=a.scales,
                                         log=False, norm="none"), fs=a.fs, length=a.length)(x[:8, None])[:, 0]

    def rowmax(v):
        return v / v.max(axis=-1, keepdims=True)

    for name in ("ssqueezepy cwt", "pywt cwt"):
        if name in outs:
            other = outs[name][:8]
            mid = slice(a.size // 8, a.size - a.size // 8)  # pywt zero-pads: compare away from the edges
            # rows whose wavelets (3 s.d. = 3 w0 / (2 pi f) s) stay clear of the edge columns, and below
            # fs/4, where pywt's coarse sampling of its wavelet at the smallest scales still holds
            edge_s = (a.size // 8) * (a.length / a.size) / a.fs
            rows = (3 * w0 / (2 * np.pi * freqs) < edge_s) & (freqs < 0.25 * a.fs)
            d = np.abs(rowmax(other) - rowmax(ref))[:, rows][..., mid]
            print(f"  agreement with {name:<15} median |diff| {np.median(d):.3f}, 99th pct {np.quantile(d, 0.99):.3f} "
                  f"(rows {freqs[rows].min():.0f}..{freqs[rows].max():.0f} Hz, columns away from the edges, "
                  "each row / its max)")


if __name__ == "__main__":
    main()
