"""diag compare / report: runs over starts, seeds and budgets; tables and plot; reuse of finished runs."""

import csv
import json

import pytest
from typer.testing import CliRunner

from diag.cli import app
from diag.compare import compare, report
from diag.errors import DiagError
from diag.storage import write_marker
from helpers import make_toy_dataset

FAST = ["train.epochs=2", "train.batch_size=16", "train.warmup=0"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy") / "ds", n_train=24, n_val=8, n_test=8, classes=3, size=32)


def test_compare_trains_every_combination_and_reports(toy, tmp_path, monkeypatch):
    monkeypatch.delenv("DIAG_IMAGENET_WEIGHTS", raising=False)
    out = tmp_path / "cmp"
    res = compare(toy, out, inits=["scratch", "imagenet"], seeds=[0, 1], budgets=[2, 0], overrides=FAST, quiet=True)
    runs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert runs == ["scratch-2pc-s0", "scratch-2pc-s1", "scratch-all-s0", "scratch-all-s1"]
    # Offline with no ImageNet file: the start is skipped with its reason, the others ran.
    assert "imagenet" in res["skipped"] and "weights" in res["skipped"]["imagenet"]
    summary = list(csv.DictReader(open(out / "summary.csv")))
    assert [(r["init"], r["budget"], r["seeds"]) for r in summary] == [("scratch", "2pc", "2"), ("scratch", "all", "2")]
    assert summary[0]["labeled"] == "6"  # 2 per class x 3 classes
    md = (out / "summary.md").read_text()
    assert "**test** macro-F1" in md and "skipped" in md
    assert (out / "comparison.png").stat().st_size > 10_000
    # Each run's numbers are its own test_metrics.json, not recomputed or invented.
    rows = {r["run"]: r for r in csv.DictReader(open(out / "runs.csv"))}
    tm = json.loads((out / "scratch-all-s1" / "test_metrics.json").read_text())
    assert float(rows["scratch-all-s1"]["test_accuracy"]) == pytest.approx(tm["accuracy"], abs=1e-4)

    # A second call reuses finished runs (no retraining: files untouched).
    stamp = (out / "scratch-all-s0" / "model.safetensors").stat().st_mtime_ns
    compare(toy, out, inits=["scratch"], seeds=[0], budgets=[0], overrides=FAST, quiet=True)
    assert (out / "scratch-all-s0" / "model.safetensors").stat().st_mtime_ns == stamp
    # ... but only with the settings and data it was made with; never silently mixed.
    with pytest.raises(DiagError, match=r"scratch-all-s0: an earlier run there used other settings \(epochs, lr\)"):
        compare(toy, out, inits=["scratch"], seeds=[0], budgets=[0], overrides=FAST + ["train.epochs=3", "train.lr=0.1"],
                quiet=True)
    other = make_toy_dataset(tmp_path / "other", n_train=24, n_val=8, n_test=8, classes=3, size=32, seed=9)
    with pytest.raises(DiagError, match=r"other settings \(the prepared dataset\)"):
        compare(other, out, inits=["scratch"], seeds=[0], budgets=[0], overrides=FAST, quiet=True)
    compare(toy, out, inits=["scratch"], seeds=[0], budgets=[0], overrides=FAST + ["train.num_workers=1"], quiet=True)
    assert (out / "scratch-all-s0" / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not retrained


def test_compare_restarts_a_run_that_died_in_its_first_epoch(toy, tmp_path):
    out = tmp_path / "cmp"
    dead = out / "scratch-all-s0"
    dead.mkdir(parents=True)
    write_marker(dead, "train-run")  # what a crash before the first checkpoint leaves
    (dead / "config.json").write_text("{}")
    compare(toy, out, inits=["scratch"], seeds=[0], budgets=[0], overrides=FAST, quiet=True)
    assert (dead / "test_metrics.json").is_file()


def test_compare_refuses_settings_it_owns_and_ssl_without_weights(toy, tmp_path):
    with pytest.raises(DiagError, match="compare sets train.seed itself"):
        compare(toy, tmp_path / "x", inits=["scratch"], seeds=[0], overrides=["train.seed=3"], quiet=True)
    with pytest.raises(DiagError, match="--ssl-weights"):
        compare(toy, tmp_path / "x", inits=["ssl"], seeds=[0], quiet=True)


def test_report_cli_on_an_empty_folder(tmp_path):
    res = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "no finished runs" in res.output
    with pytest.raises(DiagError, match="no such folder"):
        report(tmp_path / "missing")


def test_compare_notices_changed_starting_weights(toy, tmp_path):
    from safetensors.torch import load_file, save_file

    from diag.pretrain import PretrainConfig, pretrain

    ssl = tmp_path / "ssl"
    pretrain(toy, ssl, PretrainConfig(epochs=1, batch_size=16, knn_every=1, knn_k=3), quiet=True)
    out = tmp_path / "cmp"
    compare(toy, out, inits=["ssl"], seeds=[0], ssl_weights=str(ssl), overrides=FAST, quiet=True)
    start = json.loads((out / "ssl-all-s0" / "model.json").read_text())["start"]
    assert len(start["weights_sha256"]) == 64
    stamp = (out / "ssl-all-s0" / "model.safetensors").stat().st_mtime_ns
    compare(toy, out, inits=["ssl"], seeds=[0], ssl_weights=str(ssl), overrides=FAST, quiet=True)
    assert (out / "ssl-all-s0" / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not retrained
    w = load_file(str(ssl / "backbone.safetensors"))
    save_file({k: v + 0.01 if v.is_floating_point() else v for k, v in w.items()}, str(ssl / "backbone.safetensors"))
    with pytest.raises(DiagError, match="the starting weights in .*backbone.safetensors \\(changed since\\)"):
        compare(toy, out, inits=["ssl"], seeds=[0], ssl_weights=str(ssl), overrides=FAST, quiet=True)
