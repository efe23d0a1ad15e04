"""CUDA paths: mixed precision, channels_last, GPU-resident data, GPU transforms, pretraining on a GPU.

Skipped where no CUDA device is present (CI has none); run on a GPU machine with
``pytest tests/test_cuda.py``. The CPU tests cover the same code with the CUDA-only branches off.
"""

import json

import numpy as np
import pytest
import torch

import diag.learning.runtime as drt
import diag.learning.train as dt
from diag.signal.dataset import PreparedDataset
from diag.learning.models import load_trained
from diag.learning.pretrain import PretrainConfig, pretrain
from diag.learning.train import TrainConfig, train
from helpers import make_toy_dataset

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("cuda") / "toy", n_train=24, n_val=10, n_test=10, classes=3,
                            size=32, seed=0)


def _test_logits_on_cpu(run_dir, ds):
    model, _ = load_trained(run_dir)
    with torch.no_grad():
        return model(torch.from_numpy(np.array(ds.images("test"))).float())


@pytest.mark.parametrize("amp", ["auto", "fp16", "off"])
def test_training_on_cuda_learns_and_the_checkpoint_scores_the_same_on_cpu(toy, tmp_path, monkeypatch, amp):
    seen = {}
    real = drt.autocast

    def spying(device, dtype):
        seen.setdefault("autocast", set()).add((device.type, dtype))
        return real(device, dtype)

    monkeypatch.setattr(drt, "autocast", spying)
    out = tmp_path / amp
    cfg = TrainConfig(epochs=6, batch_size=16, lr=2e-3, warmup=0.1, seed=0, amp=amp, device="cuda")
    summary = train(toy, out, cfg, quiet=True)
    want = {"auto": torch.bfloat16, "fp16": torch.float16, "off": None}[amp]
    assert seen["autocast"] == {("cuda", want)}

    meta = json.loads((out / "model.json").read_text())
    rt = meta["runtime"]
    assert rt["device"].startswith("cuda") and rt["channels_last"] is True
    assert rt["amp"] == (str(want).replace("torch.", "") if want else "off")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["train_loss"]) and np.isfinite(r["val_loss"]) for r in rows)
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    test = json.loads((out / "test_metrics.json").read_text())
    assert test["accuracy"] >= 0.8, test  # three well-separated classes: chance is 1/3

    # Weights written from the GPU run score the test split the same way on the CPU in fp32.
    ds = PreparedDataset(toy)
    pred = _test_logits_on_cpu(out, ds).argmax(1).numpy()
    agree = (pred == ds.labels("test")).mean()
    assert abs(agree - test["accuracy"]) <= 1 / 30 + 1e-9, (agree, test["accuracy"])  # one window of 30 may flip
    assert summary["selected_epoch"] >= 1


def test_small_splits_live_on_the_gpu(toy, tmp_path, monkeypatch):
    layouts = []
    real_images = dt.SplitImages

    class Watching(real_images):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            layouts.append(("memory", self.memory.device.type if self.memory is not None else "disk"))

    monkeypatch.setattr(dt, "SplitImages", Watching)
    train(toy, tmp_path / "cl", TrainConfig(epochs=1, batch_size=16, device="cuda", seed=0), quiet=True)
    assert ("memory", "cuda") in layouts  # the small splits live on the GPU: no host->device copy per batch
    model, _ = load_trained(tmp_path / "cl", device="cuda")
    assert next(model.parameters()).is_cuda


def test_in_memory_and_streamed_batches_agree_on_cuda(toy, tmp_path):
    cfg = dict(epochs=2, batch_size=16, lr=2e-3, seed=5, device="cuda", amp="off")
    train(toy, tmp_path / "a", TrainConfig(**cfg), quiet=True)
    train(toy, tmp_path / "b", TrainConfig(**cfg, in_memory_gb=0.0), quiet=True)
    # Same batches in the same order; GPU kernels are not bitwise deterministic, so compare closely.
    ra = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    rb = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert len(ra) == len(rb) == 2
    for a, b in zip(ra, rb):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-3)


def test_prepare_on_cuda_matches_the_cpu_images(tmp_path, monkeypatch):
    import diag.commands.prepare as prep
    from test_prepare import SMALL, tone_recordings  # tests/ is on sys.path (pytest rootdir-relative imports)

    monkeypatch.setattr(prep, "load_recordings", lambda cfg: tone_recordings())
    a = PreparedDataset(prep.prepare(None, tmp_path / "cpu", SMALL, quiet=True))
    b = PreparedDataset(prep.prepare(None, tmp_path / "gpu", SMALL, quiet=True, device="cuda"))
    assert b.manifest["transform_device"].startswith("cuda") and a.manifest["fingerprint"] == b.manifest["fingerprint"]
    for s in ("train", "val", "test"):
        x, y = np.asarray(a.images(s), np.float32), np.asarray(b.images(s), np.float32)
        assert np.abs(x - y).max() < 0.02, s  # per-image z-scored; float16 storage steps are ~0.002-0.004


def test_pretraining_on_cuda_runs_with_bf16_and_writes_a_loadable_backbone(toy, tmp_path):
    out = tmp_path / "pre"
    result = pretrain(toy, out, PretrainConfig(epochs=2, batch_size=16, lr=2e-3, knn_every=1, knn_k=5, seed=0,
                                               device="cuda"), quiet=True)
    meta = json.loads((out / "pretrain.json").read_text())
    assert [h["epoch"] for h in meta["history"]] == [0, 1, 2]
    assert all(np.isfinite(h["loss"]) for h in meta["history"][1:])
    assert result["knn_final"]["epoch"] == 2
    assert result["knn_final"]["knn_accuracy"] > 0.5, result  # three well-separated classes: chance is 1/3
    cfg = TrainConfig(epochs=1, batch_size=16, init="ssl", weights=str(out), device="cuda", seed=0)
    train(toy, tmp_path / "ft", cfg, quiet=True)
    assert (tmp_path / "ft" / "test_metrics.json").is_file()
