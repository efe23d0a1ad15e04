"""Rolling-element bearing vibration with localised faults (McFadden & Smith / Randall & Antoni model).

Model of one accelerometer signal, in g::

    x(t) = sum_n A_n h(t - t_n)                    fault impacts (absent for "normal")
         + a1 sin(2 pi rho(t) + p1) + a2 sin(4 pi rho(t) + p2)     shaft 1x and 2x
         + r(t)                                    healthy roughness: white noise through h
         + n(t)                                    broadband sensor/machine noise at the SNR

* ``rho(t)`` is the shaft angle in revolutions, the integral of the shaft speed ``f_r(t)`` (Hz):
  constant speed, or a linear ramp ``rpm = (start, end)`` (``rho`` quadratic in ``t``).
* Impacts happen when the shaft angle crosses a grid of defect angles spaced ``1/k`` revolutions,
  where ``k`` is the fault order (impacts per shaft revolution, from the geometry):

  ====== ============================================ ===================================
  fault  order k                                      amplitude modulation of ``A_n``
  ====== ============================================ ===================================
  outer  BPFO/f_r = (Z/2)(1 - d/D cos a)              none (stationary defect in the load zone)
  inner  BPFI/f_r = (Z/2)(1 + d/D cos a)              shaft rate: 1 + m cos(2 pi rho + p)
  ball   2 BSF/f_r = (D/d)(1 - (d/D cos a)^2)         cage rate: 1 + m cos(2 pi FTF/f_r rho + p)
  ====== ============================================ ===================================

  ``combined`` is an inner-race and an outer-race defect at once (two independent impact trains).
  A ball defect strikes the inner and the outer race once per ball spin revolution, so its impact
  rate is **2 x BSF** (with BSF = (D/2d)(1 - (d/D cos a)^2), the ball spin frequency relative to
  the cage). CWRU's published "BSF" multiple 4.7135 is this 2 x BSF; :meth:`BearingGeometry.orders`
  returns both (``bsf`` = 2.3567 and ``bdf`` = 4.7135 for the 6205).
* Slip: every spacing of the defect-angle grid is multiplied by ``1 + slip * N(0, 1)`` (clipped at
  3 sigma), so the impacts wander by 1-2 % like a real bearing's rollers do; each impact amplitude
  also varies by ``amplitude_jitter`` (relative standard deviation).
* ``h(t) = sum_r g_r exp(-zeta_r w_r t) sin(w_r sqrt(1 - zeta_r^2) t)``, ``t >= 0``: structural
  resonances (frequency, damping ratio, gain). It is synthesised exactly at fractional impact
  times: a complex weight ``A_n exp(p (k_n/fs - t_n))`` (pole ``p = -zeta w + i w_d``) is placed at
  the first sample ``k_n`` after ``t_n`` and a one-pole complex recursion (``scipy.signal.lfilter``)
  rings it down; the imaginary part is the damped sine. No per-sample Python loop.
* ``severity`` is the impact amplitude ``A`` in g (about the peak of one impact response).
* Noise: white Gaussian with power ``P_ref / 10^(snr_db/10)``. ``snr_reference="signal"`` takes
  ``P_ref`` as the power of the whole noise-free signal (the usual "measured" SNR);
  ``"healthy"`` takes the power of the healthy part only (shaft harmonics + roughness), so the noise
  floor of a machine does not depend on whether its bearing is damaged; the dataset uses that.

Units: frequencies in Hz, speeds in rpm, times in seconds, amplitudes in g.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Sequence

import numpy as np
from scipy import signal as sps

from diag.errors import DiagError
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

BEARING_FAULTS = ("normal", "inner", "outer", "ball", "combined")
#: default structural resonances: (frequency Hz, damping ratio, gain)
DEFAULT_RESONANCES = ((3000.0, 0.05, 1.0), (4800.0, 0.07, 0.5))
#: CWRU 0, 1, 2, 3 HP motor loads
CWRU_RPM = (1797.0, 1772.0, 1750.0, 1730.0)


@dataclass(frozen=True)
class BearingGeometry:
    """Bearing geometry; the default is the SKF 6205-2RS JEM of the CWRU drive end.

    ``ball_diameter`` ``d`` and ``pitch_diameter`` ``D`` in any one unit (inches here: 0.3126 and
    1.537); ``contact_angle`` in degrees.
    """

    n_balls: int = 9
    ball_diameter: float = 0.3126
    pitch_diameter: float = 1.537
    contact_angle: float = 0.0

    def validate(self) -> "BearingGeometry":
        if isinstance(self.n_balls, bool) or not isinstance(self.n_balls, (int, np.integer)) or self.n_balls < 3:
            raise DiagError(f"n_balls: a bearing needs an integer number of balls >= 3, got {self.n_balls!r}")
        d = check_positive("ball_diameter", self.ball_diameter)
        D = check_positive("pitch_diameter", self.pitch_diameter)
        if d >= D:
            raise DiagError(
                f"ball_diameter: must be smaller than the pitch diameter ({D:g}), got {d:g}; impossible geometry"
            )
        if self.n_balls * d >= math.pi * D:
            raise DiagError(
                f"n_balls: {self.n_balls} balls of diameter {d:g} do not fit on a pitch circle of diameter {D:g}"
            )
        if not 0.0 <= float(self.contact_angle) < 90.0:
            raise DiagError(f"contact_angle: must be in [0, 90) degrees, got {self.contact_angle!r}")
        return self

    def orders(self) -> dict[str, float]:
        """Characteristic frequencies as multiples of the shaft frequency (outer race fixed).

        ``ftf`` cage, ``bpfo``/``bpfi`` outer/inner race ball pass, ``bsf`` ball spin (relative to
        the cage), ``bdf`` = 2 x ``bsf``, the impact rate of a ball defect.
        """
        self.validate()
        r = self.ball_diameter / self.pitch_diameter * math.cos(math.radians(self.contact_angle))
        z = self.n_balls
        bsf = self.pitch_diameter / (2.0 * self.ball_diameter) * (1.0 - r * r)
        return {
            "ftf": 0.5 * (1.0 - r),
            "bpfo": 0.5 * z * (1.0 - r),
            "bpfi": 0.5 * z * (1.0 + r),
            "bsf": bsf,
            "bdf": 2.0 * bsf,
        }


# ----------------------------------------------------------------------------------------------
# Single signal


def _speed(rpm: Any) -> tuple[float, float]:
    """``rpm`` -> (start, end) shaft frequency in Hz."""
    if isinstance(rpm, (int, float)) and not isinstance(rpm, bool):
        pair = (float(rpm), float(rpm))
    elif isinstance(rpm, (list, tuple)) and len(rpm) == 2:
        pair = tuple(float(v) for v in rpm)
    else:
        raise DiagError(f"rpm: expected a shaft speed in rpm or a (start, end) ramp, got {rpm!r}")
    if not all(math.isfinite(v) and 0 < v <= 60000 for v in pair):
        raise DiagError(f"rpm: shaft speed must be positive (and <= 60000 rpm), got {rpm!r}")
    return pair[0] / 60.0, pair[1] / 60.0


def _resonances(resonances: Any, fs: float) -> list[tuple[float, float, float]]:
    if not isinstance(resonances, (list, tuple)) or not resonances:
        raise DiagError(f"resonances: expected a list of (frequency Hz, damping ratio[, gain]), got {resonances!r}")
    out = []
    for item in resonances:
        if not isinstance(item, (list, tuple)) or len(item) not in (2, 3):
            raise DiagError(f"resonances: each entry is (frequency Hz, damping ratio[, gain]), got {item!r}")
        f, z = float(item[0]), float(item[1])
        g = float(item[2]) if len(item) == 3 else 1.0
        if not (math.isfinite(f) and f > 0):
            raise DiagError(f"resonances: frequency must be > 0 Hz, got {item!r}")
        if f >= fs / 2:
            raise DiagError(
                f"fs: {fs:g} Hz is too low for the resonance at {f:g} Hz (Nyquist); "
                f"use fs > {2 * f:g} Hz or a lower resonance"
            )
        if not 0 < z < 1:
            raise DiagError(f"resonances: damping ratio must be in (0, 1), got {z!r}")
        if not (math.isfinite(g) and g >= 0):
            raise DiagError(f"resonances: gain must be >= 0, got {g!r}")
        out.append((f, z, g))
    return out


def _ring(times: np.ndarray, amps: np.ndarray, n: int, fs: float, res: list[tuple[float, float, float]],
          white: np.ndarray | None = None) -> np.ndarray:
    """Sum over resonances of impacts (at fractional ``times``) ringing down, exact in time.

    With ``white`` given, that sample sequence (one impulse per sample) is filtered instead.
    """
    out = np.zeros(n)
    if white is None:
        k = np.ceil(times * fs).astype(np.int64)
        keep = k < n
        k, t, a = k[keep], times[keep], amps[keep]
        if k.size == 0:
            return out
    for f, zeta, gain in res:
        w = 2 * math.pi * f
        pole = complex(-zeta * w, w * math.sqrt(1.0 - zeta * zeta))
        if white is None:
            weight = a * np.exp(pole * (k / fs - t))
            x = np.bincount(k, weight.real, n) + 1j * np.bincount(k, weight.imag, n)
        else:
            x = white.astype(complex)
        y = sps.lfilter([1.0], [1.0, -np.exp(pole / fs)], x)
        out += gain * y.imag
    return out


SNR_REFERENCES = ("signal", "healthy")
#: the impact trains of each class, and the order (BearingGeometry.orders key) of each train
FAULT_COMPONENTS = {"normal": (), "outer": ("outer",), "inner": ("inner",), "ball": ("ball",),
                    "combined": ("inner", "outer")}
COMPONENT_ORDER = {"outer": "bpfo", "inner": "bpfi", "ball": "bdf"}


def _check_snr_reference(snr_reference: Any) -> None:
    if snr_reference not in SNR_REFERENCES:
        raise DiagError(f"snr_reference: choose 'signal' or 'healthy', got {snr_reference!r}")


@dataclass(frozen=True)
class BearingParams:
    """The inputs of :func:`simulate_bearing`, checked in one place by :meth:`validated`.

    Parameters
    ----------
    fault : {"normal", "inner", "outer", "ball", "combined"}
    severity : float
        Impact amplitude in g (> 0; ignored for ``normal``).
    rpm : float or (start, end)
        Shaft speed in rpm, constant or a linear ramp over the recording.
    fs, duration : float
        Sampling rate (Hz) and length (s).
    snr_db : float or None
        Noise level in dB, in [-20, 60]; None adds no noise.
    snr_reference : {"signal", "healthy"}
        Power the SNR refers to: the whole noise-free signal, or its healthy part only.
    resonances : list of (frequency Hz, damping ratio[, gain])
        Structural resonances excited by each impact; every frequency must be below fs/2.
    geometry : BearingGeometry
        Default: SKF 6205 (CWRU drive end).
    slip : float
        Relative standard deviation of the impact spacing (0.01-0.02 is typical), in [0, 0.1].
    am_depth : float
        Modulation depth ``m`` of inner (shaft rate) and ball (cage rate) impacts, in [0, 1].
    amplitude_jitter : float
        Relative standard deviation of the impact amplitudes, in [0, 0.5].
    shaft_amplitudes : (a1, a2)
        Amplitudes (g) of the 1x and 2x shaft harmonics (any number of harmonics may be given).
    roughness : float
        RMS (g) of the healthy distributed-roughness response (white noise through ``h``).
    """

    fault: str = "outer"
    severity: float = 0.3
    rpm: float | Sequence[float] = 1750.0
    fs: float = 12000.0
    duration: float = 1.0
    snr_db: float | None = 10.0
    snr_reference: str = "signal"
    resonances: Sequence[Sequence[float]] = DEFAULT_RESONANCES
    geometry: BearingGeometry | None = None
    slip: float = 0.015
    am_depth: float = 0.5
    amplitude_jitter: float = 0.1
    shaft_amplitudes: Sequence[float] = (0.05, 0.02)
    roughness: float = 0.02

    def validated(self) -> "BearingParams":
        """A copy with every value checked (a one-line DiagError naming the first bad one) and normalised:
        floats, a validated geometry, ``resonances`` as ``[(Hz, zeta, gain)]``, ``shaft_amplitudes`` a list."""
        if self.fault not in BEARING_FAULTS:
            raise DiagError(f"fault: unknown '{self.fault}'; choose one of {', '.join(BEARING_FAULTS)}")
        fs, duration, _ = check_samples(self.fs, self.duration)
        geometry = (self.geometry or BearingGeometry()).validate()
        _speed(self.rpm)
        check_snr("snr_db", self.snr_db)
        _check_snr_reference(self.snr_reference)
        res = _resonances(self.resonances, fs)
        severity = check_positive("severity", self.severity) if self.fault != "normal" else self.severity
        slip = check_positive("slip", self.slip, strict=False)
        if slip > 0.1:
            raise DiagError(f"slip: must be in [0, 0.1] (relative spacing jitter), got {slip}")
        if not 0.0 <= float(self.am_depth) <= 1.0:
            raise DiagError(f"am_depth: must be in [0, 1], got {self.am_depth!r}")
        if not 0.0 <= float(self.amplitude_jitter) <= 0.5:
            raise DiagError(f"amplitude_jitter: must be in [0, 0.5], got {self.amplitude_jitter!r}")
        if not isinstance(self.shaft_amplitudes, (list, tuple)):
            raise DiagError(f"shaft_amplitudes: expected a list of amplitudes (g), got {self.shaft_amplitudes!r}")
        amps_h = [check_positive("shaft_amplitudes", a, strict=False) for a in self.shaft_amplitudes]
        roughness = check_positive("roughness", self.roughness, strict=False)
        return replace(self, severity=severity, fs=fs, duration=duration, resonances=res, geometry=geometry,
                       slip=slip, shaft_amplitudes=amps_h, roughness=roughness)

    @property
    def n(self) -> int:
        """Samples of the signal: ``round(duration * fs)``."""
        return int(round(self.duration * self.fs))


class _ShaftAngle:
    """Shaft angle ``rho(t) = f0 t + a t^2 / 2`` (revolutions) of a constant speed or a linear ramp."""

    def __init__(self, f0: float, f1: float, duration: float):
        self.f0, self.accel = f0, (f1 - f0) / duration  # shaft acceleration, Hz/s

    def angle(self, tt: np.ndarray) -> np.ndarray:
        return self.f0 * tt + 0.5 * self.accel * tt * tt

    def time_at(self, rev: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`angle`: the stable root of the quadratic."""
        return 2.0 * rev / (self.f0 + np.sqrt(self.f0 * self.f0 + 2.0 * self.accel * rev))


