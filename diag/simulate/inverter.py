"""Two-level three-phase voltage-source inverter with open-circuit switch faults.

Circuit
-------
A DC link ``Vdc`` (rails P = +Vdc, N = 0) feeds three legs. Switch naming follows the conduction
sequence: **S1/S4** = phase A upper/lower, **S3/S6** = phase B upper/lower, **S5/S2** = phase C
upper/lower; every switch has an antiparallel diode. Each leg drives one phase of a balanced,
star-connected load with isolated neutral ``n``: ``v_xN - v_nN = R i_x + L di_x/dt + e_x`` with
back-EMF ``e_x = E sin(w t + p0 - d - 2 pi k/3)`` lagging the applied voltage by the load angle
``d``. Positive current flows out of the leg into the load. Dead time is not modelled.

Pole voltage of a leg (gate ``g`` = 1 asks for the upper switch):

* upper switch carries ``i > 0`` (from P), upper diode ``i < 0`` (to P): pole at Vdc;
* lower switch carries ``i < 0`` (to N), lower diode ``i > 0`` (from N): pole at 0.

So with ``g = 1``: ``i > 0`` goes through the upper switch (Vdc) or, **if it is open, through the
lower diode (0)**; ``i < 0`` goes through the upper diode (Vdc) either way. With ``g = 0``:
``i > 0`` uses the lower diode (0); ``i < 0`` uses the lower switch (0) or, if it is open, the
upper diode (Vdc). An open upper switch therefore forbids a sustained positive phase current, an
open lower switch a sustained negative one.

Zero current (discontinuous conduction). When a leg conducts only through a diode (its gated
switch is open) and its current reaches zero, the diode blocks: the leg floats and the current stays
at zero while the pole voltage ``v_nN' + e_x`` lies between the rails, where ``v_nN'`` is set by the
conducting legs (``(sum(v_y - e_y))/n_conducting``; the two remaining phases carry ``+i`` and
``-i``). If that floating voltage leaves ``[0, Vdc]`` the corresponding diode conducts and the
pole is clamped to the rail. Numerically: a diode-conducted current that changes sign within a step
is set to zero (the others corrected so the three still sum to zero), and a floating leg is held at
zero with the floating pole voltage, which makes its ``di/dt`` exactly zero.

Integration
-----------
Time step ``h = 1 / (fs * r)`` with ``r`` (a multiple of 4) chosen so that a carrier period holds at
least ``steps_per_carrier`` steps. Within a step the pole voltages are the exact averages of the
PWM pattern over the step: the triangle carrier's on-time is integrated analytically against the
modulating wave (sine-triangle, or SVPWM as min-max zero-sequence injection; both clipped to
[-1, 1], so sine-triangle over-modulates above m = 1), which is evaluated at four times the output
rate (it varies at the fundamental frequency, so that is ample). The R-L equation is then solved
exactly for that constant voltage (back-EMF held at the same rate)::

    i[k+1] = a i[k] + (1 - a)/R (v_xN - v_nN - e_x),   a = exp(-h R / L),  v_nN = mean_x v_xN.

Speed: the only sequential part is this per-step update, which runs once for a whole batch of rows
(recordings x time chunks). Each recording is cut into chunks simulated side by side; every chunk
starts ``n_warm`` samples early from the healthy steady-state phasor current, and since the R-L
load forgets its initial state with time constant ``L/R`` (warm-up = 6 ``L/R``, error ~e^-6 of the
initial mismatch; measured < 0.3 % of the peak current at the largest L/R), the chunks join
without a visible seam. 20 steps per carrier period agree with 80 to ~0.1 % of the peak current
while every phase conducts (first-order convergence; tests check both); in discontinuous
conduction (double faults, currents near zero) the pulse-by-pulse detail depends on the step at the
~1 % level. The currents are averaged over each
quarter output period (integrate-and-dump at ``4 fs``) and then decimated by 4 with a Kaiser FIR
(``scipy.signal.resample_poly``): proper anti-aliasing of the switching ripple.

Motor-side inter-turn short circuit (classes ``itsc_a``, ``itsc_b``, ``itsc_c``): a fraction ``mu``
(``short_fraction``, a few percent) of one phase winding's turns is shorted. Those turns no longer
link the phase circuit, so that phase keeps ``(1 - mu)`` of its turns: resistance ``(1 - mu) R``,
inductance ``(1 - mu)^2 L`` (flux linkage goes with turns squared) and back-EMF ``(1 - mu) e_x``;
the circulating current in the shorted loop and its coupling to the other turns are neglected
(a first-order model of a low-resistance short of a small fraction). The star point then floats
to keep the three currents summing to zero: with per-phase exact steps
``i_x' = a_x i_x + b_x (v_xN - v_nN - e_x)``, ``v_nN = (sum a_x i_x + sum b_x (v_xN - e_x)) / sum b_x``
(which reduces to the mean pole voltage for a balanced load). The only signature is a few percent
of imbalance between the phase currents (amplitude and angle); their waveform shape, spectrum and
every switch stay healthy. Not combined with open switches.

Measurement: the three phase currents (``ia, ib, ic`` in A) and, optionally, the line voltages
(``vab, vbc, vca`` in V, averaged the same way), with white sensor noise at ``snr_db`` relative to
the healthy current RMS (the same noise floor whatever the fault) and small sensor offsets.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

from diag.errors import DiagError
from diag.simulate.circuit import Drive, Integration, simulate_batch, steady_current
from diag.simulate.params import (
    as_levels,
    as_range,
    check_count,
    check_positive,
    check_samples,
    check_sampling_rate,
    check_seed,
    check_snr,
    child_seed,
    class_list,
    jsonable,
    seed_sequence,
)
from diag.sources.base import Recording

#: switch -> (leg 0/1/2 = phase A/B/C, True for the upper switch)
SWITCH_POSITION = {"S1": (0, True), "S4": (0, False), "S3": (1, True), "S6": (1, False), "S5": (2, True), "S2": (2, False)}
SWITCHES = ("S1", "S2", "S3", "S4", "S5", "S6")
SINGLE_FAULTS = SWITCHES
DOUBLE_FAULTS = tuple(f"{a}+{b}" for a, b in itertools.combinations(SWITCHES, 2))
#: the 22 switch classes: normal, 6 single and 15 double open-circuit faults
INVERTER_CLASSES = ("normal",) + SINGLE_FAULTS + DOUBLE_FAULTS
#: optional current-sensor faults on phase A (not in the presets)
SENSOR_FAULTS = ("ia_gain", "ia_offset")
#: motor-side inter-turn short circuit of phase A / B / C (preset "motor", or by name)
ITSC_FAULTS = ("itsc_a", "itsc_b", "itsc_c")
CLASS_PRESETS = {
    "single": ("normal",) + SINGLE_FAULTS,
    "double": ("normal",) + DOUBLE_FAULTS,
    "all": INVERTER_CLASSES,
    "motor": ("normal",) + ITSC_FAULTS,
    "single+motor": ("normal",) + SINGLE_FAULTS + ITSC_FAULTS,
}
PWM_KINDS = ("spwm", "svpwm")
M_MAX = 1.15


def open_switches(fault: str) -> tuple[str, ...]:
    """The switches a class name opens: ``"S1+S4"`` -> ``("S1", "S4")``, ``"normal"`` -> ``()``."""
    if fault == "normal" or fault in SENSOR_FAULTS or fault in ITSC_FAULTS:
        return ()
    if fault not in INVERTER_CLASSES:
        raise DiagError(
            f"fault: unknown '{fault}'; use 'normal', a switch S1..S6, a pair like 'S1+S4', "
            f"or {', '.join(SENSOR_FAULTS + ITSC_FAULTS)}"
        )
    return tuple(fault.split("+"))


def _switch_masks(fault: str) -> tuple[np.ndarray, np.ndarray]:
    """``(ok_upper, ok_lower)``: 1.0 where the leg's switch works, 0.0 where it is open."""
    ok_u, ok_l = np.ones(3), np.ones(3)
    for s in open_switches(fault):
        leg, upper = SWITCH_POSITION[s]
        (ok_u if upper else ok_l)[leg] = 0.0
    return ok_u, ok_l


