#!/usr/bin/env python
"""Training throughput of diag's loop against a bare forward/backward loop, in the same process.

Both loops train the same model (``create_backbone``) on the same images with the same batch size
and an AdamW step; on CUDA both use the same autocast dtype and channels_last. diag's numbers are
the training phase of its epochs (``images_per_s`` in metrics.jsonl: shuffling, batch gathering,
augmentation, lr schedule, gradient clipping, loss bookkeeping included; validation excluded); the
bare loop is timed over windows of the same number of steps. On a shared machine single timings
swing several-fold with other load, so both are measured as many short windows, in alternating
rounds, and summarised by the median of the best three windows (the first epoch / window is
warm-up and left out).

    python scripts/bench/bench_train.py                     # CPU defaults: 128 images 1x64x64, batch 64, 10 epochs
    python scripts/bench/bench_train.py --device cuda       # GPU defaults: 8192 images, batch 256, 4 epochs
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from diag.signal.dataset import PreparedDataset  # noqa: E402
from diag.learning.models import create_backbone  # noqa: E402
from diag.learning.runtime import amp_dtype, autocast, pick_device  # noqa: E402
from diag.learning.train import TrainConfig, train  # noqa: E402
from diag.signal.toy import make_toy_dataset  # noqa: E402


def bare_loop(model_name: str, x: torch.Tensor, y: torch.Tensor, batch_size: int, windows: int, steps: int,
              device: torch.device, dtype: torch.dtype | None, channels_last: bool) -> list[float]:
    """Images/s of the plainest loop (slice, forward, loss, backward, AdamW step) per window of ``steps`` steps."""
    torch.manual_seed(0)
    model = create_backbone(model_name, in_chans=x.shape[1], num_classes=int(y.max()) + 1).to(device).train()
    if channels_last:
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, **({"fused": True} if device.type == "cuda" else {}))
    n = len(x)
    rates = []
    i = 0
    for _ in range(windows + 1):  # the first window is warm-up
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            s = (i * batch_size) % (n - batch_size + 1)
            i += 1
            with autocast(device, dtype):
                logits = model(x[s:s + batch_size])
            loss = F.cross_entropy(logits.float(), y[s:s + batch_size])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        _sync(device)
        rates.append(steps * batch_size / (time.perf_counter() - t0))
    return rates[1:]


def diag_loop(data: Path, root: Path, cfg: TrainConfig, tag: str) -> list[float]:
    """Images/s of diag's training phase, one number per epoch after the first."""
    out = root / f"run-{tag}"
    train(data, out, cfg, quiet=True)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["images_per_s"] for r in rows[1:]]


def top3(rates: list[float]) -> float:
    return statistics.median(sorted(rates)[-3:])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--model", default="convnext_atto")
    ap.add_argument("--images", type=int, default=0, help="training images (default: 128 on CPU, 8192 on GPU)")
    ap.add_argument("--batch-size", type=int, default=0, help="default: 64 on CPU, 256 on GPU")
    ap.add_argument("--size", type=int, default=64, help="image height = width")
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=0, help="diag epochs per round, the first one warm-up "
                    "(default: 10 on CPU, 4 on GPU)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for torch (default: torch's choice); "
                    "1 is steadier on a busy shared machine")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    gpu = device.type == "cuda"
    images = args.images or (8192 if gpu else 128)
    batch = args.batch_size or (256 if gpu else 64)
    epochs = args.epochs or (4 if gpu else 10)
    dtype = amp_dtype("auto", device)
    classes = 4
    print(f"device {device} ({torch.cuda.get_device_name(device) if gpu else f'{torch.get_num_threads()} threads'}), "
          f"{args.model}, {images} images {args.channels}x{args.size}x{args.size}, batch {batch}, "
          f"amp {dtype}, channels_last {gpu}")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = make_toy_dataset(root / "data", n_train=images // classes, n_val=8, n_test=2, classes=classes,
                                size=args.size, channels=args.channels, seed=0)
        ds = PreparedDataset(data)
        x = torch.from_numpy(np.array(ds.images("train"))).to(device).float()
        y = torch.as_tensor(ds.labels("train"), device=device)
        steps = len(x) // batch  # steps per epoch = steps per bare window
        base = dict(model=args.model, epochs=epochs, batch_size=batch, device=str(device), seed=0)
        results: dict[str, list[float]] = {"bare": [], "diag": [], "diag (no augment, no clip)": []}
        for r in range(args.rounds):
            results["bare"] += bare_loop(args.model, x, y, batch, epochs - 1, steps, device, dtype, gpu)
            results["diag"] += diag_loop(data, root, TrainConfig(**base), f"{r}-full")
            results["diag (no augment, no clip)"] += diag_loop(
                data, root, TrainConfig(**base, augment=False, grad_clip=0.0), f"{r}-plain")
            print(f"round {r + 1}: " + ", ".join(f"{k} {top3(v):.1f}" for k, v in results.items()), flush=True)

    best = {k: top3(v) for k, v in results.items()}
    print(f"\n{'loop':<28}{'images/s':>10}{'vs bare':>10}   (median of the best 3 of {len(results['bare'])} windows)")
    for k, v in best.items():
        print(f"{k:<28}{v:>10.1f}{v / best['bare']:>9.1%}")
    print(f"\nratio diag / bare = {best['diag'] / best['bare']:.3f} (target >= 0.90)")


if __name__ == "__main__":
    main()
