"""Physics checks of the bearing vibration simulator (diag.simulate.bearing)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import signal as sps

from diag.errors import DiagError
from diag.simulate.bearing import BearingGeometry, simulate_bearing, simulate_bearing_recordings

FS = 12000.0


def envelope_spectrum(x: np.ndarray, fs: float, band=(2200.0, 3800.0)) -> tuple[np.ndarray, np.ndarray]:
    """Band-pass around the resonance, Hilbert envelope, FFT magnitude of the (mean-free) envelope."""
    sos = sps.butter(4, band, btype="band", fs=fs, output="sos")
    env = np.abs(sps.hilbert(sps.sosfiltfilt(sos, x)))
    env = (env - env.mean()) * np.hanning(env.size)
    return np.fft.rfftfreq(env.size, 1 / fs), np.abs(np.fft.rfft(env))


def peak_in(f, S, lo, hi):
    sel = (f >= lo) & (f <= hi)
    return f[sel][np.argmax(S[sel])]


def level_at(f, S, f0, floor_band=(20.0, 500.0), tol=0.02):
    """Largest line within +-tol of f0, relative to the median of the envelope spectrum."""
    near = np.abs(f - f0) <= tol * f0
    band = (f >= floor_band[0]) & (f <= floor_band[1])
    return S[near].max() / np.median(S[band])


def test_geometry_gives_cwru_multiples():
    o = BearingGeometry().orders()
    assert o["bpfi"] == pytest.approx(5.4152, rel=2e-4)
    assert o["bpfo"] == pytest.approx(3.5848, rel=2e-4)
    assert o["ftf"] == pytest.approx(0.39828, rel=2e-4)
    # CWRU's "BSF" 4.7135 is the ball-defect impact rate 2 x BSF; BSF itself is half of it
    assert o["bdf"] == pytest.approx(4.7135, rel=2e-4)
    assert o["bsf"] == pytest.approx(4.7135 / 2, rel=2e-4)
    assert o["bpfo"] + o["bpfi"] == pytest.approx(9)  # Z balls pass one point per revolution in total


def test_outer_race_envelope_peaks_at_bpfo():
    x, info = simulate_bearing(fault="outer", severity=0.3, rpm=1750, duration=2.0, snr_db=0.0, seed=1)
    f, S = envelope_spectrum(x, FS)
    bpfo = info["defect_hz"]["bpfo"]
    fp = peak_in(f, S, 20, 500)
    assert abs(fp - bpfo) / bpfo < 0.02, (fp, bpfo)
    assert level_at(f, S, bpfo) > 10


def test_inner_race_envelope_peaks_at_bpfi_with_shaft_sidebands():
    x, info = simulate_bearing(fault="inner", severity=0.3, rpm=1750, duration=2.0, snr_db=0.0,
                               am_depth=0.6, seed=2)
    f, S = envelope_spectrum(x, FS)
    bpfi, fr = info["defect_hz"]["bpfi"], info["shaft_hz"][0]
    fp = peak_in(f, S, 100, 500)
    assert abs(fp - bpfi) / bpfi < 0.02, (fp, bpfi)
    # amplitude modulation at the shaft rate: sidebands at BPFI +- fr stand out of the floor
    assert level_at(f, S, bpfi - fr, tol=0.01 * bpfi / (bpfi - fr)) > 5
    assert level_at(f, S, bpfi + fr, tol=0.01 * bpfi / (bpfi + fr)) > 5


def test_ball_fault_strikes_at_twice_bsf():
    x, info = simulate_bearing(fault="ball", severity=0.3, rpm=1750, duration=2.0, snr_db=5.0, seed=3)
    f, S = envelope_spectrum(x, FS)
    bdf = info["defect_hz"]["bdf"]
    assert abs(peak_in(f, S, 100, 500) - bdf) / bdf < 0.02


def test_normal_has_no_defect_line():
    x, info = simulate_bearing(fault="normal", rpm=1750, duration=2.0, snr_db=0.0, seed=4)
    f, S = envelope_spectrum(x, FS)
    for key in ("bpfo", "bpfi", "bdf"):
        assert level_at(f, S, info["defect_hz"][key]) < 5, key
    assert info["impact_times"] == {}


def test_combined_has_both_lines():
    x, info = simulate_bearing(fault="combined", severity=0.3, duration=2.0, snr_db=5.0, seed=5)
    f, S = envelope_spectrum(x, FS)
    assert level_at(f, S, info["defect_hz"]["bpfo"]) > 8
    assert level_at(f, S, info["defect_hz"]["bpfi"]) > 8


@pytest.mark.parametrize("snr", [-10.0, 0.0, 12.0])
def test_snr_is_what_was_asked(snr):
    kw = dict(fault="outer", severity=0.3, duration=1.0, seed=7)
    clean, _ = simulate_bearing(snr_db=None, **kw)
    noisy, info = simulate_bearing(snr_db=snr, **kw)
    noise = noisy - clean
    measured = 10 * np.log10(np.mean(clean**2) / np.mean(noise**2))
    assert measured == pytest.approx(snr, abs=0.1)
    assert np.std(noise) == pytest.approx(info["noise_rms"], rel=0.02)
    assert abs(np.mean(noise)) < 0.05 * info["noise_rms"]


def test_snr_healthy_reference_ignores_the_fault():
    kw = dict(duration=1.0, seed=8, snr_reference="healthy")
    healthy, _ = simulate_bearing(fault="normal", snr_db=None, **kw)
    clean, _ = simulate_bearing(fault="outer", severity=0.5, snr_db=None, **kw)
    noisy, _ = simulate_bearing(fault="outer", severity=0.5, snr_db=3.0, **kw)
    measured = 10 * np.log10(np.mean(healthy**2) / np.mean((noisy - clean) ** 2))
    assert measured == pytest.approx(3.0, abs=0.1)
    # same noise floor with and without the fault
    _, info_n = simulate_bearing(fault="normal", snr_db=3.0, **kw)
    _, info_f = simulate_bearing(fault="outer", severity=0.5, snr_db=3.0, **kw)
    assert info_n["noise_rms"] == pytest.approx(info_f["noise_rms"])


def test_speed_ramp_impacts_at_constant_shaft_angle():
    """Run-up 1200 -> 1800 rpm: impacts sit on a constant shaft-angle grid (order tracking)."""
    duration = 2.0
    x, info = simulate_bearing(fault="outer", severity=0.3, rpm=(1200, 1800), duration=duration,
                               snr_db=10.0, slip=0.0, seed=9)
    f0, f1 = info["shaft_hz"]
    n = x.size
    accel = (f1 - f0) / (n / FS)

    def angle(t):
        return f0 * t + 0.5 * accel * t * t

    times = info["impact_times"]["outer"]
    spacing = np.diff(angle(times))
    assert np.allclose(spacing, 1 / info["orders"]["bpfo"], rtol=1e-9)
    # impact rate rises with the speed: first and last intervals in time differ by the speed ratio
    dt = np.diff(times)
    assert dt[:5].mean() / dt[-5:].mean() == pytest.approx(1800 / 1200, rel=0.03)

    # from the signal alone: envelope resampled on a uniform shaft-angle grid peaks at the BPFO order
    sos = sps.butter(4, (2200, 3800), btype="band", fs=FS, output="sos")
    env = np.abs(sps.hilbert(sps.sosfiltfilt(sos, x)))
    t = np.arange(n) / FS
    rev = angle(t)
    per_rev = 256
    grid = np.arange(0, rev[-1], 1 / per_rev)
    env_ang = np.interp(grid, rev, env)
    env_ang = (env_ang - env_ang.mean()) * np.hanning(env_ang.size)
    spec = np.abs(np.fft.rfft(env_ang))
    orders = np.fft.rfftfreq(env_ang.size, 1 / per_rev)
    sel = (orders > 1.5) & (orders < 10)
    peak_order = orders[sel][np.argmax(spec[sel])]
    assert abs(peak_order - info["orders"]["bpfo"]) / info["orders"]["bpfo"] < 0.01
    # whereas the plain envelope spectrum in Hz is smeared over 3.58 x (20 .. 30 Hz)
    f, S = envelope_spectrum(x, FS)
    order_peak_ratio = spec[sel].max() / np.median(spec[(orders > 1) & (orders < 15)])
    hz_peak_ratio = S[(f > 60) & (f < 120)].max() / np.median(S[(f > 20) & (f < 500)])
    assert order_peak_ratio > 2 * hz_peak_ratio


def test_slip_jitters_spacing_by_about_the_requested_amount():
    _, info = simulate_bearing(fault="outer", duration=5.0, slip=0.015, snr_db=None, seed=10)
    d = np.diff(info["impact_times"]["outer"]) * info["defect_hz"]["bpfo"]
    assert np.mean(d) == pytest.approx(1.0, abs=0.005)
    assert np.std(d) == pytest.approx(0.015, rel=0.25)


def test_deterministic_from_seed():
    a, _ = simulate_bearing(fault="inner", duration=0.5, seed=11)
    b, _ = simulate_bearing(fault="inner", duration=0.5, seed=11)
    c, _ = simulate_bearing(fault="inner", duration=0.5, seed=12)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(rpm=-1750), "rpm"),
        (dict(rpm=(1000, -5)), "rpm"),
        (dict(snr_db=70), "SNR"),
        (dict(snr_db=-25), "SNR"),
        (dict(geometry=BearingGeometry(ball_diameter=1.6, pitch_diameter=1.537)), "ball_diameter"),
        (dict(geometry=BearingGeometry(n_balls=20)), "n_balls"),
        (dict(fs=5000.0), "Nyquist"),
        (dict(resonances=[(3000.0, 1.5)]), "damping"),
        (dict(fault="cage"), "fault"),
        (dict(severity=0.0), "severity"),
        (dict(slip=0.5), "slip"),
        (dict(duration=0.0), "duration"),
        (dict(snr_reference="peak"), "snr_reference"),
    ],
)
def test_invalid_parameters_refused(kwargs, match):
    with pytest.raises(DiagError, match=match):
        simulate_bearing(**{"duration": 0.2, **kwargs})


# --------------------------------------------------------------------------------------------
# Dataset


def test_dataset_structure():
    recs = simulate_bearing_recordings(recordings_per_class=8, duration=0.5)
    assert len(recs) == 32
    assert {r.label for r in recs} == {"normal", "inner", "outer", "ball"}
    assert len({r.group for r in recs}) == 32
    assert {r.condition for r in recs} == {"1797rpm", "1772rpm", "1750rpm", "1730rpm"}
    assert {r.fault_size for r in recs if r.label == "normal"} == {""}
    assert {r.fault_size for r in recs if r.label != "normal"} == {"0.15", "0.3"}
    # every (speed, severity) pair once per faulty class
    pairs = {(r.condition, r.fault_size) for r in recs if r.label == "outer"}
    assert len(pairs) == 8
    # no trivial cue: same rate, length and channel layout for every class
    assert {r.fs for r in recs} == {12000.0}
    assert {r.n_samples for r in recs} == {6000}
    assert {r.channels for r in recs} == {("accel",)}
    for r in recs:
        r.validate()
        json.dumps(r.meta)
        assert r.meta["fault"] == r.label


def test_dataset_deterministic_and_keyed_by_class():
    a = simulate_bearing_recordings(classes=["normal", "outer"], recordings_per_class=2, duration=0.3, seed=3)
    b = simulate_bearing_recordings(classes=["normal", "outer"], recordings_per_class=2, duration=0.3, seed=3)
    c = simulate_bearing_recordings(classes=["outer"], recordings_per_class=2, duration=0.3, seed=3)
    d = simulate_bearing_recordings(classes=["normal", "outer"], recordings_per_class=2, duration=0.3, seed=4)
    assert all(np.array_equal(x.signal, y.signal) for x, y in zip(a, b))
    assert np.array_equal(a[2].signal, c[0].signal)  # adding "normal" does not change "outer"
    assert not np.allclose(a[0].signal, d[0].signal)


def test_dataset_noise_floor_does_not_depend_on_the_class():
    recs = simulate_bearing_recordings(classes="all", recordings_per_class=8, duration=0.3, snr_db=0.0)
    by = {}
    for r in recs:
        healthy_power = 0.5 * sum(a * a for a in r.meta["shaft_amplitudes"]) + r.meta["roughness"] ** 2
        by.setdefault(r.label, []).append(r.meta["noise_rms"] ** 2 / healthy_power)
    for label, ratios in by.items():
        assert np.allclose(ratios, 1.0, rtol=0.1), label


def test_dataset_ramp_and_combined():
    recs = simulate_bearing_recordings(classes=["combined"], recordings_per_class=1, duration=0.3, ramp=0.1)
    rpm = recs[0].meta["rpm"]
    assert abs(rpm[1] - rpm[0]) == pytest.approx(0.1 * 1797, rel=0.01)
    assert set(recs[0].meta["n_impacts"]) == {"inner", "outer"}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(classes=["normal", "cracked"]), "classes"),
        (dict(recordings_per_class=0), "recordings_per_class"),
        (dict(snr_db=[-30, 0]), "snr_db"),
        (dict(rpm=[1797, -10]), "rpm"),
        (dict(fs=8000.0), "fs"),
        (dict(ball_diameter=2.0), "ball_diameter"),
        (dict(severities=[]), "severities"),
        (dict(ramp=1.5), "ramp"),
    ],
)
def test_dataset_invalid_options_refused(kwargs, match):
    with pytest.raises(DiagError, match=match):
        simulate_bearing_recordings(duration=0.1, **kwargs)


def test_cli_simulate_bearing_writes_the_files_format(tmp_path):
    from typer.testing import CliRunner

    from diag.cli import app
    from diag.sources.files import read_files

    out = tmp_path / "bearing"
    res = CliRunner().invoke(app, ["simulate", "bearing", "--out", str(out), "--seed", "2",
                                   "--set", "recordings_per_class=2", "--set", "duration=0.25",
                                   "--set", "classes=[normal, outer]"])
    assert res.exit_code == 0, res.output
    assert "2 classes x 2 recordings" in res.output
    back = read_files(str(out))
    direct = simulate_bearing_recordings(classes=["normal", "outer"], recordings_per_class=2, duration=0.25, seed=2)
    assert [r.label for r in back] == [r.label for r in direct]
    assert [r.condition for r in back] == [r.condition for r in direct]
    assert np.allclose(back[3].signal, direct[3].signal.astype(np.float32))

    bad = CliRunner().invoke(app, ["simulate", "bearing", "--out", str(tmp_path / "x"), "--set", "snr_db=90"])
    assert bad.exit_code == 2 and "snr_db" in bad.output
