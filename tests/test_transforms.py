"""Tests of diag.signal.transforms: CWT / STFT correctness, the fast banded CWT, resizing, the Transform API."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diag.config import TransformConfig
from diag.errors import DiagError
from diag.signal.transforms import (
    cwt,
    cwt_frequencies,
    cwt_scalogram,
    frequency_to_scale,
    make_transform,
    morlet_filter_bank,
    pywt_wavelet_name,
    resize_area,
    scale_to_frequency,
    stft_magnitude,
)

FS = 12000.0
N = 2048


def tone(f: float, n: int = N, fs: float = FS, amp: float = 1.0, phase: float = 0.3) -> np.ndarray:
    return (amp * np.cos(2 * np.pi * f * np.arange(n) / fs + phase)).astype(np.float32)


def bearing_like(n: int = N, fs: float = FS, seed: int = 0) -> np.ndarray:
    """Noise + a shaft tone + impulses every ~9.5 ms ringing a 3 kHz resonance."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fs
    x = 0.3 * rng.standard_normal(n) + 0.5 * np.sin(2 * np.pi * 30 * t)
    imp = np.zeros(n)
    imp[50 :: int(fs / 105)] = 1.0
    ring = np.exp(-t * 800) * np.sin(2 * np.pi * 3000 * t)
    return (x + 3 * np.convolve(imp, ring)[:n]).astype(np.float32)


@pytest.fixture(scope="module")
def default_tf():
    return make_transform(TransformConfig(), fs=FS, length=N)


# ---------------------------------------------------------------------------------------------------
# Morlet definition and helpers


def test_scale_frequency_round_trip_and_pywt_name():
    f = np.array([20.0, 440.0, 5400.0])
    s = frequency_to_scale(f, w0=6.0)
    assert np.allclose(s, 6.0 / (2 * np.pi * f))
    assert np.allclose(scale_to_frequency(s, 6.0), f)
    assert np.allclose(scale_to_frequency(frequency_to_scale(f, 6.0, fs=FS), 6.0, fs=FS), f)
    assert pywt_wavelet_name(6.0).startswith("cmor2.0-0.95492965")


