"""Order images: envelope spectra on a shaft-order axis (``envorder``) and harmonic spectra (``harmonics``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import diag.commands.prepare as prep
from diag.config import TransformConfig
from diag.signal.dataset import PreparedDataset
from diag.errors import DiagError
from diag.simulate.bearing import BearingGeometry, simulate_bearing
from diag.sources.base import Recording
from diag.signal.transforms import make_transform, order_spectrum, reference_hz, window_reference_hz

FS = 12000.0
N = 2048
ORDERS = BearingGeometry().orders()  # bpfo 3.585, bpfi 5.415, bdf 4.713


def windows_of(x: np.ndarray, n: int = 4, hop: int = 1024) -> np.ndarray:
    return np.stack([x[i * hop : i * hop + N] for i in range(n)])[:, None].astype(np.float32)


def peak_row(img: np.ndarray, channel: int = 0) -> int:
    """Row of the largest mean over windows and columns."""
    return int(img[:, channel].mean(axis=(0, 2)).argmax())


def row_of(tf, order: float, kind: str = "envorder") -> int:
    edges = np.linspace(tf.cfg.order_min, tf.cfg.order_max, tf.height + 1)
    return int(np.searchsorted(edges, order, side="right") - 1)


@pytest.mark.parametrize("mode", ["sk", "bands", "fixed"])
def test_outer_race_fault_peaks_at_the_bpfo_row_at_three_speeds(mode):
    cfg = TransformConfig(kind="envorder", env_mode=mode, env_band=[2000.0, 4000.0] if mode == "fixed" else [])
    tf = make_transform(cfg, fs=FS, length=N)
    target = row_of(tf, ORDERS["bpfo"])
    rows = []
    for rpm, seed in ((900.0, 1), (1750.0, 2), (2600.0, 3)):
        x, info = simulate_bearing(fault="outer", rpm=rpm, duration=0.5, snr_db=0.0, seed=seed)
        img = tf(windows_of(x), ref_hz=info["shaft_hz"][0])
        rows.append(peak_row(img))
    # the impact rate in Hz changes 2.9x between these speeds; in orders it stays in one row
    assert all(abs(r - target) <= 1 for r in rows), (rows, target)


def test_inner_race_fault_peaks_at_the_bpfi_row_and_differs_from_outer():
    tf = make_transform(TransformConfig(kind="envorder"), fs=FS, length=N)
    for rpm in (1200.0, 2200.0):
        x, info = simulate_bearing(fault="inner", rpm=rpm, duration=0.5, snr_db=5.0, am_depth=0.3, seed=4)
        img = tf(windows_of(x), ref_hz=rpm / 60.0)
        assert abs(peak_row(img) - row_of(tf, ORDERS["bpfi"])) <= 1


def test_a_wrong_shaft_rate_moves_the_line():
    """The axis really is frequency / ref_hz: telling it the shaft turns 25 % faster moves the line down."""
    tf = make_transform(TransformConfig(kind="envorder"), fs=FS, length=N)
    x, info = simulate_bearing(fault="outer", rpm=1750.0, duration=0.5, snr_db=10.0, seed=5)
    w = windows_of(x)
    right = peak_row(tf(w, ref_hz=1750.0 / 60))
    wrong = peak_row(tf(w, ref_hz=1.25 * 1750.0 / 60))
    assert abs(tf.row_orders["envorder"][wrong] - ORDERS["bpfo"] / 1.25) <= 0.2
    assert wrong < right - 3


def test_shapes_dtype_channel_order_and_determinism():
    x, info = simulate_bearing(fault="ball", rpm=1797.0, duration=0.5, seed=6)
    w = np.concatenate([windows_of(x), windows_of(-x)], axis=1)  # 2 input channels
    ref = np.array([29.9, 29.95, 30.0, 30.05])
    for kind in ("cwt+envorder", "stft+envorder", "envorder+cwt", "cwt+stft+envorder"):
        tf = make_transform(TransformConfig(kind=kind, size=[48, 40], n_scales=48), fs=FS, length=N)
        img = tf(w, ref_hz=ref)
        k = len(kind.split("+"))
        assert img.shape == (4, 2 * k, 48, 40) and img.dtype == np.float32 and np.isfinite(img).all()
        assert np.array_equal(img, tf(w, ref_hz=ref))  # same input, same numbers
        j = kind.split("+").index("envorder")
        alone = make_transform(TransformConfig(kind="envorder", size=[48, 40]), fs=FS, length=N)(w, ref_hz=ref)
        # input-major channels: representation j of input channel c is output channel c*k + j
        assert np.allclose(img[:, j], alone[:, 0], atol=1e-5) and np.allclose(img[:, k + j], alone[:, 1], atol=1e-5)
    # sk and fixed repeat one spectrum in every column; bands give a band x order map
    sk = make_transform(TransformConfig(kind="envorder"), fs=FS, length=N)(w[:, :1], ref_hz=ref)
    assert np.allclose(sk, sk[..., :1])
    bands_tf = make_transform(TransformConfig(kind="envorder", env_mode="bands"), fs=FS, length=N)
    bands = bands_tf(w[:, :1], ref_hz=ref)
    assert not np.allclose(bands, bands[..., :1])
    d = bands_tf.to_dict()["envorder"]
    assert len(d["bands_hz"]) == 64 and d["bands_hz"][0][0] < 100 and d["bands_hz"][-1][1] > 5900
    assert bands_tf.row_units == "order" and len(bands_tf.frequencies) == 64


def test_harmonics_rows_are_multiples_of_the_fundamental():
    tf = make_transform(TransformConfig(kind="harmonics", order_min=0.0, order_max=16.0), fs=10000.0, length=N)
    for f1 in (20.0, 47.0):
        t = np.arange(N) / 10000.0
        x = np.sin(2 * np.pi * f1 * t) + 0.1 * np.sin(2 * np.pi * 5 * f1 * t + 1.0)
        img = tf(x[None, None].astype(np.float32), ref_hz=f1)[0, 0, :, 0]
        r1 = row_of(tf, 1.0)
        assert int(img.argmax()) == r1, f1
        # the Hann main lobe (+-2 bins = +-9.8 Hz) spreads the fundamental over a few rows at 20 Hz;
        # away from it the 5th harmonic is the peak
        far = img.copy()
        far[max(r1 - 3, 0) : r1 + 4] = -np.inf
        assert abs(int(far.argmax()) - row_of(tf, 5.0)) <= 1, (f1, int(far.argmax()))
    orders, p = order_spectrum(x, 10000.0, 47.0, kind="harmonics", cfg=tf.cfg)
    # amplitude-scaled: a unit tone's power, spread over its row cell, is a sizeable fraction of 1
    assert p.shape == (64,) and 0.05 < p.max() <= 1.0 and orders[p.argmax()] == pytest.approx(1.0, abs=0.13)


def test_bad_reference_rates_and_settings_are_one_line_errors():
    tf = make_transform(TransformConfig(kind="cwt+envorder"), fs=FS, length=N)
    w = np.zeros((2, 1, N), np.float32)
    with pytest.raises(DiagError, match="needs ref_hz"):
        tf(w)
    with pytest.raises(DiagError, match="finite and > 0"):
        tf(w, ref_hz=[30.0, -1.0])
    with pytest.raises(DiagError, match="one per window"):
        tf(w, ref_hz=[30.0, 30.0, 30.0])
    with pytest.raises(DiagError, match="env_bandwidth"):  # 12 orders of 100 Hz do not fit a 1 kHz band
        tf(w, ref_hz=100.0)
    assert make_transform(TransformConfig(kind="cwt"), fs=FS, length=N)(w, ref_hz=None).shape == (2, 1, 64, 64)
    for bad, msg in ((dict(kind="cwt+wavelet"), "transform.kind"), (dict(kind="envorder+harmonics"), "reference"),
                     (dict(kind="cwt+cwt"), "transform.kind"), (dict(order_min=5.0, order_max=2.0), "order_min"),
                     (dict(env_mode="fixed"), "env_band"), (dict(env_band=[1000.0, 3000.0]), "env_mode"),
                     (dict(env_mode="kurtogram"), "env_mode"), (dict(ref_hz=-3.0), "ref_hz")):
        with pytest.raises(DiagError, match=msg):
            TransformConfig(**bad).validate()
    with pytest.raises(DiagError, match="Nyquist"):
        make_transform(TransformConfig(kind="envorder", env_mode="fixed", env_band=[5000.0, 7000.0]), fs=FS, length=N)


def test_reference_rate_comes_from_meta_else_config_and_follows_a_ramp():
    env, harm = TransformConfig(kind="cwt+envorder"), TransformConfig(kind="harmonics")
    assert reference_hz({"rpm": 1797.0}, env) == ((29.95, 29.95), "recording meta 'rpm'")
    assert reference_hz({"shaft_hz": [20.0, 30.0], "rpm": 1.0}, env)[0] == (20.0, 30.0)
    assert reference_hz({"rpm": "n/a"}, env) == (None, "none")
    assert reference_hz({}, TransformConfig(kind="envorder", ref_hz=25.0)) == ((25.0, 25.0), "config transform.ref_hz")
    assert reference_hz({"f1": 50.0, "rpm": 1500.0}, harm) == ((50.0, 50.0), "recording meta 'f1'")
    assert reference_hz({"rpm": 1500.0}, TransformConfig()) == (None, "not needed")
    r = window_reference_hz((20.0, 30.0), [0, 4000 - 1000], 1000, 4000)
    assert np.allclose(r, [20.0 + 10 * 500 / 4000, 20.0 + 10 * 3500 / 4000])


def _bearing_recording(rpm: float, seed: int, fault: str = "outer", meta: bool = True) -> Recording:
    x, info = simulate_bearing(fault=fault, rpm=rpm, duration=2.0, snr_db=5.0, seed=seed)
    return Recording(x[None].astype(np.float32), FS, fault, group=f"{fault}{seed}", condition=f"{rpm:g}rpm",
                     source=f"sim/{fault}_{seed}.npy", channels=("accel",),
                     meta={"rpm": rpm} if meta else {})


def test_prepare_passes_each_recordings_shaft_rate_and_records_it(tmp_path, monkeypatch):
    recs = [_bearing_recording(rpm, s, fault) for s, (rpm, fault) in
            enumerate([(1000.0, "outer"), (2400.0, "outer"), (1100.0, "inner"), (2300.0, "inner")])]
    monkeypatch.setattr(prep, "load_recordings", lambda cfg: recs)
    sets = ["transform.kind=\"cwt+envorder\"", "split.method=\"time\""]
    ds = PreparedDataset(prep.prepare(None, tmp_path / "ds", sets, quiet=True))
    m = ds.manifest
    assert [r["ref_hz"] for r in m["recordings"]] == [[v / 60, v / 60] for v in (1000.0, 2400.0, 1100.0, 2300.0)]
    assert {r["ref_from"] for r in m["recordings"]} == {"recording meta 'rpm'"}
    assert m["transform"]["envorder"]["env_mode"] == "sk" and len(m["transform"]["envorder"]["orders"]) == 64
    x, meta = ds.images("train").astype(np.float32), ds.meta("train")
    tf = make_transform(TransformConfig(kind="envorder"), fs=FS, length=N)
    for rec, order in ((0, "bpfo"), (1, "bpfo"), (2, "bpfi"), (3, "bpfi")):
        assert abs(peak_row(x[meta["rec"] == rec], channel=1) - row_of(tf, ORDERS[order])) <= 1, rec

    # a recording without a speed: refused, naming the recording and the fix; accepted with transform.ref_hz
    recs.append(_bearing_recording(1500.0, 9, "outer", meta=False))
    with pytest.raises(DiagError, match=r"sim/outer_9.npy: .*transform.ref_hz"):
        prep.prepare(None, tmp_path / "ds2", sets, quiet=True)
    assert not (tmp_path / "ds2").exists()
    m2 = PreparedDataset(prep.prepare(None, tmp_path / "ds3", sets + ["transform.ref_hz=25.0"], quiet=True)).manifest
    assert m2["recordings"][-1]["ref_hz"] == [25.0, 25.0] and m2["recordings"][-1]["ref_from"].startswith("config")
    assert m2["recordings"][0]["ref_from"] == "recording meta 'rpm'"  # a known rpm still wins


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x, info = simulate_bearing(fault="outer", rpm=1750.0, duration=0.5, seed=7)
    w = windows_of(x)
    for mode in ("sk", "bands"):
        cfg = TransformConfig(kind="cwt+envorder", env_mode=mode)
        cpu = make_transform(cfg, fs=FS, length=N)(w, ref_hz=1750 / 60)
        gpu = make_transform(cfg, fs=FS, length=N, device="cuda")(w, ref_hz=1750 / 60)
        assert np.abs(cpu - gpu).max() < 2e-2
