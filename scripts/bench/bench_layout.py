"""Memory layout on the CPU: channels_last against contiguous (NCHW), per model, in one process.

    python scripts/bench/bench_layout.py [--models tf_efficientnet_lite0,convnext_atto] [--batch 64] [--size 64]
                                         [--chans 3] [--rounds 5] [--threads N]

Times one training step (forward, backward, AdamW step) and one inference forward of each model in each
layout, interleaved round by round so a busy machine slows both alike, and prints the median time and
the ratio contiguous / channels_last (above 1: channels_last is faster). What decides
``train.channels_last = "auto"`` on the CPU (diag.learning.runtime.CPU_CHANNELS_LAST).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def step_timer(name: str, channels_last: bool, batch: int, size: int, chans: int):
    import timm

    torch.manual_seed(0)
    m = timm.create_model(name, num_classes=10, in_chans=chans)
    x = torch.randn(batch, chans, size, size)
    y = torch.randint(0, 10, (batch,))
    if channels_last:
        m, x = m.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(m.parameters(), 1e-3)

    def train() -> float:
        m.train()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
        return time.perf_counter() - t0

    def infer() -> float:
        m.eval()
        t0 = time.perf_counter()
        with torch.inference_mode():
            m(x)
        return time.perf_counter() - t0

    train(), infer()  # warm-up
    return train, infer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="tf_efficientnet_lite0,convnext_atto")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--chans", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    print(f"batch {a.batch}, {a.chans}x{a.size}x{a.size}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in a.models.split(","):
        timers = {cl: step_timer(name, cl, a.batch, a.size, a.chans) for cl in (False, True)}
        times = {(cl, k): [] for cl in (False, True) for k in ("train", "infer")}
        for _ in range(a.rounds):
            for cl, (train, infer) in timers.items():
                times[(cl, "train")].append(train())
                times[(cl, "infer")].append(infer())
        for k in ("train", "infer"):
            nchw, cl = statistics.median(times[(False, k)]), statistics.median(times[(True, k)])
            print(f"{name:24s} {k:5s}  NCHW {nchw * 1000:8.1f} ms  channels_last {cl * 1000:8.1f} ms  "
                  f"ratio {nchw / cl:.2f}")


if __name__ == "__main__":
    main()
