"""Physics checks of the three-phase inverter open-switch simulator (diag.simulate.inverter)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from diag.errors import DiagError
from diag.simulate.inverter import (
    DOUBLE_FAULTS,
    INVERTER_CLASSES,
    SINGLE_FAULTS,
    open_switches,
    simulate_inverter,
    simulate_inverter_recordings,
)

FS = 10000.0
F1 = 50.0


def phasors(x: np.ndarray, fs: float, f1: float) -> tuple[np.ndarray, np.ndarray]:
    """Fundamental complex amplitudes of each row and the THD-like distortion ratio.

    Over a whole number of fundamental periods: ``rms(x - fundamental - mean) / rms(fundamental)``
    (every harmonic and the switching ripple count).
    """
    n = int(int(x.shape[-1] * f1 / fs) * fs / f1)
    X = np.fft.rfft(x[..., :n], axis=-1)
    k = int(round(n * f1 / fs))
    fund = 2 * X[..., k] / n
    other = np.sqrt(np.sum(np.abs(X[..., 1:]) ** 2, axis=-1) - np.abs(X[..., k]) ** 2)
    return fund, other / np.abs(X[..., k])


@pytest.fixture(scope="module")
def healthy():
    return simulate_inverter(fault="normal", m=0.8, f1=F1, duration=0.4, fs=FS, snr_db=None, seed=0)


def test_class_names():
    assert len(INVERTER_CLASSES) == 22 == len(set(INVERTER_CLASSES))
    assert len(SINGLE_FAULTS) == 6 and len(DOUBLE_FAULTS) == 15
    assert open_switches("S1+S4") == ("S1", "S4")
    assert open_switches("normal") == ()


def test_healthy_currents_balanced_sinusoidal_and_as_the_phasor_predicts(healthy):
    x, info = healthy
    fund, thd = phasors(x, FS, F1)
    assert np.all(thd < 0.05), thd
    mags = np.abs(fund)
    assert np.allclose(mags, mags.mean(), rtol=0.01)
    # the solver reproduces the analytic steady state I = (V1 - E e^{-j d}) / (R + j w L)
    assert mags.mean() == pytest.approx(info["steady_current"], rel=0.02)
    shift = np.angle(fund[0] / fund[1], deg=True), np.angle(fund[1] / fund[2], deg=True)
    assert shift == pytest.approx((120.0, 120.0), abs=1.0)


def test_svpwm_linear_up_to_1_15():
    x, info = simulate_inverter(fault="normal", m=1.1, pwm="svpwm", duration=0.2, snr_db=None, seed=1)
    fund, thd = phasors(x, FS, F1)
    assert np.all(thd < 0.05)
    assert np.abs(fund).mean() == pytest.approx(info["steady_current"], rel=0.02)


def test_upper_switch_of_phase_a_open_kills_the_positive_half_cycle(healthy):
    x, info = simulate_inverter(fault="S1", m=0.8, f1=F1, duration=0.4, snr_db=None, seed=0)
    ia = x[0]
    ipk = info["steady_current"]
    assert ia.max() < 0.01 * ipk  # the positive half-cycle is gone
    assert ia.mean() < -0.2 * ipk  # and the mean turns negative
    assert ia.min() < -0.8 * ipk  # the negative half still flows through the lower switch
    assert abs(healthy[0][0].mean()) < 0.01 * ipk
    # phases b and c carry the return current: both means positive
    assert x[1].mean() > 0 and x[2].mean() > 0


def test_lower_switch_open_mirrors_upper_switch_open():
    up, _ = simulate_inverter(fault="S1", duration=0.2, snr_db=None, seed=2)
    lo, info = simulate_inverter(fault="S4", duration=0.2, snr_db=None, seed=2)
    assert lo[0].min() > -0.01 * info["steady_current"]
    assert lo[0].mean() == pytest.approx(-up[0].mean(), rel=0.05)


def test_both_switches_of_a_leg_open_leave_that_phase_nearly_dead():
    x, info = simulate_inverter(fault="S3+S6", duration=0.2, snr_db=None, seed=3)
    ipk = info["steady_current"]
    assert np.sqrt(np.mean(x[1] ** 2)) < 0.02 * ipk  # phase b only conducts through its diodes, briefly
    assert np.allclose(x[0], -x[2], atol=0.03 * ipk)


@pytest.mark.parametrize("fault", INVERTER_CLASSES)
def test_currents_sum_to_zero_isolated_neutral(fault):
    x, info = simulate_inverter(fault=fault, duration=0.06, snr_db=None, seed=4)
    assert np.abs(x.sum(axis=0)).max() < 1e-4 * info["steady_current"]


def test_22_classes_give_22_different_waveforms():
    waves = {}
    for fault in INVERTER_CLASSES:
        x, info = simulate_inverter(fault=fault, duration=0.06, snr_db=None, seed=5)
        waves[fault] = x / info["steady_current"]
    names = list(waves)
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            d = np.sqrt(np.mean((waves[names[a]] - waves[names[b]]) ** 2))
            assert d > 0.05, (names[a], names[b], d)


def test_time_chunks_join_without_seams():
    kw = dict(fault="S1+S3", duration=0.08, l=6e-3, r=1.5, snr_db=None, seed=6)
    whole, info = simulate_inverter(chunk=1.0, **kw)
    chunked, _ = simulate_inverter(chunk=0.02, **kw)
    assert np.abs(whole - chunked).max() < 0.005 * info["steady_current"]


def test_integration_step_converged():
    kw = dict(fault="S2", duration=0.1, fsw=8000.0, snr_db=None, seed=7)
    fine, info = simulate_inverter(steps_per_carrier=80, **kw)
    default, _ = simulate_inverter(**kw)
    assert np.abs(fine - default).max() < 0.005 * info["steady_current"]


def test_line_voltages_and_sensor_noise():
    x, info = simulate_inverter(fault="normal", duration=0.2, snr_db=20.0, voltages=True, seed=8)
    assert info["channels"] == ("ia", "ib", "ic", "vab", "vbc", "vca")
    assert np.allclose(x[3:].sum(axis=0), 0.0, atol=1e-3)
    fund, _ = phasors(x[3:], FS, F1)
    # line voltage fundamental = sqrt(3) m Vdc / 2
    assert np.abs(fund).mean() == pytest.approx(np.sqrt(3) * 0.8 * 300 / 2, rel=0.02)
    clean, _ = simulate_inverter(fault="normal", duration=0.2, snr_db=None, voltages=True, seed=8)
    noise = (x - clean)[:3]
    assert np.std(noise) == pytest.approx(info["steady_current"] / np.sqrt(2) / 10, rel=0.05)


def test_sensor_gain_fault_only_scales_ia():
    ok, _ = simulate_inverter(fault="normal", duration=0.1, snr_db=None, seed=9)
    bad, info = simulate_inverter(fault="ia_gain", duration=0.1, snr_db=None, seed=9)
    assert np.allclose(bad[0], ok[0] * info["ia_gain"])
    assert np.array_equal(bad[1:], ok[1:])


def test_deterministic_from_seed():
    a, _ = simulate_inverter(fault="S5", duration=0.05, snr_db=30.0, seed=10)
    b, _ = simulate_inverter(fault="S5", duration=0.05, snr_db=30.0, seed=10)
    c, _ = simulate_inverter(fault="S5", duration=0.05, snr_db=30.0, seed=11)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(m=0.0), "m"),
        (dict(m=1.2), "m"),
        (dict(f1=0.0), "f1"),
        (dict(f1=-50.0), "f1"),
        (dict(fs=500.0), "fs"),
        (dict(fsw=300.0), "fsw"),
        (dict(emf_ratio=1.0), "emf_ratio"),
        (dict(fault="S7"), "fault"),
        (dict(fault="S1+S9"), "fault"),
        (dict(snr_db=80.0), "SNR"),
        (dict(pwm="dpwm"), "pwm"),
        (dict(r=0.0), "r"),
        (dict(steps_per_carrier=2), "steps_per_carrier"),
    ],
)
def test_invalid_parameters_refused(kwargs, match):
    with pytest.raises(DiagError, match=match):
        simulate_inverter(**{"duration": 0.05, **kwargs})


# --------------------------------------------------------------------------------------------
# Dataset


def test_dataset_structure_and_physics():
    recs = simulate_inverter_recordings(recordings_per_class=4, duration=0.25, snr_db=40.0)
    assert len(recs) == 28
    assert [r.label for r in recs[::4]] == ["normal", "S1", "S2", "S3", "S4", "S5", "S6"]
    assert len({r.group for r in recs}) == 28
    assert {r.condition for r in recs} == {"20Hz", "30Hz", "40Hz", "50Hz"}
    assert {r.fs for r in recs} == {FS} and {r.n_samples for r in recs} == {2500}
    assert {r.channels for r in recs} == {("ia", "ib", "ic")}
    for r in recs:
        r.validate()
        json.dumps(r.meta)
        ipk = r.meta["steady_current"]
        assert abs(r.signal.sum(axis=0).mean()) < 0.05 * ipk  # only sensor offsets and noise remain
        if r.label in ("S1", "S3", "S5"):  # upper switch open: that phase's mean current is negative
            assert r.signal[{"S1": 0, "S3": 1, "S5": 2}[r.label]].mean() < -0.15 * ipk
        if r.label in ("S4", "S6", "S2"):
            assert r.signal[{"S4": 0, "S6": 1, "S2": 2}[r.label]].mean() > 0.15 * ipk


def test_dataset_all_22_and_determinism():
    a = simulate_inverter_recordings(classes="all", recordings_per_class=1, duration=0.05, seed=1)
    b = simulate_inverter_recordings(classes="all", recordings_per_class=1, duration=0.05, seed=1)
    assert [r.label for r in a] == list(INVERTER_CLASSES)
    assert all(np.array_equal(x.signal, y.signal) for x, y in zip(a, b))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(classes="triple"), "classes"),
        (dict(classes=["normal", "S9"]), "classes"),
        (dict(m_rated=1.3), "m_rated"),
        (dict(f1=[0.0, 50.0]), "f1"),
        (dict(fs=800.0), "fs"),
        (dict(snr_db=[10, 90]), "snr_db"),
        (dict(pwm=["spwm", "sixstep"]), "pwm"),
        (dict(recordings_per_class=-1), "recordings_per_class"),
    ],
)
def test_dataset_invalid_options_refused(kwargs, match):
    with pytest.raises(DiagError, match=match):
        simulate_inverter_recordings(duration=0.05, **kwargs)


def test_cli_simulate_inverter(tmp_path):
    from typer.testing import CliRunner

    from diag.cli import app
    from diag.sources.files import read_files

    out = tmp_path / "inv"
    args = ["simulate", "inverter", "--out", str(out), "--set", "recordings_per_class=1", "--set", "duration=0.05"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    back = read_files(str(out))
    assert [r.label for r in back] == ["normal", "S1", "S2", "S3", "S4", "S5", "S6"]
    assert back[0].channels == ("ia", "ib", "ic")
    again = CliRunner().invoke(app, args)  # existing folder: refused with one line, exit 2
    assert again.exit_code == 2 and "overwrite" in again.output
    unknown = CliRunner().invoke(app, ["simulate", "inverter", "--out", str(tmp_path / "y"), "--set", "colour=red"])
    assert unknown.exit_code == 2 and "colour" in unknown.output


def test_dataset_recording_keeps_its_draws_when_classes_are_added():
    a = simulate_inverter_recordings(classes=["S1"], recordings_per_class=2, duration=0.2)
    b = simulate_inverter_recordings(classes=["normal", "S1+S4", "S1"], recordings_per_class=2, duration=0.2)
    for x, y in zip(a, b[4:]):
        assert x.meta == y.meta
        assert np.abs(x.signal - y.signal).max() < 0.02 * x.meta["steady_current"]


# --------------------------------------------------------------------------------------------
# Motor-side inter-turn short circuit (issue 11)


@pytest.mark.parametrize("phase", [0, 1, 2])
def test_turn_short_raises_that_phase_current_by_a_few_percent_and_nothing_else(healthy, phase):
    xh, _ = healthy
    fault = ("itsc_a", "itsc_b", "itsc_c")[phase]
    x, info = simulate_inverter(fault=fault, m=0.8, f1=F1, duration=0.4, fs=FS, snr_db=None, seed=0,
                                short_fraction=0.05)
    assert info["short_fraction"] == 0.05 and info["open_switches"] == ()
    skip = int(0.2 * FS)  # past the start-up from the balanced steady state
    fund, thd = phasors(x[:, skip:], FS, F1)
    mags = np.abs(fund) / np.abs(fund).mean()
    others = [k for k in range(3) if k != phase]
    # fewer turns -> lower impedance in that phase: its current rises by a few percent, the others fall
    assert 1.02 < mags[phase] < 1.06 and np.all(mags[others] < 0.99)
    assert np.all(thd < 0.05)  # still sinusoidal: the waveform shape is healthy
    assert np.abs(x.sum(axis=0)).max() < 1e-4 * info["steady_current"]  # star point floats: sum stays zero
    # a shorted fraction of 2 % gives a smaller imbalance than 5 %
    x2, _ = simulate_inverter(fault=fault, m=0.8, f1=F1, duration=0.4, fs=FS, snr_db=None, seed=0,
                              short_fraction=0.02)
    mags2 = np.abs(phasors(x2[:, skip:], FS, F1)[0])
    assert 1.005 < mags2[phase] / mags2.mean() < mags[phase]
    fh = np.abs(phasors(xh[:, skip:], FS, F1)[0])
    assert np.allclose(fh, fh.mean(), rtol=0.005)


def test_turn_short_dataset_classes_and_draws():
    recs = simulate_inverter_recordings(classes="motor", recordings_per_class=2, duration=0.2, snr_db=40.0)
    assert [r.label for r in recs[::2]] == ["normal", "itsc_a", "itsc_b", "itsc_c"]
    for r in recs:
        mu = r.meta.get("short_fraction")
        assert (mu is None) == (r.label == "normal") and (mu is None or 0.02 <= mu <= 0.05)
    # adding the motor classes does not move the draws of the switch classes' recordings
    a = simulate_inverter_recordings(classes=["normal", "S1"], recordings_per_class=1, duration=0.1)
    b = simulate_inverter_recordings(classes="single+motor", recordings_per_class=1, duration=0.1)
    assert a[1].meta == b[1].meta
    np.testing.assert_allclose(a[1].signal, b[1].signal, atol=0.02 * a[1].meta["steady_current"])
    with pytest.raises(DiagError, match="short_fraction"):
        simulate_inverter_recordings(classes="motor", short_fraction=[0.0, 0.6], duration=0.1)