def _healthy_part(p: BearingParams, rho: np.ndarray, rng_phase: np.random.Generator,
                  rng_rough: np.random.Generator) -> np.ndarray:
    """Shaft harmonics plus the healthy roughness (white noise through the resonances) at its RMS."""
    n = p.n
    healthy = np.zeros(n)
    for k, a in enumerate(p.shaft_amplitudes, start=1):
        healthy += a * np.sin(2 * math.pi * k * rho + rng_phase.uniform(0, 2 * math.pi))
    if p.roughness > 0:
        white = rng_rough.standard_normal(n)
        rough = _ring(np.empty(0), np.empty(0), n, p.fs, p.resonances, white=white)
        healthy += rough * (p.roughness / max(float(np.sqrt(np.mean(rough**2))), 1e-300))
    return healthy


def _impact_train(p: BearingParams, comp: str, orders: dict[str, float], shaft: _ShaftAngle, rho_end: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Impact times (s) and amplitudes of one defect ``comp``: a slipping grid of defect angles, with
    amplitude jitter and (inner: shaft rate, ball: cage rate) amplitude modulation."""
    k_ord = orders[COMPONENT_ORDER[comp]]
    spacing = 1.0 / k_ord
    count = int(math.ceil(rho_end * k_ord * (1 + 4 * p.slip))) + 2
    steps = spacing * (1.0 + p.slip * np.clip(rng.standard_normal(count), -3, 3))
    revs = rng.uniform(0, spacing) + np.concatenate(([0.0], np.cumsum(steps[:-1])))
    revs = revs[revs < rho_end]
    times = shaft.time_at(revs)
    amp = p.severity * (1.0 + p.amplitude_jitter * rng.standard_normal(revs.size))
    phase = rng.uniform(0, 2 * math.pi)
    if comp == "inner":  # defect turns with the shaft through the load zone
        amp *= 1.0 + p.am_depth * np.cos(2 * math.pi * revs + phase)
    elif comp == "ball":  # the ball goes round with the cage
        amp *= 1.0 + p.am_depth * np.cos(2 * math.pi * orders["ftf"] * revs + phase)
    return times, amp


def _add_noise(p: BearingParams, clean: np.ndarray, healthy: np.ndarray,
               rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """White noise at ``snr_db`` below the power of ``snr_reference``; ``(x, noise_rms)``."""
    if p.snr_db is None:
        return clean, 0.0
    ref = clean if p.snr_reference == "signal" else healthy
    p_ref = float(np.mean(ref**2))
    noise_rms = math.sqrt(p_ref / 10 ** (p.snr_db / 10))
    return clean + noise_rms * rng.standard_normal(p.n), noise_rms


def _simulate(p: BearingParams, seed: int | np.random.SeedSequence | None) -> tuple[np.ndarray, dict[str, Any]]:
    """:func:`simulate_bearing` of validated parameters."""
    n, fs = p.n, p.fs
    f0, f1 = _speed(p.rpm)
    rng_phase, rng_imp, rng_rough, rng_noise = (np.random.default_rng(s) for s in seed_sequence(seed).spawn(4))
    shaft = _ShaftAngle(f0, f1, n / fs)
    rho = shaft.angle(np.arange(n) / fs)
    rho_end = float(shaft.angle(np.array(n / fs)))
    healthy = _healthy_part(p, rho, rng_phase, rng_rough)
    orders = p.geometry.orders()
    impacts = np.zeros(n)
    impact_times: dict[str, np.ndarray] = {}
    for comp in FAULT_COMPONENTS[p.fault]:
        times, amp = _impact_train(p, comp, orders, shaft, rho_end, rng_imp)
        impacts += _ring(times, amp, n, fs, p.resonances)
        impact_times[comp] = times
    x, noise_rms = _add_noise(p, healthy + impacts, healthy, rng_noise)
    f_mean = 0.5 * (f0 + f1)
    info = {
        "fault": p.fault,
        "severity": float(p.severity) if p.fault != "normal" else 0.0,
        "orders": orders,
        "shaft_hz": (f0, f1),
        "defect_hz": {k: v * f_mean for k, v in orders.items()},
        "impact_times": impact_times,
        "noise_rms": noise_rms,
        "snr_db": p.snr_db,
        "snr_reference": p.snr_reference,
        "resonances": p.resonances,
        "geometry": asdict(p.geometry),
        "slip": p.slip,
        "am_depth": float(p.am_depth),
        "shaft_amplitudes": p.shaft_amplitudes,
        "roughness": p.roughness,
    }
    return x, info


def simulate_bearing(
    *,
    fault: str = "outer",
    severity: float = 0.3,
    rpm: float | Sequence[float] = 1750.0,
    fs: float = 12000.0,
    duration: float = 1.0,
    snr_db: float | None = 10.0,
    snr_reference: str = "signal",
    resonances: Sequence[Sequence[float]] = DEFAULT_RESONANCES,
    geometry: BearingGeometry | None = None,
    slip: float = 0.015,
    am_depth: float = 0.5,
    amplitude_jitter: float = 0.1,
    shaft_amplitudes: Sequence[float] = (0.05, 0.02),
    roughness: float = 0.02,
    seed: int | np.random.SeedSequence | None = 0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Simulate one bearing vibration signal (see the module docstring for the model).

    Parameters: the fields of :class:`BearingParams` (and ``seed``: int or SeedSequence).

    Returns
    -------
    x : float64 array, shape [N], N = round(duration * fs)
    info : dict
        ``orders`` (BearingGeometry.orders), ``shaft_hz`` (start, end), ``defect_hz`` (at the mean
        speed), ``impact_times`` {component: seconds}, ``noise_rms``, ``snr_db`` and the inputs.
    """
    params = BearingParams(fault=fault, severity=severity, rpm=rpm, fs=fs, duration=duration, snr_db=snr_db,
                           snr_reference=snr_reference, resonances=resonances, geometry=geometry, slip=slip,
                           am_depth=am_depth, amplitude_jitter=amplitude_jitter,
                           shaft_amplitudes=shaft_amplitudes, roughness=roughness)
    return _simulate(params.validated(), seed)


# ----------------------------------------------------------------------------------------------
# Dataset


@dataclass(frozen=True)
class BearingSetParams:
    """The options of :func:`simulate_bearing_recordings`, checked in one place by
    :meth:`validated` (which turns levels and ranges into tuples).

    Parameters (ranges ``[low, high]`` are drawn uniformly per recording; a number fixes the value)
    ----------
    classes : list of "normal", "inner", "outer", "ball", "combined" (inner + outer), or "all".
    recordings_per_class : int >= 1.
    duration, fs : seconds and Hz of every recording.
    rpm : speed levels in rpm (each recording's speed is its level +-0.3 %).
    severities : impact amplitude levels in g.
    snr_db : range of the noise SNR in dB (within [-20, 60]), against ``snr_reference``.
    snr_reference : "healthy" (noise floor independent of the fault; default) or "signal".
    ramp : relative speed change over a recording (0.1: from 0.95 to 1.05 x the level, direction
        random); 0 keeps the speed constant.
    slip, am_depth : ranges of the impact spacing jitter and of the modulation depth.
    resonances : nominal (Hz, damping ratio[, gain]) list; each machine moves every frequency by up
        to +-``resonance_jitter`` (relative) and every damping ratio by a factor in [0.8, 1.25].
    shaft_amplitude : range of the 1x amplitude in g (log-uniform); 2x is 0.2-0.6 of it.
    roughness : range of the healthy roughness RMS in g.
    n_balls, ball_diameter, pitch_diameter, contact_angle : bearing geometry (default SKF 6205).
    seed : recording ``j`` of class ``c`` uses ``SeedSequence(seed, spawn_key=(crc32(c), j))``.
    """

    classes: str | Sequence[str] = ("normal", "inner", "outer", "ball")
    recordings_per_class: int = 8
    duration: float = 10.0
    fs: float = 12000.0
    rpm: float | Sequence[float] = CWRU_RPM
    severities: float | Sequence[float] = (0.15, 0.3)
    snr_db: float | Sequence[float] = (-6.0, 3.0)
    snr_reference: str = "healthy"
    ramp: float = 0.0
    slip: float | Sequence[float] = (0.01, 0.02)
    am_depth: float | Sequence[float] = (0.3, 0.8)
    resonances: Sequence[Sequence[float]] = DEFAULT_RESONANCES
    resonance_jitter: float = 0.15
    shaft_amplitude: float | Sequence[float] = (0.02, 0.08)
    roughness: float | Sequence[float] = (0.01, 0.03)
    n_balls: int = 9
    ball_diameter: float = 0.3126
    pitch_diameter: float = 1.537
    contact_angle: float = 0.0
    seed: int = 0

    def validated(self) -> "BearingSetParams":
        classes = class_list("classes", self.classes, BEARING_FAULTS, {"all": BEARING_FAULTS})
        check_count(self.recordings_per_class)
        fs = check_sampling_rate(self.fs)
        duration = check_positive("duration", self.duration)
        rpm_levels = as_levels("rpm", self.rpm, lo=0.0)
        for r in rpm_levels:
            _speed(r)
        sev_levels = as_levels("severities", self.severities, lo=0.0)
        snr_r = as_range("snr_db", self.snr_db, -20.0, 60.0)
        _check_snr_reference(self.snr_reference)
        ramp = check_positive("ramp", self.ramp, strict=False)
        if ramp >= 1.0:
            raise DiagError(f"ramp: relative speed change must be in [0, 1), got {ramp}")
        slip_r = as_range("slip", self.slip, 0.0, 0.1)
        am_r = as_range("am_depth", self.am_depth, 0.0, 1.0)
        jit = check_positive("resonance_jitter", self.resonance_jitter, strict=False)
        if jit >= 0.5:
            raise DiagError(f"resonance_jitter: must be in [0, 0.5), got {jit}")
        nominal = _resonances(self.resonances, fs)
        top = max(f for f, _, _ in nominal) * (1 + jit)
        if top >= fs / 2:
            raise DiagError(
                f"fs: {fs:g} Hz is too low for resonances up to {top:g} Hz (nominal x (1 + resonance_jitter)); "
                f"use fs > {2 * top:g} Hz or lower resonances"
            )
        a1_r = as_range("shaft_amplitude", self.shaft_amplitude, 0.0, lo_open=True)
        rough_r = as_range("roughness", self.roughness, 0.0)
        self.geometry().validate()
        check_seed(self.seed)
        return replace(self, classes=tuple(classes), fs=fs, duration=duration, rpm=rpm_levels, severities=sev_levels,
                       snr_db=snr_r, ramp=ramp, slip=slip_r, am_depth=am_r, resonances=nominal, resonance_jitter=jit,
                       shaft_amplitude=a1_r, roughness=rough_r)

    def geometry(self) -> BearingGeometry:
        return BearingGeometry(self.n_balls, self.ball_diameter, self.pitch_diameter, self.contact_angle)


def _draw_machine(o: BearingSetParams, label: str, j: int, rng: np.random.Generator) -> tuple[BearingParams, Any]:
    """Recording ``j`` of class ``label``: a machine drawn from the set's distributions (``rng``), and its
    speed (rpm, or a ``(start, end)`` ramp)."""
    level = o.rpm[j % len(o.rpm)]
    sev_level = o.severities[(j // len(o.rpm)) % len(o.severities)]
    speed = level * (1 + rng.uniform(-0.003, 0.003))
    direction = rng.choice([-1.0, 1.0])
    rpm_j = (speed * (1 - direction * o.ramp / 2), speed * (1 + direction * o.ramp / 2)) if o.ramp else speed
    jit = o.resonance_jitter
    res_j = [(f * (1 + rng.uniform(-jit, jit)), min(z * rng.uniform(0.8, 1.25), 0.5), g) for f, z, g in o.resonances]
    a1_r = o.shaft_amplitude
    a1 = float(np.exp(rng.uniform(np.log(a1_r[0]), np.log(a1_r[1]))))
    params = BearingParams(
        fault=label,
        severity=sev_level * rng.uniform(0.85, 1.15),
        rpm=rpm_j,
        fs=o.fs,
        duration=o.duration,
        snr_db=float(rng.uniform(o.snr_db[0], o.snr_db[1])),
        snr_reference=o.snr_reference,
        resonances=res_j,
        geometry=o.geometry(),
        slip=float(rng.uniform(*o.slip)),
        am_depth=float(rng.uniform(*o.am_depth)),
        shaft_amplitudes=(a1, a1 * rng.uniform(0.2, 0.6)),
        roughness=float(rng.uniform(*o.roughness)),
    )
    return params, rpm_j


def _bearing_recording(o: BearingSetParams, label: str, j: int, idx: int) -> Recording:
    """Recording ``j`` of class ``label``, the ``idx``-th of the set."""
    ss = child_seed(o.seed, label, j)
    ss_machine, ss_signal = ss.spawn(2)
    params, rpm_j = _draw_machine(o, label, j, np.random.default_rng(ss_machine))
    x, info = _simulate(params.validated(), ss_signal)
    level = o.rpm[j % len(o.rpm)]
    sev_level = o.severities[(j // len(o.rpm)) % len(o.severities)]
    meta = {k: v for k, v in info.items() if k != "impact_times"}
    meta.update(
        rpm=rpm_j,
        speed_level_rpm=level,
        severity_level=sev_level if label != "normal" else 0.0,
        n_impacts={k: int(v.size) for k, v in info["impact_times"].items()},
        seed=o.seed,
        seed_spawn_key=list(ss.spawn_key),
        simulator="diag.simulate.bearing",
    )
    return Recording(
        signal=x[None, :],
        fs=o.fs,
        label=label,
        group=f"bearing_sim_{idx:03d}",
        condition=f"{level:g}rpm",
        source=f"simulate:bearing#{idx}",
        fault_size="" if label == "normal" else f"{sev_level:g}",
        channels=("accel",),
        meta=jsonable(meta),
    )


def simulate_bearing_recordings(
    path: str | None = None,
    *,
    classes: str | Sequence[str] = ("normal", "inner", "outer", "ball"),
    recordings_per_class: int = 8,
    duration: float = 10.0,
    fs: float = 12000.0,
    rpm: float | Sequence[float] = CWRU_RPM,
    severities: float | Sequence[float] = (0.15, 0.3),
    snr_db: float | Sequence[float] = (-6.0, 3.0),
    snr_reference: str = "healthy",
    ramp: float = 0.0,
    slip: float | Sequence[float] = (0.01, 0.02),
    am_depth: float | Sequence[float] = (0.3, 0.8),
    resonances: Sequence[Sequence[float]] = DEFAULT_RESONANCES,
    resonance_jitter: float = 0.15,
    shaft_amplitude: float | Sequence[float] = (0.02, 0.08),
    roughness: float | Sequence[float] = (0.01, 0.03),
    n_balls: int = 9,
    ball_diameter: float = 0.3126,
    pitch_diameter: float = 1.537,
    contact_angle: float = 0.0,
    seed: int = 0,
) -> list[Recording]:
    """A labelled set of simulated bearing recordings (``source.kind = "bearing_sim"``).

    Each recording is a different simulated machine (its own resonances, shaft-harmonic level,
    roughness, noise level, slip, modulation depth), all drawn from the same distributions for
    every class, at the same ``fs`` and ``duration``: classes differ only by their fault impacts.

    Recording ``j`` of a class runs at speed level ``rpm[j % len(rpm)]`` (the ``condition``, e.g.
    ``"1772rpm"``; the defaults are CWRU's 0-3 HP speeds) and, if faulty, severity
    ``severities[(j // len(rpm)) % len(severities)]`` (the ``fault_size``, e.g. ``"0.3"``). The
    defaults, 4 classes x 8 recordings x 10 s at 12 kHz, give 32 recordings (116 windows each, 3,712 in all, of
    2048 samples at hop 1024), every (speed, severity) pair once per faulty class.

    Parameters: ``path`` (unused: the reader signature of ``diag.sources``) and the fields of
    :class:`BearingSetParams`.
    """
    del path  # simulated: nothing to read
    o = BearingSetParams(
        classes=classes, recordings_per_class=recordings_per_class, duration=duration, fs=fs, rpm=rpm,
        severities=severities, snr_db=snr_db, snr_reference=snr_reference, ramp=ramp, slip=slip, am_depth=am_depth,
        resonances=resonances, resonance_jitter=resonance_jitter, shaft_amplitude=shaft_amplitude,
        roughness=roughness, n_balls=n_balls, ball_diameter=ball_diameter, pitch_diameter=pitch_diameter,
        contact_angle=contact_angle, seed=seed,
    ).validated()
    pairs = [(label, j) for label in o.classes for j in range(o.recordings_per_class)]
    return [_bearing_recording(o, label, j, idx) for idx, (label, j) in enumerate(pairs)]
