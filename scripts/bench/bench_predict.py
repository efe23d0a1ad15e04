"""End-to-end scoring speed of `diag predict` against the bare model forward, in one process.

    python scripts/bench/bench_predict.py [--windows 2048] [--batch 256] [--device cpu|cuda] [--repeat 2]
                                          [--run RUN --data PREPARED]

Builds a run folder (convnext_atto, random weights -- speed does not depend on them -- with the
preprocessing of configs/bearing_sim.toml: 12 kHz, 2048-sample windows, hop 1024, z-score, 64x64
CWT, and the default unknown detector), writes a float32 NPY recording of --windows windows to disk,
then times, best of --repeat after one warm-up:

* bare forward: the PyTorch model alone (its logits) on the same windows' images, computed beforehand,
  same batch size -- the reference every ratio is against;
* end to end, the code path of `diag predict` (``Predictor.predict_file``: memory-mapped read, source
  checks, windows, normalisation, CWT, network with the unknown detector's features, verdict), with each
  engine: torch without and with the producer-consumer pipeline, ONNX Runtime, torch with int8 linear
  layers (CPU only).

With ``--run RUN --data PREPARED`` it also scores the prepared test split (``--splits test,val,train``) of a
real run with each engine and prints accuracy and agreement with the float PyTorch model: class, unknown
flag and label (class or unknown) per window, the verdict per recording (``--agreement-only``: only this).
What decides whether an engine may be chosen by default (``--engine auto``): labels agree on >= 99.5 % of
the windows and every recording's verdict is the same.
"""

from __future__ import annotations

import argparse
import warnings
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from diag.config import load_prepare_config
from diag.learning.models import create_backbone
from diag.learning.unknown import forward_parts
from diag.serving.predictor import Predictor
from diag.signal.transforms import make_transform
from diag.learning.unknown import DEFAULT_METHOD, UNKNOWN_JSON, UNKNOWN_STATS, features_of, fit_stats, layer_sizes, save_tensors

ROOT = Path(__file__).resolve().parents[2]


def make_run(out: Path, classes: list[str]) -> None:
    # CWT, as the docstring says (the shipped config's default became envorder, which needs a shaft rate)
    cfg = load_prepare_config(ROOT / "configs" / "bearing_sim.toml", ["transform.kind=cwt"])
    t = make_transform(cfg.transform, cfg.windows.fs, cfg.windows.length)
    torch.manual_seed(0)
    net = create_backbone("convnext_atto", "scratch", in_chans=1, num_classes=len(classes)).eval()
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / "model.safetensors"))
    pre = {"config": cfg.to_dict(), "fingerprint": cfg.fingerprint(), "fs": cfg.windows.fs,
           "window": {"length": cfg.windows.length, "hop": cfg.windows.hop, "normalize": cfg.windows.normalize,
                      "channels": ["accel"]},
           "transform": t.to_dict(), "image_shape": [1, 64, 64], "classes": classes}
    (out / "model.json").write_text(json.dumps({"format": "diag-model/1", "model": "convnext_atto", "in_chans": 1,
                                                "replicate_channels": False, "classes": classes,
                                                "preprocessing": pre, "dataset": {"path": ""}}))
    # an unknown detector fitted on features of random images (its cost, not its quality, matters here)
    feat = features_of(DEFAULT_METHOD)
    with torch.no_grad():
        f, lg = forward_parts(net, torch.randn(256, 1, 64, 64), features=feat)
    stats = fit_stats(DEFAULT_METHOD, f.numpy(), np.arange(256) % len(classes), len(classes),
                      sizes=layer_sizes(net, (1, 64, 64)) if feat == "layers" else None, val_feats=f.numpy(), val_logits=lg.numpy())
    if stats:
        save_tensors(out / UNKNOWN_STATS, stats)
    import hashlib

    sha = hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()
    (out / UNKNOWN_JSON).write_text(json.dumps({"method": DEFAULT_METHOD, "far": 0.05, "thresholds": {"0.05": 1e9},
                                                "weights_sha256": sha}))


VARIANTS = (("torch", "none", False), ("torch", "none", True), ("onnx", "none", True), ("torch", "int8", True))


def scores(pred: Predictor, x: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probabilities, unknown scores, unknown flags) of prepared images ``x`` with ``pred``'s engine."""
    parts = [pred.score_images(x[i : i + batch]) for i in range(0, len(x), batch)]
    P, S = np.concatenate([p for p, _ in parts]), np.concatenate([s for _, s in parts])
    U = S > pred.unknown.threshold if pred.unknown is not None else np.zeros(len(S), bool)
    return P, S, U