def _turns(fault: str, mu: float) -> np.ndarray:
    """Fraction of each phase winding's turns still in circuit: 1 - mu in the shorted phase (itsc_x)."""
    t = np.ones(3)
    if fault in ITSC_FAULTS:
        t[ITSC_FAULTS.index(fault)] = 1.0 - mu
    return t


def _sub_steps(fs: float, fsw_max: float, steps_per_carrier: int) -> int:
    """Integration steps per output sample: a multiple of 4 giving >= steps_per_carrier per carrier period."""
    return 4 * max(1, math.ceil(steps_per_carrier * fsw_max / (4.0 * fs)))


def _validate_point(where: str, *, m, f1, vdc, r, l, emf_ratio, fsw, fs, pwm) -> None:
    if not 0.0 < m <= M_MAX:
        raise DiagError(f"{where}m: modulation index must be in (0, {M_MAX}], got {m!r}")
    if not (math.isfinite(f1) and f1 > 0):
        raise DiagError(f"{where}f1: fundamental frequency must be > 0 Hz, got {f1!r}")
    if fsw < 10 * f1:
        raise DiagError(f"{where}fsw: switching frequency {fsw:g} Hz must be at least 10x the fundamental ({f1:g} Hz)")
    if fs < 20 * f1:
        raise DiagError(
            f"{where}fs: {fs:g} Hz is below 20x the fundamental {f1:g} Hz (10 harmonics under Nyquist); raise fs"
        )
    if not 0.0 <= emf_ratio < 1.0:
        raise DiagError(f"{where}emf_ratio: back-EMF / applied fundamental voltage must be in [0, 1), got {emf_ratio!r}")
    for name, v in (("vdc", vdc), ("r", r), ("l", l)):
        if not (math.isfinite(v) and v > 0):
            raise DiagError(f"{where}{name}: must be > 0, got {v!r}")
    if pwm not in PWM_KINDS:
        raise DiagError(f"{where}pwm: choose one of {', '.join(PWM_KINDS)}, got {pwm!r}")


