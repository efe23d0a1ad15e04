"""The fourth start, ImageNet then SSL on the user's own signals (``imagenet+ssl``): one set of names
(diag.study.names), ``diag compare`` trains it from its own pretraining folder, and the report tells it
from the SSL start by the pretrain.json beside the weights, never by a folder name."""

import json

import pytest
from typer.testing import CliRunner

import diag.learning.train as dt
from diag.cli import app
from diag.errors import DiagError
from diag.learning.train import load_train_config
from diag.study.compare import compare
from diag.study.names import INIT_ORDER, train_init
from diag.study.report import answer_paragraph
from diag.study.runs import collect_runs, summarise
from diag.study.stats import compare_starts
from helpers import make_toy_dataset

FAST = ["train.epochs=1", "train.batch_size=16"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy") / "ds", n_train=12, n_val=6, n_test=6, classes=3, size=32)


def pretrain_folder(path, init, model=None, meta=True):
    path.mkdir(parents=True)
    (path / "backbone.safetensors").write_bytes(b"x")
    if meta:
        (path / "pretrain.json").write_text(json.dumps({"format": "diag-ssl/2", "init": init,
                                                        "model": model or load_train_config(None, FAST).model}))
    return path


def test_the_names_of_the_starts_have_one_home():
    import ast
    from pathlib import Path

    assert INIT_ORDER == ("imagenet", "imagenet+ssl", "ssl", "scratch")
    assert [train_init(s) for s in INIT_ORDER] == ["imagenet", "ssl", "ssl", "scratch"]
    shared = {"INIT_ORDER", "INIT_LABEL", "COMPARE_RECORD", "SSL_STARTS", "budget_name", "budget_words", "run_dir"}
    pkg = Path(__file__).resolve().parents[1] / "diag"
    for path in pkg.rglob("*.py"):  # defined in diag/study/names.py only; everyone else imports them
        if path == pkg / "study" / "names.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}  # module level
        defined |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
        assert not defined & shared, (path, defined & shared)


def test_compare_trains_the_fourth_start_from_its_own_pretraining(toy, tmp_path, monkeypatch):
    ssl = pretrain_folder(tmp_path / "ssl", "scratch")
    both = pretrain_folder(tmp_path / "inssl", "imagenet")
    seen = {}

    def record(data, rd, cfg, resume=False, force=False, quiet=True, track=None):
        seen[rd.name] = (cfg.init, cfg.weights)
        return {"selected_epoch": 1, "val": {"val_macro_f1": 0.5}, "test": {"macro_f1": 0.5}}

    monkeypatch.setattr(dt, "train", record)
    compare(toy, tmp_path / "out", inits=["imagenet+ssl", "ssl", "scratch"], seeds=[0], budgets=[0], warmups=[0],
            ssl_weights=str(ssl), imagenet_ssl_weights=str(both), overrides=FAST, quiet=True, jobs=1)
    assert seen == {"imagenet+ssl-all-none-w0-s0": ("ssl", str(both)), "ssl-all-none-w0-s0": ("ssl", str(ssl)),
                    "scratch-all-none-w0-s0": ("scratch", "")}


def test_compare_refuses_a_pretraining_passed_as_the_other_start(toy, tmp_path):
    ssl = pretrain_folder(tmp_path / "ssl", "scratch")
    both = pretrain_folder(tmp_path / "inssl", "imagenet")
    bare = pretrain_folder(tmp_path / "bare", "imagenet", meta=False)
    with pytest.raises(DiagError, match="needs --imagenet-ssl-weights DIR"):
        compare(toy, tmp_path / "o1", inits=["imagenet+ssl"], seeds=[0], overrides=FAST, quiet=True)
    with pytest.raises(DiagError, match=r"--ssl-weights .*inssl: its pretraining began from imagenet .*pass it as "
                                        r"--imagenet-ssl-weights"):
        compare(toy, tmp_path / "o2", inits=["ssl"], seeds=[0], ssl_weights=str(both), overrides=FAST, quiet=True)
    with pytest.raises(DiagError, match=r"--imagenet-ssl-weights .*ssl: its pretraining began from scratch"):
        compare(toy, tmp_path / "o3", inits=["imagenet+ssl"], seeds=[0], imagenet_ssl_weights=str(ssl),
                overrides=FAST, quiet=True)
    with pytest.raises(DiagError, match="no pretrain.json beside the weights"):
        compare(toy, tmp_path / "o4", inits=["imagenet+ssl"], seeds=[0], imagenet_ssl_weights=str(bare),
                overrides=FAST, quiet=True)
    assert not (tmp_path / "o2").exists()  # refused before anything was written


def test_the_cli_passes_the_fourth_starts_weights(tmp_path, monkeypatch):
    import diag.study.compare as c
    import diag.study.report as r

    got = {}
    monkeypatch.setattr(c, "compare", lambda data, out, **kw: got.update(kw) or {"out": out})
    monkeypatch.setattr(r, "write_report", lambda out, quiet=False: None)
    res = CliRunner().invoke(app, ["compare", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                                   "--inits", "imagenet+ssl,scratch", "--imagenet-ssl-weights", "W"])
    assert res.exit_code == 0, res.output
    assert got["inits"] == ["imagenet+ssl", "scratch"] and got["imagenet_ssl_weights"] == "W"


def test_the_report_tells_the_fourth_start_by_its_pretraining(tmp_path):
    from test_report import fake_run

    both = pretrain_folder(tmp_path / "inssl", "imagenet") / "backbone.safetensors"
    ssl = pretrain_folder(tmp_path / "ssl", "scratch") / "backbone.safetensors"
    for s in range(3):  # the run records say init "ssl" for both: diag train fine-tunes either the same way
        fake_run(tmp_path / "runs", f"a-s{s}", "ssl", s, [0.90, 0.91, 0.92][s], weights=both)
        fake_run(tmp_path / "runs", f"b-s{s}", "ssl", s, [0.70, 0.72, 0.71][s], weights=ssl)
        fake_run(tmp_path / "runs", f"c-s{s}", "scratch", s, [0.60, 0.61, 0.62][s])
    rows = collect_runs(tmp_path / "runs")
    assert [s["init"] for s in summarise(rows)] == ["imagenet+ssl", "ssl", "scratch"]
    st = {(s["a"], s["b"]): s for s in compare_starts(rows)}
    assert set(st) == {("imagenet+ssl", "scratch"), ("ssl", "scratch"), ("imagenet+ssl", "ssl")}
    assert st[("imagenet+ssl", "ssl")]["verdict"].startswith("better by 0.200")
    text = answer_paragraph(rows, compare_starts(rows), {"name": "toy"})
    assert "ImageNet+SSL vs scratch: better by 0.300" in text and "ImageNet+SSL helped measurably with all labels" in text


def test_study_script_refuses_an_ablated_start_it_does_not_compare_before_any_work(tmp_path):
    import os
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "STARTS": "imagenet,scratch", "ABLATE_STARTS": "imagenet,ssl", "OUT": str(tmp_path / "out")}
    r = subprocess.run(["bash", str(root / "scripts" / "study.sh"), "itsc"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and r.stdout == "" and not (tmp_path / "out").exists()
    assert r.stderr.strip() == "ABLATE_STARTS: 'ssl' is not among STARTS (imagenet,scratch); add it to STARTS"
