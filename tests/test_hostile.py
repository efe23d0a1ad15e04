"""Hostile inputs, table-driven: every command of the runs/datasets side, walked through corrupt run and
dataset files (issue 8, items 4-12, 16, 17 and the minor ones). Each must end with exit status 2 and
exactly one line on stderr -- no traceback -- and leave the user's files as they were."""

import json
import pickle
import shutil
from dataclasses import asdict

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from diag.cli import app
from diag.learning.pretrain import PretrainConfig
from diag.storage import write_marker
from diag.learning.train import TrainConfig
from helpers import make_toy_dataset


class Evil:
    def __reduce__(self):
        return (print, ("this pickle ran code",))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    return make_toy_dataset(root / "toy", n_train=6, n_val=2, n_test=2, classes=2, size=32)


# ---- ways to damage a prepared dataset --------------------------------------------------------------


def truncate_npy(ds):
    p = ds / "train.npy"
    p.write_bytes(p.read_bytes()[:-100])


def shape_swapped_npy(ds):  # a valid .npy, but not the shape the manifest promises
    np.save(ds / "val.npy", np.zeros((3, 1, 8, 8), np.float16))
    m = json.loads((ds / "manifest.json").read_text())
    m.pop("files")  # as if written by an older diag: the shape check alone must catch it
    (ds / "manifest.json").write_text(json.dumps(m))


def no_npy(ds):
    (ds / "test.npy").unlink()


def manifest_not_json(ds):
    (ds / "manifest.json").write_text("{ not json")


def manifest_not_an_object(ds):
    (ds / "manifest.json").write_text("[1, 2]")


def csv_garbage(ds):
    (ds / "train.csv").write_text("hello\nworld\n")


def csv_short(ds):
    lines = (ds / "train.csv").read_text().splitlines()
    (ds / "train.csv").write_text("\n".join(lines[:3]) + "\n")


DATASET_DAMAGE = [truncate_npy, shape_swapped_npy, no_npy, manifest_not_json, manifest_not_an_object, csv_garbage,
                  csv_short]


def _damaged(base, tmp_path, damage):
    ds = tmp_path / "ds"
    shutil.copytree(base, ds)
    damage(ds)
    return ds


def _one_line(r):
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    lines = r.output.strip("\n").splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), r.output
    assert "Traceback" not in r.output
    return lines[0]


@pytest.mark.parametrize("damage", DATASET_DAMAGE, ids=lambda f: f.__name__)
@pytest.mark.parametrize("command", ["train", "pretrain", "compare"])
def test_a_damaged_prepared_dataset_is_one_line(base, tmp_path, damage, command):
    ds = _damaged(base, tmp_path, damage)
    args = [command, "--data", str(ds), "--out", str(tmp_path / "out"), "-q", "--epochs", "1"]
    if command == "compare":
        args = [command, "--data", str(ds), "--out", str(tmp_path / "out"), "-q", "--inits", "scratch", "--seeds", "0",
                "--set", "train.epochs=1", "--set", "train.batch_size=4"]
    elif command == "pretrain":
        args += ["--batch-size", "4"]
    else:
        args += ["--batch-size", "4"]
    line = _one_line(CliRunner().invoke(app, args))
    assert str(ds) in line


# ---- ways to damage a run folder that --resume reads ------------------------------------------------


def _train_run(base, out):
    out.mkdir()
    write_marker(out, "train-run")
    cfg = TrainConfig(epochs=2, batch_size=4, device="cpu")
    (out / "config.json").write_text(json.dumps({"train": asdict(cfg), "data": str(base),
                                                 "dataset_fingerprint": json.loads((base / "manifest.json").read_text())["fingerprint"],
                                                 "start": {}}))
    torch.save({"model": {}, "optimizer": {}, "scaler": {}, "rng": {}, "state": {}}, out / "last.pt")
    return out


def _pretrain_run(base, out):
    out.mkdir()
    write_marker(out, "pretrain")
    m = json.loads((base / "manifest.json").read_text())
    (out / "pretrain.json").write_text(json.dumps({
        "format": "diag-ssl/1", "pretrain": asdict(PretrainConfig(method="simclr", epochs=2, batch_size=4, device="cpu")),
        "dataset": {"path": str(base), "fingerprint": m["fingerprint"]}, "extra": [], "finished": False}))
    torch.save({"model": {}}, out / "last.pt")
    return out


def last_truncated(run):
    p = run / "last.pt"
    p.write_bytes(p.read_bytes()[:40])


def last_malicious(run):
    torch.save({"model": Evil()}, run / "last.pt")


def last_raw_pickle(run):
    (run / "last.pt").write_bytes(pickle.dumps(Evil()))


