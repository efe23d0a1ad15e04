"""Safety net for refactors of the signal / simulate / sources layers: the public API and the behaviour.

(a) **API**: for each module in ``MODULES``, every public (non-underscore) attribute that is not a module
    and not a third-party object, with its signature (callables; classes with their public methods) or a
    hash of its value (constants).
(b) **Behaviour**: bit-exact sha256 of the outputs of the simulators (bearing, inverter, single signals and
    datasets, fixed seeds, small sizes), of every transform kind and transform function on fixed inputs,
    of the windowing / resampling / normalisation / split functions, and of the source checks; for a set
    of bad inputs, only *whether* a DiagError is raised (the wording may change, the verdict may not).

    PYTHONPATH=$PWD python scripts/dev/api_fingerprint.py > before.json         # record
    PYTHONPATH=$PWD python scripts/dev/api_fingerprint.py --check before.json   # after a refactor

``--check`` prints what changed and exits 1 if any behaviour hash differs or a recorded API name was
removed or changed its signature; API names *added* are listed but allowed (a split adds modules and
makes private helpers public). One torch thread, one machine: CPU float results are not portable.
About 30 s on a contended 2-core CPU.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import inspect
import json
import sys
from typing import Any, Callable

import numpy as np

MODULES = (
    "diag.simulate", "diag.simulate.bearing", "diag.simulate.inverter", "diag.simulate.params",
    "diag.signal.transforms", "diag.signal.windows",
    "diag.sources.checks", "diag.sources.cwru", "diag.sources.paderborn", "diag.sources.ottawa",
)


# ------------------------------------------------------------------------------------------------
# (a) API


def _sig(obj: Any) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "<no signature>"


def _name_of(v: Any) -> str:
    return f"{getattr(v, '__module__', '')}.{v.__qualname__}" if hasattr(v, "__qualname__") else repr(v)


def _value_hash(v: Any) -> str:
    try:
        text = json.dumps(v, sort_keys=True, default=_name_of)
    except (TypeError, ValueError):
        text = repr(v)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


#: modules whose names a module of MODULES re-exports (the refactored area, new modules included); a name
#: imported from any other module (diag.config, diag.errors, ...) is a tool it uses, not its API
AREA = ("diag.simulate", "diag.signal", "diag.sources.checks", "diag.sources.cwru", "diag.sources.paderborn",
        "diag.sources.ottawa")
OUTSIDE_AREA = ("diag.signal.split_auto", "diag.signal.recordings", "diag.signal.dataset", "diag.signal.stream",
                "diag.signal.preprocessing", "diag.signal.audit", "diag.signal.choose", "diag.signal.toy")


def _foreign_imports(mod: Any) -> set[str]:
    """Names ``mod`` imports with ``from X import name`` from a module X outside the area."""
    import ast

    tree = ast.parse(inspect.getsource(mod))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module:
            inside = node.module.startswith(AREA) and not node.module.startswith(OUTSIDE_AREA)
            if not inside:
                out |= {a.asname or a.name for a in node.names}
    return out


def api() -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for name in MODULES:
        mod = importlib.import_module(name)
        foreign = _foreign_imports(mod)
        entries: dict[str, str] = {}
        for attr in sorted(dir(mod)):
            if attr.startswith("_") or attr in foreign:
                continue
            obj = getattr(mod, attr)
            if inspect.ismodule(obj):
                continue
            owner = getattr(obj, "__module__", None) if (inspect.isclass(obj) or callable(obj)) else None
            if (inspect.isclass(obj) or callable(obj)) and not (owner or "").startswith("diag"):
                continue  # numpy, typing, dataclasses ... imported for use
            if inspect.isclass(obj):
                methods = {m: _sig(f) for m, f in vars(obj).items()
                           if (not m.startswith("_") or m in ("__init__", "__call__")) and callable(f)}
                entries[attr] = f"class{_sig(obj)} " + json.dumps(methods, sort_keys=True)
            elif callable(obj):
                entries[attr] = f"def{_sig(obj)}"
            else:
                entries[attr] = f"value {_value_hash(obj)}"
        out[name] = entries
    return out


# ------------------------------------------------------------------------------------------------
# (b) behaviour


def h(*parts: Any) -> str:
    """sha256 of arrays (dtype, shape, bytes) and JSON-able values, bit-exact."""
    d = hashlib.sha256()

    def feed(p: Any) -> None:
        if hasattr(p, "detach"):
            p = p.detach().cpu().numpy()
        if isinstance(p, np.ndarray):
            d.update(f"{p.dtype}{p.shape}".encode())
            d.update(np.ascontiguousarray(p).tobytes())
        elif isinstance(p, (list, tuple)) and any(isinstance(q, np.ndarray) for q in p):
            for q in p:
                feed(q)
        elif isinstance(p, dict):
            for k in sorted(p, key=str):
                d.update(str(k).encode())
                feed(p[k])
        else:
            d.update(json.dumps(p, sort_keys=True, default=repr).encode())

    for p in parts:
        feed(p)
    return d.hexdigest()[:16]


def raises(fn: Callable[[], Any]) -> str:
    from diag.errors import DiagError

    try:
        fn()
    except DiagError:
        return "DiagError"
    except Exception as e:  # noqa: BLE001 -- the kind of failure is the fingerprint
        return type(e).__name__
    return "ok"


def recs_hash(recs) -> str:
    return h([(r.signal, r.fs, r.label, r.group, r.condition, r.source, r.fault_size, list(r.channels), r.meta)
              for r in recs])


def simulators() -> dict[str, str]:
    from diag.simulate import bearing as b
    from diag.simulate import inverter as inv

    out: dict[str, str] = {}
    for fault in b.BEARING_FAULTS:
        x, info = b.simulate_bearing(fault=fault, duration=0.25, seed=3)
        out[f"bearing/{fault}"] = h(x, {k: v for k, v in info.items()})
    x, info = b.simulate_bearing(fault="ball", rpm=(1500, 1800), duration=0.25, snr_db=None, snr_reference="healthy",
                                 geometry=b.BearingGeometry(8, 0.3, 1.5, 10.0), slip=0.0, roughness=0.0, seed=4)
    out["bearing/ramp-nonoise"] = h(x, info)
    out["bearing/geometry"] = h(b.BearingGeometry().orders())
    out["bearing/recordings"] = recs_hash(b.simulate_bearing_recordings(
        classes="all", recordings_per_class=2, duration=0.25, ramp=0.1, seed=5))
    out["bearing/recordings-default-opts"] = recs_hash(b.simulate_bearing_recordings(
        recordings_per_class=1, duration=0.2, rpm=1750, severities=0.3, snr_db=0.0, slip=0.01, seed=6))
    for fault, kw in (("normal", {}), ("S1", {"pwm": "svpwm", "voltages": True}), ("S1+S4", {"snr_db": 30.0}),
                      ("S2+S3", {"m": 1.1, "pwm": "svpwm", "sensor_offset": 0.02, "snr_db": 20.0}),
                      ("ia_gain", {"snr_db": 25.0}), ("ia_offset", {}), ("itsc_b", {"voltages": True}),
                      ("S5", {"chunk": 0.01})):
        x, info = inv.simulate_inverter(fault=fault, duration=0.06, **kw, seed=9)
        out[f"inverter/{fault}"] = h(x, info)
    out["inverter/recordings"] = recs_hash(inv.simulate_inverter_recordings(
        classes=list(inv.INVERTER_CLASSES[:10]) + ["ia_gain", "itsc_a", "itsc_c"], recordings_per_class=1,
        duration=0.05, chunk=0.02, voltages=True, seed=2))
    out["inverter/recordings-fixed"] = recs_hash(inv.simulate_inverter_recordings(
        classes="motor", recordings_per_class=2, duration=0.05, chunk=0.02, f1=[30.0, 50.0], pwm="svpwm",
        vdc=300.0, r=2.0, l=3e-3, fsw=5000.0, snr_db=30.0, short_fraction=0.04, seed=1))
    # bad inputs: only whether they are refused
    bad = {
        "bearing-fault": lambda: b.simulate_bearing(fault="cage"),
        "bearing-fs": lambda: b.simulate_bearing(fs=5000.0),
        "bearing-short": lambda: b.simulate_bearing(duration=1e-4),
        "bearing-slip": lambda: b.simulate_bearing(slip=0.5),
        "bearing-rpm": lambda: b.simulate_bearing(rpm=-3),
        "bearing-res": lambda: b.simulate_bearing(resonances=[(1000, 2.0)]),
        "bearing-geom": lambda: b.BearingGeometry(2).validate(),
        "bearing-rec-classes": lambda: b.simulate_bearing_recordings(classes=["x"]),
        "bearing-rec-rpc": lambda: b.simulate_bearing_recordings(recordings_per_class=0),
        "bearing-rec-jitter": lambda: b.simulate_bearing_recordings(resonance_jitter=0.6),
        "bearing-rec-seed": lambda: b.simulate_bearing_recordings(seed=-1),
        "bearing-rec-ramp": lambda: b.simulate_bearing_recordings(ramp=1.0),
        "inv-fault": lambda: inv.simulate_inverter(fault="S7"),
        "inv-m": lambda: inv.simulate_inverter(m=1.3),
        "inv-fsw": lambda: inv.simulate_inverter(fsw=200.0),
        "inv-fs": lambda: inv.simulate_inverter(fs=500.0),
        "inv-emf": lambda: inv.simulate_inverter(emf_ratio=1.0),
        "inv-spc": lambda: inv.simulate_inverter(steps_per_carrier=4),
        "inv-offset": lambda: inv.simulate_inverter(sensor_offset=0.5),
        "inv-pwm": lambda: inv.simulate_inverter(pwm="x"),
        "inv-short": lambda: inv.simulate_inverter(fault="itsc_a", short_fraction=0.7),
        "inv-rec-mrated": lambda: inv.simulate_inverter_recordings(m_rated=1.2),
        "inv-rec-pwm": lambda: inv.simulate_inverter_recordings(pwm=["spwm", "x"]),
        "inv-rec-volt": lambda: inv.simulate_inverter_recordings(voltages=1),
        "inv-rec-seed": lambda: inv.simulate_inverter_recordings(seed=True),
        "inv-rec-range": lambda: inv.simulate_inverter_recordings(vdc=[300, 200]),
    }
    out["refusals"] = h({k: raises(f) for k, f in bad.items()})
    return out


def transforms() -> dict[str, str]:
    import torch

    from diag.config import TransformConfig
    from diag.signal import transforms as T

    out: dict[str, str] = {}
    rng = np.random.default_rng(0)
    fs, n = 12000.0, 2048
    t = np.arange(n) / fs
    x = (0.3 * rng.standard_normal((3, 2, n)) + np.sin(2 * np.pi * 29.5 * t)
         + 0.5 * np.sin(2 * np.pi * 3000 * t) * (1 + np.cos(2 * np.pi * 105 * t))).astype(np.float32)
    ref = np.array([29.5, 30.0, 28.0])
    kinds = [
        dict(kind="cwt"), dict(kind="cwt", norm="image-joint"), dict(kind="cwt", log=False, norm="none"),
        dict(kind="cwt", n_scales=48, size=[32, 40], fmin=100.0, fmax=5000.0), dict(kind="stft"),
        dict(kind="stft", nperseg=127, noverlap=60, size=[40, 64]), dict(kind="cwt+stft", polarity=True),
        dict(kind="envorder", env_mode="bands"), dict(kind="envorder", env_mode="sk"),
        dict(kind="envorder", env_mode="fixed", env_band=[2000.0, 4000.0], order_max=8.0),
        dict(kind="harmonics", order_max=20.0), dict(kind="cwt+harmonics", norm="image"),
    ]
    for kw in kinds:
        cfg = TransformConfig(**kw)
        tr = T.make_transform(cfg, fs, n, threads=1)
        img = tr(x, ref_hz=ref if tr.needs_ref else None)
        img_t = tr(torch.from_numpy(x), ref_hz=torch.as_tensor(ref) if tr.needs_ref else None)
        key = "/".join(f"{k}={v}" for k, v in kw.items())
        out[f"transform/{key}"] = h(img, img_t, tr.to_dict(), tr.frequencies, repr(tr))
    sig = x[0, 0].astype(np.float64)
    freqs = T.cwt_frequencies(fs, 40.0, 0.0, 16)
    out["cwt_frequencies"] = h(freqs, T.cwt_frequencies(1000.0, 5.0, 400.0, 7))
    out["scales"] = h(T.frequency_to_scale(freqs), T.frequency_to_scale(freqs, 5.0, fs),
                      T.scale_to_frequency([0.001, 0.01]), T.scale_to_frequency([10.0], 6.0, fs),
                      T.pywt_wavelet_name(), T.pywt_wavelet_name(5.0))
    out["morlet_filter_bank"] = h(T.morlet_filter_bank(256, fs, freqs[:4]), T.morlet_filter_bank(255, fs, [100.0]))
    out["cwt"] = h(*(T.cwt(sig[:512], fs, freqs, pad=p) for p in ("symmetric", "periodic", "zero")),
                   T.cwt(x[:, :, :256], fs, freqs[:3], axis=-1), T.cwt(x[0, :, :256].T, fs, freqs[:3], axis=0))
    out["cwt_scalogram"] = h(T.cwt_scalogram(x, fs, freqs, 32), T.cwt_scalogram(sig, fs, freqs, 16, min_per_col=64))
    out["stft_magnitude"] = h(*T.stft_magnitude(x, fs), *T.stft_magnitude(sig[:500], fs, 64, 0))
    out["resize_area"] = h(T.resize_area(x[0], (1, 100), axes=(0, 1)), T.resize_area(np.arange(12), (5,), (0,)),
                           T.resize_area(torch.from_numpy(x), (7,), axes=(-1,)))
    p = np.abs(x[:, :, :1024].reshape(3, 2, 32, 32)) ** 2
    out["db_std"] = h(T.power_to_db(p), T.power_to_db(torch.from_numpy(p)), T.standardize_images(p),
                      T.standardize_images(torch.from_numpy(p)), T.power_to_db(np.zeros((2, 2))))
    out["order_spectrum"] = h(*T.order_spectrum(x, fs, 29.5), *T.order_spectrum(x[:, 0], fs, ref, kind="harmonics"),
                              *T.order_spectrum(x[0], fs, 30.0, cfg=TransformConfig(kind="envorder", env_mode="bands")))
    long_sig = rng.standard_normal((2, 120000)) + np.sin(2 * np.pi * 25.3 * np.arange(120000) / fs)
    out["estimate_reference_hz"] = h(T.estimate_reference_hz(long_sig, fs, [15.0, 45.0]))
    cfg_env = TransformConfig(kind="envorder", ref_search=[15.0, 45.0])
    cfg_h = TransformConfig(kind="harmonics", ref_hz=50.0)
    out["reference_hz"] = h(T.reference_hz({"rpm": 1750}, cfg_env), T.reference_hz({"rpm": [1700, 1800]}, cfg_env),
                            T.reference_hz({"shaft_hz": 29.0}, cfg_env), T.reference_hz({"f1": 40.0}, cfg_h),
                            T.reference_hz({}, cfg_h), T.reference_hz({}, TransformConfig()),
                            T.reference_hz({}, cfg_env, long_sig, fs), T.reference_hz({}, TransformConfig(kind="envorder")))
    out["window_reference_hz"] = h(T.window_reference_hz((20.0, 30.0), np.arange(0, 8000, 1000), 2048, 10000),
                                   T.window_reference_hz((np.array([1.0, 2.0]), 3.0), [0, 5], 4, np.array([10, 20])))
    tr = T.make_transform(TransformConfig(), fs, n, threads=1)
    bad = {
        "cwt-complex": lambda: T.cwt(sig + 1j, fs, freqs), "cwt-nan": lambda: T.cwt(np.full(8, np.nan), fs, freqs),
        "cwt-scalar": lambda: T.cwt(1.0, fs, freqs), "cwt-axis": lambda: T.cwt(sig, fs, freqs, axis=3),
        "cwt-short": lambda: T.cwt(sig[:1], fs, freqs), "cwt-freq": lambda: T.cwt(sig, fs, [7000.0]),
        "cwt-pad": lambda: T.cwt(sig, fs, freqs, pad="x"), "cwt-str": lambda: T.cwt(np.array(["a", "b"]), fs, freqs),
        "cwt-int": lambda: T.cwt(np.arange(64), fs, freqs[:2]), "cwt-bool": lambda: T.cwt(np.ones(64, bool), fs, freqs[:2]),
        "scal-cols": lambda: T.cwt_scalogram(sig, fs, freqs, 0),
        "stft-nover": lambda: T.stft_magnitude(sig, fs, 64, 64), "stft-long": lambda: T.stft_magnitude(sig[:32], fs),
        "freqs-fmin": lambda: T.cwt_frequencies(fs, 0.0), "freqs-fmax": lambda: T.cwt_frequencies(fs, 40.0, 7000.0),
        "freqs-n": lambda: T.cwt_frequencies(fs, 40.0, 0.0, 1), "bank-n": lambda: T.morlet_filter_bank(1, fs, freqs),
        "resize-len": lambda: T.resize_area(p, (3,)), "resize-axis": lambda: T.resize_area(p, (3,), (9,)),
        "resize-size": lambda: T.resize_area(p, (0,), (-1,)),
        "tr-shape": lambda: tr(x[0]), "tr-len": lambda: tr(x[:, :, :100]), "tr-nan": lambda: tr(x * np.nan),
        "tr-complex": lambda: tr(x + 1j), "tr-chan": lambda: tr(x[:, :0]), "tr-obj": lambda: tr(object()),
        "tr-tensor-bool": lambda: tr(torch.ones(1, 1, n, dtype=torch.bool)),
        "tr-ref": lambda: T.make_transform(TransformConfig(kind="envorder"), fs, n)(x),
        "tr-ref-high": lambda: T.make_transform(TransformConfig(kind="envorder"), fs, n)(x, ref_hz=500.0),
        "tr-ref-neg": lambda: T.make_transform(TransformConfig(kind="harmonics"), fs, n)(x, ref_hz=-1.0),
        "tr-ref-shape": lambda: T.make_transform(TransformConfig(kind="harmonics"), fs, n)(x, ref_hz=[1.0, 2.0]),
        "tr-auto": lambda: T.make_transform(TransformConfig(kind="auto"), fs, n),
        "tr-fs": lambda: T.make_transform(TransformConfig(), 0.0, n), "tr-threads": lambda: T.Transform(TransformConfig(), fs, n, threads=0),
        "tr-nperseg": lambda: T.make_transform(TransformConfig(kind="stft", nperseg=4096), fs, n),
        "order-kind": lambda: T.order_spectrum(sig, fs, 30.0, kind="cwt"),
        "ref-faint": lambda: T.reference_hz({}, cfg_env, rng.standard_normal((1, 24000)), fs),
    }
    out["refusals"] = h({k: raises(f) for k, f in bad.items()})
    return out


def windows() -> dict[str, str]:
    from diag.config import NORMALIZATIONS, SplitConfig, WindowConfig
    from diag.signal import windows as W
    from diag.sources.base import Recording

    out: dict[str, str] = {}
    rng = np.random.default_rng(1)

    def rec(n, label, group, cond, fs=1000.0, c=2, size=""):
        return Recording(rng.standard_normal((c, n)).astype(np.float32), fs, label, group=group, condition=cond,
                         fault_size=size, source=f"{label}-{group}-{cond}-{n}", channels=tuple(f"c{i}" for i in range(c)))

    recs = [rec(9000 + 500 * i, lab, f"g{i % 4}", f"c{i % 2}", size="" if lab == "n" else f"0.{i % 2 + 1}")
            for i, lab in enumerate(["n", "a", "b"] * 4)]
    out["rational_ratio"] = h([W.rational_ratio(a, b) for a, b in ((12000, 10000), (48000, 12000), (44100, 12000),
                                                                    (1000.5, 999.25))])
    r8 = Recording(recs[0].signal, 800.0, "n", source="r8", channels=recs[0].channels)
    out["resample"] = h(W.resample(recs[0], 750.0).signal, W.resample(r8, 1000.0).signal, W.resample(r8, 800.0).signal)
    out["band"] = h(W.band_filter(1000.0, 50.0, 300.0), W.band_filter(1000.0, 0.0, 200.0), W.band_filter(1000.0, 100.0, 0.0),
                    W.band_edges([0, 0]), W.band_edges([10, 0]), W.band_edges(None), W.band_edges([]),
                    W.band_limit(recs[1], [50.0, 300.0]).signal, W.band_limit(recs[1], [0.0, 0.0]).signal,
                    W.filter_segment(recs[2].signal.astype(np.float64), W.band_filter(1000.0, 50.0, 300.0)),
                    W.symmetric_index(np.arange(-5, 15), 10))
    for cfg in (WindowConfig(fs=750.0, length=256, hop=128), WindowConfig(fs=0.0, length=256, hop=128, band=[20.0, 300.0])):
        out[f"harmonise/fs={cfg.fs}/band={cfg.band}"] = recs_hash(W.harmonise(recs[:4] + [r8] * bool(cfg.fs), cfg))
    out["window_starts"] = h(W.window_starts(0, 1000, 256, 100), W.window_starts(10, 200, 256, 100),
                             W.window_starts(5, 5000, 512, 512))
    xw = (rng.standard_normal((5, 3, 128)) * [[[1.0], [3.0], [0.5]]] + [[[0.0], [2.0], [-1.0]]]).astype(np.float32)
    xw[0, 1] = 0.0
    out["normalize"] = h({m: W.normalize(xw, m) for m in NORMALIZATIONS if m not in ("auto", "dataset")})
    stats = W.NormalizationStats(("c0", "c1", "c2"), [["c0", "c2"], ["c1"]])
    stats.update(xw[:3])
    stats.update(xw[3:])
    res = stats.result()
    stats1 = W.NormalizationStats(("c0", "c1", "c2"), [])
    stats1.update(xw)
    out["dataset-norm"] = h(res, stats1.result(), W.apply_normalization(xw, "dataset", res),
                            W.apply_normalization(xw, "zscore"), W.channel_groups(("a", "b", "c"), [["c", "a"], ["b"]]),
                            W.channel_groups(("a", "b"), []))
    for method, kw in (("time", {}), ("recording", {}), ("group", {}), ("condition", {"test_conditions": ["c1"]}),
                       ("fault-size", {"test_fault_sizes": ["0.2"]}), ("random", {"allow_leaky": True}),
                       ("auto", {}), ("group", {"val_method": "time"}), ("recording", {"val_fraction": 0.0}),
                       ("condition", {"test_conditions": ["c0"], "val_method": "group", "seed": 3})):
        scfg = SplitConfig(method=method, **kw)
        wcfg = WindowConfig(fs=1000.0, length=256, hop=200)
        try:
            plan = W.plan_split(recs, wcfg, scfg)
            if not plan.leaky:
                W.check_no_shared_samples(plan, 256)
            wi = plan.windows
            out[f"plan_split/{method}/{kw}"] = h(wi.rec, wi.start, wi.side, [vars(b) for b in plan.blocks], plan.guard,
                                                 plan.notes, plan.leaky, plan.val_by, plan.warnings, plan.method,
                                                 len(wi.select("train")))
        except Exception as e:  # noqa: BLE001
            out[f"plan_split/{method}/{kw}"] = type(e).__name__ + ": " + str(e)
    out["extract"] = h(W.extract(recs, np.array([0, 3, 0, 11]), np.array([0, 100, 4000, 7]), 64))
    bad = {
        "resample-fs": lambda: W.resample(recs[0], -1.0), "band-hi": lambda: W.band_filter(1000.0, 0.0, 600.0),
        "band-order": lambda: W.band_filter(1000.0, 300.0, 100.0), "norm-x": lambda: W.normalize(xw, "x"),
        "apply-dataset": lambda: W.apply_normalization(xw, "dataset", None),
        "apply-shape": lambda: W.apply_normalization(xw[:, :2], "dataset", res),
        "groups": lambda: W.channel_groups(("a",), [["b"]]),
        "random-leaky": lambda: W.plan_split(recs, WindowConfig(fs=1000.0, length=256, hop=200), SplitConfig(method="random")),
        "cond-all": lambda: W.plan_split(recs, WindowConfig(fs=1000.0, length=256, hop=200),
                                         SplitConfig(method="condition", test_conditions=["c0", "c1"])),
        "harmonise-rates": lambda: W.harmonise(recs[:2] + [r8], WindowConfig(fs=0.0)),
        "time-short": lambda: W.plan_split(recs, WindowConfig(fs=1000.0, length=4096, hop=200), SplitConfig(method="time")),
    }
    out["refusals"] = h({k: raises(f) for k, f in bad.items()})
    return out


def sources() -> dict[str, str]:
    from diag.sources import checks as C
    from diag.sources import cwru, ottawa, paderborn
    from diag.sources.base import Recording

    rng = np.random.default_rng(2)
    out: dict[str, str] = {}
    sigs = {"ok": rng.standard_normal(4000), "flat": np.zeros(4000), "nan": np.r_[rng.standard_normal(100), np.nan],
            "clip": np.clip(rng.standard_normal(4000) * 3, -1, 1), "int": rng.integers(-5, 5, 4000),
            "f32": rng.standard_normal(4000).astype(np.float32), "stuck": np.r_[rng.standard_normal(2000), np.full(3000, 0.7)],
            "inf": np.r_[np.inf, rng.standard_normal(10)]}
    out["check_signal"] = h({k: [C.check_signal(v), C.check_signal(v, 1000.0)] for k, v in sigs.items()})
    x2 = np.stack([sigs["ok"], sigs["clip"]])
    out["scan_signal"] = h(C.scan_signal(lambda a, b: x2[:, a:b], 4000, [0, 1], 1000.0, chunk=999))
    recs = [Recording(np.stack([sigs["ok"], sigs["ok"] * 2]), 1000.0, "a", source="r0"),
            Recording(np.stack([sigs["clip"], sigs["ok"]]), 1000.0, "b", source="r1"),
            Recording(sigs["flat"][None], 1000.0, "b", source="r2")]
    for on_bad, on_clipped in (("skip", "warn"), ("warn", "skip"), ("error", "warn"), ("skip", "skip")):
        found: list = []
        try:
            kept = C.check_recordings(recs, on_bad, on_clipped, found)
            out[f"check_recordings/{on_bad}/{on_clipped}"] = h([r.source for r in kept], [f.to_dict() for f in found],
                                                               [str(f) for f in found])
        except Exception as e:  # noqa: BLE001
            out[f"check_recordings/{on_bad}/{on_clipped}"] = type(e).__name__
    out["signal_hash"] = h([C.signal_hash(r) for r in recs])
    out["dup"] = raises(lambda: C.find_duplicates([recs[0], Recording(recs[0].signal.copy(), 1000.0, "b", source="x")]))
    out["names"] = h([cwru.record_number(p) for p in ("105.mat", "X097.mat", "a/b/234.MAT", "x.mat")],
                     [paderborn.parse_name(p) for p in ("N15_M07_F10_K001_1.mat", "N09_M07_F10_KA01_20.mat")],
                     [raises(lambda p=p: paderborn.parse_name(p)) for p in ("x.mat",)],
                     [ottawa.parse_name(p) for p in ("H-A-1.mat", "I-B-3.mat")],
                     [raises(lambda p=p: ottawa.parse_name(p)) for p in ("x.mat",)])
    return out


def behaviour() -> dict[str, dict[str, str]]:
    import torch

    torch.set_num_threads(1)
    return {"simulate": simulators(), "transforms": transforms(), "windows": windows(), "sources": sources()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", metavar="BEFORE_JSON", help="compare with a recorded fingerprint")
    ap.add_argument("--only", choices=("api", "behaviour"), help="compute one part")
    a = ap.parse_args()
    now: dict[str, Any] = {}
    if a.only != "behaviour":
        now["api"] = api()
    if a.only != "api":
        now["behaviour"] = behaviour()
    now["api_sha"] = h(now.get("api"))
    now["behaviour_sha"] = h(now.get("behaviour"))
    if not a.check:
        json.dump(now, sys.stdout, indent=1, sort_keys=True)
        print()
        return 0
    with open(a.check, encoding="utf-8") as f:
        before = json.load(f)
    bad = []
    for part in ("api", "behaviour"):
        if part not in now:
            continue
        for group, entries in before[part].items():
            got = now[part].get(group, {})
            for k, v in entries.items():
                if k not in got:
                    bad.append(f"{part} {group}.{k}: removed")
                elif got[k] != v:
                    bad.append(f"{part} {group}.{k}: changed\n    before {v}\n    now    {got[k]}")
            if part == "behaviour":
                bad += [f"behaviour {group}.{k}: new case" for k in got if k not in entries]
        added = [f"{g}.{k}" for g, e in now[part].items() for k in e if k not in before[part].get(g, {})]
        if part == "api" and added:
            print(f"api: {len(added)} names added (allowed): {', '.join(added)}")
    n_api = sum(len(e) for e in before.get("api", {}).values())
    n_beh = sum(len(e) for e in before.get("behaviour", {}).values())
    print("\n".join(bad) if bad else
          f"identical: {n_api} API names (none removed or changed), {n_beh} behaviour hashes "
          f"(behaviour_sha {now['behaviour_sha']})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
