"""Faults (issue 26): a full disk during prepare / train, kill -9 during predict, leftovers of killed writes,
a run killed before its first checkpoint, non-finite values in a dataset, a run or a metric, a damaged
unknown detector. Each: exit 2, one line, nothing that passes for a finished output, no user file changed."""

import errno
import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import diag.learning.train as dt
from diag.cli import app
from diag.errors import DiagError, disk_full_as_error
from diag.learning.rundir import RunDir
from diag.signal.dataset import DatasetWriter
from helpers import make_toy_dataset

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["--set", "train.epochs=1", "--set", "train.batch_size=16", "-q"]


def _cli(*args):
    res = runner.invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


def _one_line(out: str) -> str:
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in out, out
    return lines[0]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("faults") / "toy", n_train=12, n_val=6, n_test=5, classes=3,
                            size=32, seed=0)


@contextmanager
def small_disk(path: Path, size: str):
    """A tmpfs of ``size`` mounted at ``path`` (root only); the test is skipped where mounting is not allowed."""
    path.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)  # detached once nothing holds it


# ------------------------------------------------------------------------------------------------
# A full disk


def test_the_disk_full_error_names_the_folder_and_its_file_system(tmp_path):
    with pytest.raises(DiagError) as e:
        with disk_full_as_error(tmp_path / "out"):
            raise OSError(errno.ENOSPC, "No space left on device")
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'out'}: no space left on the disk") and "file system mounted at" in msg
    with pytest.raises(ValueError):  # other errors pass through unchanged
        with disk_full_as_error(tmp_path):
            raise ValueError("not a disk problem")


def test_prepare_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    from test_predict_fixtures import CONFIG, FS, recordings
    from diag.sources.files import write_recordings

    write_recordings(recordings(3, 1.5, seed=0), tmp_path / "rec")
    (tmp_path / "c.toml").write_text(CONFIG.format(data=tmp_path / "rec", fs=FS))
    with small_disk(tmp_path / "small", "96k") as small:
        code, out = _cli("prepare", "--config", tmp_path / "c.toml", "--out", small / "prep", "-q")
        assert code == 2 and "no space left on the disk" in _one_line(out) and str(small) in out
        assert list(small.iterdir()) == []  # no .prep.partial-*, no prep


def test_train_on_a_full_disk_is_one_line_and_nothing_looks_finished(toy, tmp_path):
    with small_disk(tmp_path / "small", "2m") as small:  # room for config.json, not for the weights
        code, out = _cli("train", "--data", toy, "--out", small / "run", *TRAIN)
        assert code == 2 and "no space left on the disk" in _one_line(out)
        names = {p.name for p in (small / "run").iterdir()}
        assert RunDir.TEST not in names and RunDir.WEIGHTS not in names
        assert not [n for n in names if ".tmp-" in n]


def test_prepared_image_files_are_reserved_on_disk_before_images_are_written(tmp_path):
    """A memory-mapped write into a sparse file on a full disk is SIGBUS; reserved blocks make it an error early."""
    with DatasetWriter(tmp_path / "ds", {"train": 200}, (1, 64, 64)) as w:
        f = w.tmp / "train.npy"
        assert f.stat().st_blocks * 512 >= f.stat().st_size > 200 * 64 * 64 * 2


def test_a_full_disk_at_the_end_leaves_an_unfinished_run_that_resume_finishes(toy, tmp_path, monkeypatch):
    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    calibrate = dt.calibrate_run
    monkeypatch.setattr(dt, "calibrate_run", full)  # the last write before the run is finished
    code, out = _cli("train", "--data", toy, "--out", tmp_path / "run", *TRAIN)
    assert code == 2 and "no space left on the disk" in _one_line(out)
    assert not (tmp_path / "run" / RunDir.TEST).exists()  # test_metrics.json comes last: not finished
    monkeypatch.setattr(dt, "calibrate_run", calibrate)
    run, dead = tmp_path / "run", _dead_pid()
    for name in (RunDir.LAST, RunDir.WEIGHTS):  # what a kill -9 midway through a checkpoint leaves
        (run / f".{name}.tmp-{dead}-x1").write_bytes(b"half")
    (run / f".{RunDir.LAST}.tmp-{os.getpid()}-x2").write_bytes(b"a live process's")
    code, out = _cli("train", "--out", run, "--resume", "-q")
    assert code == 0, out
    assert (run / RunDir.TEST).is_file() and (run / "unknown.json").is_file()
    assert sorted(p.name for p in run.iterdir() if ".tmp-" in p.name) == [f".{RunDir.LAST}.tmp-{os.getpid()}-x2"]