def last_text(run):
    (run / "last.pt").write_text("hello, I am a text file\n")


def last_wrong_dict(run):
    torch.save({"weights": torch.zeros(2)}, run / "last.pt")


def config_not_json(run):
    name = "config.json" if (run / "config.json").exists() else "pretrain.json"
    (run / name).write_text("{ truncated")


def config_wrong_shape(run):
    name = "config.json" if (run / "config.json").exists() else "pretrain.json"
    (run / name).write_text('{"hello": 1}')


RUN_DAMAGE = [last_truncated, last_malicious, last_raw_pickle, last_text, last_wrong_dict, config_not_json,
              config_wrong_shape]


@pytest.mark.parametrize("damage", RUN_DAMAGE, ids=lambda f: f.__name__)
@pytest.mark.parametrize("command", ["train", "pretrain"])
def test_resuming_a_damaged_run_is_one_line_and_loads_nothing(base, tmp_path, damage, command, capsys):
    run = (_train_run if command == "train" else _pretrain_run)(base, tmp_path / "run")
    damage(run)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    line = _one_line(CliRunner().invoke(app, [command, "--out", str(run), "--resume", "-q"]))
    assert str(run) in line
    assert "this pickle ran code" not in capsys.readouterr().out
    if damage.__name__.startswith("last_"):
        assert "not a diag checkpoint" in line and "not loaded" in line
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # nothing changed, nothing deleted


def test_an_earlier_compare_run_with_a_damaged_config_is_one_line(base, tmp_path):
    out = tmp_path / "cmp"
    out.mkdir()
    write_marker(out, "compare")
    rd = out / "scratch-all-s0"
    rd.mkdir()
    write_marker(rd, "train-run")
    (rd / "config.json").write_text("{ broken")
    (rd / "last.pt").write_bytes(b"x")
    _one_line(CliRunner().invoke(app, ["compare", "--data", str(base), "--out", str(out), "-q", "--inits", "scratch",
                                       "--seeds", "0"]))


# ---- output folders that cannot be written (items 4-6) -----------------------------------------------


@pytest.mark.parametrize("where", ["/proc/diag-out", "/sys/diag-out"])
@pytest.mark.parametrize("command", ["prepare", "train", "pretrain", "compare"])
def test_unwritable_output_is_refused_before_any_work(base, where, command):
    args = [command, "--out", where, "-q"]
    args += ["--set", "source.recordings_per_class=1"] if command == "prepare" else ["--data", str(base)]
    if command == "compare":
        args += ["--inits", "scratch"]
    line = _one_line(CliRunner().invoke(app, args))
    assert "cannot write there" in line