def _check_short_fraction(value: Any) -> tuple[float, float]:
    return as_range("short_fraction", value, 0.0, 0.5, lo_open=True)


def _check_fsw(fsw_hi: float, fs: float, steps_per_carrier: int) -> None:
    if isinstance(steps_per_carrier, bool) or not isinstance(steps_per_carrier, int) or not 8 <= steps_per_carrier <= 500:
        raise DiagError(f"steps_per_carrier: expected an integer in [8, 500], got {steps_per_carrier!r}")
    if fsw_hi > 100e3:
        raise DiagError(f"fsw: at most 100 kHz, got {fsw_hi:g} Hz")


def _measure(clean: np.ndarray, i_rms: float, snr_db: float | None, offset_frac: float, fault: str,
             rng: np.random.Generator, i_peak: float) -> tuple[np.ndarray, dict[str, Any]]:
    """Sensor model for the currents ``[3, N]``: offsets, optional phase-A sensor fault, noise."""
    x = clean.copy()
    info: dict[str, Any] = {}
    offsets = offset_frac * i_peak * rng.standard_normal(3)
    x += offsets[:, None]
    info["sensor_offsets"] = offsets
    if fault == "ia_gain":
        g = rng.uniform(0.7, 0.85) if rng.random() < 0.5 else rng.uniform(1.15, 1.3)
        x[0] = (x[0] - offsets[0]) * g + offsets[0]
        info["ia_gain"] = g
    elif fault == "ia_offset":
        off = rng.choice([-1.0, 1.0]) * rng.uniform(0.1, 0.2) * i_peak
        x[0] += off
        info["ia_offset"] = off
    sigma = 0.0
    if snr_db is not None:
        sigma = i_rms / 10 ** (snr_db / 20)
        x += sigma * rng.standard_normal(x.shape)
    info["noise_rms"] = sigma
    return x, info


def _check_sensor_offset(sensor_offset: Any) -> None:
    if not 0.0 <= float(sensor_offset) <= 0.1:
        raise DiagError(f"sensor_offset: must be in [0, 0.1] (fraction of the peak current), got {sensor_offset!r}")


def _measured(clean_i: np.ndarray, clean_v: np.ndarray | None, i_pk: float, snr_db: float | None,
              sensor_offset: float, fault: str, rng: np.random.Generator) -> tuple[np.ndarray, dict, tuple[str, ...]]:
    """The sensors' view of one recording: ``(x, sensor info, channel names)``, voltages appended if given."""
    x, sensor = _measure(clean_i, i_pk / math.sqrt(2), snr_db, float(sensor_offset), fault, rng, i_pk)
    channels: tuple[str, ...] = ("ia", "ib", "ic")
    if clean_v is not None:
        x = np.concatenate([x, clean_v], axis=0)
        channels += ("vab", "vbc", "vca")
    return x, sensor, channels


