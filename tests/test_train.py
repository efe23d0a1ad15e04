"""Training loop: schedule, optimiser groups, label budgets, outputs, selection on val, resume, errors, CLI."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import diag.learning.train as dt
from diag.commands.train import run as run_train
from diag.learning.runtime import batch_plan, lr_at, param_groups, warmup_steps
from diag.cli import app
from diag.signal.dataset import PreparedDataset
from diag.errors import DiagError
from diag.learning.models import create_backbone, load_trained
from diag.learning.train import TrainConfig, load_train_config, select_labeled, train
from helpers import make_toy_dataset

FAST = dict(epochs=2, batch_size=16, lr=2e-3, warmup=0.1)
TIMING = ("seconds", "train_seconds", "images_per_s")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("data") / "toy", n_train=12, n_val=6, n_test=5, classes=3,
                            size=32, seed=0)


def _numbers(run_dir):
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------------------------
# Pieces


def test_warmup_then_cosine_per_step():
    total, warm = 100, warmup_steps(0.1, 100)
    lrs = [lr_at(s, total, warm, 1e-3) for s in range(total)]
    assert warm == 10 and lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:10]))  # rising
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # then falling
    assert lrs[55] == pytest.approx(0.5e-3) and 0 < lrs[-1] < 1e-5
    assert warmup_steps(25, 100) == 25 and warmup_steps(0, 100) == 0 and warmup_steps(500, 100) == 100
    assert lr_at(0, 10, 0, 1e-3) == pytest.approx(1e-3)  # no warmup: start at the peak


def test_no_weight_decay_for_norms_biases_and_1d_params():
    model = create_backbone("convnext_atto", in_chans=1, num_classes=3, freeze="stem")
    decay, no_decay = param_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim <= 1 for p in no_decay["params"])
    n_trainable = sum(p.requires_grad for p in model.parameters())
    assert len(decay["params"]) + len(no_decay["params"]) == n_trainable  # frozen stem left out


def test_batches_cover_every_sample_and_merge_a_lonely_last_one():
    b = batch_plan(33, 16, torch.Generator().manual_seed(0))
    assert [len(x) for x in b] == [16, 17] and sorted(torch.cat(b).tolist()) == list(range(33))
    assert [len(x) for x in batch_plan(40, 16, None)] == [16, 16, 8]


def test_label_budgets_are_stratified_seeded_and_checked():
    classes = ["a", "b", "c"]
    y = np.repeat([0, 1, 2], [10, 20, 30])
    idx = select_labeled(y, classes, labels_per_class=4, seed=1)
    assert np.bincount(y[idx]).tolist() == [4, 4, 4]
    assert np.array_equal(idx, select_labeled(y, classes, labels_per_class=4, seed=1))
    assert not np.array_equal(idx, select_labeled(y, classes, labels_per_class=4, seed=2))
    frac = select_labeled(y, classes, label_fraction=0.5, seed=0)
    assert np.bincount(y[frac]).tolist() == [5, 10, 15]
    assert len(select_labeled(y, classes)) == 60
    with pytest.raises(DiagError, match=r"labels_per_class=11 is more than .*'a' has 10"):
        select_labeled(y, classes, labels_per_class=11)
    with pytest.raises(DiagError, match="label_fraction=0.01"):
        select_labeled(y, classes, label_fraction=0.01)
    with pytest.raises(DiagError, match="set one of them"):
        TrainConfig(labels_per_class=3, label_fraction=0.5).validate()


def test_config_from_toml_and_overrides(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[train]\nepochs = 7\nwarmup = 50\nfreeze = "stages:1"\n[pretrain]\nepochs = 1\n')
    cfg = load_train_config(p, ["train.lr=3e-4", "train.labels_per_class=5"])
    assert (cfg.epochs, cfg.warmup, cfg.freeze, cfg.lr, cfg.labels_per_class) == (7, 50.0, "stages:1", 3e-4, 5)
    for bad, fragment in [("train.epochs=0", "train.epochs"), ("train.warmup=2.5", "train.warmup"),
                          ("train.init=hub", "train.init"), ("train.freeze=half", "freeze"),
                          ("train.amp=fp8", "train.amp"), ("train.model=convnxt_atto", "close matches"),
                          ("train.lrr=1", "unknown setting"), ("windows.length=5", "reads only train")]:
        with pytest.raises(DiagError, match=fragment):
            load_train_config(None, [bad])


# ------------------------------------------------------------------------------------------------
# End to end


def test_a_run_writes_everything_and_scores_test_once(toy, tmp_path, monkeypatch):
    calls = []
    real = dt.evaluate_split

    def counting(model, images, y, *a, **k):
        calls.append(str(images.path.name))
        return real(model, images, y, *a, **k)

    monkeypatch.setattr(dt, "evaluate_split", counting)
    out = tmp_path / "run"
    summary = train(toy, out, TrainConfig(**FAST, labels_per_class=8, seed=3), quiet=True)
    assert calls == ["val.npy", "val.npy", "test.npy"]  # selection on val every epoch; test once, at the end

    for name in ("model.safetensors", "model.json", "metrics.jsonl", "metrics.csv", "test_metrics.json",
                 "confusion_test.png", "curves.png", "last.pt", "config.json", "labeled.json"):
        assert (out / name).is_file(), name
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,step,train_loss,val_loss,val_accuracy,val_macro_f1,lr,seconds") and len(rows) == 3

    test = json.loads((out / "test_metrics.json").read_text())
    assert test["split"] == "test" and test["n"] == 15 and set(test["per_class"]) == {"class0", "class1", "class2"}
    assert np.asarray(test["confusion"]).sum() == 15 and test["selected_epoch"] == summary["selected_epoch"]

    meta = json.loads((out / "model.json").read_text())
    ds = PreparedDataset(toy)
    assert meta["classes"] == ds.classes and meta["preprocessing"]["config"] == ds.config
    assert meta["preprocessing"]["transform"] == ds.manifest["transform"] and meta["preprocessing"]["fs"] == ds.manifest["fs"]
    assert meta["train"]["seed"] == 3 and meta["seed"] == 3 and "torch" in meta["versions"]
    assert meta["selected"]["by"] == "val macro-F1" and meta["labeled"] == {"n": 24, "of": 36}
    assert meta["runtime"] == {"device": "cpu", "amp": "off", "channels_last": True, "world_size": 1}

    labeled = json.loads((out / "labeled.json").read_text())
    assert labeled["split"] == "train" and len(labeled["labeled"]) == 24
    assert np.bincount(ds.labels("train")[labeled["labeled"]]).tolist() == [8, 8, 8]

    # The saved model reproduces the reported test numbers.
    model, info = load_trained(out)
    with torch.no_grad():
        pred = model(torch.from_numpy(np.array(ds.images("test"))).float()).argmax(1).numpy()
    assert (pred == ds.labels("test")).mean() == pytest.approx(test["accuracy"])
    assert info["in_chans"] == 1

    # An existing run is not overwritten silently; --force only deletes a diag run folder.
    with pytest.raises(DiagError, match="already exists; pass --resume .* or --force"):
        train(toy, out, TrainConfig(**FAST), quiet=True)
    with pytest.raises(DiagError, match="already finished"):
        train(toy, out, resume=True, quiet=True)
    stranger = tmp_path / "photos"
    stranger.mkdir()
    (stranger / "cat.jpg").write_bytes(b"x")
    with pytest.raises(DiagError, match="not a run folder of diag"):
        train(toy, stranger, TrainConfig(**FAST), force=True, quiet=True)
    assert (stranger / "cat.jpg").is_file()


def test_resume_reaches_the_same_result_as_an_uninterrupted_run(toy, tmp_path, monkeypatch):
    cfg = TrainConfig(epochs=3, batch_size=16, lr=2e-3, warmup=3, drop_path=0.1, seed=1)
    train(toy, tmp_path / "straight", cfg, quiet=True)

    real_save = dt.save_checkpoint

    def crash_after_epoch_2(path, state):
        real_save(path, state)
        if state["state"]["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(dt, "save_checkpoint", crash_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(toy, tmp_path / "cut", cfg, quiet=True)
    monkeypatch.setattr(dt, "save_checkpoint", real_save)
    assert not (tmp_path / "cut" / "test_metrics.json").exists()
    with pytest.raises(DiagError, match="these differ: epochs"):
        train(toy, tmp_path / "cut", dataclasses.replace(cfg, epochs=4), resume=True, quiet=True)
    run_train(None, tmp_path / "cut", resume=True, quiet=True)  # the CLI path: saved config and data path

    a, b = load_file(str(tmp_path / "straight" / "model.safetensors")), load_file(str(tmp_path / "cut" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    la = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    lb = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert all(torch.equal(la["model"][k], lb["model"][k]) for k in la["model"])
    assert _numbers(tmp_path / "straight") == _numbers(tmp_path / "cut")
    ta = json.loads((tmp_path / "straight" / "test_metrics.json").read_text())
    tb = json.loads((tmp_path / "cut" / "test_metrics.json").read_text())
    assert ta == tb


def test_same_seed_same_numbers_in_memory_or_streamed(toy, tmp_path):
    train(toy, tmp_path / "a", TrainConfig(**FAST, seed=5), quiet=True)
    # Streamed from the memory-mapped file (split larger than the budget) by 0 workers: same batches.
    train(toy, tmp_path / "b", TrainConfig(**FAST, seed=5, in_memory_gb=0.0), quiet=True)
    assert _numbers(tmp_path / "a") == _numbers(tmp_path / "b")
    train(toy, tmp_path / "c", TrainConfig(**FAST, seed=6), quiet=True)
    assert _numbers(tmp_path / "a") != _numbers(tmp_path / "c")


def test_early_stopping_keeps_the_best_validation_epoch(toy, tmp_path, monkeypatch):
    real = dt.evaluate_split

    def flat_validation(model, images, y, *a, **k):  # validation never improves after epoch 1
        if images.path.name == "val.npy":
            return 1.0, np.zeros(len(y), dtype=np.int64)
        return real(model, images, y, *a, **k)

    monkeypatch.setattr(dt, "evaluate_split", flat_validation)
    s = train(toy, tmp_path / "es", TrainConfig(**{**FAST, "epochs": 6}, patience=2), quiet=True)
    assert [h["epoch"] for h in s["history"]] == [1, 2, 3] and s["selected_epoch"] == 1
    assert json.loads((tmp_path / "es" / "test_metrics.json").read_text())["selected_epoch"] == 1


# ------------------------------------------------------------------------------------------------
# Bad input


def test_bad_input_gives_one_line_errors(toy, tmp_path):
    with pytest.raises(DiagError, match="not a prepared dataset"):
        train(tmp_path / "missing", tmp_path / "r1", TrainConfig(**FAST), quiet=True)
    with pytest.raises(DiagError, match="unknown timm model 'resnet_fifty'"):
        train(toy, tmp_path / "r2", TrainConfig(**FAST, model="resnet_fifty"), quiet=True)
    with pytest.raises(DiagError, match=r"labels_per_class=13 is more than .*'class0' has 12"):
        train(toy, tmp_path / "r3", TrainConfig(**FAST, labels_per_class=13), quiet=True)
    bad = tmp_path / "bad.pth"
    torch.save({"model": {"stem.0.weight": torch.zeros(8, 3, 4, 4)}}, bad)
    with pytest.raises(DiagError, match=r"bad\.pth: does not fit convnext_atto.*missing key"):
        train(toy, tmp_path / "r4", TrainConfig(**FAST, init="imagenet", weights=str(bad)), quiet=True)
    for r in ("r1", "r2", "r3", "r4"):
        assert not (tmp_path / r).exists()  # nothing half-made is left behind

    # A class with no training windows.
    from diag.signal.dataset import DatasetWriter

    holes = tmp_path / "holes"
    src = PreparedDataset(toy)
    keep = src.labels("train") != 2
    sizes = {s: (int(keep.sum()) if s == "train" else len(src.labels(s))) for s in src.splits}
    with DatasetWriter(holes, sizes, src.image_shape) as w:
        metas = {}
        for s in src.splits:
            sel = keep if s == "train" else np.ones(len(src.labels(s)), bool)
            w.add(s, np.asarray(src.images(s))[sel])
            metas[s] = {k: v[sel] for k, v in src.meta(s).items()}
        w.commit(metas, {**src.manifest, "sizes": sizes})  # a consistent manifest (opening checks it)
    with pytest.raises(DiagError, match="train split has no windows of class 'class2'"):
        train(holes, tmp_path / "r5", TrainConfig(**FAST), quiet=True)


def test_images_too_small_for_the_model_are_one_line(tmp_path):
    """convnext_atto downsamples by 32: 16x16 images used to fail with a traceback from its last stage."""
    small = make_toy_dataset(tmp_path / "small", n_train=4, n_val=2, n_test=2, classes=2, size=16)
    with pytest.raises(DiagError, match=r"images of 16x16 are too small for convnext_atto \(it needs at least 32x32\)"):
        train(small, tmp_path / "r", TrainConfig(**FAST), quiet=True)
    assert not (tmp_path / "r").exists()
    r = CliRunner().invoke(app, ["pretrain", "--data", str(small), "--out", str(tmp_path / "p"), "--epochs", "1",
                                 "--set", "pretrain.batch_size=4", "-q"])
    assert r.exit_code == 2 and "too small for convnext_atto" in r.output and r.output.count("\n") == 1, r.output
    assert not (tmp_path / "p").exists()


def test_cli_train(toy, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    r = runner.invoke(app, ["train", "--data", str(toy), "--out", str(out), "--init", "scratch", "--epochs", "1",
                            "--warmup", "0", "--labels-per-class", "4", "--seed", "2", "--quiet",
                            "--set", "train.batch_size=8", "--set", "train.freeze=stages:1"])
    assert r.exit_code == 0, r.output
    saved = json.loads((out / "config.json").read_text())["train"]
    assert (saved["epochs"], saved["warmup"], saved["labels_per_class"], saved["batch_size"], saved["freeze"]) == (
        1, 0.0, 4, 8, "stages:1")
    r = runner.invoke(app, ["train", "--data", str(toy), "--out", str(out)])
    assert r.exit_code == 2 and "already exists" in r.output and r.output.count("\n") == 1
    r = runner.invoke(app, ["train", "--data", str(toy), "--out", str(tmp_path / "x"), "--init", "ssl"])
    assert r.exit_code == 2 and "init=ssl needs --weights" in r.output


@pytest.mark.slow
def test_torchrun_with_two_processes_matches_one_process(toy, tmp_path):
    """DDP on CPU (gloo): the global batch is split across ranks, so without augmentation two ranks
    follow the single-process run up to float rounding; only rank 0 writes."""
    import os
    import socket
    import subprocess
    import sys

    train(toy, tmp_path / "one", TrainConfig(epochs=1, batch_size=16, augment=False, seed=4), quiet=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(port), "-m", "diag.cli", "train", "--data", str(toy), "--out", str(tmp_path / "two"),
           "--epochs", "1", "--batch-size", "16", "--seed", "4", "--quiet", "--set", "train.augment=false"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    one, two = _numbers(tmp_path / "one"), _numbers(tmp_path / "two")
    assert len(one) == len(two) == 1
    for a, b in zip(one, two):
        assert a["step"] == b["step"]
        for k in ("train_loss", "val_loss", "val_accuracy"):
            assert b[k] == pytest.approx(a[k], rel=2e-3, abs=2e-3), k
    assert json.loads((tmp_path / "two" / "model.json").read_text())["world_size"] == 2
    assert not [p.name for p in (tmp_path / "two").iterdir() if p.name.startswith(".") and p.name != ".diag-output"]  # no stray temp files


def _without_validation(src_path, out):
    """The same prepared data with the validation windows moved into train (what split.val_fraction=0 gives)."""
    from diag.signal.dataset import DatasetWriter

    src = PreparedDataset(src_path)
    sizes = {"train": len(src.labels("train")) + len(src.labels("val")), "test": len(src.labels("test"))}
    with DatasetWriter(out, sizes, src.image_shape) as w:
        w.add("train", np.concatenate([np.asarray(src.images("train")), np.asarray(src.images("val"))]))
        w.add("test", np.asarray(src.images("test")))
        tr, va = src.meta("train"), src.meta("val")
        w.commit({"train": {k: np.concatenate([tr[k], va[k]]) for k in tr}, "test": src.meta("test")},
                 {**src.manifest, "sizes": sizes, "fingerprint": "refit"})
    return out


def test_refit_trains_the_selected_epochs_on_every_training_window(toy, tmp_path):
    sel = tmp_path / "sel"
    s = train(toy, sel, TrainConfig(**{**FAST, "epochs": 3}), quiet=True)
    chosen = s["selected_epoch"]
    data = _without_validation(toy, tmp_path / "all")
    r = CliRunner().invoke(app, ["train", "--data", str(data), "--out", str(tmp_path / "refit"), "--refit-from", str(sel),
                                 "--set", "train.lr=0.003", "-q"])
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "refit" / "model.json").read_text())
    assert meta["refit"]["from"] == str(sel) and meta["refit"]["epochs"] == chosen
    assert meta["schedule"]["epochs"] == chosen and meta["selected"]["by"].startswith("last epoch")
    assert meta["labeled"]["of"] == 3 * (12 + 6)  # the validation windows were trained on
    assert meta["train"]["batch_size"] == 16 and meta["train"]["lr"] == 0.003  # the run's settings, then --set
    assert json.loads((tmp_path / "refit" / "test_metrics.json").read_text())["n"] == 15
    assert not (tmp_path / "refit" / "unknown.json").exists()  # nothing held out to calibrate on
    from diag.learning.models import load_trained
    from diag.learning.unknown import UnknownDetector

    net, meta = load_trained(tmp_path / "refit")  # diag predict then notes "no unknown threshold", no error
    assert UnknownDetector.for_run(tmp_path / "refit", net, meta) is None
    # refused: data that still has validation windows; other test windows; a run without validation
    with pytest.raises(DiagError, match=r"has 18 validation windows; .*split.val_fraction=0"):
        run_train(toy, tmp_path / "x1", refit_from=sel, quiet=True)
    other = _without_validation(make_toy_dataset(tmp_path / "o", n_train=12, n_val=6, n_test=4, classes=3, size=32),
                                tmp_path / "o-all")
    with pytest.raises(DiagError, match=r"test windows are not those of"):
        run_train(other, tmp_path / "x2", refit_from=sel, quiet=True)
    with pytest.raises(DiagError, match=r"selected its epoch by 'last epoch"):
        run_train(data, tmp_path / "x3", refit_from=tmp_path / "refit", quiet=True)
    for x in ("x1", "x2", "x3"):
        assert not (tmp_path / x).exists()