def test_read_only_parent_is_refused_before_any_work(base, tmp_path, monkeypatch):
    import diag.storage as st

    def read_only(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(st.tempfile, "mkdtemp", read_only)  # as a non-root user under a read-only folder
    line = _one_line(CliRunner().invoke(app, ["train", "--data", str(base), "--out", str(tmp_path / "ro" / "run"),
                                              "-q"]))
    assert "Permission denied" in line and not (tmp_path / "ro").exists()


# ---- nonsense that used to be accepted (items 16, 17) and minor ones ---------------------------------


def test_training_on_one_class_is_refused(tmp_path):
    one = make_toy_dataset(tmp_path / "one", n_train=6, n_val=2, n_test=2, classes=1, size=32)
    line = _one_line(CliRunner().invoke(app, ["train", "--data", str(one), "--out", str(tmp_path / "r"), "-q"]))
    assert "only one class" in line and not (tmp_path / "r").exists()


@pytest.mark.parametrize("command", ["train", "compare"])
def test_labels_per_class_zero_is_refused_all_is_all(base, tmp_path, command):
    args = [command, "--data", str(base), "--out", str(tmp_path / "r"), "-q", "--labels-per-class", "0"]
    if command == "compare":
        args += ["--inits", "scratch"]
    assert "spelled 'all'" in _one_line(CliRunner().invoke(app, args))
    assert not (tmp_path / "r").exists()


def test_compare_with_a_bogus_init_leaves_no_empty_out(base, tmp_path):
    _one_line(CliRunner().invoke(app, ["compare", "--data", str(base), "--out", str(tmp_path / "cmp"), "-q",
                                       "--inits", "scratch,bogus"]))
    assert not (tmp_path / "cmp").exists()


@pytest.mark.parametrize("content", [b"hello world this is text\n", b"PK\x03\x04" + b"\0" * 40])
def test_a_non_checkpoint_given_as_weights_says_so(base, tmp_path, content):
    w = tmp_path / "weights.pth"
    w.write_bytes(content)
    line = _one_line(CliRunner().invoke(app, ["train", "--data", str(base), "--out", str(tmp_path / "r"), "-q",
                                              "--init", "imagenet", "--weights", str(w)]))
    assert "cannot read checkpoint" in line and "KeyError: 101" not in line
    assert line.rstrip().endswith("file")  # the message is whole, not cut mid-word


# ---- the scoring commands on a damaged trained run (predict, evaluate, export) ------------------------


@pytest.fixture(scope="module")
def trained(base, tmp_path_factory):
    from diag.learning.train import train

    out = tmp_path_factory.mktemp("trained") / "run"
    train(base, out, TrainConfig(epochs=1, batch_size=4, device="cpu"), quiet=True)
    return out


def model_truncated(run):
    p = run / "model.safetensors"
    p.write_bytes(p.read_bytes()[:100])


def model_text(run):
    (run / "model.safetensors").write_text("not weights\n")


def model_json_broken(run):
    (run / "model.json").write_text("{ broken")


def model_missing(run):
    (run / "model.safetensors").unlink()


SCORED_RUN_DAMAGE = [model_truncated, model_text, model_json_broken, model_missing]


@pytest.mark.parametrize("damage", SCORED_RUN_DAMAGE, ids=lambda f: f.__name__)
@pytest.mark.parametrize("command", ["predict", "evaluate", "export"])
def test_scoring_a_damaged_run_is_one_line_and_writes_nothing(base, trained, tmp_path, damage, command):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    damage(run)
    sig = tmp_path / "sig.npy"
    np.save(sig, np.random.default_rng(0).standard_normal(4096).astype(np.float32))
    args = {"predict": ["predict", str(run), str(sig), "--fs", "12000", "--json", str(tmp_path / "out.json")],
            "evaluate": ["evaluate", str(run), str(base), "--out", str(tmp_path / "eval")],
            "export": ["export", str(run), "--onnx", str(tmp_path / "m.onnx")]}[command]
    before = sorted(p.name for p in tmp_path.iterdir())
    line = _one_line(CliRunner().invoke(app, args))
    assert str(run) in line
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no partial output of any kind


# ---- predict on an order-image run: a recording whose reference rate nobody gives ---------------------


def alone(data):  # the file without any labels.csv
    (data / "labels.csv").unlink()


def listed_without_rpm(data):
    (data / "labels.csv").write_text("path,label,meta\ninner/x.npy,inner,\n")


def listed_with_a_text_rpm(data):
    (data / "labels.csv").write_text('path,label,meta\ninner/x.npy,inner,"{""rpm"": ""fast""}"\n')


def labels_garbage(data):
    (data / "labels.csv").write_bytes(b"\x00\xffnot,a\nmanifest\"\n")


def labels_list_a_missing_file(data):  # a manifest diag cannot read says nothing about the file
    (data / "labels.csv").write_text('path,label,meta\ninner/x.npy,inner,"{""rpm"": 1800}"\ngone.npy,inner,\n')


NO_REFERENCE = [alone, listed_without_rpm, listed_with_a_text_rpm, labels_garbage, labels_list_a_missing_file]


@pytest.fixture(scope="module")
def order_run(tmp_path_factory):
    from test_predict_fixtures import order_run as build

    return build(tmp_path_factory.getbasetemp() / "order_run")[0]


@pytest.mark.parametrize("damage", NO_REFERENCE, ids=lambda f: f.__name__)
def test_predict_an_order_image_file_without_its_reference_rate_is_one_line(order_run, tmp_path, damage):
    data = tmp_path / "data"
    (data / "inner").mkdir(parents=True)
    x = data / "inner" / "x.npy"
    np.save(x, np.random.default_rng(0).standard_normal(4096).astype(np.float32))
    (data / "labels.csv").write_text('path,label,meta\ninner/x.npy,inner,"{""rpm"": 1800}"\n')
    damage(data)
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    outs = ["--json", str(tmp_path / "o.json"), "--csv", str(tmp_path / "o.csv"), "--plot", str(tmp_path / "plots")]
    line = _one_line(CliRunner().invoke(app, ["predict", str(order_run), str(x), "--fs", "8000", *outs]))
    assert line.startswith(f"error: {x}: ") and "pass --ref-hz HZ" in line
    if damage is labels_list_a_missing_file:  # the manifest diag cannot read is named, with its own fault
        assert "(skipped " in line and "file 'gone.npy' not found next to the manifest" in line
    assert {p: p.read_bytes() for p in data.rglob("*") if p.is_file()} == before
    assert not any((tmp_path / n).exists() for n in ("o.json", "o.csv", "plots"))
