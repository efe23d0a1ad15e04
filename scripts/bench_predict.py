"""End-to-end scoring speed of `diag predict` against the bare model forward, in one process.

    python scripts/bench_predict.py [--windows 2048] [--batch 256] [--device cpu|cuda] [--repeat 2]

Builds a run folder (convnext_atto, random weights -- speed does not depend on them -- with the
preprocessing of configs/bearing_sim.toml: 12 kHz, 2048-sample windows, hop 1024, z-score, 64x64
CWT, and a Mahalanobis unknown detector), writes a float32 NPY recording of --windows windows to disk,
then times

* end to end: ``Predictor.predict_file`` (memory-mapped read -> windows -> normalise -> CWT -> model
  -> probabilities, unknown score -> file verdict and spans), the code path of `diag predict`;
* bare forward: the model alone on the same windows' images (computed beforehand), same batch size.

Each is run --repeat times after one warm-up; the best time counts. Ends with the line
``predict end-to-end: N windows/s = P % of bare forward``.
"""

from __future__ import annotations

import argparse
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

ROOT = Path(__file__).resolve().parents[1]


def make_run(out: Path, classes: list[str]) -> None:
    cfg = load_prepare_config(ROOT / "configs" / "bearing_sim.toml")
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--windows", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run = tmp / "run"
        run.mkdir()
        make_run(run, ["normal", "inner", "outer", "ball"])
        pred = Predictor(run, device=a.device, batch_size=a.batch)
        n = (a.windows - 1) * pred.hop + pred.length
        x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
        np.save(tmp / "rec.npy", x)

        def end_to_end() -> float:
            t0 = time.perf_counter()
            r = pred.predict_file(tmp / "rec.npy", fs=pred.fs)
            assert len(r.windows.start) == a.windows
            return time.perf_counter() - t0

        starts = np.arange(a.windows) * pred.hop
        imgs = []
        for i in range(0, a.windows, a.batch):
            w = x[starts[i : i + a.batch, None] + np.arange(pred.length)][:, None]
            imgs.append(torch.from_numpy(pred.pre(w)).to(pred.device))

        def bare() -> float:
            if pred.device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            with torch.inference_mode():
                for b in imgs:
                    pred.net(b)
            if pred.device.type == "cuda":
                torch.cuda.synchronize()
            return time.perf_counter() - t0

        end_to_end(), bare()  # warm-up
        t_e2e = min(end_to_end() for _ in range(a.repeat))
        t_bare = min(bare() for _ in range(a.repeat))
    e2e, fwd = a.windows / t_e2e, a.windows / t_bare
    print(f"{a.windows} windows of {pred.length} samples, 64x64 CWT, convnext_atto, batch {a.batch}, "
          f"{a.device}, torch threads {torch.get_num_threads()}")
    print(f"bare forward: {fwd:,.0f} windows/s ({t_bare:.2f} s); end to end: {e2e:,.0f} windows/s ({t_e2e:.2f} s)")
    print(f"predict end-to-end: {e2e:,.0f} windows/s = {100 * e2e / fwd:.0f} % of bare forward")


if __name__ == "__main__":
    main()
