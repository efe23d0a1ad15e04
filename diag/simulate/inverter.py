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
from typing import Any, Sequence

import numpy as np
from scipy import signal as sps

from diag.errors import DiagError
from diag.simulate.params import (
    as_levels,
    as_range,
    check_positive,
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


def _steady_current(m, f1, vdc, r, l, emf, load_angle):
    """Complex amplitude of the healthy fundamental phase current (phase A, sine reference)."""
    w = 2 * np.pi * f1
    v1 = m * vdc / 2.0
    return (v1 - emf * np.exp(-1j * load_angle)) / (r + 1j * w * l)


def _simulate_batch(
    *,
    ok_u: np.ndarray,
    ok_l: np.ndarray,
    m: np.ndarray,
    f1: np.ndarray,
    phase0: np.ndarray,
    vdc: np.ndarray,
    r: np.ndarray,
    l: np.ndarray,
    emf: np.ndarray,
    load_angle: np.ndarray,
    fsw: np.ndarray,
    carrier_phase: np.ndarray,
    svpwm: np.ndarray,
    fs: float,
    n_samples: int,
    r_sub: int,
    n_warm: int,
    chunk: int,
    voltages: bool,
    turns: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Noise-free currents ``[B, 3, n_samples]`` (and line voltages) of B inverters, all at ``fs``.

    Per-recording arrays have shape ``[B]`` (``ok_u``/``ok_l``: ``[B, 3]``). ``turns`` ``[B, 3]``:
    fraction of each phase winding in circuit (inter-turn short; None: all 1, the balanced path).
    See the module docstring for the method.
    """
    unbalanced = turns is not None and bool(np.any(np.asarray(turns) != 1.0))
    if unbalanced:
        shorted = np.any(np.asarray(turns) != 1.0, axis=1)
        if np.any(shorted & (np.any(np.asarray(ok_u) != 1, axis=1) | np.any(np.asarray(ok_l) != 1, axis=1))):
            raise DiagError("an inter-turn short circuit is not simulated together with open switches")
    B = m.shape[0]
    pad = 16  # output samples simulated on both sides, for the decimation filter
    n_tot = n_samples + 2 * pad
    K = -(-n_tot // chunk)
    M = B * K
    b_of = np.repeat(np.arange(B), K)
    k_of = np.tile(np.arange(K), B)
    row = lambda x: np.asarray(x, dtype=float)[b_of]  # noqa: E731  per row, [M]
    f32 = np.float32
    Ts = 1.0 / fs
    h = Ts / r_sub
    q = r_sub // 4
    t0 = (k_of * chunk - pad - n_warm) * Ts  # start time of each row, [M]
    w, ph0, mm, vd, E, dl = row(2 * np.pi * np.asarray(f1)), row(phase0), row(m), row(vdc), row(emf), row(load_angle)
    R, L = row(r), row(l)
    sv = np.asarray(svpwm, dtype=bool)[b_of]
    hf = h * row(fsw)  # carrier periods per step (<= 1/steps_per_carrier)
    y_base = np.mod(t0 * row(fsw) + row(carrier_phase), 1.0)
    # legs first: every per-step array is [3, M], so sums over the legs are two vector additions
    oku = np.asarray(ok_u, float)[b_of].T.astype(f32)
    okl = np.asarray(ok_l, float)[b_of].T.astype(f32)
    a = np.exp(-h * R / L)
    A = np.tile(a.astype(f32), (3, 1))  # exact R-L step: i' = A i + BC (v - v_nN - e)
    BC = np.tile(((1.0 - a) / R).astype(f32), (3, 1))
    BC3 = BC[0] / f32(3.0)
    TT = np.ones((3, M), f32)
    if unbalanced:  # per-phase R (1-mu), L (1-mu)^2, back-EMF (1-mu); v_nN from sum(i) = 0
        tt = np.asarray(turns, float)[b_of].T  # [3, M]
        R3, L3 = R[None] * tt, L[None] * tt**2
        a3 = np.exp(-h * R3 / L3)
        A, BC = a3.astype(f32), ((1.0 - a3) / R3).astype(f32)
        SBC = BC[0] + BC[1] + BC[2]
        TT = tt.astype(f32)
    vd32 = vd.astype(f32)
    VD = np.tile(vd32, (3, 1))
    cos_k = np.cos(2 * np.pi / 3 * np.arange(3))[None, :, None]
    sin_k = np.sin(2 * np.pi / 3 * np.arange(3))[None, :, None]

    I1 = _steady_current(mm, w / (2 * np.pi), vd, R, L, E, dl)  # [M] complex
    i = np.imag(I1[None, :] * np.exp(1j * (w * t0 + ph0)[None, :] - 1j * 2 * np.pi / 3 * np.arange(3)[:, None]))
    i = i.astype(f32)  # [3, M]

    n_out4 = chunk * 4
    out_i = np.zeros((n_out4, 3, M), f32)
    out_v = np.zeros((n_out4, 3, M), f32) if voltages else None
    acc_i = np.zeros((3, M), f32)
    acc_v = np.zeros((3, M), f32) if voltages else None
    steps_total = (n_warm + chunk) * r_sub
    first_rec = n_warm * r_sub
    block = q * max(1, 64 // q)
    half_vd = f32(0.5) * vd32

    # Time base without per-step transcendental functions: the modulating wave and the back-EMF are
    # evaluated once per quarter output sample (every q steps, at the midpoint) with the
    # angle-addition formula from tables made once; the carrier's on-time is integrated exactly
    # for every step.
    n_grp = block // q
    g_idx = np.arange(n_grp, dtype=float)[:, None]  # [G, 1]
    rot_c = np.cos(w * h * q * g_idx).astype(f32)  # [G, M]
    rot_s = np.sin(w * h * q * g_idx).astype(f32)
    carrier_steps = (np.arange(block, dtype=float)[:, None] * hf).astype(f32)  # [S, M] periods since block start
    hf32 = hf.astype(f32)
    cos_k, sin_k = cos_k.astype(f32), sin_k.astype(f32)
    mm32, E32 = mm.astype(f32), E.astype(f32)
    cos_dl, sin_dl = np.cos(dl).astype(f32), np.sin(dl).astype(f32)
    # per-leg constants of the pole voltage: VP = duty * Vdc ok_u; VN = duty * Vdc ok_l + Vdc (1 - ok_l)
    vok_u, vok_l, v_nol = vd32 * oku, vd32 * okl, vd32 * (1 - okl)
    vm_k, dh_k = f32(0.5) * (vok_u + vok_l), f32(0.5) * (vok_l - vok_u)
    vm_0 = f32(0.5) * v_nol
    phi_k, phi_0 = okl - oku, 1 - okl
    zero_prev = True  # a current may be exactly zero (diode blocking) - checked while true
    for start in range(0, steps_total, block):
        S = min(block, steps_total - start)
        G = S // q
        th0 = w * (t0 + (start + 0.5 * q) * h) + ph0  # [M], float64, midpoint of the first group
        cb, sb = np.cos(th0).astype(f32), np.sin(th0).astype(f32)
        c_t = (cb * rot_c[:G] - sb * rot_s[:G])[:, None, :]  # cos(theta), [G, 1, M]
        s_t = (sb * rot_c[:G] + cb * rot_s[:G])[:, None, :]
        u = mm32 * (s_t * cos_k - c_t * sin_k)  # m sin(theta - 2 pi k/3), [G, 3, M]
        if sv.any():  # min-max zero-sequence injection = centred SVPWM
            u = np.where(sv, u - f32(0.5) * (u.max(1, keepdims=True) + u.min(1, keepdims=True)), u)
        np.clip(u, -1.0, 1.0, out=u)
        # Triangle carrier c = 1 - 4|frac(y) - 1/2| (-1 at integer y), gate on where u > c: the first
        # and last a = (1 + u)/4 of each period. On-time integral over [0, y), y in [0, 2):
        # min(y, a) + max(y - 1 + a, 0) - max(y - 1 - a, 0); duty = its increment over the step.
        a_ = (f32(0.25) * (1 + u))[:, None]  # [G, 1, 3, M]
        b_, c_ = a_ - 1, -1 - a_
        y0 = np.mod(y_base + start * hf, 1.0).astype(f32) + carrier_steps[:S]
        y0 = (y0 - np.floor(y0)).reshape(G, q, 1, M)  # carrier phase at each step start, in [0, 1)
        y1 = y0 + hf32
        duty = np.minimum(y1, a_) - np.minimum(y0, a_)
        duty += np.maximum(y1 + b_, 0)
        duty -= np.maximum(y0 + b_, 0)
        duty -= np.maximum(y1 + c_, 0)
        duty = duty.reshape(S, 3, M) / hf32
        np.clip(duty, 0.0, 1.0, out=duty)
        # pole voltage if i > 0 (VP) / if i < 0 (VN), written v = VM - DH sign(i), and the fraction
        # PHI of the step in which the leg conducts through diodes only (its gated switch is open)
        VP = duty * vok_u
        VM = duty * vm_k + vm_0
        DH = duty * dh_k + vm_0
        PHI = duty * phi_k + phi_0
        PHIPOS = PHI > 0
        PHI1 = PHI >= 1
        s_d = s_t * cos_dl - c_t * sin_dl  # sin(theta - d)
        c_d = c_t * cos_dl + s_t * sin_dl
        EB = E32 * (s_d * cos_k - c_d * sin_k)  # back-EMF, [G, 3, M]
        if unbalanced:
            EB = EB * TT
        BE = BC * EB
        E15 = f32(1.5) * EB
        for s in range(S):
            g = s // q
            v = VM[s] - DH[s] * np.sign(i)
            hold = None
            if zero_prev:
                z = (i == 0) & PHIPOS[s]
                if z.any():  # diode-only legs at zero current: float between the rails, or clamp
                    zi = z.view(np.int8)
                    n_z = zi[0] + zi[1] + zi[2]
                    # one floating leg, the other two conduct: v_float = (v_y + v_z)/2 + 3/2 e_x
                    vf_raw = f32(0.5) * ((v[0] + v[1] + v[2]) - v) + E15[g]
                    if n_z.max() >= 2:  # rows with more: v_nN from the conducting legs, or centred
                        e_s = EB[g]
                        cf = (~z).astype(f32)
                        n_c = cf[0] + cf[1] + cf[2]
                        ve = (v - e_s) * cf
                        vn_p = (ve[0] + ve[1] + ve[2]) / np.maximum(n_c, 1)
                        mid = half_vd - f32(0.5) * (e_s.max(0) + e_s.min(0))
                        vn_p = np.where(n_c == 0, mid, vn_p)
                        vf_raw = np.where(n_z >= 2, vn_p + e_s, vf_raw)  # row by row: batch-independent
                    vf = np.minimum(np.maximum(vf_raw, 0), VD)
                    np.putmask(v, z, VP[s] + PHI[s] * vf)
                    hold = z & PHI1[s] & (vf == vf_raw)
            if unbalanced:
                i_new = A * i + BC * v - BE[g]
                i_new -= BC * ((i_new[0] + i_new[1] + i_new[2]) / SBC)
            else:
                i_new = A * i + BC * v - BC3 * (v[0] + v[1] + v[2]) - BE[g]
            zero = (i_new * i < 0) & PHIPOS[s]
            if hold is not None:
                zero |= hold
            zero_prev = bool(zero.any())
            if zero_prev:  # a diode stopped conducting: that current is zero, the others sum to zero
                np.putmask(i_new, zero, 0)
                ki = (~zero).view(np.int8)
                corr = (i_new[0] + i_new[1] + i_new[2]) / np.maximum(ki[0] + ki[1] + ki[2], 1)
                i_new -= corr
                np.putmask(i_new, zero, 0)
            i = i_new
            step = start + s
            if step >= first_rec:
                acc_i += i
                if voltages:
                    acc_v += v
                if (step - first_rec + 1) % q == 0:
                    j = (step - first_rec) // q
                    out_i[j] = acc_i
                    acc_i[:] = 0
                    if voltages:
                        out_v[j] = acc_v - np.roll(acc_v, -1, axis=0)  # vab, vbc, vca
                        acc_v[:] = 0

    def assemble(out4: np.ndarray) -> np.ndarray:
        # [n_out4, 3, B*K] sums over q steps -> [B, 3, K*n_out4] means -> FIR decimation by 4
        # (a few recordings at a time to bound the memory)
        res = np.empty((B, 3, n_samples))
        by_rec = out4.reshape(n_out4, 3, B, K)
        for b0 in range(0, B, 8):
            b1 = min(B, b0 + 8)
            y = by_rec[:, :, b0:b1].transpose(2, 1, 3, 0).reshape(b1 - b0, 3, K * n_out4)
            y = sps.resample_poly(y.astype(np.float64) / q, 1, 4, axis=-1)
            res[b0:b1] = y[:, :, pad : pad + n_samples]
        return res

    return assemble(out_i), (assemble(out_v) if voltages else None)


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
    switches = open_switches(fault)
    fs = check_positive("fs", fs)
    duration = check_positive("duration", duration)
    for name, v in (("m", m), ("f1", f1), ("vdc", vdc), ("r", r), ("l", l), ("fsw", fsw)):
        check_positive(name, v)
    _validate_point("", m=float(m), f1=float(f1), vdc=float(vdc), r=float(r), l=float(l),
                    emf_ratio=float(emf_ratio), fsw=float(fsw), fs=fs, pwm=pwm)
    _check_fsw(float(fsw), fs, steps_per_carrier)
    check_snr("snr_db", snr_db)
    if not 0.0 <= float(sensor_offset) <= 0.1:
        raise DiagError(f"sensor_offset: must be in [0, 0.1] (fraction of the peak current), got {sensor_offset!r}")
    n = int(round(duration * fs))
    if n < 16:
        raise DiagError(f"duration: {duration:g} s at {fs:g} Hz gives only {n} samples; need at least 16")
    n_warm = max(1, math.ceil(6 * l / r * fs))
    chunk_n = max(n_warm, int(round(0.01 * fs))) if chunk is None else int(round(check_positive("chunk", chunk) * fs))

    ss = seed_sequence(seed)
    rng_p, rng_m = (np.random.default_rng(s) for s in ss.spawn(2))
    ok_u, ok_l = _switch_masks(fault)
    mu = _check_short_fraction(short_fraction)[0]
    r_sub = _sub_steps(fs, float(fsw), steps_per_carrier)
    emf = emf_ratio * m * vdc / 2.0
    p = dict(m=m, f1=f1, vdc=vdc, r=r, l=l, emf=emf, load_angle=math.radians(load_angle), fsw=fsw)
    clean_i, clean_v = _simulate_batch(
        ok_u=ok_u[None], ok_l=ok_l[None], **{k: np.array([float(v)]) for k, v in p.items()},
        phase0=np.array([rng_p.uniform(0, 2 * np.pi)]), carrier_phase=np.array([rng_p.uniform()]),
        svpwm=np.array([pwm == "svpwm"]), fs=fs, n_samples=n, r_sub=r_sub,
        n_warm=n_warm, chunk=max(16, chunk_n), voltages=voltages, turns=_turns(fault, mu)[None],
    )
    I1 = _steady_current(m, f1, vdc, r, l, emf, math.radians(load_angle))
    i_pk = float(abs(I1))
    x, sensor = _measure(clean_i[0], i_pk / math.sqrt(2), snr_db, float(sensor_offset), fault, rng_m, i_pk)
    channels = ("ia", "ib", "ic")
    if voltages:
        x = np.concatenate([x, clean_v[0]], axis=0)
        channels += ("vab", "vbc", "vca")
    info = dict(
        fault=fault, open_switches=switches, channels=channels, m=m, f1=f1, vdc=vdc, r=r, l=l,
        emf_ratio=emf_ratio, emf=emf, load_angle=load_angle, fsw=fsw, pwm=pwm, fs=fs, duration=duration,
        snr_db=snr_db, steady_current=i_pk, dt=1.0 / (fs * r_sub), **sensor,
    )
    if fault in ITSC_FAULTS:
        info["short_fraction"] = mu
    return x, info


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

    Parameters (ranges ``[low, high]`` are drawn uniformly per recording; a number fixes the value)
    ----------
    path : unused.
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
    del path
    classes = class_list("classes", classes, INVERTER_CLASSES + SENSOR_FAULTS + ITSC_FAULTS, CLASS_PRESETS)
    mu_r = _check_short_fraction(short_fraction)
    if isinstance(recordings_per_class, bool) or not isinstance(recordings_per_class, int) or recordings_per_class < 1:
        raise DiagError(f"recordings_per_class: expected an integer >= 1, got {recordings_per_class!r}")
    fs = check_positive("fs", fs)
    duration = check_positive("duration", duration)
    n = int(round(duration * fs))
    if n < 16:
        raise DiagError(f"duration: {duration:g} s at {fs:g} Hz gives only {n} samples; need at least 16")
    f_levels = as_levels("f1", f1, lo=0.0)
    rated_f1 = check_positive("rated_f1", rated_f1)
    m_r = as_range("m_rated", m_rated, 0.0, lo_open=True)
    if m_r[1] * max(f_levels) * 1.02 / rated_f1 > M_MAX:
        raise DiagError(
            f"m_rated: m = m_rated x f1 / rated_f1 reaches {m_r[1] * max(f_levels) * 1.02 / rated_f1:.3f} "
            f"at f1 = {max(f_levels):g} Hz; the modulation index must stay in (0, {M_MAX}]"
        )
    ranges = {
        "vdc": as_range("vdc", vdc, 0.0, lo_open=True),
        "r": as_range("r", r, 0.0, lo_open=True),
        "l": as_range("l", l, 0.0, lo_open=True),
        "emf_ratio": as_range("emf_ratio", emf_ratio, 0.0, 0.999),
        "load_angle": as_range("load_angle", load_angle, -90.0, 90.0),
        "fsw": as_range("fsw", fsw, 0.0, lo_open=True),
    }
    pwms = [pwm] if isinstance(pwm, str) else list(pwm) if isinstance(pwm, (list, tuple)) else None
    if not pwms or any(p not in PWM_KINDS for p in pwms):
        raise DiagError(f"pwm: choose from {', '.join(PWM_KINDS)} (a name or a list), got {pwm!r}")
    snr_r = as_range("snr_db", snr_db, -20.0, 60.0)
    if not 0.0 <= float(sensor_offset) <= 0.1:
        raise DiagError(f"sensor_offset: must be in [0, 0.1] (fraction of the peak current), got {sensor_offset!r}")
    if not isinstance(voltages, bool):
        raise DiagError(f"voltages: expected true/false, got {voltages!r}")
    _check_fsw(ranges["fsw"][1], fs, steps_per_carrier)
    chunk = check_positive("chunk", chunk)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DiagError(f"seed: expected a non-negative integer, got {seed!r}")

    draws = []
    for label in classes:
        for j in range(recordings_per_class):
            ss = child_seed(seed, label, j)
            ss_machine, ss_meas = ss.spawn(2)
            rng = np.random.default_rng(ss_machine)
            level = f_levels[j % len(f_levels)]
            p: dict[str, Any] = {k: float(rng.uniform(*v)) for k, v in ranges.items()}
            p["f1"] = level * (1 + rng.uniform(-0.02, 0.02))
            p["m"] = float(rng.uniform(*m_r)) * p["f1"] / rated_f1
            p["pwm"] = str(pwms[int(rng.integers(len(pwms)))])
            p["snr_db"] = float(rng.uniform(*snr_r))
            p["phase0"] = float(rng.uniform(0, 2 * np.pi))
            p["carrier_phase"] = float(rng.uniform())
            if label in ITSC_FAULTS:  # drawn last: the other draws of a recording do not move
                p["short_fraction"] = float(rng.uniform(*mu_r))
            _validate_point(f"recording {label}#{j}: ", m=p["m"], f1=p["f1"], vdc=p["vdc"], r=p["r"], l=p["l"],
                            emf_ratio=p["emf_ratio"], fsw=p["fsw"], fs=fs, pwm=p["pwm"])
            draws.append((label, j, level, ss, ss_meas, p))

    P = {k: np.array([d[5][k] for d in draws]) for k in ("m", "f1", "vdc", "r", "l", "emf_ratio", "load_angle",
                                                           "fsw", "phase0", "carrier_phase")}
    masks = [_switch_masks(d[0]) for d in draws]
    emf = P["emf_ratio"] * P["m"] * P["vdc"] / 2
    tau_max = ranges["l"][1] / ranges["r"][0]  # from the option ranges: chunks do not depend on the draws
    clean_i, clean_v = _simulate_batch(
        ok_u=np.array([mk[0] for mk in masks]), ok_l=np.array([mk[1] for mk in masks]),
        m=P["m"], f1=P["f1"], phase0=P["phase0"], vdc=P["vdc"], r=P["r"], l=P["l"], emf=emf,
        load_angle=np.radians(P["load_angle"]), fsw=P["fsw"], carrier_phase=P["carrier_phase"],
        svpwm=np.array([d[5]["pwm"] == "svpwm" for d in draws]), fs=fs, n_samples=n,
        r_sub=_sub_steps(fs, ranges["fsw"][1], steps_per_carrier), n_warm=max(1, math.ceil(6 * tau_max * fs)),
        chunk=max(16, int(round(chunk * fs))), voltages=voltages,
        turns=np.array([_turns(d[0], d[5].get("short_fraction", 0.0)) for d in draws]),
    )

    recs: list[Recording] = []
    for idx, (label, j, level, ss, ss_meas, p) in enumerate(draws):
        I1 = _steady_current(p["m"], p["f1"], p["vdc"], p["r"], p["l"], emf[idx], math.radians(p["load_angle"]))
        i_pk = float(abs(I1))
        x, sensor = _measure(clean_i[idx], i_pk / math.sqrt(2), p["snr_db"], float(sensor_offset), label,
                             np.random.default_rng(ss_meas), i_pk)
        channels: tuple[str, ...] = ("ia", "ib", "ic")
        if voltages:
            x = np.concatenate([x, clean_v[idx]], axis=0)
            channels += ("vab", "vbc", "vca")
        meta = dict(p, fault=label, open_switches=list(open_switches(label)), emf=float(emf[idx]),
                    steady_current=i_pk, f1_level=level, seed=seed, seed_spawn_key=list(ss.spawn_key),
                    steps_per_carrier=steps_per_carrier, simulator="diag.simulate.inverter", **sensor)
        recs.append(
            Recording(
                signal=x,
                fs=fs,
                label=label,
                group=f"inverter_sim_{idx:03d}",
                condition=f"{level:g}Hz",
                source=f"simulate:inverter#{idx}",
                fault_size="",
                channels=channels,
                meta=jsonable(meta),
            )
        )
    return recs