@dataclass(frozen=True)
class InverterParams:
    """The inputs of :func:`simulate_inverter` (documented there), checked in one place by :meth:`validated`."""

    fault: str = "normal"
    m: float = 0.8
    f1: float = 50.0
    vdc: float = 300.0
    r: float = 2.5
    l: float = 4e-3  # noqa: E741 -- the inductance, as in the equations
    emf_ratio: float = 0.5
    load_angle: float = 15.0
    fsw: float = 5000.0
    pwm: str = "spwm"
    fs: float = 10000.0
    duration: float = 0.5
    snr_db: float | None = None
    sensor_offset: float = 0.0
    voltages: bool = False
    steps_per_carrier: int = 20
    chunk: float | None = None
    short_fraction: float = 0.03

    def validated(self) -> "InverterParams":
        """A copy with every value checked (a one-line DiagError naming the first bad one); ``fs`` and
        ``duration`` as floats, ``short_fraction`` checked (used by ``itsc_*`` only)."""
        open_switches(self.fault)
        fs = check_sampling_rate(self.fs)
        duration = check_positive("duration", self.duration)
        for name in ("m", "f1", "vdc", "r", "l", "fsw"):
            check_positive(name, getattr(self, name))
        _validate_point("", m=float(self.m), f1=float(self.f1), vdc=float(self.vdc), r=float(self.r),
                        l=float(self.l), emf_ratio=float(self.emf_ratio), fsw=float(self.fsw), fs=fs, pwm=self.pwm)
        _check_fsw(float(self.fsw), fs, self.steps_per_carrier)
        check_snr("snr_db", self.snr_db)
        _check_sensor_offset(self.sensor_offset)
        check_samples(fs, duration)
        if self.chunk is not None:
            check_positive("chunk", self.chunk)
        _check_short_fraction(self.short_fraction)
        return replace(self, fs=fs, duration=duration)

    @property
    def emf(self) -> float:
        """Back-EMF amplitude, V: ``emf_ratio m Vdc / 2``."""
        return self.emf_ratio * self.m * self.vdc / 2.0

    def integration(self) -> Integration:
        """The time grid: chunks of ``chunk`` s, or of the warm-up (6 L/R) or 10 ms, whichever is longer."""
        n = int(round(self.duration * self.fs))
        n_warm = max(1, math.ceil(6 * self.l / self.r * self.fs))
        chunk_n = max(n_warm, int(round(0.01 * self.fs))) if self.chunk is None else int(round(
            check_positive("chunk", self.chunk) * self.fs))
        return Integration(fs=self.fs, n_samples=n, r_sub=_sub_steps(self.fs, float(self.fsw), self.steps_per_carrier),
                           n_warm=n_warm, chunk=max(16, chunk_n), voltages=self.voltages)


def _simulate_one(p: InverterParams, seed: int | np.random.SeedSequence | None) -> tuple[np.ndarray, dict[str, Any]]:
    """:func:`simulate_inverter` of validated parameters."""
    rng_p, rng_m = (np.random.default_rng(s) for s in seed_sequence(seed).spawn(2))
    ok_u, ok_l = _switch_masks(p.fault)
    mu = _check_short_fraction(p.short_fraction)[0]
    one = lambda v: np.array([float(v)])  # noqa: E731
    phase0 = np.array([rng_p.uniform(0, 2 * np.pi)])
    carrier_phase = np.array([rng_p.uniform()])
    drive = Drive(ok_u=ok_u[None], ok_l=ok_l[None], m=one(p.m), f1=one(p.f1), phase0=phase0, vdc=one(p.vdc),
                  r=one(p.r), l=one(p.l), emf=one(p.emf), load_angle=one(math.radians(p.load_angle)), fsw=one(p.fsw),
                  carrier_phase=carrier_phase, svpwm=np.array([p.pwm == "svpwm"]), turns=_turns(p.fault, mu)[None])
    integ = p.integration()
    clean_i, clean_v = simulate_batch(drive, integ)
    i_pk = float(abs(steady_current(p.m, p.f1, p.vdc, p.r, p.l, p.emf, math.radians(p.load_angle))))
    x, sensor, channels = _measured(clean_i[0], None if clean_v is None else clean_v[0], i_pk, p.snr_db,
                                    p.sensor_offset, p.fault, rng_m)
    info = dict(
        fault=p.fault, open_switches=open_switches(p.fault), channels=channels, m=p.m, f1=p.f1, vdc=p.vdc, r=p.r,
        l=p.l, emf_ratio=p.emf_ratio, emf=p.emf, load_angle=p.load_angle, fsw=p.fsw, pwm=p.pwm, fs=p.fs,
        duration=p.duration, snr_db=p.snr_db, steady_current=i_pk, dt=1.0 / (p.fs * integ.r_sub), **sensor,
    )
    if p.fault in ITSC_FAULTS:
        info["short_fraction"] = mu
    return x, info