def recording_verdicts(pred: Predictor, meta: dict, P: np.ndarray, S: np.ndarray, U: np.ndarray) -> dict:
    """The verdict of each recording (windows grouped by the split's ``rec``, in time order) by diag's rule."""
    from diag.serving.verdict import WindowScores, file_verdict

    rec, start = np.asarray(meta["rec"]), np.asarray(meta["start"]).astype(np.int64)
    out = {}
    for r in np.unique(rec):
        i = np.flatnonzero(rec == r)
        i = i[np.argsort(start[i], kind="stable")]
        out[str(r)] = file_verdict(WindowScores(start[i], P[i], S[i], U[i]), pred.classes, pred.fs,
                                   pred.length)["verdict"]
    return out


def agreement(run: Path, data: Path, batch: int, splits: tuple[str, ...] = ("test",)) -> None:
    """Per engine, on the ``splits`` of ``data``: accuracy and agreement with the float PyTorch model -- the
    class per window, the unknown flag per window, the label per window (class or unknown), the verdict per
    recording (the rule of diag predict on the split's windows of each recording). What decides whether an
    engine may be chosen by --engine auto: window labels >= 99.5 % and every recording's verdict the same."""
    from diag.signal.dataset import PreparedDataset

    ds = PreparedDataset(data)
    for split in splits:
        x, y, meta = np.asarray(ds.images(split), dtype=np.float32), ds.labels(split), ds.meta(split)
        res = {}
        for engine, quantize, _ in VARIANTS[1:]:
            pred = Predictor(run, batch_size=batch, engine=engine, quantize=quantize)
            P, S, U = scores(pred, x, batch)
            res[pred.engine_name] = (P.argmax(1), S, U, recording_verdicts(pred, meta, P, S, U))
        c0, s0, u0, v0 = res["torch"]
        lab0 = np.where(u0, -1, c0)
        for name, (c, s, u, v) in res.items():
            same_v = sum(v[r] == v0[r] for r in v0)
            print(f"{name:10s} {split}: accuracy {np.mean(c == y):.4f}; agreement with torch: class "
                  f"{np.mean(c == c0):.4f}, unknown flag {np.mean(u == u0):.4f}, label (class or unknown) "
                  f"{np.mean(np.where(u, -1, c) == lab0):.4f} of {len(y)} windows; max |score diff| "
                  f"{np.abs(s - s0).max():.2e}; recording verdicts {same_v}/{len(v0)} identical "
                  f"({sum(u0)} torch windows unknown; {data})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--windows", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--run", type=Path, default=None)
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--splits", default="test", help="comma-separated splits of --data to check agreement on")
    ap.add_argument("--agreement-only", action="store_true", help="skip the timing, only --run/--data agreement")
    a = ap.parse_args()
    warnings.filterwarnings("ignore")  # the ONNX tracer's and quantisation's notices, not results
    torch.set_grad_enabled(False)
    if a.agreement_only:
        return agreement(a.run, a.data, a.batch, tuple(a.splits.split(",")))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run = tmp / "run"
        run.mkdir()
        make_run(run, ["normal", "inner", "outer", "ball"])
        base = Predictor(run, device=a.device, batch_size=a.batch)
        n = (a.windows - 1) * base.hop + base.length
        x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
        np.save(tmp / "rec.npy", x)
        starts = np.arange(a.windows) * base.hop
        imgs = [torch.from_numpy(base.pre(x[starts[i : i + a.batch, None] + np.arange(base.length)][:, None]))
                .to(base.device) for i in range(0, a.windows, a.batch)]

        def bare() -> float:
            if base.device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            with torch.inference_mode():
                for b in imgs:
                    base.net(b)
            if base.device.type == "cuda":
                torch.cuda.synchronize()
            return time.perf_counter() - t0

        bare()
        t_bare = min(bare() for _ in range(a.repeat))
        fwd = a.windows / t_bare
        print(f"{a.windows} windows of {base.length} samples, 64x64 CWT, convnext_atto, batch {a.batch}, {a.device}, "
              f"torch threads {torch.get_num_threads()}")
        print(f"bare forward (torch): {fwd:,.0f} windows/s ({t_bare:.2f} s)")
        for engine, quantize, pipeline in VARIANTS if a.device == "cpu" else VARIANTS[:2]:
            pred = Predictor(run, device=a.device, batch_size=a.batch, engine=engine, quantize=quantize,
                             pipeline=pipeline)

            def end_to_end() -> float:
                t0 = time.perf_counter()
                r = pred.predict_file(tmp / "rec.npy", fs=pred.fs)
                assert len(r.windows.start) == a.windows
                return time.perf_counter() - t0

            end_to_end()
            e2e = a.windows / min(end_to_end() for _ in range(a.repeat))
            print(f"predict end-to-end, {pred.engine_name}{', pipeline' if pipeline else ''}: {e2e:,.0f} windows/s "
                  f"= {100 * e2e / fwd:.0f} % of bare forward")
    if a.run is not None and a.data is not None:
        agreement(a.run, a.data, a.batch, tuple(a.splits.split(",")))


if __name__ == "__main__":
    main()
