"""A tiny prepared dataset whose class is visible, written in the format of ``diag prepare`` -- for tests,
benchmarks and demos that need a dataset in seconds, without recordings."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diag.signal.dataset import DatasetWriter

__all__ = ["make_toy_dataset"]


def make_toy_dataset(out: str | Path, n_train: int = 40, n_val: int = 12, n_test: int = 12, classes: int = 4,
                     size: int = 32, channels: int = 1, seed: int = 0, noise: float = 0.6,
                     stripes: float = 1.5) -> Path:
    """A tiny prepared dataset whose class is visible, for tests, benchmarks and demos.

    Each ``channels x size x size`` image is a scalogram-like pattern: class ``k`` has a bright band
    at frequency row ``(k + 1) * size / (classes + 1)`` (+- 1 row), pulsing along time at a
    class-specific rate; nuisances unrelated to the class are broadband transients (vertical
    stripes of random strength ``stripes`` at random times) and Gaussian noise (``noise``). Images
    are standardised per image like ``transform.norm = "image"``. ``n_*`` are windows per class and
    split.
    """
    rng = np.random.default_rng(seed)
    names = [f"class{k}" for k in range(classes)]
    sizes = {"train": n_train * classes, "val": n_val * classes, "test": n_test * classes}
    rows = np.arange(size)[:, None]
    cols = np.arange(size)[None, :]
    metas = {}
    with DatasetWriter(out, sizes, (channels, size, size)) as w:
        for split, n in sizes.items():
            y = np.repeat(np.arange(classes), n // classes)
            rng.shuffle(y)
            imgs = np.empty((n, channels, size, size), dtype=np.float32)
            for i, k in enumerate(y):
                row = (k + 1) * size / (classes + 1) + rng.integers(-1, 2)
                pulse = 0.6 + 0.4 * np.cos(2 * np.pi * (k + 2) * cols / size + rng.uniform(0, 2 * np.pi))
                band = 2.0 * np.exp(-0.5 * ((rows - row) / 0.8) ** 2) * pulse
                stripe_cols = rng.integers(0, size, size=3)
                stripe = np.zeros((1, size))
                stripe[0, stripe_cols] = rng.uniform(0, stripes, size=3)
                img = band + stripe + rng.normal(0, noise, (channels, size, size))
                imgs[i] = (img - img.mean()) / (img.std() + 1e-6)
            w.add(split, imgs)
            metas[split] = {"y": y, "label": np.array([names[k] for k in y], dtype=object),
                            "group": np.array(["toy"] * n, dtype=object), "condition": np.array(["-"] * n, dtype=object),
                            "fault_size": np.array([""] * n, dtype=object), "source": np.array(["toy"] * n, dtype=object),
                            "start": np.arange(n), "rec": np.zeros(n, dtype=np.int64)}
        manifest = {"format_version": 1, "fingerprint": f"toy-{seed}-{size}-{channels}-{classes}-{n_train}",
                    "config": {"source": {"kind": "toy"}}, "classes": names, "fs": 1000.0,
                    "window": {"length": 256, "hop": 128, "normalize": "zscore", "channels": ["toy"]},
                    "transform": {"kind": "toy"}, "image_shape": [channels, size, size], "sizes": sizes}
        w.commit(metas, manifest)
    return Path(out)