def simulate_inverter(
    *,
    fault: str = "normal",
    m: float = 0.8,
    f1: float = 50.0,
    vdc: float = 300.0,
    r: float = 2.5,
    l: float = 4e-3,
    emf_ratio: float = 0.5,
    load_angle: float = 15.0,
    fsw: float = 5000.0,
    pwm: str = "spwm",
    fs: float = 10000.0,
    duration: float = 0.5,
    snr_db: float | None = None,
    sensor_offset: float = 0.0,
    voltages: bool = False,
    steps_per_carrier: int = 20,
    chunk: float | None = None,
    short_fraction: float = 0.03,
    seed: int | np.random.SeedSequence | None = 0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Simulate one inverter recording (see the module docstring for the model).

    Parameters
    ----------
    fault : "normal", "S1".."S6", "Si+Sj" (open switches), "ia_gain", "ia_offset", or "itsc_a/b/c"
        (inter-turn short circuit of that phase's winding, see the module docstring)
    m : modulation index in (0, 1.15]; fundamental phase-voltage amplitude ``m Vdc / 2``
        (linear up to 1 for ``spwm``, 1.15 for ``svpwm``; above, the reference is clipped).
    f1 : fundamental frequency, Hz.
    vdc : DC-link voltage, V.
    r, l : load resistance (ohm) and inductance (H) per phase.
    emf_ratio : back-EMF amplitude / ``m Vdc / 2``, in [0, 1).
    load_angle : back-EMF lag behind the applied voltage, degrees.
    fsw : carrier (switching) frequency, Hz, >= 10 f1.
    pwm : "spwm" (sine-triangle) or "svpwm" (min-max injection).
    fs : output sampling rate, Hz, >= 20 f1.
    duration : seconds.
    snr_db : current-sensor noise in dB relative to the healthy current RMS (None: none).
    sensor_offset : standard deviation of the sensor offsets, fraction of the healthy peak current.
    voltages : also return the line voltages vab, vbc, vca.
    steps_per_carrier : integration steps per carrier period (at least).
    chunk : length (s) of the time chunks simulated side by side; None: the warm-up length
        (6 L/R) or 10 ms, whichever is longer, which minimises the number of sequential steps.
    short_fraction : fraction of the phase winding shorted by an ``itsc_*`` fault, in (0, 0.5].
    seed : phases and noise.

    Returns
    -------
    x : float64 ``[3, N]`` (``ia, ib, ic``) or ``[6, N]`` with voltages, N = round(duration fs)
    info : dict with ``channels``, ``open_switches``, ``steady_current`` (healthy peak, A), ``dt``
        (integration step, s) and the parameters.
    """
    params = InverterParams(fault=fault, m=m, f1=f1, vdc=vdc, r=r, l=l, emf_ratio=emf_ratio, load_angle=load_angle,
                            fsw=fsw, pwm=pwm, fs=fs, duration=duration, snr_db=snr_db, sensor_offset=sensor_offset,
                            voltages=voltages, steps_per_carrier=steps_per_carrier, chunk=chunk,
                            short_fraction=short_fraction)
    return _simulate_one(params.validated(), seed)


# ----------------------------------------------------------------------------------------------
# Dataset

#: the drive quantities drawn uniformly per recording from their ranges, in this (seeded) order
RANGED = ("vdc", "r", "l", "emf_ratio", "load_angle", "fsw")


@dataclass(frozen=True)
class InverterSetParams:
    """The options of :func:`simulate_inverter_recordings`, checked in one place by
    :meth:`validated` (which turns levels and ranges into tuples).

    Parameters (ranges ``[low, high]`` are drawn uniformly per recording; a number fixes the value)
    ----------
    classes : "single" (normal + S1..S6, default, 7 classes), "double" (normal + 15 pairs), "all"
        (the 22 switch classes), "motor" (normal + inter-turn shorts itsc_a/b/c), "single+motor"
        (10), or a list of names from those and "ia_gain", "ia_offset".
    recordings_per_class : int >= 1.
    duration, fs : seconds and Hz of every recording.
    f1 : fundamental-frequency levels (Hz), the conditions.
    rated_f1, m_rated : V/f law; ``m`` must stay in (0, 1.15].
    vdc, r, l, emf_ratio, load_angle, fsw : ranges (V, ohm, H, -, degrees, Hz).
    pwm : "spwm", "svpwm", or a list to draw from per recording.
    snr_db : range of the current-sensor SNR (dB, within [-20, 60]) relative to the healthy RMS.
    sensor_offset : std of the sensor offsets (fraction of the healthy peak current).
    voltages : add line-voltage channels vab, vbc, vca.
    steps_per_carrier, chunk : integration resolution and time-chunk length (s).
    short_fraction : range of the shorted fraction of the winding for the ``itsc_*`` classes.
    seed : recording ``j`` of class ``c`` uses ``SeedSequence(seed, spawn_key=(crc32(c), j))``: the
        same call gives the same recordings; with other classes in the batch a recording keeps its
        draws, and its waveform agrees to within the integration error (float rounding in a wider
        batch can move a diode turn-off by one step; seen up to ~1 % of the peak current, in
        discontinuous-conduction episodes of double faults).
    """

    classes: str | Sequence[str] = "single"
    recordings_per_class: int = 8
    duration: float = 2.0
    fs: float = 10000.0
    f1: float | Sequence[float] = (20.0, 30.0, 40.0, 50.0)
    rated_f1: float = 50.0
    m_rated: float | Sequence[float] = (0.8, 1.05)
    vdc: float | Sequence[float] = (280.0, 320.0)
    r: float | Sequence[float] = (1.5, 4.0)
    l: float | Sequence[float] = (2e-3, 6e-3)  # noqa: E741 -- the inductance, as in the equations
    emf_ratio: float | Sequence[float] = (0.3, 0.7)
    load_angle: float | Sequence[float] = (5.0, 25.0)
    fsw: float | Sequence[float] = (4000.0, 8000.0)
    pwm: str | Sequence[str] = ("spwm", "svpwm")
    snr_db: float | Sequence[float] = (20.0, 35.0)
    sensor_offset: float = 0.01
    voltages: bool = False
    steps_per_carrier: int = 20
    chunk: float = 0.1
    short_fraction: float | Sequence[float] = (0.02, 0.05)
    seed: int = 0

    def validated(self) -> "InverterSetParams":
        classes = class_list("classes", self.classes, INVERTER_CLASSES + SENSOR_FAULTS + ITSC_FAULTS, CLASS_PRESETS)
        mu_r = _check_short_fraction(self.short_fraction)
        check_count(self.recordings_per_class)
        fs, duration, _ = check_samples(self.fs, self.duration)
        f_levels = as_levels("f1", self.f1, lo=0.0)
        rated_f1 = check_positive("rated_f1", self.rated_f1)
        m_r = as_range("m_rated", self.m_rated, 0.0, lo_open=True)
        if m_r[1] * max(f_levels) * 1.02 / rated_f1 > M_MAX:
            raise DiagError(
                f"m_rated: m = m_rated x f1 / rated_f1 reaches {m_r[1] * max(f_levels) * 1.02 / rated_f1:.3f} "
                f"at f1 = {max(f_levels):g} Hz; the modulation index must stay in (0, {M_MAX}]"
            )
        limits = {"vdc": (0.0, None, True), "r": (0.0, None, True), "l": (0.0, None, True),
                  "emf_ratio": (0.0, 0.999, False), "load_angle": (-90.0, 90.0, False), "fsw": (0.0, None, True)}
        ranges = {k: as_range(k, getattr(self, k), lo, hi, lo_open=op) for k, (lo, hi, op) in limits.items()}
        pwm = self.pwm
        pwms = [pwm] if isinstance(pwm, str) else list(pwm) if isinstance(pwm, (list, tuple)) else None
        if not pwms or any(p not in PWM_KINDS for p in pwms):
            raise DiagError(f"pwm: choose from {', '.join(PWM_KINDS)} (a name or a list), got {pwm!r}")
        snr_r = as_range("snr_db", self.snr_db, -20.0, 60.0)
        _check_sensor_offset(self.sensor_offset)
        if not isinstance(self.voltages, bool):
            raise DiagError(f"voltages: expected true/false, got {self.voltages!r}")
        _check_fsw(ranges["fsw"][1], fs, self.steps_per_carrier)
        chunk = check_positive("chunk", self.chunk)
        check_seed(self.seed)
        return replace(self, classes=tuple(classes), short_fraction=mu_r, fs=fs, duration=duration, f1=f_levels,
                       rated_f1=rated_f1, m_rated=m_r, pwm=tuple(pwms), snr_db=snr_r, chunk=chunk, **ranges)

    def integration(self) -> Integration:
        """The time grid, from the option ranges (chunks do not depend on the draws)."""
        tau_max = self.l[1] / self.r[0]
        return Integration(fs=self.fs, n_samples=int(round(self.duration * self.fs)),
                           r_sub=_sub_steps(self.fs, self.fsw[1], self.steps_per_carrier),
                           n_warm=max(1, math.ceil(6 * tau_max * self.fs)),
                           chunk=max(16, int(round(self.chunk * self.fs))), voltages=self.voltages)


@dataclass(frozen=True)
class _Draw:
    """Recording ``j`` of class ``label``: its seeds and its drawn drive ``p``."""

    label: str
    j: int
    level: float
    ss: np.random.SeedSequence
    ss_meas: np.random.SeedSequence
    p: dict[str, Any]


def _draw(o: InverterSetParams, label: str, j: int) -> _Draw:
    """Draw recording ``j`` of class ``label`` from the set's distributions (seeded by class and index)."""
    ss = child_seed(o.seed, label, j)
    ss_machine, ss_meas = ss.spawn(2)
    rng = np.random.default_rng(ss_machine)
    level = o.f1[j % len(o.f1)]
    p: dict[str, Any] = {k: float(rng.uniform(*getattr(o, k))) for k in RANGED}
    p["f1"] = level * (1 + rng.uniform(-0.02, 0.02))
    p["m"] = float(rng.uniform(*o.m_rated)) * p["f1"] / o.rated_f1
    p["pwm"] = str(o.pwm[int(rng.integers(len(o.pwm)))])
    p["snr_db"] = float(rng.uniform(*o.snr_db))
    p["phase0"] = float(rng.uniform(0, 2 * np.pi))
    p["carrier_phase"] = float(rng.uniform())
    if label in ITSC_FAULTS:  # drawn last: the other draws of a recording do not move
        p["short_fraction"] = float(rng.uniform(*o.short_fraction))
    _validate_point(f"recording {label}#{j}: ", m=p["m"], f1=p["f1"], vdc=p["vdc"], r=p["r"], l=p["l"],
                    emf_ratio=p["emf_ratio"], fsw=p["fsw"], fs=o.fs, pwm=p["pwm"])
    return _Draw(label, j, level, ss, ss_meas, p)


def _batch_drive(draws: list[_Draw]) -> Drive:
    """The drives of all draws, as arrays for one vectorised batch."""
    P = {k: np.array([d.p[k] for d in draws]) for k in ("m", "f1", "vdc", "r", "l", "emf_ratio", "load_angle",
                                                          "fsw", "phase0", "carrier_phase")}
    masks = [_switch_masks(d.label) for d in draws]
    return Drive(
        ok_u=np.array([mk[0] for mk in masks]), ok_l=np.array([mk[1] for mk in masks]),
        m=P["m"], f1=P["f1"], phase0=P["phase0"], vdc=P["vdc"], r=P["r"], l=P["l"],
        emf=P["emf_ratio"] * P["m"] * P["vdc"] / 2, load_angle=np.radians(P["load_angle"]), fsw=P["fsw"],
        carrier_phase=P["carrier_phase"], svpwm=np.array([d.p["pwm"] == "svpwm" for d in draws]),
        turns=np.array([_turns(d.label, d.p.get("short_fraction", 0.0)) for d in draws]),
    )


def _inverter_recording(o: InverterSetParams, d: _Draw, idx: int, emf: float, clean_i: np.ndarray,
                        clean_v: np.ndarray | None) -> Recording:
    """The ``idx``-th recording of the set from its simulated currents (and voltages)."""
    p = d.p
    i_pk = float(abs(steady_current(p["m"], p["f1"], p["vdc"], p["r"], p["l"], emf, math.radians(p["load_angle"]))))
    x, sensor, channels = _measured(clean_i, clean_v, i_pk, p["snr_db"], o.sensor_offset, d.label,
                                    np.random.default_rng(d.ss_meas))
    meta = dict(p, fault=d.label, open_switches=list(open_switches(d.label)), emf=emf,
                steady_current=i_pk, f1_level=d.level, seed=o.seed, seed_spawn_key=list(d.ss.spawn_key),
                steps_per_carrier=o.steps_per_carrier, simulator="diag.simulate.inverter", **sensor)
    return Recording(signal=x, fs=o.fs, label=d.label, group=f"inverter_sim_{idx:03d}", condition=f"{d.level:g}Hz",
                     source=f"simulate:inverter#{idx}", fault_size="", channels=channels, meta=jsonable(meta))


def simulate_inverter_recordings(
    path: str | None = None,
    *,
    classes: str | Sequence[str] = "single",
    recordings_per_class: int = 8,
    duration: float = 2.0,
    fs: float = 10000.0,
    f1: float | Sequence[float] = (20.0, 30.0, 40.0, 50.0),
    rated_f1: float = 50.0,
    m_rated: float | Sequence[float] = (0.8, 1.05),
    vdc: float | Sequence[float] = (280.0, 320.0),
    r: float | Sequence[float] = (1.5, 4.0),
    l: float | Sequence[float] = (2e-3, 6e-3),
    emf_ratio: float | Sequence[float] = (0.3, 0.7),
    load_angle: float | Sequence[float] = (5.0, 25.0),
    fsw: float | Sequence[float] = (4000.0, 8000.0),
    pwm: str | Sequence[str] = ("spwm", "svpwm"),
    snr_db: float | Sequence[float] = (20.0, 35.0),
    sensor_offset: float = 0.01,
    voltages: bool = False,
    steps_per_carrier: int = 20,
    chunk: float = 0.1,
    short_fraction: float | Sequence[float] = (0.02, 0.05),
    seed: int = 0,
) -> list[Recording]:
    """A labelled set of simulated inverter recordings (``source.kind = "inverter_sim"``).

    Every recording is a separately drawn drive (load, back-EMF, DC link, carrier, PWM kind, noise,
    phases) from the same distributions for every class, at the same ``fs`` and ``duration``.
    Recording ``j`` of a class runs at fundamental ``f1[j % len(f1)]`` (+-2 %), the ``condition``
    (e.g. ``"30Hz"``); the modulation index follows the V/f law ``m = m_rated f1 / rated_f1`` and the
    back-EMF scales with it. All recordings are simulated in one vectorised batch.

    Parameters: ``path`` (unused) and the fields of :class:`InverterSetParams`.
    """
    del path
    o = InverterSetParams(
        classes=classes, recordings_per_class=recordings_per_class, duration=duration, fs=fs, f1=f1,
        rated_f1=rated_f1, m_rated=m_rated, vdc=vdc, r=r, l=l, emf_ratio=emf_ratio, load_angle=load_angle, fsw=fsw,
        pwm=pwm, snr_db=snr_db, sensor_offset=sensor_offset, voltages=voltages, steps_per_carrier=steps_per_carrier,
        chunk=chunk, short_fraction=short_fraction, seed=seed,
    ).validated()
    draws = [_draw(o, label, j) for label in o.classes for j in range(o.recordings_per_class)]
    drive = _batch_drive(draws)
    clean_i, clean_v = simulate_batch(drive, o.integration())
    return [_inverter_recording(o, d, idx, float(drive.emf[idx]), clean_i[idx], None if clean_v is None else clean_v[idx])
            for idx, d in enumerate(draws)]
