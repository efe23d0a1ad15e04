"""Nothing of the user's is ever deleted (issue 8, items 1-3) and the storage layer's guarantees."""

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from diag.cli import app
from diag.errors import DiagError
from diag.storage import (MARKER, atomic_file, atomic_write_json, check_writable, claim_output, clean_stale,
                          output_kind, write_marker)
from helpers import make_toy_dataset

SMALL = ["--set", "windows.fs=1000", "--set", "windows.length=256", "--set", "windows.hop=128",
         "--set", "transform.size=[16,16]", "--set", "transform.n_scales=16", "--set", "transform.fmin=10"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy") / "ds", n_train=6, n_val=2, n_test=2, classes=2, size=16)


def _user_folder(path):
    path.mkdir()
    (path / "thesis.tex").write_text("precious")
    (path / "labels.csv").write_text("file,label\na.csv,normal\n")
    (path / "a.csv").write_text("0.1\n0.2\n")
    return path


def _one_line_refusal(r):
    assert r.exit_code == 2, r.output
    assert r.output.count("\n") == 1, r.output
    return r.output


def _untouched(folder):
    assert (folder / "thesis.tex").read_text() == "precious"
    assert (folder / "a.csv").read_text() == "0.1\n0.2\n"


# ------------------------------------------------------------------------------------------------
# Item 1: --force on a folder of the user's files


def test_prepare_force_never_deletes_a_folder_diag_did_not_write(tmp_path):
    mine = _user_folder(tmp_path / "mine")
    for extra in ([], ["--force"]):
        r = CliRunner().invoke(app, ["prepare", "--out", str(mine), "-q", *SMALL, *extra])
        out = _one_line_refusal(r)
        assert "thesis.tex" in out and "--force" not in out  # names what is there, never suggests --force
        _untouched(mine)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no .partial-* / .old-* left


@pytest.mark.parametrize("command", ["train", "pretrain"])
def test_train_and_pretrain_force_never_delete_a_folder_diag_did_not_write(toy, tmp_path, command):
    mine = _user_folder(tmp_path / "mine")
    r = CliRunner().invoke(app, [command, "--data", str(toy), "--out", str(mine), "--force", "-q", "--epochs", "1"])
    out = _one_line_refusal(r)
    assert "--force" not in out
    _untouched(mine)


def test_a_user_config_json_is_not_taken_for_a_diag_run(toy, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text('{"theme": "dark"}')
    r = CliRunner().invoke(app, ["train", "--data", str(toy), "--out", str(mine), "--force", "-q", "--epochs", "1"])
    _one_line_refusal(r)
    assert (mine / "config.json").read_text() == '{"theme": "dark"}'


# ------------------------------------------------------------------------------------------------
# Item 2: --out is (or holds) the input


def test_prepare_out_equal_to_data_never_deletes_the_recordings(tmp_path):
    data = _user_folder(tmp_path / "recordings")
    r = CliRunner().invoke(app, ["prepare", "--source", "files", "--data", str(data), "--out", str(data),
                                 "--force", "-q", *SMALL])
    out = _one_line_refusal(r)
    assert "input" in out
    _untouched(data)
    assert (data / "labels.csv").is_file()


def test_prepare_out_above_the_data_is_refused(tmp_path):
    data = _user_folder(tmp_path / "project" / "raw") if (tmp_path / "project").mkdir() is None else None
    r = CliRunner().invoke(app, ["prepare", "--source", "files", "--data", str(data), "--out",
                                 str(tmp_path / "project"), "--force", "-q", *SMALL])
    assert "holds the input" in _one_line_refusal(r)
    _untouched(data)


@pytest.mark.parametrize("command", ["train", "pretrain", "compare"])
def test_out_equal_to_the_prepared_dataset_is_refused(toy, command):
    before = sorted(p.name for p in toy.iterdir())
    args = [command, "--data", str(toy), "--out", str(toy), "-q"]
    args += ["--inits", "scratch"] if command == "compare" else ["--force"]
    r = CliRunner().invoke(app, args)
    assert "input" in _one_line_refusal(r)
    assert sorted(p.name for p in toy.iterdir()) == before
    assert output_kind(toy) == "prepared"


def test_train_out_equal_to_the_ssl_weights_folder_is_refused(toy, tmp_path):
    ssl = tmp_path / "ssl"
    ssl.mkdir()
    (ssl / "pretrain.json").write_text(json.dumps({"format": "diag-ssl/1"}))
    r = CliRunner().invoke(app, ["train", "--data", str(toy), "--out", str(ssl), "--init", "ssl", "--weights",
                                 str(ssl), "--force", "-q"])
    assert "input" in _one_line_refusal(r)
    assert (ssl / "pretrain.json").is_file()


# ------------------------------------------------------------------------------------------------
# Item 3: --out is a plain file


@pytest.mark.parametrize("command", ["prepare", "train", "pretrain", "compare"])
def test_a_plain_file_is_never_replaced(toy, tmp_path, command):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    args = [command, "--out", str(target), "-q"]
    args += SMALL if command == "prepare" else ["--data", str(toy)]
    args += ["--inits", "scratch"] if command == "compare" else ["--force"]
    out = _one_line_refusal(CliRunner().invoke(app, args))
    assert "is a file" in out
    assert target.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # no stale .notes.txt.old-NNNN


# ------------------------------------------------------------------------------------------------
# The guard itself


def test_claim_output_rules(tmp_path):
    assert claim_output(tmp_path / "new", "prepared") is False
    (tmp_path / "empty").mkdir()
    assert claim_output(tmp_path / "empty", "prepared") is False
    ours = tmp_path / "ours"
    ours.mkdir()
    write_marker(ours, "train-run")
    (ours / "model.json").write_text("{}")
    assert claim_output(ours, "train-run", force=True) is True
    with pytest.raises(DiagError, match="holds a diag run output, not a pretraining"):
        claim_output(ours, "pretrain", force=True)
    old = tmp_path / "old"  # a prepared dataset of an older diag (no .diag-output)
    old.mkdir()
    atomic_write_json(old / "manifest.json", {"format_version": 1, "fingerprint": "abc"})
    assert output_kind(old) == "prepared" and claim_output(old, "prepared", force=True) is True
    old_run = tmp_path / "old_run"
    old_run.mkdir()
    atomic_write_json(old_run / "config.json", {"train": {}, "data": "x", "dataset_fingerprint": "abc"})
    assert output_kind(old_run) == "train-run"


def test_leftovers_of_a_killed_run_are_cleaned_by_the_next(tmp_path):
    dead = 2**22 + 12345  # above any pid_max: no such process
    with pytest.raises(ProcessLookupError):
        os.kill(dead, 0)
    partial = tmp_path / f".ds.partial-{dead}-x1y2"
    partial.mkdir()
    (partial / "train.npy").write_bytes(b"\0" * 100)
    old = tmp_path / f".ds.old-{dead}"
    old.mkdir()
    mine = tmp_path / ".ds.partial-notes"  # not diag's naming: kept
    mine.write_text("keep")
    live = tmp_path / f".ds.partial-{os.getpid()}-abc"  # a running process's: kept
    live.mkdir()
    run = tmp_path / "ds"
    run.mkdir()
    (run / f".last.pt.tmp-{dead}-q.tmp").write_bytes(b"half")
    removed = clean_stale(run)
    assert not partial.exists() and not old.exists() and not (run / f".last.pt.tmp-{dead}-q.tmp").exists()
    assert mine.read_text() == "keep" and live.is_dir() and len(removed) == 3


def test_prepare_cleans_a_killed_runs_partial_folder(tmp_path):
    dead = 2**22 + 12345
    partial = tmp_path / f".ds.partial-{dead}-zz"
    partial.mkdir()
    (partial / "train.npy").write_bytes(b"\0" * 1000)
    r = CliRunner().invoke(app, ["prepare", "--out", str(tmp_path / "ds"), "-q", *SMALL,
                                 "--set", "source.recordings_per_class=1", "--set", "source.duration=4.0"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    assert output_kind(tmp_path / "ds") == "prepared" and (tmp_path / "ds" / MARKER).is_file()


def test_atomic_file_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_file(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


@pytest.mark.parametrize("where", ["/proc/diag-out", "/sys/diag-out", "/proc/self/status/x"])
def test_unwritable_places_are_refused_before_work(where):
    with pytest.raises(DiagError, match="cannot write there"):
        check_writable(where)


def test_equal_weights_give_equal_files_across_processes(tmp_path):
    import subprocess
    import sys

    code = ("import sys, torch; from diag.learning.runtime import save_safetensors; "
            "save_safetensors(sys.argv[1], {'w': torch.arange(6.0).reshape(2, 3), 'b': torch.ones(2)}, "
            "metadata={'model': 'convnext_atto', 'format': 'pt', 'seed': '0'})")
    hashes = set()
    for i in range(4):  # safetensors' own header order varies between processes
        out = tmp_path / f"w{i}.safetensors"
        subprocess.run([sys.executable, "-c", code, str(out)], check=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
        hashes.add(__import__("hashlib").sha256(out.read_bytes()).hexdigest())
    assert len(hashes) == 1
    from safetensors import safe_open

    with safe_open(str(out), "pt") as f:
        assert f.metadata() == {"model": "convnext_atto", "format": "pt", "seed": "0"}
        assert f.get_tensor("w").tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
