"""The second hostile-input sweep (issue 26): user files that an output would overwrite, a labels.csv that
reads outside its folder, input read as silent nonsense, and user text that crashed the printing.

Every refused case is a row: exit status 2, exactly one line starting with ``error:``, no traceback, and
every file the case names has the same content (sha256) after as before."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from diag.cli import app
from diag.errors import DiagError
from diag.storage import LEDGER, claim_output_file, claim_output_files, write_output_file
from test_predict_fixtures import FS, tone

runner = CliRunner()


def _hashes(paths):
    out = {}
    for p in paths:
        p = Path(p)
        if p.is_file():
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.is_dir():
            for q in sorted(p.rglob("*")):
                if q.is_file():
                    out[str(q)] = hashlib.sha256(q.read_bytes()).hexdigest()
        else:
            out[str(p)] = None
    return out


def refused(args, expect, watch=()):
    """Run ``diag ARGS``; assert exit 2, one ``error:`` line holding ``expect``, no traceback, ``watch`` unchanged."""
    before = _hashes(watch)
    r = runner.invoke(app, [str(a) for a in args])
    lines = [ln for ln in r.output.strip("\n").splitlines() if ln.strip()]
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert len(lines) == 1 and lines[0].startswith("error:"), r.output
    assert "Traceback" not in r.output
    assert expect in lines[0], lines[0]
    assert _hashes(watch) == before, "a file changed that should not have"
    return lines[0]


def ok(args):
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, (r.output, r.exception)
    return r.output


@pytest.fixture(scope="module")
def run(predict_run):
    return predict_run


@pytest.fixture
def rec(tmp_path):
    p = tmp_path / "x.npy"
    np.save(p, tone("low", 1.0, seed=3))
    return p


# ================================================================================================
# 1. Output files: --force replaces only diag's own


def test_predict_json_over_the_recording_it_scores_is_refused_even_with_force(run, rec):
    refused(["predict", run, rec, "--fs", FS, "--json", rec, "--force", "-q"], "is the input", [rec])


def test_predict_csv_over_a_csv_recording_is_refused_even_with_force(run, tmp_path):
    csv_rec = tmp_path / "rec.csv"
    np.savetxt(csv_rec, tone("low", 1.0, seed=4), header="a", comments="")
    refused(["predict", run, csv_rec, "--fs", FS, "--csv", csv_rec, "--force", "-q"], "is the input", [csv_rec])


def test_predict_output_inside_the_run_folder_is_refused(run, rec):
    refused(["predict", run, rec, "--fs", FS, "--json", Path(run) / "model.json", "--force", "-q"], "inside", [run, rec])
    refused(["predict", run, rec, "--fs", FS, "--csv", Path(run) / "new.csv", "-q"], "inside", [run])
    assert not (Path(run) / "new.csv").exists()


def test_two_outputs_on_one_path_are_refused(run, rec, tmp_path):
    out = tmp_path / "out.txt"
    refused(["predict", run, rec, "--fs", FS, "--json", out, "--csv", out, "-q"], "name the same file", [rec])
    assert not out.exists()


def test_force_replaces_only_what_diag_wrote(run, rec, tmp_path):
    mine = tmp_path / "mine.json"
    mine.write_text("my notes")
    refused(["predict", run, rec, "--fs", FS, "--json", mine, "--force", "-q"], "diag did not write it", [mine, rec])
    out = tmp_path / "v.json"
    ok(["predict", run, rec, "--fs", FS, "--json", out, "-q"])
    assert json.loads(out.read_text())["files"] and out.name in json.loads((tmp_path / LEDGER).read_text())["files"]
    refused(["predict", run, rec, "--fs", FS, "--json", out, "-q"], "pass --force", [out])
    ok(["predict", run, rec, "--fs", FS, "--json", out, "--force", "-q"])  # diag's own file: replaced
    out.write_text("edited by hand")
    refused(["predict", run, rec, "--fs", FS, "--json", out, "--force", "-q"], "was changed since diag wrote it", [out])


def test_an_output_inside_a_recordings_folder_given_as_input_is_refused(run, rec, tmp_path):
    refused(["predict", run, tmp_path, "--fs", FS, "--csv", tmp_path / "scores.csv", "-q"], "inside", [tmp_path])


def test_a_second_hard_link_of_the_input_is_the_input(run, rec, tmp_path):
    link = tmp_path / "link.npy"
    os.link(rec, link)
    refused(["predict", run, rec, "--fs", FS, "--json", link, "--force", "-q"], "is the input", [rec])


def test_export_onnx_into_the_run_or_over_a_users_file_is_refused(run, tmp_path):
    refused(["export", run, "--onnx", Path(run) / "m.onnx"], "inside", [run])
    (tmp_path / "m.json").write_text("{}")
    refused(["export", run, "--onnx", tmp_path / "m.onnx", "--force"], "diag did not write it", [tmp_path])


def test_the_claim_rules_without_a_command(tmp_path):
    a = tmp_path / "a.json"
    with pytest.raises(DiagError, match="same file"):
        claim_output_files([("--json", a), ("--csv", tmp_path / "." / "a.json")])
    with pytest.raises(DiagError, match="keeps for itself"):
        claim_output_file(tmp_path / LEDGER)
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / ".diag-output").write_text(json.dumps({"kind": "train-run", "version": 1}))
    with pytest.raises(DiagError, match="inside"):
        claim_output_file(run_dir / "sub" / "x.csv")
    write_output_file(a, "{}")
    claim_output_file(a, force=True)  # diag's own, unchanged: may be replaced
    stale = tmp_path / ".a.json.tmp-999999999-x.tmp"
    stale.write_text("half")
    claim_output_file(a, force=True)
    assert not stale.exists()  # the leftover of a killed write (dead pid) is gone


# ================================================================================================
# 2. A labels.csv names only files under its own folder


def _labels(folder: Path, rows, header="path,label,fs"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "labels.csv").write_text(header + "\n" + "".join(",".join(r) + "\n" for r in rows), encoding="utf-8")
    return folder


def _prepare(data: Path, out: Path, *extra):
    return ["prepare", "--source", "files", "--data", data, "--out", out, "-q", *extra]


def test_a_labels_row_outside_the_manifests_folder_is_refused(tmp_path):
    (tmp_path / "outside").mkdir()
    np.save(tmp_path / "outside" / "secret.npy", np.ones(4096, np.float32))
    data = _labels(tmp_path / "data", [["../outside/secret.npy", "a", "1000"]])
    line = refused(_prepare(data, tmp_path / "o"), "outside the manifest's folder", [tmp_path])
    assert "line 2" in line
    absolute = _labels(tmp_path / "data2", [[str(tmp_path / "outside" / "secret.npy"), "a", "1000"]])
    refused(_prepare(absolute, tmp_path / "o"), "outside the manifest's folder", [tmp_path])
    assert not (tmp_path / "o").exists()


# ================================================================================================
# 3. Silent nonsense: read right or refused


def test_decimal_comma_csv_is_read_as_one_channel_by_both_readers(tmp_path):
    from diag.sources.files import csv_layout, read_files
    from diag.sources.stream import _CsvChunks

    x = tone("low", 0.5, seed=5).astype(np.float64)
    text = "accel\n" + "".join(f"{v:.6f}".replace(".", ",") + "\n" for v in x)
    folder = tmp_path / "low"
    folder.mkdir()
    (folder / "rec.csv").write_text(text)
    rec = read_files(folder / "rec.csv", label_from="folder", fs=FS)[0]
    assert rec.signal.shape == (1, len(x)) and np.allclose(rec.signal[0], x, atol=1e-6)
    streamed = _CsvChunks(folder / "rec.csv")
    assert streamed.names == ("accel",) and np.allclose(streamed.read(0, len(x))[0], x, atol=1e-6)
    # no header, ';' between channels, decimal commas in the cells
    semi = tmp_path / "semi.csv"
    semi.write_text("".join(f"{a:.4f};{b:.4f}\n".replace(".", ",") for a, b in zip(x, -x)))
    got = read_files(semi, label_from="folder", fs=FS)[0].signal
    assert got.shape == (2, len(x)) and np.allclose(got[1], -x, atol=1e-4)
    assert not csv_layout("1,2", ["3,4", "-5,6.5"]).decimal_comma  # a row that is no D,DDD pair: two channels
    assert csv_layout("0,5", ["0,05", "1,25"]).decimal_comma
    assert csv_layout("1,5e-3", ["2,5", "1,25"]).decimal_comma
    with pytest.raises(DiagError, match="add a header row"):
        csv_layout("1,2", ["3,4", "5,6"])  # one number each, or two integer channels: nothing tells


def test_a_headerless_csv_of_ambiguous_comma_pairs_is_refused_with_the_fix(run, tmp_path):
    d = tmp_path / "d" / "a"
    d.mkdir(parents=True)
    (d / "r.csv").write_text("".join(f"{k % 7},{25 * (k % 4) + 25}\n" for k in range(3000)))  # 1,25 2,50 ...
    line = refused(_prepare(tmp_path / "d", tmp_path / "o", "--set", "source.label_from=folder", "--set",
                            "source.fs=12000"), "add a header row", [tmp_path / "d"])
    assert "'0,25'" in line and "r.csv" in line
    refused(["predict", run, d / "r.csv", "--fs", FS, "-q"], "add a header row", [d])
    (d / "r.csv").write_text("accel\n" + (d / "r.csv").read_text())  # the fix the line gives: one channel
    from diag.sources.files import read_files

    assert read_files(d / "r.csv", label_from="folder", fs=FS)[0].signal.shape[0] == 1


def test_decimal_comma_csv_is_scored_as_one_channel_by_predict(run, tmp_path):
    x = tone("low", 1.0, seed=6)
    p = tmp_path / "dc.csv"
    p.write_text("".join(f"{v:.6f}".replace(".", ",") + "\n" for v in x))
    out = tmp_path / "dc.json"
    ok(["predict", run, p, "--fs", FS, "--json", out, "-q"])
    assert json.loads(out.read_text())["files"][0]["verdict"] == "low"


def test_a_duplicated_labels_column_is_refused(tmp_path):
    (tmp_path / "d").mkdir()
    np.save(tmp_path / "d" / "a.npy", np.ones(4096, np.float32))
    data = _labels(tmp_path / "d", [["a.npy", "x", "1000", "y"]], header="path,label,fs,label")
    refused(_prepare(data, tmp_path / "o"), "appear twice", [data])


@pytest.mark.parametrize("setting,expect", [
    ("windows.hop=true", "got the boolean true"),
    ("windows.length=1024,hop=0", "one setting per --set"),
    ("windows.fs=nan", "finite"),
    ("split.guard_windows=nan", "finite"),
    ("split.guard_windows=inf", "finite"),
    ("split.seed=1180591620717411303424", "must be in [0, 4294967295]"),
    ("transform.size=[100000,100000]", "needs 37.3 GiB"),
    ("transform.n_scales=10000000", "the CWT filter bank needs"),
    ("windows.band=[1,", "expected [low, high] in Hz"),
])
def test_prepare_settings_that_make_nonsense_are_refused(tmp_path, setting, expect):
    refused(["prepare", "--out", tmp_path / "o", "-q", "--set", setting], expect, [tmp_path])
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flag,expect", [
    (["--label-fraction", "0"], "--label-fraction 0: must be a fraction in (0, 1]"),
    (["--seed", "1180591620717411303424"], "train.seed: a random seed"),
    (["--lr", "inf"], "train.lr: must be a finite number"),
    (["--lr", "1e30"], "train.lr: a peak learning rate, must be in (0, 10]"),
    (["--set", "train.epochs=true"], "got the boolean true"),
])
def test_train_settings_that_make_nonsense_are_refused_before_training(tmp_path, flag, expect):
    data = tmp_path / "nodata"  # the settings are checked before the dataset is opened
    refused(["train", "--data", data, "--out", tmp_path / "o", "-q", *flag], expect, [tmp_path])
    assert not (tmp_path / "o").exists()


def test_a_binary_file_as_config_is_refused(tmp_path):
    cfg = tmp_path / "model.bin"
    cfg.write_bytes(bytes(range(256)) * 4)
    refused(["prepare", "--config", cfg, "--out", tmp_path / "o", "-q"], "not a TOML text file", [cfg])


def test_a_labels_cell_over_the_csv_limit_and_deep_meta_are_one_line(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    np.save(d / "a.npy", np.ones(4096, np.float32))
    big = '"{""k"": ""' + "x" * 200_000 + '""}"'
    _labels(d, [["a.npy", "x", "1000", big]], header="path,label,fs,meta")
    refused(_prepare(d, tmp_path / "o"), "field larger than field limit", [d])
    deep = "[" * 50_000 + "]" * 50_000  # 100 KB, under the csv limit, 50,000 levels deep
    _labels(d, [["a.npy", "x", "1000", deep]], header="path,label,fs,meta")
    refused(_prepare(d, tmp_path / "o"), "nested too deeply", [d])


def test_simulate_duration_that_cannot_fit_is_refused(tmp_path):
    refused(["simulate", "bearing", "--out", tmp_path / "s", "--set", "duration=1e9"], "s per recording fit",
            [tmp_path])
    assert not (tmp_path / "s").exists()


def test_a_mat_v73_declaring_more_than_memory_is_refused_before_reading(tmp_path, monkeypatch):
    h5py = pytest.importorskip("h5py")
    monkeypatch.setenv("DIAG_MEMORY_BYTES", str(1 << 30))
    folder = tmp_path / "x"
    folder.mkdir()
    p = folder / "big.mat"
    with h5py.File(p, "w", userblock_size=512) as f:
        f.create_dataset("vib", shape=(8 << 30,), dtype="f8", chunks=(1 << 16,))  # 64 GiB declared, nothing written
    head = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    with open(p, "r+b") as fh:
        fh.write(head.ljust(116, b" ") + b"\0" * 8 + b"\x00\x02" + b"IM")
    assert p.stat().st_size < 1 << 20
    from diag.sources.files import read_files

    with pytest.raises(DiagError, match=r"declares shape \(8589934592,\).*64.0 GiB"):
        read_files(p, label_from="folder", fs=1000.0)


# ================================================================================================
# 4. User text printed as it is written (never read as rich markup or emoji codes)

MARKUP = ["[/]", "[bold]", ":x:"]


@pytest.mark.parametrize("text", MARKUP)
def test_a_file_name_with_markup_is_printed_as_written(tmp_path, text):
    d = tmp_path / "d"
    d.mkdir()
    _labels(d, [[f"b/{text}rec.npy", "x", "1000"]])
    line = refused(_prepare(d, tmp_path / "o"), f"b/{text}rec.npy", [d])
    assert "❌" not in line


@pytest.mark.parametrize("text", MARKUP)
def test_a_csv_cell_with_markup_is_printed_as_written(tmp_path, text):
    d = tmp_path / "d"
    d.mkdir()
    (d / "r.csv").write_text("a\n0.1\n" + text + "\n0.3\n")
    _labels(d, [["r.csv", "x", "1000"]])
    refused(_prepare(d, tmp_path / "o"), f"'{text}' is not a number", [d])


@pytest.mark.parametrize("text", MARKUP)
def test_a_label_with_markup_is_printed_as_written(tmp_path, text):
    d = tmp_path / "d"
    d.mkdir()
    np.save(d / "a.npy", np.ones(4096, np.float32))
    _labels(d, [["a.npy", f"{text}IR", "1000"]])
    from diag.sources.files import read_files

    with pytest.raises(DiagError) as e:
        read_files(d, classes=["IR", "OR"])
    assert f"{text}IR" in str(e.value)
    refused(["prepare", "--source", "files", "--data", d, "--out", tmp_path / "o", "-q", "--set",
             "source.classes=['IR', 'OR']"], f"{text}IR", [d])


def test_a_config_table_and_a_bracketed_hint_are_printed_as_written(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[widnows]\nlength = 1024\n")
    line = refused(["prepare", "--config", cfg, "--out", tmp_path / "o", "-q"], "unknown table(s) [widnows]", [cfg])
    assert "[source], [windows], [split], [transform], [train], [pretrain]" in line
    refused(["prepare", "--out", tmp_path / "o", "-q", "--set", "windows.band=[1,"], "expected [low, high] in Hz",
            [tmp_path])


def test_labels_with_markup_reach_the_summary_table_as_written(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    rows = []
    for k, label in enumerate(["[/]", "[bold]b", ":x:"]):
        for r in range(2):
            name = f"{k}_{r}.npy"
            t = np.arange(4 * 2000) / 2000.0
            np.save(d / name, (np.sin(2 * np.pi * (100 + 150 * k) * t) + 0.1 * np.random.default_rng(r).standard_normal(
                len(t))).astype(np.float32))
            rows.append([name, f'"{label}"' if "," in label else label, "2000"])
    _labels(d, rows)
    r = runner.invoke(app, ["prepare", "--source", "files", "--data", str(d), "--out", str(tmp_path / "o"),
                            "--set", "windows.fs=2000", "--set", "windows.length=256", "--set", "windows.hop=256",
                            "--set", "transform.size=[16,16]", "--set", "transform.n_scales=16",
                            "--set", "transform.fmin=20"])
    assert r.exit_code == 0, (r.output, r.exception)
    assert "Traceback" not in r.output and "❌" not in r.output
    for label in ("[/]", "[bold]b", ":x:"):
        assert label in r.output, r.output


# ================================================================================================
# 5. Options that were silently ignored, and labels that would be misread


def test_compare_with_a_repeated_seed_is_refused_before_training(tmp_path):
    refused(["compare", "--data", tmp_path / "nodata", "--out", tmp_path / "o", "--seeds", "0,0", "-q"],
            "a seed is listed twice", [tmp_path])
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("label,expect", [("unknown", "the verdict diag predict gives"),
                                          ('"a\nb"', "line break")])
def test_a_class_named_unknown_or_holding_a_line_break_is_refused(tmp_path, label, expect):
    d = tmp_path / "d"
    d.mkdir()
    np.save(d / "a.npy", np.ones(4096, np.float32))
    _labels(d, [["a.npy", label, "1000"]])
    refused(_prepare(d, tmp_path / "o"), expect, [d])


def test_predict_on_a_device_or_a_pipe_is_refused_not_read(run, tmp_path):
    refused(["predict", run, "/dev/zero", "--fs", FS, "-q"], "/dev/zero: not a regular file", [])
    os.mkfifo(tmp_path / "p.csv")  # opening a pipe with no writer would wait for ever
    refused(["predict", run, tmp_path / "p.csv", "--fs", FS, "-q"], "p.csv: not a regular file", [])
    refused(["predict", run, tmp_path, "--fs", FS, "-q"], "p.csv: not a regular file", [])


def test_ref_hz_on_a_cwt_run_and_key_on_npy_are_refused(run, rec):
    refused(["predict", run, rec, "--fs", FS, "--ref-hz", "30", "-q"], "use no reference rate", [rec])
    refused(["predict", run, rec, "--fs", FS, "--rpm", "1800", "-q"], "use no reference rate", [rec])
    refused(["predict", run, rec, "--fs", FS, "--key", "x", "-q"], "no .npz file is given", [rec])


def test_plots_inside_the_run_folder_are_refused(run, rec):
    refused(["predict", run, rec, "--fs", FS, "--plot", Path(run) / "plots", "-q"], "inside", [run])
    assert not (Path(run) / "plots").exists()


def test_a_folder_or_a_pipe_listed_in_labels_is_named_for_what_it_is(tmp_path):
    d = tmp_path / "d"
    (d / "sub.npy").mkdir(parents=True)
    _labels(d, [["sub.npy", "x", "1000"]])
    refused(_prepare(d, tmp_path / "o"), "is a folder", [d])
    os.mkfifo(d / "pipe.npy")
    _labels(d, [["pipe.npy", "x", "1000"]])
    refused(_prepare(d, tmp_path / "o"), "not a regular file", [d / "labels.csv"])


def test_a_link_to_a_device_or_a_pipe_in_a_label_folder_is_named_for_what_it_is(tmp_path):
    d = tmp_path / "d" / "a"
    d.mkdir(parents=True)
    os.symlink("/dev/zero", d / "z.npy")
    args = _prepare(tmp_path / "d", tmp_path / "o", "--set", "source.label_from=folder", "--set", "source.fs=1000")
    refused(args, "symbolic link to /dev/zero, which is not a regular file", [tmp_path / "d"])
    (d / "z.npy").unlink()
    os.mkfifo(d / "p.csv")
    refused(args, "p.csv: not a regular file (a device, a pipe or a socket)", [])
    for data in ("/dev/zero", d / "p.csv"):  # given as --data itself
        refused(_prepare(data, tmp_path / "o"), "not a regular file or a folder", [])
    assert not (tmp_path / "o").exists()


def test_a_refused_link_to_a_text_file_never_quotes_it(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("user:x:1000:1000:the secret line:/home/user:/bin/sh\nroot:pw-in-clear:0:0::/root:/bin/sh\n")
    d = _labels(tmp_path / "d", [["x.csv", "a", "1000"]])
    os.symlink(secret, d / "x.csv")
    line = refused(_prepare(d, tmp_path / "o"), "not a CSV recording", [secret, d])
    assert "secret" not in line.replace(str(tmp_path), "") and "pw-in-clear" not in line
    os.symlink(secret, d / "x.npy")  # numpy's own errors quote the first bytes
    _labels(d, [["x.npy", "a", "1000"]])
    line = refused(_prepare(d, tmp_path / "o"), "not an .npy file", [secret, d])
    assert "user" not in line.replace(str(tmp_path), "")
    from diag.sources.stream import open_signal

    with pytest.raises(DiagError, match="not an .npy file") as e:
        open_signal(d / "x.npy", fs=1000.0)
    assert "user" not in str(e.value).replace(str(tmp_path), "")
    (d / "x.npy").unlink()
    _labels(d, [["x.csv", "a", "1000"]])
    (d / "x.csv").unlink()
    (d / "x.csv").write_text("a\n0.1\n0.2\n" + "x" * 40 + "\n")  # a long bad cell further down: its length only
    line = refused(_prepare(d, tmp_path / "o"), "a cell of 40 characters is not a number", [d])
    assert "xxxx" not in line


def test_a_label_folder_named_unknown_is_refused(tmp_path):
    for name in ("unknown", "a"):
        (tmp_path / "d" / name).mkdir(parents=True)
        np.save(tmp_path / "d" / name / "x.npy", np.random.default_rng(1).standard_normal(4096).astype(np.float32))
    refused(_prepare(tmp_path / "d", tmp_path / "o", "--set", "source.label_from=folder", "--set", "source.fs=1000"),
            "label 'unknown' is the verdict diag predict gives", [tmp_path / "d"])
    assert not (tmp_path / "o").exists()


def test_a_run_without_test_metrics_is_scored_with_a_note(run, rec, tmp_path):
    import shutil

    unfinished = tmp_path / "run"
    shutil.copytree(run, unfinished)
    (unfinished / "test_metrics.json").unlink()
    out = ok(["predict", unfinished, rec, "--fs", FS])
    assert "no test_metrics.json" in " ".join(out.split()), out
    assert "no test_metrics.json" not in " ".join(ok(["predict", run, rec, "--fs", FS]).split())


@pytest.mark.parametrize("name,write", [
    ("one.csv", lambda p: p.write_text("a\n0.5\n")),
    ("empty.npy", lambda p: np.save(p, np.zeros(0, np.float32))),
])
def test_a_recording_of_zero_or_one_sample_is_named_for_what_it_is(tmp_path, name, write):
    d = tmp_path / "d"
    d.mkdir()
    write(d / name)
    _labels(d, [[name, "x", "1000"]])
    refused(_prepare(d, tmp_path / "o"), "sample(s) per channel, too few", [d])


def test_report_never_replaces_a_users_file_in_the_runs_folder(run, tmp_path):
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(run, runs / "scratch-all-s0")
    (runs / "report.md").write_text("my own report")
    refused(["report", runs], "diag did not write it", [runs / "report.md"])
    (runs / "report.md").unlink()
    ok(["report", runs])  # diag's own report files: written, then replaced on the next report
    ok(["report", runs])
    assert "report.md" in json.loads((runs / LEDGER).read_text())["files"]


def test_a_one_column_csv_whose_header_holds_a_space_is_one_channel(tmp_path):
    from diag.sources.files import read_files

    (tmp_path / "x").mkdir()
    p = tmp_path / "x" / "accel.csv"
    p.write_text("Accel X\n" + "".join(f"{v:.5f}\n" for v in tone("low", 0.2, seed=7)))
    rec = read_files(p, label_from="folder", fs=FS)[0]
    assert rec.channels == ("Accel X",) and rec.signal.shape[0] == 1


def test_a_truncated_unknown_statistics_file_is_one_line(run, rec, tmp_path):
    import shutil

    damaged = tmp_path / "run"
    shutil.copytree(run, damaged)
    stats = damaged / "unknown.safetensors"
    if not stats.is_file():
        pytest.skip("this run's unknown method keeps no fitted statistics")
    stats.write_bytes(stats.read_bytes()[: stats.stat().st_size // 2])
    refused(["predict", damaged, rec, "--fs", FS, "-q"], "unknown.safetensors: damaged", [damaged, rec])