# ------------------------------------------------------------------------------------------------
# Killed runs


def test_a_run_killed_before_its_first_checkpoint_restarts_without_force(toy, tmp_path, monkeypatch):
    def killed(*a, **k):
        raise KeyboardInterrupt

    epoch = dt.train_epoch
    monkeypatch.setattr(dt, "train_epoch", killed)
    code, _ = _cli("train", "--data", toy, "--out", tmp_path / "run", *TRAIN)
    assert code == 130
    run = tmp_path / "run"
    assert (run / "config.json").is_file() and not (run / RunDir.LAST).exists()
    monkeypatch.setattr(dt, "train_epoch", epoch)
    code, out = _cli("train", "--data", toy, "--out", run, *TRAIN)
    assert code == 0, out
    assert (run / RunDir.TEST).is_file()


def test_kill_9_while_predict_writes_leaves_no_final_name_and_the_rerun_cleans_up(predict_run, tmp_path):
    from test_predict_fixtures import FS, tone

    np.save(tmp_path / "rec.npy", tone("low", 1.5, seed=5))
    out = tmp_path / "v.json"
    # the process is killed (SIGKILL) at the worst moment: the file is written, not yet renamed into place
    code = ("import os, signal, sys\n"
            "real = os.replace\n"
            "def dying(a, b, *k, **kw):\n"
            "    if str(b).endswith('v.json'):\n"
            "        os.kill(os.getpid(), signal.SIGKILL)\n"
            "    return real(a, b, *k, **kw)\n"
            "os.replace = dying\n"
            "from diag.cli import app\n"
            "app(sys.argv[1:])\n")
    res = subprocess.run([sys.executable, "-c", code, "predict", str(predict_run), str(tmp_path / "rec.npy"),
                          "--fs", str(FS), "-q", "--json", str(out)], cwd=ROOT, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert res.returncode == -9, res.stderr[-2000:]
    assert not out.exists() and [p.name for p in tmp_path.glob(".v.json.tmp-*")]
    code, text = _cli("predict", predict_run, tmp_path / "rec.npy", "--fs", FS, "-q", "--json", out)
    assert code == 0, text  # no --force needed: nothing was left under the final name
    assert json.loads(out.read_text())["files"][0]["verdict"] and not list(tmp_path.glob(".v.json.tmp-*"))


# ------------------------------------------------------------------------------------------------
# Non-finite values


def _nan_copy(ds: Path, dest: Path, split: str) -> Path:
    shutil.copytree(ds, dest)
    arr = np.load(dest / f"{split}.npy", mmap_mode="r+")
    arr[1, 0, 3, 3] = np.nan  # same size: the manifest's cheap check passes; only the values are wrong
    arr.flush()
    del arr
    return dest


def test_training_on_nan_images_is_refused_in_one_line(toy, tmp_path):
    data = _nan_copy(toy, tmp_path / "nan", "train")
    code, out = _cli("train", "--data", data, "--out", tmp_path / "run", *TRAIN)
    assert code == 2 and "image 1 " in (line := _one_line(out)) and "NaN or infinite" in line
    assert "train.npy" in line and not (tmp_path / "run" / RunDir.WEIGHTS).exists()


def test_a_non_finite_training_loss_stops_without_writing_a_model(toy, tmp_path, monkeypatch):
    # a learning rate of 1e30 no longer reaches training (the config refuses it), so the epoch's loss is
    # made non-finite here: the real epoch runs, then its mean loss reads inf
    real = dt.train_epoch

    def diverging(s, epoch):
        loss, lr, seen, seconds = real(s, epoch)
        return float("inf"), lr, seen, seconds

    monkeypatch.setattr(dt, "train_epoch", diverging)
    code, out = _cli("train", "--data", toy, "--out", tmp_path / "run", "--set", "train.warmup=0", *TRAIN)
    assert code == 2 and "training loss became" in _one_line(out) and "epoch 1" in out
    assert not (tmp_path / "run" / RunDir.WEIGHTS).exists() and not (tmp_path / "run" / RunDir.TEST).exists()
    code, out = _cli("train", "--data", toy, "--out", tmp_path / "run2", "--set", "train.lr=1e30", *TRAIN)
    assert code == 2 and "train.lr" in _one_line(out) and not (tmp_path / "run2").exists()


def test_check_finite_training_passes_finite_losses():
    from diag.learning.runtime import check_finite_training

    check_finite_training(0.5, 1, "run")
    for bad in (float("nan"), float("inf")):
        with pytest.raises(DiagError, match="training loss became"):
            check_finite_training(bad, 3, "run", 1e-3)


def test_evaluate_on_nan_images_refuses(predict_run, tmp_path):
    data = json.loads((predict_run / "model.json").read_text())["dataset"]["path"]
    bad = _nan_copy(Path(data), tmp_path / "nan", "test")
    code, out = _cli("evaluate", predict_run, bad, "--out", tmp_path / "ev")
    assert code == 2 and "test.npy: image 1 " in _one_line(out)
    assert not (tmp_path / "ev" / "metrics.json").exists()


def test_a_run_with_nan_weights_is_refused(predict_run, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    run = tmp_path / "run"
    shutil.copytree(predict_run, run)
    w = load_file(str(run / "model.safetensors"))
    key = sorted(k for k in w if w[k].is_floating_point())[0]
    w[key] = torch.full_like(w[key], float("nan"))
    save_file(w, str(run / "model.safetensors"))
    code, out = _cli("evaluate", run, json.loads((run / "model.json").read_text())["dataset"]["path"],
                     "--out", tmp_path / "ev")
    assert code == 2 and f"weight '{key}' holds NaN" in _one_line(out)


def test_report_with_a_nan_metric_names_the_run(predict_run, tmp_path):
    for name in ("scratch-all-s0", "scratch-all-s1"):
        shutil.copytree(predict_run, tmp_path / "cmp" / name)
    tm = tmp_path / "cmp" / "scratch-all-s1" / RunDir.TEST
    m = json.loads(tm.read_text())
    m["macro_f1"] = float("nan")
    tm.write_text(json.dumps(m))
    code, out = _cli("report", tmp_path / "cmp")
    assert code == 2 and "scratch-all-s1" in (line := _one_line(out)) and "macro_f1 is nan" in line


# ------------------------------------------------------------------------------------------------
# A damaged unknown detector


@pytest.mark.parametrize("name, damage", [("unknown.json", lambda b: b[: len(b) // 2]),
                                          ("unknown.json", lambda b: b"[1, 2]"),
                                          ("unknown.safetensors", lambda b: b[: len(b) // 2])])
def test_a_damaged_unknown_detector_is_refused_never_recalibrated(predict_run, tmp_path, name, damage):
    run = tmp_path / "run"
    shutil.copytree(predict_run, run)
    if not (run / name).is_file():
        pytest.skip(f"this run's unknown method keeps no {name}")
    (run / name).write_bytes(damage((run / name).read_bytes()))
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    code, out = _cli("evaluate", run, json.loads((run / "model.json").read_text())["dataset"]["path"],
                     "--out", tmp_path / "ev")
    assert code == 2 and f"{name}: damaged" in _one_line(out) and "not overwritten" in out
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
