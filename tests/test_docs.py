"""The documentation: every command has a page, the README stays a front door whose links resolve, the
results tables are what their committed records say, and ``mkdocs build --strict`` passes."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts" / "dev"))
import results_tables  # noqa: E402



def fake_run(root: Path, name: str, init: str, seed: int, f1: float, freeze: str = "none",
             warmup: float = 0.1) -> Path:
    """A finished run as diag train leaves it: only the JSON the records keep."""
    rd = root / name
    rd.mkdir(parents=True)
    train = {"model": "tf_efficientnet_lite0", "init": init, "seed": seed, "labels_per_class": 0, "freeze": freeze,
             "warmup": warmup, "epochs": 3}
    (rd / "model.json").write_text(json.dumps({
        "model": "tf_efficientnet_lite0", "classes": ["a", "b"], "train": train,
        "dataset": {"path": "/nonexistent/ds", "fingerprint": "fp"},
        "selected": {"epoch": 2, "val_macro_f1": f1 - 0.01, "val_accuracy": f1 - 0.01}, "labeled": {"n": 8}}))
    (rd / "test_metrics.json").write_text(json.dumps({"split": "test", "accuracy": f1, "macro_f1": f1, "n": 8,
                                                      "confusion": [[4, 0], [0, 4]]}))
    (rd / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e, "step": 5 * e}) + "\n" for e in (1, 2, 3)))
    (rd / "model.safetensors").write_bytes(b"weights are never recorded")
    return rd


def _commands() -> list[str]:
    import typer

    from diag.cli import app

    return list(typer.main.get_command(app).commands)


def test_every_command_has_a_page_with_its_generated_options_and_a_place_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for name in _commands():
        page = ROOT / "docs" / "commands" / f"{name}.md"
        assert page.is_file(), f"diag {name} has no page docs/commands/{name}.md"
        assert f"<!-- diag-options: {name} -->" in page.read_text(encoding="utf-8"), f"{page}: no options marker"
        assert f"commands/{name}.md" in nav, f"mkdocs.yml's nav does not list commands/{name}.md"


def test_the_option_table_is_read_from_the_app():
    import docs_hooks

    table = docs_hooks.options_markdown("prepare")
    assert "`--allow-leaky`" in table and "diag prepare [OPTIONS]" in table
    assert "\\|" in table  # the split methods' '|' is escaped, not a column break
    with pytest.raises(docs_hooks.DocsError, match="no command 'nosuch'"):
        docs_hooks.options_markdown("nosuch")


def test_readme_is_a_front_door_and_its_relative_links_resolve():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    assert "bash scripts/demo.sh" in text and "bash scripts/test.sh" in text and "pip install -e ." in text
    assert "<!-- results:answer:begin -->" in text
    links = [t for t in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text) if "://" not in t]
    assert links
    for target in links:
        assert (ROOT / target).exists(), f"README links to {target}, which does not exist"


def test_committed_results_tables_match_their_records():
    stale = results_tables.outdated()
    assert not stale, (f"{', '.join(str(p.relative_to(ROOT)) for p in stale)}: a results table differs from "
                       "docs/results; run python scripts/dev/results_tables.py write")


def test_check_fails_when_a_committed_table_is_edited(tmp_path, monkeypatch):
    cmp = tmp_path / "cmp"
    for seed, (a, b) in enumerate([(0.81, 0.62), (0.77, 0.64)]):
        fake_run(cmp, f"imagenet-s{seed}", "imagenet", seed, a)
        fake_run(cmp, f"scratch-s{seed}", "scratch", seed, b)
    monkeypatch.setattr(results_tables, "RESULTS", tmp_path / "results")
    results_tables.record("toy", cmp, title="toy", command="diag compare")
    page = tmp_path / "README.md"
    page.write_text("<!-- results:answer:begin -->\n<!-- results:answer:end -->\n"
                    "<!-- results:toy:begin -->\n<!-- results:toy:end -->\n", encoding="utf-8")
    monkeypatch.setattr(results_tables, "pages", lambda: [page])
    assert results_tables.main(["write"]) == 0 and results_tables.main(["check"]) == 0
    text = page.read_text(encoding="utf-8")
    for block in ("answer", "toy"):  # one digit changed in either table is caught
        number = re.compile(r"\d\.\d{3}").search(text, text.index(f"<!-- results:{block}:begin -->"))
        page.write_text(text[: number.start()] + ("0.000" if number.group() != "0.000" else "0.001")
                        + text[number.end():], encoding="utf-8")
        assert results_tables.main(["check"]) == 1
    page.write_text(text, encoding="utf-8")
    assert results_tables.main(["check"]) == 0


def test_record_then_write_gives_the_runs_means_and_paired_intervals(tmp_path, monkeypatch):
    cmp = tmp_path / "cmp"
    f1 = {"imagenet": [0.80, 0.84, 0.90], "ssl": [0.70, 0.66, 0.72], "scratch": [0.60, 0.58, 0.65]}
    for init, vals in f1.items():
        for seed, v in enumerate(vals):
            fake_run(cmp, f"{init}-s{seed}", init, seed, v)
    monkeypatch.setattr(results_tables, "RESULTS", tmp_path / "results")
    rec = results_tables.record("toy", cmp, title="toy study", command="diag compare --out cmp", note="test")
    meta = json.loads((rec / "record.json").read_text())
    assert meta["command"] == "diag compare --out cmp" and meta["runs"] == 9 and meta["machine"]["cores"]
    assert not list(rec.rglob("*.safetensors"))

    tables = results_tables.study_tables("toy")
    for init, vals in f1.items():
        assert f"{np.mean(vals):.3f} ± {np.std(vals, ddof=1):.3f}" in tables
    d = np.subtract(f1["imagenet"], f1["scratch"])
    assert f"{d.mean():+.3f} [" in tables and "diag compare --out cmp" in tables

    page = tmp_path / "page.md"
    page.write_text("x\n<!-- results:answer:begin -->\nold\n<!-- results:answer:end -->\ny\n", encoding="utf-8")
    monkeypatch.setattr(results_tables, "pages", lambda: [page])
    assert results_tables.main(["check"]) == 1
    assert results_tables.main(["write"]) == 0
    assert results_tables.main(["check"]) == 0
    written = page.read_text()
    assert "old" not in written and f"{np.mean(f1['ssl']):.3f}" in written and written.endswith("y\n")


def test_a_study_with_ablations_gets_their_paired_table_and_one_without_none(tmp_path, monkeypatch):
    cmp = tmp_path / "cmp"
    main = {"imagenet": [0.80, 0.84, 0.90], "scratch": [0.60, 0.58, 0.65]}
    for init, vals in main.items():
        for seed, v in enumerate(vals):
            fake_run(cmp, f"{init}-s{seed}", init, seed, v)
    frozen = [0.50, 0.57, 0.52]
    for seed, v in enumerate(frozen):
        fake_run(cmp, f"imagenet-backbone-s{seed}", "imagenet", seed, v, freeze="backbone")
    monkeypatch.setattr(results_tables, "RESULTS", tmp_path / "results")
    results_tables.record("toy", cmp, title="toy", command="diag compare")
    tables = results_tables.study_tables("toy")
    row = next(line for line in tables.splitlines() if "freeze backbone" in line)
    d = np.subtract(frozen, main["imagenet"])
    assert "9 runs." in tables  # the ablation's runs are counted with the main setting's
    assert "(main: freeze none)" in row and f"{np.mean(frozen):.3f} ± {np.std(frozen, ddof=1):.3f}" in row
    assert f"**{d.mean():+.3f} [" in row and "worse by" in row  # every seed lost 0.3: the interval excludes 0
    # the main table keeps the main setting only: the frozen runs are not averaged into ImageNet's row
    assert f"{np.mean(main['imagenet']):.3f} ± {np.std(main['imagenet'], ddof=1):.3f}" in tables
    for seed in range(3):
        shutil.rmtree(cmp / f"imagenet-backbone-s{seed}")
    results_tables.record("toy", cmp, title="toy", command="diag compare")
    assert "setting" not in results_tables.study_tables("toy")
    assert "[toy](" in results_tables.answer_table()
    for seed in range(3):  # one start left: its page keeps its table, the answer across studies leaves it out
        shutil.rmtree(cmp / f"scratch-s{seed}")
    results_tables.record("toy", cmp, title="toy", command="diag compare")
    one = results_tables.study_tables("toy")
    assert "0.847" in one and "paired difference" not in one and "[toy](" not in results_tables.answer_table()


def test_a_marker_without_a_record_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(results_tables, "RESULTS", tmp_path / "results")
    page = tmp_path / "page.md"
    page.write_text("<!-- results:nosuch:begin -->\n<!-- results:nosuch:end -->\n", encoding="utf-8")
    monkeypatch.setattr(results_tables, "pages", lambda: [page])
    assert results_tables.main(["check"]) == 2
    assert "docs/results/nosuch/record.json" in capsys.readouterr().err


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
    missing = [m for m in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")
               if importlib.util.find_spec(m.split(".")[0]) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: pip install -e '.[docs]'")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert (tmp_path / "site" / "commands" / "predict" / "index.html").is_file()


def test_a_record_keeps_how_each_ssl_start_was_pretrained(tmp_path, monkeypatch):
    """ImageNet+SSL and SSL runs both say init "ssl" in model.json; which is which comes from the pretraining
    record, which the study record must carry: a clean clone has no pretraining folders."""
    import shutil

    from diag.study.runs import collect_runs

    cmp = tmp_path / "cmp"
    for name, init in (("inssl", "imagenet"), ("ssl", "scratch")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "pretrain.json").write_text(json.dumps({"format": "diag-ssl/2", "init": init}))
    for seed in range(2):
        for name, f1 in (("inssl", 0.9), ("ssl", 0.7), ("scratch", 0.6)):
            rd = fake_run(cmp, f"{name}-s{seed}", "scratch" if name == "scratch" else "ssl", seed, f1 + seed / 100)
            if name != "scratch":
                m = json.loads((rd / "model.json").read_text())
                m["train"]["weights"] = str(tmp_path / name)
                (rd / "model.json").write_text(json.dumps(m))
    monkeypatch.setattr(results_tables, "RESULTS", tmp_path / "results")
    rec = results_tables.record("toy", cmp, title="toy", command="diag compare")
    shutil.rmtree(tmp_path / "inssl"), shutil.rmtree(tmp_path / "ssl"), shutil.rmtree(cmp)
    assert sorted({r["init"] for r in collect_runs(rec / "runs")}) == ["imagenet+ssl", "scratch", "ssl"]
    table = results_tables.answer_table()
    assert "ImageNet+SSL − scratch" in table.splitlines()[0] and "+0.300 [" in table


def test_recording_an_ssl_run_whose_pretraining_is_gone_is_refused(tmp_path, monkeypatch):
    rd = fake_run(tmp_path / "cmp", "ssl-s0", "ssl", 0, 0.7)
    m = json.loads((rd / "model.json").read_text())
    m["train"]["weights"] = str(tmp_path / "gone")
    (rd / "model.json").write_text(json.dumps(m))
    monkeypatch.setattr(results_tables, "RESULTS", tmp_path / "results")
    with pytest.raises(results_tables.RecordError, match="pretraining record"):
        results_tables.record("toy", tmp_path / "cmp", title="toy", command="diag compare")
    assert not (tmp_path / "results" / "toy").exists()


def test_a_difference_against_a_failed_pretraining_is_no_verdict_in_the_tables(tmp_path, monkeypatch):
    """SSL measurably worse than scratch, but its pretraining's probe fell: the tables keep the numbers and
    say so, as the report does, instead of a bold interval that reads as evidence against SSL."""
    cmp = tmp_path / "cmp"
    (tmp_path / "ssl").mkdir()
    probe = {"kind": "knn", "metric": "accuracy", "curve": [0.6, 0.5], "initial": 0.6, "best": 0.6, "last": 0.5,
             "best_epoch": 0, "learned": False}
    (tmp_path / "ssl" / "pretrain.json").write_text(json.dumps({"format": "diag-ssl/2", "init": "scratch",
                                                                "method": "simclr", "probe": probe}))
    for seed in range(3):
        for name, f1 in (("ssl", 0.5), ("scratch", 0.8)):
            rd = fake_run(cmp, f"{name}-s{seed}", name, seed, f1 + seed / 100)
            if name == "ssl":
                m = json.loads((rd / "model.json").read_text())
                m["train"]["weights"] = str(tmp_path / "ssl")
                (rd / "model.json").write_text(json.dumps(m))
    monkeypatch.setattr(results_tables, "RESULTS", tmp_path / "results")
    results_tables.record("toy", cmp, title="toy", command="diag compare")
    row = next(line for line in results_tables.answer_table().splitlines() if line.startswith("| [toy]"))
    assert "-0.300 [" in row and "**" not in row and "SSL pretraining failed: no verdict" in row
    pair = next(line for line in results_tables.study_tables("toy").splitlines() if line.startswith("| SSL − scratch"))
    assert "**" not in pair and "no verdict on SSL" in pair and "worse by" not in pair
