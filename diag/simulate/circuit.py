"""The inverter circuit, integrated for a batch of drives at once (the method is in the docstring of
:mod:`diag.simulate.inverter`): PWM pole voltages averaged exactly over each step, the exact R-L step,
diode blocking at zero current, integrate-and-dump at ``4 fs`` and a Kaiser FIR decimation by 4.

:func:`simulate_batch` takes the per-recording drive as a :class:`Drive` (arrays ``[B]``, switch masks
and winding turns ``[B, 3]``) and the time grid as an :class:`Integration`. Everything per step works
on arrays ``[3, M]`` (legs first, ``M`` = recordings x time chunks), so the only sequential part is the
per-step update in :func:`_step`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import signal as sps

from diag.errors import DiagError

#: output samples simulated on both sides of a recording, for the decimation filter
PAD = 16
f32 = np.float32


@dataclass(frozen=True)
class Drive:
    """B inverters with their loads, one value per recording (``[B]``; ``ok_u`` / ``ok_l`` / ``turns``
    ``[B, 3]``): 1.0 where the leg's upper / lower switch works (0.0: open), the fraction of each phase
    winding in circuit (inter-turn short; None: all 1, the balanced path). Angles in radians."""

    ok_u: np.ndarray
    ok_l: np.ndarray
    m: np.ndarray
    f1: np.ndarray
    phase0: np.ndarray
    vdc: np.ndarray
    r: np.ndarray
    l: np.ndarray  # noqa: E741 -- the inductance, as in the equations
    emf: np.ndarray
    load_angle: np.ndarray
    fsw: np.ndarray
    carrier_phase: np.ndarray
    svpwm: np.ndarray
    turns: np.ndarray | None = None

    def unbalanced(self) -> bool:
        """Whether a winding is shorted (refused together with open switches)."""
        if self.turns is None or not bool(np.any(np.asarray(self.turns) != 1.0)):
            return False
        shorted = np.any(np.asarray(self.turns) != 1.0, axis=1)
        opened = np.any(np.asarray(self.ok_u) != 1, axis=1) | np.any(np.asarray(self.ok_l) != 1, axis=1)
        if np.any(shorted & opened):
            raise DiagError("an inter-turn short circuit is not simulated together with open switches")
        return True


@dataclass(frozen=True)
class Integration:
    """The time grid: output rate ``fs`` (Hz) and ``n_samples``; ``r_sub`` steps per output sample (a
    multiple of 4); every chunk of ``chunk`` output samples starts ``n_warm`` samples early."""

    fs: float
    n_samples: int
    r_sub: int
    n_warm: int
    chunk: int
    voltages: bool


def steady_current(m, f1, vdc, r, l, emf, load_angle):  # noqa: E741
    """Complex amplitude of the healthy fundamental phase current (phase A, sine reference)."""
    w = 2 * np.pi * f1
    v1 = m * vdc / 2.0
    return (v1 - emf * np.exp(-1j * load_angle)) / (r + 1j * w * l)


class _Rows:
    """Per-row constants of a batch: one row per (recording, time chunk), legs first (``[3, M]``)."""

    def __init__(self, d: Drive, g: Integration):
        self.unbalanced = d.unbalanced()
        self.B = d.m.shape[0]
        self.K = -(-(g.n_samples + 2 * PAD) // g.chunk)
        self.M = self.B * self.K
        b_of = np.repeat(np.arange(self.B), self.K)
        k_of = np.tile(np.arange(self.K), self.B)
        row = lambda x: np.asarray(x, dtype=float)[b_of]  # noqa: E731  per row, [M]
        Ts = 1.0 / g.fs
        self.h = Ts / g.r_sub
        self.q = g.r_sub // 4
        self.t0 = (k_of * g.chunk - PAD - g.n_warm) * Ts  # start time of each row, [M]
        self.w, self.ph0, self.mm = row(2 * np.pi * np.asarray(d.f1)), row(d.phase0), row(d.m)
        self.vd, self.E, self.dl = row(d.vdc), row(d.emf), row(d.load_angle)
        self.R, self.L = row(d.r), row(d.l)
        self.sv = np.asarray(d.svpwm, dtype=bool)[b_of]
        self.hf = self.h * row(d.fsw)  # carrier periods per step (<= 1/steps_per_carrier)
        self.y_base = np.mod(self.t0 * row(d.fsw) + row(d.carrier_phase), 1.0)
        self.oku = np.asarray(d.ok_u, float)[b_of].T.astype(f32)
        self.okl = np.asarray(d.ok_l, float)[b_of].T.astype(f32)
        self._load(None if d.turns is None else np.asarray(d.turns, float)[b_of].T)
        self._pwm(g)

    def _load(self, tt: np.ndarray | None) -> None:
        """The exact R-L step ``i' = A i + BC (v - v_nN - e)``; per phase when a winding is shorted."""
        a = np.exp(-self.h * self.R / self.L)
        self.A = np.tile(a.astype(f32), (3, 1))
        self.BC = np.tile(((1.0 - a) / self.R).astype(f32), (3, 1))
        self.BC3 = self.BC[0] / f32(3.0)
        self.TT = np.ones((3, self.M), f32)
        if self.unbalanced:  # per-phase R (1-mu), L (1-mu)^2, back-EMF (1-mu); v_nN from sum(i) = 0
            R3, L3 = self.R[None] * tt, self.L[None] * tt**2
            a3 = np.exp(-self.h * R3 / L3)
            self.A, self.BC = a3.astype(f32), ((1.0 - a3) / R3).astype(f32)
            self.SBC = self.BC[0] + self.BC[1] + self.BC[2]
            self.TT = tt.astype(f32)

    def _pwm(self, g: Integration) -> None:
        """Tables of the time base (see :func:`_block_drive`) and the per-leg pole-voltage constants."""
        q = self.q
        self.block = q * max(1, 64 // q)
        n_grp = self.block // q
        g_idx = np.arange(n_grp, dtype=float)[:, None]  # [G, 1]
        self.rot_c = np.cos(self.w * self.h * q * g_idx).astype(f32)  # [G, M]
        self.rot_s = np.sin(self.w * self.h * q * g_idx).astype(f32)
        self.carrier_steps = (np.arange(self.block, dtype=float)[:, None] * self.hf).astype(f32)  # [S, M]
        self.hf32 = self.hf.astype(f32)
        self.cos_k = np.cos(2 * np.pi / 3 * np.arange(3))[None, :, None].astype(f32)
        self.sin_k = np.sin(2 * np.pi / 3 * np.arange(3))[None, :, None].astype(f32)
        self.mm32, self.E32 = self.mm.astype(f32), self.E.astype(f32)
        self.cos_dl, self.sin_dl = np.cos(self.dl).astype(f32), np.sin(self.dl).astype(f32)
        vd32 = self.vd.astype(f32)
        self.VD = np.tile(vd32, (3, 1))
        self.half_vd = f32(0.5) * vd32
        # per-leg constants of the pole voltage: VP = duty * Vdc ok_u; VN = duty * Vdc ok_l + Vdc (1 - ok_l)
        self.vok_u, vok_l, v_nol = vd32 * self.oku, vd32 * self.okl, vd32 * (1 - self.okl)
        self.vm_k, self.dh_k = f32(0.5) * (self.vok_u + vok_l), f32(0.5) * (vok_l - self.vok_u)
        self.vm_0 = f32(0.5) * v_nol
        self.phi_k, self.phi_0 = self.okl - self.oku, 1 - self.okl

    def initial_current(self) -> np.ndarray:
        """The healthy steady-state phasor current at each row's start, float32 ``[3, M]``."""
        I1 = steady_current(self.mm, self.w / (2 * np.pi), self.vd, self.R, self.L, self.E, self.dl)  # [M] complex
        i = np.imag(I1[None, :] * np.exp(1j * (self.w * self.t0 + self.ph0)[None, :]
                                         - 1j * 2 * np.pi / 3 * np.arange(3)[:, None]))
        return i.astype(f32)


def _duty(rw: _Rows, u: np.ndarray, start: int, S: int) -> np.ndarray:
    """Fraction of each step ``[S, 3, M]`` in which the gate asks for the upper switch.

    Triangle carrier c = 1 - 4|frac(y) - 1/2| (-1 at integer y), gate on where u > c: the first and
    last a = (1 + u)/4 of each period. On-time integral over [0, y), y in [0, 2):
    min(y, a) + max(y - 1 + a, 0) - max(y - 1 - a, 0); duty = its increment over the step.
    """
    G, q, M = S // rw.q, rw.q, rw.M
    a_ = (f32(0.25) * (1 + u))[:, None]  # [G, 1, 3, M]
    b_, c_ = a_ - 1, -1 - a_
    y0 = np.mod(rw.y_base + start * rw.hf, 1.0).astype(f32) + rw.carrier_steps[:S]
    y0 = (y0 - np.floor(y0)).reshape(G, q, 1, M)  # carrier phase at each step start, in [0, 1)
    y1 = y0 + rw.hf32
    duty = np.minimum(y1, a_) - np.minimum(y0, a_)
    duty += np.maximum(y1 + b_, 0)
    duty -= np.maximum(y0 + b_, 0)
    duty -= np.maximum(y1 + c_, 0)
    duty = duty.reshape(S, 3, M) / rw.hf32
    np.clip(duty, 0.0, 1.0, out=duty)
    return duty


def _block_drive(rw: _Rows, start: int, S: int) -> dict[str, Any]:
    """Pole-voltage terms and back-EMF of the steps ``[start, start + S)``.

    Time base without per-step transcendental functions: the modulating wave and the back-EMF are
    evaluated once per quarter output sample (every q steps, at the midpoint) with the angle-addition
    formula from tables made once; the carrier's on-time is integrated exactly for every step.
    """
    G = S // rw.q
    th0 = rw.w * (rw.t0 + (start + 0.5 * rw.q) * rw.h) + rw.ph0  # [M], float64, midpoint of the first group
    cb, sb = np.cos(th0).astype(f32), np.sin(th0).astype(f32)
    c_t = (cb * rw.rot_c[:G] - sb * rw.rot_s[:G])[:, None, :]  # cos(theta), [G, 1, M]
    s_t = (sb * rw.rot_c[:G] + cb * rw.rot_s[:G])[:, None, :]
    u = rw.mm32 * (s_t * rw.cos_k - c_t * rw.sin_k)  # m sin(theta - 2 pi k/3), [G, 3, M]
    if rw.sv.any():  # min-max zero-sequence injection = centred SVPWM
        u = np.where(rw.sv, u - f32(0.5) * (u.max(1, keepdims=True) + u.min(1, keepdims=True)), u)
    np.clip(u, -1.0, 1.0, out=u)
    duty = _duty(rw, u, start, S)
    # pole voltage if i > 0 (VP) / if i < 0 (VN), written v = VM - DH sign(i), and the fraction PHI of
    # the step in which the leg conducts through diodes only (its gated switch is open)
    PHI = duty * rw.phi_k + rw.phi_0
    s_d = s_t * rw.cos_dl - c_t * rw.sin_dl  # sin(theta - d)
    c_d = c_t * rw.cos_dl + s_t * rw.sin_dl
    EB = rw.E32 * (s_d * rw.cos_k - c_d * rw.sin_k)  # back-EMF, [G, 3, M]
    if rw.unbalanced:
        EB = EB * rw.TT
    return dict(VP=duty * rw.vok_u, VM=duty * rw.vm_k + rw.vm_0, DH=duty * rw.dh_k + rw.vm_0, PHI=PHI,
                PHIPOS=PHI > 0, PHI1=PHI >= 1, EB=EB, BE=rw.BC * EB, E15=f32(1.5) * EB)


def _float_idle_legs(rw: _Rows, blk: dict[str, Any], s: int, g: int, i: np.ndarray,
                     v: np.ndarray) -> np.ndarray | None:
    """Diode-only legs at zero current float between the rails (or clamp to one): set their pole
    voltage in ``v``; return the legs held at zero current for this step (None: none)."""
    z = (i == 0) & blk["PHIPOS"][s]
    if not z.any():
        return None
    zi = z.view(np.int8)
    n_z = zi[0] + zi[1] + zi[2]
    # one floating leg, the other two conduct: v_float = (v_y + v_z)/2 + 3/2 e_x
    vf_raw = f32(0.5) * ((v[0] + v[1] + v[2]) - v) + blk["E15"][g]
    if n_z.max() >= 2:  # rows with more: v_nN from the conducting legs, or centred
        e_s = blk["EB"][g]
        cf = (~z).astype(f32)
        n_c = cf[0] + cf[1] + cf[2]
        ve = (v - e_s) * cf
        vn_p = (ve[0] + ve[1] + ve[2]) / np.maximum(n_c, 1)
        mid = rw.half_vd - f32(0.5) * (e_s.max(0) + e_s.min(0))
        vn_p = np.where(n_c == 0, mid, vn_p)
        vf_raw = np.where(n_z >= 2, vn_p + e_s, vf_raw)  # row by row: batch-independent
    vf = np.minimum(np.maximum(vf_raw, 0), rw.VD)
    np.putmask(v, z, blk["VP"][s] + blk["PHI"][s] * vf)
    return z & blk["PHI1"][s] & (vf == vf_raw)


def _step(rw: _Rows, blk: dict[str, Any], s: int, i: np.ndarray,
          zero_prev: bool) -> tuple[np.ndarray, np.ndarray, bool]:
    """One integration step: ``(i_new, v, zero)``: currents and pole voltages ``[3, M]``, and whether a
    current was set to zero (a diode stopped conducting)."""
    g = s // rw.q
    v = blk["VM"][s] - blk["DH"][s] * np.sign(i)
    hold = _float_idle_legs(rw, blk, s, g, i, v) if zero_prev else None
    if rw.unbalanced:
        i_new = rw.A * i + rw.BC * v - blk["BE"][g]
        i_new -= rw.BC * ((i_new[0] + i_new[1] + i_new[2]) / rw.SBC)
    else:
        i_new = rw.A * i + rw.BC * v - rw.BC3 * (v[0] + v[1] + v[2]) - blk["BE"][g]
    zero = (i_new * i < 0) & blk["PHIPOS"][s]
    if hold is not None:
        zero |= hold
    zero_any = bool(zero.any())
    if zero_any:  # a diode stopped conducting: that current is zero, the others sum to zero
        np.putmask(i_new, zero, 0)
        ki = (~zero).view(np.int8)
        corr = (i_new[0] + i_new[1] + i_new[2]) / np.maximum(ki[0] + ki[1] + ki[2], 1)
        i_new -= corr
        np.putmask(i_new, zero, 0)
    return i_new, v, zero_any


def _assemble(rw: _Rows, g: Integration, out4: np.ndarray) -> np.ndarray:
    """``[n_out4, 3, B*K]`` sums over q steps -> ``[B, 3, K*n_out4]`` means -> FIR decimation by 4
    (a few recordings at a time to bound the memory) -> ``[B, 3, n_samples]``."""
    B, K, n_out4 = rw.B, rw.K, g.chunk * 4
    res = np.empty((B, 3, g.n_samples))
    by_rec = out4.reshape(n_out4, 3, B, K)
    for b0 in range(0, B, 8):
        b1 = min(B, b0 + 8)
        y = by_rec[:, :, b0:b1].transpose(2, 1, 3, 0).reshape(b1 - b0, 3, K * n_out4)
        y = sps.resample_poly(y.astype(np.float64) / rw.q, 1, 4, axis=-1)
        res[b0:b1] = y[:, :, PAD : PAD + g.n_samples]
    return res


def simulate_batch(d: Drive, g: Integration) -> tuple[np.ndarray, np.ndarray | None]:
    """Noise-free currents ``[B, 3, n_samples]`` (and line voltages, with ``g.voltages``) of the B
    inverters of ``d``, all at ``g.fs``. See the docstring of :mod:`diag.simulate.inverter`."""
    rw = _Rows(d, g)
    i = rw.initial_current()
    n_out4 = g.chunk * 4
    out_i = np.zeros((n_out4, 3, rw.M), f32)
    out_v = np.zeros((n_out4, 3, rw.M), f32) if g.voltages else None
    acc_i = np.zeros((3, rw.M), f32)
    acc_v = np.zeros((3, rw.M), f32) if g.voltages else None
    steps_total, first_rec, q = (g.n_warm + g.chunk) * g.r_sub, g.n_warm * g.r_sub, rw.q
    zero_prev = True  # a current may be exactly zero (diode blocking) - checked while true
    for start in range(0, steps_total, rw.block):
        S = min(rw.block, steps_total - start)
        blk = _block_drive(rw, start, S)
        for s in range(S):
            i, v, zero_prev = _step(rw, blk, s, i, zero_prev)
            step = start + s
            if step < first_rec:
                continue
            acc_i += i
            if g.voltages:
                acc_v += v
            if (step - first_rec + 1) % q == 0:
                j = (step - first_rec) // q
                out_i[j] = acc_i
                acc_i[:] = 0
                if g.voltages:
                    out_v[j] = acc_v - np.roll(acc_v, -1, axis=0)  # vab, vbc, vca
                    acc_v[:] = 0
    return _assemble(rw, g, out_i), (_assemble(rw, g, out_v) if g.voltages else None)