def test_filter_bank_peaks_at_centre_frequency_with_gain_two():
    n, fs = 1000, 1000.0  # 1 Hz bins
    bank = morlet_filter_bank(n, fs, [50.0, 200.0], w0=6.0)
    assert bank.shape == (2, n)
    assert np.argmax(bank[0]) == 50 and np.argmax(bank[1]) == 200
    assert np.allclose(bank[:, [50, 200]].max(axis=1), 2.0)
    assert np.all(bank[:, n // 2 + 1 :] == 0) and np.all(bank[:, 0] == 0)  # analytic: no f <= 0


def test_cwt_frequencies_defaults_and_nyquist():
    f = cwt_frequencies(FS, 20.0, 0.0, 64)
    assert f[0] == pytest.approx(20.0) and f[-1] == pytest.approx(0.45 * FS)
    assert np.all(np.diff(f) > 0)
    with pytest.raises(DiagError, match="Nyquist"):
        cwt_frequencies(FS, 20.0, 7000.0, 64)


# ---------------------------------------------------------------------------------------------------
# CWT correctness


@pytest.mark.parametrize("f", [60.0, 150.0, 400.0, 1000.0, 2500.0, 5300.0])
def test_tone_peaks_in_its_row(default_tf, f):
    img = default_tf(tone(f)[None, None])[0, 0]
    row = int(np.argmax(img.mean(axis=1)))
    freqs = default_tf.frequencies
    step = np.log(freqs[1] / freqs[0])
    assert abs(np.log(freqs[row] / f)) <= step, (f, freqs[row])


def test_tone_amplitude_is_preserved_by_l1_normalisation():
    f = 1000.0
    w = cwt(tone(f, amp=2.5).astype(np.float64), FS, [f])
    assert np.median(np.abs(w[0, N // 4 : 3 * N // 4])) == pytest.approx(2.5, rel=1e-3)


def test_cwt_matches_pywt_cmor():
    """|pywt.cwt(x, a, 'cmor2.0-C', method='fft')| = |W| * sqrt(a)/2 * sinc(f/fs), C = w0/(2 pi), a = s*fs.

    sinc(f/fs) is pywt's own gain: it differences the integrated wavelet (a one-sample box filter).
    pywt samples its wavelet on a grid of 2**precision points; precision 16 makes that error small.
    Compared away from the edges, frequencies 100..1200 Hz (pywt scales >= 7.6 samples), to 3 % of
    each row's maximum.
    """
    pywt = pytest.importorskip("pywt")
    n, w0 = 4096, 6.0
    x = np.random.default_rng(1).standard_normal(n)
    freqs = np.geomspace(100.0, 1200.0, 12)
    a = frequency_to_scale(freqs, w0, fs=FS)
    coef, _ = pywt.cwt(x, a, pywt_wavelet_name(w0), sampling_period=1 / FS, method="fft", precision=16)
    theirs = np.abs(coef) * 2 / np.sqrt(a)[:, None] / np.sinc(freqs / FS)[:, None]
    mine = np.abs(cwt(x, FS, freqs, w0, pad="zero"))
    mid = slice(n // 4, 3 * n // 4)
    err = np.abs(mine[:, mid] - theirs[:, mid]).max(axis=1) / mine[:, mid].max(axis=1)
    assert err.max() < 0.03, np.round(err, 4)


def test_cwt_axis_and_dtype():
    x = np.random.default_rng(2).standard_normal((N, 3)).astype(np.float32)
    freqs = [100.0, 1000.0]
    w = cwt(x, FS, freqs, axis=0)
    assert w.shape == (2, N, 3) and w.dtype == np.complex64
    w_last = cwt(np.ascontiguousarray(x.T), FS, freqs)  # [3, 2, N]
    assert np.allclose(np.moveaxis(w_last, 0, -1), w, atol=1e-5)
    assert cwt(x.astype(np.float64), FS, freqs, axis=0).dtype == np.complex128


def test_padding_modes_agree_away_from_edges():
    x = np.random.default_rng(3).standard_normal(N)
    freqs = np.geomspace(300, 3000, 8)  # near Nyquist the band's cut at fs/2 rings a little (~0.4 %)
    mid = slice(N // 4, 3 * N // 4)
    ref = np.abs(cwt(x, FS, freqs, pad="symmetric"))[:, mid]
    for pad in ("periodic", "zero"):
        assert np.abs(np.abs(cwt(x, FS, freqs, pad=pad))[:, mid] - ref).max() < 1e-3 * ref.max()


def test_fast_scalogram_matches_full_resolution_after_pooling():
    """The banded, decimated CWT agrees with the full computation pooled by area to 5 % of each row's
    maximum (RMS magnitude per column); with one CWT sample per signal sample it is exact up to the
    truncated Gaussian tails (1e-3 of the image maximum)."""
    rng = np.random.default_rng(4)
    x = np.stack([bearing_like(seed=1), rng.standard_normal(N), np.zeros(N), tone(777.0)]).astype(np.float32)
    x[2, ::97] = 1.0  # impulse train
    freqs = cwt_frequencies(FS, 20.0, 0.0, 64)
    full = np.abs(cwt(x.astype(np.float64), FS, freqs)) ** 2
    ref = np.sqrt(resize_area(full, (64, 64)))
    fast = cwt_scalogram(x, FS, freqs, 64)
    assert fast.shape == ref.shape == (4, 64, 64) and fast.dtype == np.float32
    err = np.abs(fast - ref) / ref.max(axis=-1, keepdims=True)
    assert err.max() < 0.05, err.max()
    exact = cwt_scalogram(x, FS, freqs, 64, min_per_col=N // 64)  # differs only by the 4-sigma band cut
    assert (np.abs(exact - ref) / ref.max(axis=(-2, -1), keepdims=True)).max() < 1e-3


def test_fast_scalogram_odd_sizes():
    """Window and image widths that do not divide: 2000 samples -> 50 columns of 40 samples, and 48."""
    x = bearing_like(n=2000)[None]
    freqs = cwt_frequencies(FS, 50.0, 0.0, 40)
    full = np.abs(cwt(x.astype(np.float64), FS, freqs)) ** 2
    for cols in (50, 48):
        ref = np.sqrt(resize_area(full, (40, cols)))
        fast = cwt_scalogram(x, FS, freqs, cols)
        assert (np.abs(fast - ref) / ref.max(axis=-1, keepdims=True)).max() < 0.05


def test_impulse_train_shows_in_high_frequency_rows_at_the_right_columns():
    cfg = TransformConfig(norm="none")  # dB values
    tf = make_transform(cfg, fs=FS, length=N)
    pos = [300, 1000, 1700]
    x = np.zeros(N, np.float32)
    x[pos] = 1.0
    img = tf(x[None, None])[0, 0]
    high = img[tf.frequencies > 2000].mean(axis=0)  # dB per column
    cols = [p // (N // 64) for p in pos]
    for c in cols:
        assert int(np.argmax(high[max(0, c - 4) : c + 5])) + max(0, c - 4) == c
    far = [j for j in range(64) if min(abs(j - c) for c in cols) > 3]
    assert high[cols].min() > high[far].max() + 20.0  # impulses stand 20 dB above the gaps


# ---------------------------------------------------------------------------------------------------
# STFT


def test_stft_tone_peaks_at_its_bin_with_its_amplitude():
    f = 3000.0  # bin 32 of a 128-point STFT at 12 kHz
    fr, t, s = stft_magnitude(tone(f, amp=0.7)[None], FS, nperseg=128, noverlap=96)
    assert s.shape == (1, 65, 64) and len(t) == 64
    assert fr[np.argmax(s[0].mean(axis=1))] == pytest.approx(f)
    assert np.median(s[0, 32]) == pytest.approx(0.7, rel=1e-3)


def test_stft_transform_tone_row():
    tf = make_transform(TransformConfig(kind="stft"), fs=FS, length=N)
    for f in (500.0, 2200.0, 4700.0):
        img = tf(tone(f)[None, None])[0, 0]
        row = int(np.argmax(img.mean(axis=1)))
        assert abs(tf.frequencies[row] - f) <= FS / 128, (f, tf.frequencies[row])
    assert np.all(np.diff(tf.frequencies) > 0) and tf.frequencies[0] == pytest.approx(0.0)


# ---------------------------------------------------------------------------------------------------
# resize_area


def test_resize_area_preserves_mean_and_is_antialiased():
    x = np.random.default_rng(5).standard_normal((3, 37, 50))
    y = resize_area(x, (16, 21))
    assert y.shape == (3, 16, 21)
    assert np.allclose(y.mean(axis=(-2, -1)), x.mean(axis=(-2, -1)), atol=1e-12)
    stripes = np.tile((-1.0) ** np.arange(64), (8, 1))  # alternating columns: energy at Nyquist
    assert np.abs(resize_area(stripes, (8, 32))).max() < 1e-12  # factor 2: exactly the mean
    pooled = resize_area(stripes, (8, 24))  # factor 2.67: each cell sees >= 2 samples of both signs
    assert np.abs(pooled).max() <= 0.38
    assert np.abs(stripes[:, ::3][:, :24]).min() == 1.0  # what sample dropping would give instead
    const = np.full((10, 10), 4.0)
    assert np.allclose(resize_area(const, (7, 13)), 4.0)
    t = resize_area(torch.tensor(x, dtype=torch.float64), (16, 21))
    assert np.allclose(t.numpy(), y)


# ---------------------------------------------------------------------------------------------------
# Transform API


def test_bad_input_raises_diagerror(default_tf):
    good = np.zeros((2, 1, N), np.float32)
    bad_inputs = [
        good[0],  # 2-D
        np.zeros((2, 1, N - 1), np.float32),  # wrong length
        np.zeros((2, 0, N), np.float32),  # no channel
        np.where(np.arange(N) == 5, np.nan, 0.0)[None, None].astype(np.float32),
        np.where(np.arange(N) == 5, np.inf, 0.0)[None, None],
        good.astype(np.complex64),
    ]
    for x in bad_inputs:
        with pytest.raises(DiagError) as err:
            default_tf(x)
        assert "\n" not in str(err.value)
    with pytest.raises(DiagError, match="Nyquist"):
        make_transform(TransformConfig(fmax=6000.0), fs=FS, length=N)
    with pytest.raises(DiagError, match="nperseg"):
        make_transform(TransformConfig(kind="stft", nperseg=4096, noverlap=0), fs=FS, length=N)
    with pytest.raises(DiagError):
        make_transform(TransformConfig(kind="wavelets"), fs=FS, length=N)
    with pytest.raises(DiagError):
        cwt(np.full(64, np.nan), FS, [100.0])
    with pytest.raises(DiagError):
        cwt(np.zeros(64), FS, [7000.0])


def test_same_input_same_output_and_batch_invariance(default_tf):
    x = np.stack([bearing_like(seed=s) for s in range(5)])[:, None]
    a, b = default_tf(x), default_tf(x)
    assert a.dtype == np.float32 and a.shape == (5, 1, 64, 64)
    assert np.array_equal(a, b)
    assert np.allclose(default_tf(x[2:3]), a[2:3], atol=1e-4)


def test_image_norm_and_constant_input(default_tf):
    x = np.stack([bearing_like(seed=7), np.full(N, 1e-3, np.float32)])[:, None]
    img = default_tf(x)
    assert np.isfinite(img).all()
    assert img[0, 0].mean() == pytest.approx(0.0, abs=1e-5) and img[0, 0].std() == pytest.approx(1.0, abs=1e-4)
    assert np.abs(img[1, 0]).max() < 1e-3  # constant window: flat image, no NaN
    raw = make_transform(TransformConfig(log=False, norm="none"), fs=FS, length=N)(tone(1000.0, amp=2.0)[None, None])
    assert raw.max() == pytest.approx(2.0, rel=0.02)  # linear images are RMS magnitudes in units of x


def test_cwt_plus_stft_stacks_two_channels_per_input_in_input_order():
    cfg = TransformConfig(kind="cwt+stft", norm="image")  # per image, so one sensor's image stands alone
    both = make_transform(cfg, fs=FS, length=N)
    assert both.out_channels_per_input == 2
    x = np.stack([tone(300.0), tone(1500.0), tone(4000.0)])[None]  # [1, 3, N]: three sensors
    img = both(x)
    assert img.shape == (1, 6, 64, 64)
    only_cwt = make_transform(TransformConfig(kind="cwt"), fs=FS, length=N)
    only_stft = make_transform(TransformConfig(kind="stft"), fs=FS, length=N)
    auto = make_transform(TransformConfig(kind="cwt+stft"), fs=FS, length=N)  # auto: joint for 3 channels
    joint = make_transform(TransformConfig(kind="cwt+stft", norm="image-joint"), fs=FS, length=N)
    assert np.array_equal(auto(x), joint(x)) and not np.allclose(auto(x), img, atol=1e-2)
    assert np.array_equal(auto(x[:, :1]), both(x[:, :1]))  # one channel: auto = image
    for c, f in enumerate((300.0, 1500.0, 4000.0)):
        assert np.allclose(img[0, 2 * c], only_cwt(x[:, c : c + 1])[0, 0], atol=1e-4)
        assert np.allclose(img[0, 2 * c + 1], only_stft(x[:, c : c + 1])[0, 0], atol=1e-4)
        row = int(np.argmax(img[0, 2 * c].mean(axis=1)))
        assert abs(np.log(both.row_frequencies["cwt"][row] / f)) < 0.1
        row = int(np.argmax(img[0, 2 * c + 1].mean(axis=1)))
        assert abs(both.row_frequencies["stft"][row] - f) <= FS / 128


def test_other_sizes_and_the_prepare_test_config():
    cfg = TransformConfig(size=[48, 50], n_scales=64)  # H != n_scales, W does not divide 2000
    tf = make_transform(cfg, fs=FS, length=2000)
    img = tf(tone(1000.0, n=2000)[None, None])
    assert img.shape == (1, 1, 48, 50) and len(tf.frequencies) == 48
    row = int(np.argmax(img[0, 0].mean(axis=1)))
    assert abs(np.log(tf.frequencies[row] / 1000.0)) <= np.log(tf.frequencies[1] / tf.frequencies[0])
    small = TransformConfig(size=[32, 32], n_scales=32, fmin=10.0)  # tests/test_prepare.py settings
    tf = make_transform(small, fs=1000.0, length=256)
    assert tf(np.zeros((1, 2, 256), np.float32) + 1e-3).shape == (1, 2, 32, 32)


def test_to_dict_is_json_and_describes_rows(default_tf):
    d = json.loads(json.dumps(default_tf.to_dict()))
    assert d["kind"] == "cwt" and d["size"] == [64, 64] and d["out_channels_per_input"] == 1
    f = d["frequencies_hz"]["cwt"]
    assert len(f) == 64 and f[0] == pytest.approx(TransformConfig().fmin) and f[-1] == pytest.approx(5400.0)
    assert np.all(np.diff(default_tf.frequencies) > 0)


def test_torch_tensor_input_gives_tensor_output(default_tf):
    x = np.stack([bearing_like(seed=3), bearing_like(seed=4)])[:, None]
    out = default_tf(torch.from_numpy(x))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert np.allclose(out.numpy(), default_tf(x), atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_path_matches_cpu(default_tf):
    x = np.stack([bearing_like(seed=s) for s in range(4)])[:, None]
    both = make_transform(TransformConfig(kind="cwt+stft"), fs=FS, length=N)
    gpu = both(torch.from_numpy(x).cuda())
    assert gpu.is_cuda
    assert np.allclose(gpu.cpu().numpy(), both(x), atol=2e-3)
    on_gpu = make_transform(TransformConfig(), fs=FS, length=N, device="cuda")
    assert np.allclose(on_gpu(x), default_tf(x), atol=2e-3)
