"""diag report: paired statistics over seeds (known difference / none), and report.html + report.md contents."""

import base64
import csv
import io
import json
import math
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from scipy import stats as sps

from diag.errors import DiagError
from diag.study.report import answer_paragraph, write_report
from diag.study.runs import collect_runs, pretraining_by_start, training_budget
from diag.study.stats import (compare_settings, compare_starts, detectable, paired_difference, power_of, seeds_needed,
                              verdict)
from helpers import make_toy_dataset

CLASSES = ["class0", "class1", "class2"]


def fake_run(root, name, init, seed, f1, budget=0, freeze="none", warmup=0.1, acc=None, val=None, dataset=None,
             epochs=3, weights=None):
    """A finished run as diag train leaves it (only the files the report reads)."""
    rd = root / name
    rd.mkdir(parents=True)
    acc = f1 if acc is None else acc
    val = f1 - 0.01 if val is None else val
    n = 12
    correct = round(acc * n)
    confusion = [[4, 0, 0], [0, 4, 0], [0, 0, 4]]
    confusion[0][0] -= n - correct
    confusion[0][1] += n - correct
    train = {"model": "tf_efficientnet_lite0", "init": init, "seed": seed, "labels_per_class": budget, "freeze": freeze,
             "warmup": warmup, "epochs": epochs, "lr": 0.002, "batch_size": 16}
    (rd / "model.json").write_text(json.dumps({
        "model": "tf_efficientnet_lite0", "classes": CLASSES, "train": train,
        "dataset": {"path": str(dataset) if dataset else "/nonexistent/ds", "fingerprint": "fp"},
        "selected": {"epoch": 2, "val_macro_f1": val, "val_accuracy": val},
        "labeled": {"n": 3 * budget if budget else 72, "of": 72},
        "start": {"weights": str(weights or f"/w/{init}.pth"), "weights_sha256": "ab" * 32} if init != "scratch" else {},
        "versions": {"python": "3.11", "torch": "x"}, "runtime": {"device": "cpu"}}))
    (rd / "test_metrics.json").write_text(json.dumps({"split": "test", "accuracy": acc, "macro_f1": f1, "n": n,
                                                      "confusion": confusion}))
    hist = [{"epoch": e, "step": 5 * e, "lr": 0.002 * (e / epochs if warmup else 1), "val_macro_f1": val * e / epochs}
            for e in range(1, epochs + 1)]
    (rd / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in hist))
    return rd


# ------------------------------------------------------------------------------------------------
# Statistics


def test_paired_difference_matches_a_t_interval_and_finds_a_known_difference():
    a = {0: 0.90, 1: 0.85, 2: 0.88, 3: 0.91}
    b = {0: 0.70, 1: 0.68, 2: 0.71, 3: 0.69, 9: 0.1}  # seed 9 has no partner: ignored
    res = paired_difference(a, b)
    d = np.array([0.20, 0.17, 0.17, 0.22])
    half = sps.t.ppf(0.975, 3) * d.std(ddof=1) / math.sqrt(4)
    assert res["n"] == 4 and res["seeds"] == [0, 1, 2, 3]
    assert res["mean"] == pytest.approx(d.mean()) and res["low"] == pytest.approx(d.mean() - half)
    assert res["high"] == pytest.approx(d.mean() + half)
    assert res["verdict"] == f"better by {d.mean():.3f} (interval excludes 0)"
    assert paired_difference(b, a)["verdict"] == f"worse by {d.mean():.3f} (interval excludes 0)"


def test_an_interval_holding_zero_with_too_few_seeds_says_so_and_how_many_would_do():
    a = {0: 0.80, 1: 0.70, 2: 0.75}
    b = {0: 0.72, 1: 0.79, 2: 0.74}  # differences +0.08, -0.09, +0.01: a spread of 0.085
    res = paired_difference(a, b)
    assert res["low"] < 0 < res["high"] and not res["decided"]
    sd = np.std([0.08, -0.09, 0.01], ddof=1)
    need = seeds_needed(0.05, sd)
    assert power_of(0.05, sd, need) >= 0.8 > power_of(0.05, sd, need - 1)  # the fewest that would do
    assert res["seeds_needed"] == need and res["detectable"] == pytest.approx(detectable(sd, 3))
    assert res["detectable"] > 0.05
    assert res["verdict"] == (f"too few seeds to decide (would need ~{need} to detect 0.05; these 3 detect "
                              f"{res['detectable']:.3f})")
    # the same seeds are enough for a question about a large difference
    loose = paired_difference(a, b, effect=0.5)
    assert loose["decided"] and loose["verdict"] == (f"no measurable difference (the seeds detect "
                                                     f"{loose['detectable']:.3f} or more)")


def test_a_tight_interval_holding_zero_is_no_measurable_difference():
    a = {s: 0.8 for s in range(6)}
    b = {s: 0.8 - d for s, d in enumerate([0.005, -0.005, 0.004, -0.004, 0.0, 0.001])}
    res = paired_difference(a, b)
    assert res["low"] < 0 < res["high"] and res["decided"] and res["detectable"] < 0.05
    assert res["verdict"].startswith("no measurable difference (the seeds detect 0.00")


def test_power_agrees_with_a_simulated_t_test_and_the_normal_limit():
    rng = np.random.default_rng(0)
    for delta, sd, n in ((0.12, 0.1, 5), (0.0, 0.1, 4), (0.05, 0.03, 3)):
        d = rng.normal(delta, sd, (40000, n))
        t = d.mean(1) / (d.std(1, ddof=1) / math.sqrt(n))
        rate = float((np.abs(t) > sps.t.ppf(0.975, n - 1)).mean())
        assert power_of(delta, sd, n) == pytest.approx(rate, abs=0.01), (delta, sd, n)
    # the smallest detectable difference is found with probability 0.8; for many seeds, the z formula
    assert power_of(detectable(0.07, 4), 0.07, 4) == pytest.approx(0.8, abs=1e-6)
    z = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)
    assert detectable(0.1, 1000) == pytest.approx(z * 0.1 / math.sqrt(1000), rel=0.01)
    assert math.isnan(detectable(0.1, 1)) and detectable(0.0, 3) == 0.0


def test_one_seed_gives_no_interval_and_says_so():
    res = paired_difference({0: 0.9}, {0: 0.5})
    assert math.isnan(res["low"]) and res["n"] == 1
    assert res["verdict"] == "one seed: no interval (difference +0.400, not tested)"
    assert verdict(0.1, 0.05, 0.2, 3).startswith("better by 0.100")


def test_compare_starts_pairs_by_cell_and_the_answer_follows_the_verdicts(tmp_path):
    for s in range(3):
        fake_run(tmp_path, f"imagenet-all-s{s}", "imagenet", s, [0.95, 0.93, 0.96][s])
        fake_run(tmp_path, f"ssl-all-s{s}", "ssl", s, [0.71, 0.80, 0.75][s])
        fake_run(tmp_path, f"scratch-all-s{s}", "scratch", s, [0.74, 0.77, 0.76][s])
        fake_run(tmp_path, f"imagenet-5pc-s{s}", "imagenet", s, [0.50, 0.61, 0.40][s], budget=5)
        fake_run(tmp_path, f"scratch-5pc-s{s}", "scratch", s, [0.52, 0.48, 0.47][s], budget=5)
    rows = collect_runs(tmp_path)
    st = {(s["budget"], s["a"], s["b"]): s for s in compare_starts(rows)}
    assert set(st) == {("5/class", "imagenet", "scratch"), ("all", "imagenet", "scratch"), ("all", "ssl", "scratch"),
                       ("all", "imagenet", "ssl")}
    assert st[("all", "imagenet", "scratch")]["verdict"].startswith("better by 0.190")
    ssl = st[("all", "ssl", "scratch")]  # -0.03, +0.03, -0.01: three seeds detect only ~0.10
    assert ssl["verdict"].startswith("too few seeds to decide (would need ~6 to detect 0.05")
    assert st[("5/class", "imagenet", "scratch")]["verdict"].startswith("too few seeds to decide")
    text = answer_paragraph(rows, compare_starts(rows), {"name": "toy", "split_tests": "later blocks"})
    assert "With all labels: ImageNet vs scratch: better by 0.190 (interval excludes 0)" in text
    assert "SSL vs scratch: too few seeds to decide" in text
    assert "SSL did not help here" not in text  # not decided: never "did not help" on three noisy seeds
    assert "Whether SSL helps is not decided: too few seeds with all labels (would need ~6 seeds" in text
    assert "ImageNet helped measurably with all labels" in text
    mdd = [s["detectable"] for s in st.values()]
    assert f"smallest difference these seeds could detect (probability 0.8) is {min(mdd):.3f}-{max(mdd):.3f}" in text
    # a large enough effect makes the same seeds decide: then, and only then, "did not help"
    text = answer_paragraph(rows, compare_starts(rows, effect=0.5), {"name": "toy"})
    assert "SSL did not help here: at no label budget was it measurably better" in text


def test_ablations_are_paired_with_the_main_setting_of_the_same_start(tmp_path):
    # main setting (most runs): fine-tune everything, warmup 0.1, at two budgets; ablations at 20/class
    main = {"imagenet": [0.90, 0.85, 0.88], "scratch": [0.70, 0.60, 0.65]}
    for init, vals in main.items():
        for s, v in enumerate(vals):
            fake_run(tmp_path, f"{init}-20-s{s}", init, s, v, budget=20)
            fake_run(tmp_path, f"{init}-all-s{s}", init, s, v + 0.05)
            # the linear probe: clearly worse for both starts (a known difference)
            fake_run(tmp_path, f"{init}-20-bb-s{s}", init, s, v - [0.40, 0.42, 0.41][s], budget=20, freeze="backbone")
            # warmup off: +0.03, -0.04, +0.01 -- no measurable change
            fake_run(tmp_path, f"{init}-20-w0-s{s}", init, s, v + [0.03, -0.04, 0.01][s], budget=20, warmup=0.0)
    fake_run(tmp_path, "scratch-5-bb-s0", "scratch", 0, 0.2, budget=5, freeze="backbone")  # no main run at 5: skipped
    rows = collect_runs(tmp_path)
    st = {(s["init"], s["setting"]): s for s in compare_settings(rows)}
    assert set(st) == {(i, x) for i in main for x in ("freeze backbone", "warmup 0")}
    probe = st[("imagenet", "freeze backbone")]
    d = -np.array([0.40, 0.42, 0.41])
    half = sps.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    assert probe["against"] == "freeze none" and probe["budget"] == "20/class" and probe["n"] == 3
    assert probe["mean"] == pytest.approx(d.mean()) and probe["low"] == pytest.approx(d.mean() - half)
    assert probe["verdict"] == "worse by 0.410 (interval excludes 0)"
    assert st[("scratch", "warmup 0")]["against"] == "warmup 0.1"
    assert st[("scratch", "warmup 0")]["verdict"].startswith("too few seeds to decide (would need ~7 ")
    text = answer_paragraph(rows, compare_starts(rows), {"name": "toy"})
    assert ("Freeze backbone instead of freeze none (20 labels per class): ImageNet: worse by 0.410 (interval "
            "excludes 0); scratch: worse by 0.410 (interval excludes 0).") in text
    assert "Warmup 0 instead of warmup 0.1 (20 labels per class): ImageNet: too few seeds to decide" in text


def test_the_cross_study_answer_reads_the_main_setting_of_each_folder(tmp_path):
    from diag.study.answer import answer_tables, parse_studies

    for s in range(3):
        fake_run(tmp_path / "a", f"imagenet-s{s}", "imagenet", s, [0.95, 0.93, 0.96][s])
        fake_run(tmp_path / "a", f"scratch-s{s}", "scratch", s, [0.74, 0.77, 0.76][s])
        fake_run(tmp_path / "a", f"scratch-bb-s{s}", "scratch", s, 0.1, freeze="backbone")  # an ablation: left out
    fake_run(tmp_path / "b" / "compare", "ssl-5-s0", "ssl", 0, 0.5, budget=5)
    studies = parse_studies([f"study A={tmp_path / 'a'}", str(tmp_path / "b" / "compare")])
    assert [n for n, _ in studies] == ["study A", "b"]  # a compare folder is named by the study above it
    t = answer_tables(studies)
    assert t["header"][3:7] == ["ImageNet", "ImageNet+SSL", "SSL", "scratch"]
    assert len(t["rows"]) == 2
    d = np.array([0.21, 0.16, 0.20])
    half = sps.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    assert t["rows"][0] == ["study A", "all", "3", "0.947 ± 0.015", "—", "—", "0.757 ± 0.015",
                            f"**+0.190 [{d.mean() - half:+.3f}, {d.mean() + half:+.3f}]**", "—", "—",
                            f"{detectable(d.std(ddof=1), 3):.3f}", "—"]
    assert t["rows"][1][:10] == ["b", "5/class", "1", "—", "—", "0.500", "—", "—", "—", "—"]
    assert t["rows"][1][11].startswith("SSL: pretraining not measured")
    assert t["answers"]["study A"].startswith("On ") and "ImageNet vs scratch: better by 0.190" in t["answers"]["study A"]
    with pytest.raises(DiagError, match="named twice"):
        parse_studies([f"x={tmp_path / 'a'}", f"x={tmp_path / 'b'}"])


def test_diag_report_across_studies_writes_answer_files_and_never_overwrites_a_users(tmp_path):
    from typer.testing import CliRunner

    from diag.cli import app

    for s in range(2):
        fake_run(tmp_path / "a", f"imagenet-s{s}", "imagenet", s, [0.9, 0.8][s])
        fake_run(tmp_path / "a", f"scratch-s{s}", "scratch", s, [0.6, 0.55][s])
    fake_run(tmp_path / "b", "scratch-s0", "scratch", 0, 0.5)
    out = tmp_path / "answer"
    for _ in range(2):  # a second run replaces its own answer
        res = CliRunner().invoke(app, ["report", f"A={tmp_path / 'a'}", f"B={tmp_path / 'b'}", "--out", str(out)])
        assert res.exit_code == 0, res.output
    md = (out / "answer.md").read_text()
    assert "| A | all | 2 | 0.850 ± 0.071 | — | — | 0.575 ± 0.035 | +0.275 [" in md and "too few seeds" in md
    assert "## B" in md and "<td>A</td>" in (out / "answer.html").read_text()
    assert not (tmp_path / "a" / "report.html").exists()  # reads the studies, writes only OUT
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "answer.md").write_text("my notes")
    res = CliRunner().invoke(app, ["report", str(tmp_path / "a"), "--out", str(mine)])
    assert res.exit_code == 2 and "answer.md, which diag did not write" in res.output
    assert (mine / "answer.md").read_text() == "my notes"
    res = CliRunner().invoke(app, ["report", f"A={tmp_path / 'nowhere'}", "--out", str(out)])
    assert res.exit_code == 2 and "no such folder" in res.output and "Traceback" not in res.output


def fake_pretraining(folder, probe=None, init="scratch", old=False, **more):
    """A diag pretrain folder as the report reads it: pretrain.json (diag-ssl/2 with its probe, or an older
    diag-ssl/1 without) and the backbone file the runs point at."""
    folder.mkdir(parents=True)
    (folder / "backbone.safetensors").write_bytes(b"x")
    meta = {"format": "diag-ssl/1", "pretrain": {"init": init}, "knn_start": {"knn_accuracy": 0.5},
            "knn_last": {"knn_accuracy": 0.4}} if old else {"format": "diag-ssl/2", "init": init, "probe": probe, **more}
    (folder / "pretrain.json").write_text(json.dumps(meta))
    return folder / "backbone.safetensors"


def _ssl_vs_scratch(root, weights, ssl=(0.40, 0.42, 0.39), scratch=(0.70, 0.71, 0.69)):
    for s in range(3):
        fake_run(root, f"ssl-s{s}", "ssl", s, ssl[s], weights=weights)
        fake_run(root, f"scratch-s{s}", "scratch", s, scratch[s])
    return collect_runs(root)


FELL = {"curve": [0.622, 0.40, 0.252], "initial": 0.622, "best": 0.622, "best_epoch": 0, "delta": -0.37,
        "margin": 0.01, "learned": False, "verdict": "fell"}


def test_a_failed_pretraining_is_said_next_to_the_ssl_row_and_never_called_worse(tmp_path):
    w = fake_pretraining(tmp_path / "pre", FELL, init="scratch")
    rows = _ssl_vs_scratch(tmp_path / "runs", w)
    raw = {(s["a"], s["b"]): s for s in compare_starts(rows)}[("ssl", "scratch")]
    assert raw["verdict"].startswith("worse by 0.297")  # the statistics alone would call it worse
    text = answer_paragraph(rows, compare_starts(rows), {"name": "toy"})
    said = "pretraining failed (probe 0.622 → 0.252; the initial weights were kept)"
    assert f"SSL: {said}, so its runs are no evidence" in text
    assert "worse" not in text and "SSL did not help" not in text
    assert f"SSL vs scratch: {said}: no verdict on SSL (difference -0.297, interval excludes 0)" in text
    res = write_report(tmp_path / "runs", quiet=True)
    p = _Collect()
    p.feed((tmp_path / "runs" / "report.html").read_text())
    main = next(t for t in p.tables if t["class"] == "main")
    col = main["rows"][0].index("pretraining")
    assert {r[0]: r[col] for r in main["rows"][1:]} == {"ssl": said, "scratch": "—"}
    assert "worse" not in next(t for t in p.tables if t["class"] == "stats")["rows"][1][-1]
    power = json.loads((tmp_path / "runs" / "power.json").read_text())
    assert not power["pairs"][0]["decided"] and res["stats"][0]["verdict"].startswith(said)
    assert f"ssl start: {said}." in (tmp_path / "runs" / "summary.md").read_text()


def test_a_pretraining_that_learned_lets_the_verdict_stand_and_an_old_record_is_not_measured(tmp_path):
    learned = dict(FELL, curve=[0.5, 0.7, 0.8], initial=0.5, best=0.8, best_epoch=2, learned=True)
    rows = _ssl_vs_scratch(tmp_path / "a", fake_pretraining(tmp_path / "p1", learned))
    text = answer_paragraph(rows, compare_starts(rows), {"name": "toy"})
    assert "SSL vs scratch: worse by 0.297 (interval excludes 0)" in text
    assert pretraining_by_start(rows)["ssl"]["text"] == "pretraining learned (probe 0.500 → 0.800 at epoch 2)"
    auto = fake_pretraining(tmp_path / "p4", learned, method="VICReg",
                            method_choice={"candidates": ["simclr", "vicreg"], "chosen": "vicreg"})
    rows = _ssl_vs_scratch(tmp_path / "e", auto)  # pretrain.method = auto names what it chose and over what
    assert pretraining_by_start(rows)["ssl"]["text"] == ("VICReg pretraining (chosen by its probe over SimCLR) learned "
                                                         "(probe 0.500 → 0.800 at epoch 2)")
    tie = fake_pretraining(tmp_path / "p5", learned, method="SimCLR", method_choice={
        "candidates": ["simclr", "vicreg"], "chosen": "simclr",
        "probes": {m: {"initial": 0.5, "best": 0.8} for m in ("simclr", "vicreg")}})
    rows = _ssl_vs_scratch(tmp_path / "f", tie)  # equal rises: not "chosen by its probe"
    assert pretraining_by_start(rows)["ssl"]["text"].startswith("SimCLR pretraining (tied with VICReg by the probe; "
                                                                "the first kept) learned")
    rows = _ssl_vs_scratch(tmp_path / "b", fake_pretraining(tmp_path / "p2", old=True))
    how = next(r["pretraining"] for r in rows if r["init"] == "ssl")
    assert how["learned"] is None and how["text"].startswith("pretraining probe not measured (older pretrain.json")
    assert "0.500 → 0.400" in how["text"]
    assert "SSL vs scratch: worse by 0.297" in answer_paragraph(rows, compare_starts(rows), {"name": "toy"})
    # the record diag pretrain writes: curve of {epoch, accuracy, macro_f1}, metric, last; a rise within noise
    flat = {"kind": "knn", "metric": "accuracy", "initial": 0.558, "best": 0.583, "best_epoch": 1, "last": 0.583,
            "margin": 0.080, "learned": False, "curve": [{"epoch": 0, "accuracy": 0.558, "macro_f1": 0.549},
                                                           {"epoch": 1, "accuracy": 0.583, "macro_f1": 0.570}]}
    rows = _ssl_vs_scratch(tmp_path / "d", fake_pretraining(tmp_path / "p3", flat, init="imagenet"))
    assert set(pretraining_by_start(rows)) == {"imagenet+ssl"}
    assert pretraining_by_start(rows)["imagenet+ssl"]["text"] == ("pretraining failed (probe 0.558 → 0.583, within the "
                                                                  "noise margin 0.080)")
    peaked = dict(flat, best=0.620, best_epoch=1, last=0.570, curve=[  # the rise judged is the best reading's
        {"epoch": 0, "accuracy": 0.558}, {"epoch": 1, "accuracy": 0.620}, {"epoch": 2, "accuracy": 0.570}])
    rows = _ssl_vs_scratch(tmp_path / "g", fake_pretraining(tmp_path / "p6", peaked, init="imagenet"))
    assert pretraining_by_start(rows)["imagenet+ssl"]["text"] == ("pretraining failed (probe 0.558 → 0.570, best 0.620 "
                                                                  "at epoch 1, within the noise margin 0.080)")
    rows = _ssl_vs_scratch(tmp_path / "c", tmp_path / "gone" / "backbone.safetensors")  # the folder moved away
    assert next(r["pretraining"] for r in rows if r["init"] == "ssl")["text"].startswith("pretraining not measured")


# ------------------------------------------------------------------------------------------------
# The report


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.tables, self._cell, self._row, self._table = [], [], None, None, None
        self.text = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a["src"])
        elif tag == "table":
            self._table = {"class": a.get("class"), "rows": []}
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr":
            self._table["rows"].append(self._row)
        elif tag == "table":
            self.tables.append(self._table)

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        self.text.append(data)


def test_report_html_parses_images_decode_and_numbers_equal_the_runs(tmp_path):
    from PIL import Image

    ds = make_toy_dataset(tmp_path / "ds", n_train=4, n_val=2, n_test=2, classes=3, size=16)
    root = tmp_path / "runs"
    f1s = {"imagenet": [0.9, 0.8], "scratch": [0.6, 0.55]}
    for init, vals in f1s.items():
        for s, v in enumerate(vals):
            fake_run(root, f"{init}-all-none-w0.1-s{s}", init, s, v, dataset=ds, acc=v + 0.02)
            fake_run(root, f"{init}-all-none-w0-s{s}", init, s, v - 0.1, warmup=0.0, dataset=ds)
            fake_run(root, f"{init}-all-backbone-w0.1-s{s}", init, s, v - 0.2, freeze="backbone", dataset=ds)
    fake_run(root, "scratch-5pc-s0", "scratch", 0, 0.3, budget=5, dataset=ds)  # an old-layout folder name
    (root / "compare.json").write_text(json.dumps({"commands": ["diag compare --data X --out Y"], "skipped": {}}))
    res = write_report(root, quiet=True)
    page = (root / "report.html").read_text()
    p = _Collect()
    p.feed(page)
    p.close()
    # every embedded image decodes
    assert len(p.imgs) >= 5  # label efficiency, warmup, 2 confusion matrices, examples
    for src in p.imgs:
        assert src.startswith("data:image/png;base64,")
        img = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        img.load()
        assert img.size[0] > 50
    assert "http://" not in page and "https://" not in page  # nothing fetched from the network
    # the answer comes before the tables and is generated from the verdicts
    text = " ".join(p.text)
    assert text.index("The answer") < text.index("Main table")
    assert "ImageNet vs scratch: too few seeds to decide" in res["answer"]  # 2 seeds: +0.30, +0.25
    # every number in the main table equals the runs' JSON (mean ± std over seeds)
    main = next(t for t in p.tables if t["class"] == "main")
    header, body = main["rows"][0], main["rows"][1:]
    col = {h: i for i, h in enumerate(header)}
    runs = [json.loads((d / "test_metrics.json").read_text()) | {"train": json.loads((d / "model.json").read_text())["train"],
            "sel": json.loads((d / "model.json").read_text())["selected"]} for d in root.iterdir() if d.is_dir()]
    assert len(body) == 7
    for r in body:
        same = [x for x in runs if x["train"]["init"] == r[col["start"]] and x["train"]["freeze"] == r[col["freeze"]]
                and f"{x['train']['warmup']:g}" == r[col["warmup"]]
                and (f"{x['train']['labels_per_class']}/class" if x["train"]["labels_per_class"] else "all") == r[col["labels/class"]]]
        assert len(same) == int(r[col["seeds"]])
        for name, key in (("test macro-F1", "macro_f1"), ("test accuracy", "accuracy")):
            vals = np.array([x[key] for x in same])
            want = f"{vals.mean():.3f}" + (f" ± {vals.std(ddof=1):.3f}" if len(vals) > 1 else "")
            assert r[col[name]] == want, (r, name)
        vals = np.array([x["sel"]["val_macro_f1"] for x in same])
        assert r[col["val macro-F1"]].split(" ")[0] == f"{vals.mean():.3f}"
    # the paired table: the numbers recomputed from the runs
    st = next(t for t in p.tables if t["class"] == "stats")
    row = next(r for r in st["rows"][1:] if r[:5] == ["all", "none", "0.1", "imagenet", "scratch"])
    assert row[6] == f"{np.mean([0.9 - 0.6, 0.8 - 0.55]):.3f}"
    # class counts come from the prepared dataset's manifest
    counts = next(t for t in p.tables if t["class"] == "counts")
    assert counts["rows"][1] == ["class0", "4", "2", "2"]
    # freeze modes and the commands are there; the markdown twin holds the same answer and images
    assert any(t["class"] == "freeze" for t in p.tables)
    # the ablations against the main setting, start by start: the numbers recomputed from the runs
    ab = next(t for t in p.tables if t["class"] == "settings")
    row = next(r for r in ab["rows"][1:] if r[:3] == ["imagenet", "all", "freeze backbone"])
    assert row[3] == "freeze none" and row[5] == f"{-0.2:.3f}" and row[8] == "worse by 0.200 (interval excludes 0)"
    # power.json: every paired verdict with what its seeds could detect, recomputed here from the runs
    power = json.loads((root / "power.json").read_text())
    pair = next(p for p in power["pairs"] if (p["budget"], p["freeze"], p["warmup"], p["a"], p["b"]) ==
                ("all", "none", 0.1, "imagenet", "scratch"))
    sd = np.std([0.9 - 0.6, 0.8 - 0.55], ddof=1)
    assert pair["n"] == 2 and pair["detectable"] == pytest.approx(detectable(sd, 2)) and not pair["decided"]
    assert pair["seeds_needed"] == seeds_needed(0.05, sd) and power["effect"] == 0.05
    assert power["seeds_needed"] == max(p["seeds_needed"] for p in power["pairs"] if not p["decided"])
    row = next(r for r in st["rows"][1:] if r[:5] == ["all", "none", "0.1", "imagenet", "scratch"])
    assert row[8] == f"{pair['detectable']:.3f}"
    assert "diag compare --data X --out Y" in page
    md = (root / "report.md").read_text()
    assert res["answer"] in md and md.count("data:image/png;base64,") == len(p.imgs)
    assert not list(root.glob(".*.tmp"))  # atomic writes left no temporaries
    rows = list(csv.DictReader(open(root / "runs.csv")))
    assert len(rows) == 13 and {r["run"] for r in rows} >= {"scratch-5pc-s0"}


def test_report_refuses_mixed_datasets_and_empty_folders(tmp_path):
    fake_run(tmp_path, "a", "scratch", 0, 0.5)
    rd = fake_run(tmp_path, "b", "scratch", 1, 0.5)
    mj = json.loads((rd / "model.json").read_text())
    mj["dataset"]["fingerprint"] = "other"
    (rd / "model.json").write_text(json.dumps(mj))
    with pytest.raises(DiagError, match="2 different prepared datasets"):
        write_report(tmp_path, quiet=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DiagError, match="no finished runs"):
        write_report(empty, quiet=True)
    with pytest.raises(DiagError, match="no such folder"):
        write_report(tmp_path / "missing", quiet=True)


def test_the_report_states_the_training_budget(tmp_path):
    fake_run(tmp_path, "a", "scratch", 0, 0.5, epochs=3)
    assert training_budget(collect_runs(tmp_path)).startswith("Training: a fixed 3 epoch(s) with no step budget "
                                                              "(15-15 optimiser steps per run)")


def test_report_effect_is_checked_and_changes_the_verdicts(tmp_path):
    from typer.testing import CliRunner

    from diag.cli import app

    for s, (x, y) in enumerate([(0.80, 0.72), (0.70, 0.79), (0.75, 0.74)]):
        fake_run(tmp_path, f"imagenet-s{s}", "imagenet", s, x)
        fake_run(tmp_path, f"scratch-s{s}", "scratch", s, y)
    bad = CliRunner().invoke(app, ["report", str(tmp_path), "--effect", "2"])
    assert bad.exit_code == 2 and "--effect 2" in bad.output and "Traceback" not in bad.output
    assert not (tmp_path / "power.json").exists()
    ok = CliRunner().invoke(app, ["report", str(tmp_path), "--effect", "0.5"])
    assert ok.exit_code == 0, ok.output
    power = json.loads((tmp_path / "power.json").read_text())
    assert power["effect"] == 0.5 and power["pairs"][0]["decided"] and power["seeds_needed"] is None


# ------------------------------------------------------------------------------------------------
# The report a person reads: the data as a table in words, no empty sections


def _sections(page):
    """``{h2 title: the HTML between it and the next h2}`` of report.html."""
    parts = re.split(r"<h2>(.*?)</h2>", page.split("<body>", 1)[1])
    return dict(zip(parts[1::2], parts[2::2]))


def _md_sections(md):
    parts = re.split(r"^## (.*)$", md, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2]))


def _assert_no_empty_section(page, md):
    """Every header of report.html / report.md has something under it before the next header."""
    body = page.split("<body>", 1)[1].replace("</body></html>", "")
    for head, rest in zip(re.findall(r"<h[1-6]>.*?</h[1-6]>", body), re.split(r"<h[1-6]>.*?</h[1-6]>", body)[1:]):
        assert rest.strip(), f"empty section in report.html: {head}"
    lines = [x for x in md.splitlines() if x.strip()]
    for i, line in enumerate(lines):
        if line.startswith("#"):
            assert i + 1 < len(lines) and not lines[i + 1].startswith("#"), f"empty section in report.md: {line}"


def _cwt_dataset(path):
    """A toy prepared dataset whose manifest holds what diag prepare writes for a 64-scale CWT of 2 channels."""
    from diag.config import TransformConfig
    from diag.signal.transforms import make_transform

    ds = make_toy_dataset(path, n_train=4, n_val=2, n_test=2, classes=3, size=16)
    transform = make_transform(TransformConfig(kind="cwt", n_scales=64, fmin=20.0, size=[64, 64]), 1000.0, 256).to_dict()
    mf = ds / "manifest.json"
    m = json.loads(mf.read_text())
    m["config"] = {"source": {"kind": "files", "path": "recordings/", "on_bad": "error", "options": {"fs": 1000.0}},
                   "split": {"method": "recording"}}
    m["window"] = {"length": 256, "hop": 64, "normalize": "zscore-joint", "channels": ["ia", "ib"], "band": []}
    m["transform"] = transform
    m["recordings"] = [{"path": f"r{k}.csv"} for k in range(6)]
    mf.write_text(json.dumps(m))
    return ds, transform


def test_the_data_is_a_table_in_words_with_the_full_settings_folded_away(tmp_path):
    ds, transform = _cwt_dataset(tmp_path / "ds")
    assert len(transform["frequencies_hz"]["cwt"]) == 64
    root = tmp_path / "runs"
    for s in range(2):
        fake_run(root, f"imagenet-s{s}", "imagenet", s, 0.8 + s / 100, dataset=ds)
        fake_run(root, f"scratch-s{s}", "scratch", s, 0.6 + s / 100, dataset=ds)
    write_report(root, quiet=True)
    page, md = (root / "report.html").read_text(), (root / "report.md").read_text()
    html_data = _sections(page)["The data"]
    shown, folded = html_data.split("<details>")[0], html_data.split("<details>")[1].split("</details>")[0]
    # what a person reads: a table in words, no dictionaries, no list of centre frequencies
    p = _Collect()
    p.feed(shown)
    table = {r[0]: r[1] for r in next(t for t in p.tables if t["class"] == "data")["rows"]}
    for raw in ("{", "frequencies_hz", json.dumps(transform)[:40], f"{transform['frequencies_hz']['cwt'][1]}"):
        assert raw not in shown, raw
    assert table["source"] == "files (recordings/)"
    assert table["split"].startswith("recording: the test split holds whole recordings never seen in training")
    assert table["recordings"] == "6 recordings, cut into windows: 12 train, 6 val, 6 test"
    assert table["sampling rate"] == "1000 Hz"
    assert table["window"] == "256 samples (0.256 s), a new window every 64 samples (75 % overlap); 2 channels (ia, ib)"
    assert "zero mean and unit standard deviation over all its channels" in table["normalisation"]
    assert table["images"] == "CWT scalogram, 1 × 16 × 16 (channels × rows × columns)"  # the manifest's image_shape
    cwt = transform["cwt"]
    assert table["transform"].startswith(f"CWT: 64 scales, {cwt['fmin']:g}–{cwt['fmax']:g} Hz (log-spaced), Morlet w0 6")
    assert table["prepared dataset"] == f"{ds} (fingerprint fp)"
    # every setting is kept, folded away: the block reads back as the manifest's transform
    import html as _html

    full = json.loads(_html.unescape(folded.split("<pre>")[1].split("</pre>")[0]))
    assert full["transform"] == transform and full["window"]["hop"] == 64 and full["source"]["kind"] == "files (recordings/)"
    # Markdown: the same table, the settings in a fenced block after it
    md_data = _md_sections(md)["The data"]
    before, block = md_data.split("```json")[0], md_data.split("```json")[1].split("```")[0]
    assert "{" not in before and "frequencies_hz" not in before and "| sampling rate | 1000 Hz |" in before
    assert json.loads(block)["transform"] == transform
    _assert_no_empty_section(page, md)


def test_sections_with_nothing_in_them_are_left_out(tmp_path):
    # one start, one seed, one warmup and freeze mode, no pretraining, the prepared dataset not here
    fake_run(tmp_path, "scratch-s0", "scratch", 0, 0.6)
    write_report(tmp_path, quiet=True)
    page, md = (tmp_path / "report.html").read_text(), (tmp_path / "report.md").read_text()
    _assert_no_empty_section(page, md)
    heads = set(_sections(page))
    assert set(_md_sections(md)) == heads
    for gone in ("Starts compared (paired over seeds)", "Warmup vs none", "Freeze modes",
                 "Warmup and freeze against the main setting (paired over seeds)", "Data audit",
                 "Example images of each class"):
        assert gone not in heads, gone
    assert {"The answer", "The data", "Main table", "Label efficiency", "How this was made"} <= heads
    p = _Collect()
    p.feed(page)
    main = next(t for t in p.tables if t["class"] == "main")
    assert "pretraining" not in main["rows"][0]  # no start was pretrained: no column of dashes
    assert not any(t["class"] == "stats" for t in p.tables)
    assert "<table class='stats'>" not in page and "<ul></ul>" not in page
    # what was not run is said once, in words, with the option that adds it
    assert "Not run here: warmup vs none" in page and "--freeze none,stages:1,backbone" in page
    data = {r[0]: r[1] for r in next(t for t in p.tables if t["class"] == "data")["rows"]}
    assert data["prepared dataset"] == "/nonexistent/ds (fingerprint fp)" and "not here" in data["details"]


@pytest.mark.parametrize("kind, said", [
    ("stft", ["STFT: Hann window of 128 samples", "0–6000 Hz"]),
    ("envorder", ["envelope spectrum, orders 0.5–12 of the shaft rate", "demodulation band: sk"]),
    ("harmonics", ["power spectrum, orders 0.5–12 of the electrical fundamental"]),
    ("cwt+stft", ["CWT: 16 scales, 40–", "; STFT: Hann window"]),
])
def test_each_transform_kind_reads_in_words(kind, said):
    from diag.config import TransformConfig
    from diag.signal.transforms import make_transform
    from diag.study.datatable import data_rows, full_settings

    t = make_transform(TransformConfig(kind=kind, size=[16, 16], n_scales=16, norm="image"), 12000.0, 1024).to_dict()
    data = {"source": "cwru", "fs": 12000.0, "transform": t, "window": {"length": 1024, "hop": 512, "normalize": "zscore"},
            "image_shape": [1, 16, 16], "path": "p", "fingerprint": "f"}
    rows = dict(data_rows(data))
    for words in said:
        assert words in rows["transform"], (words, rows["transform"])
    assert "{" not in "".join(rows.values()) and rows["pixel values"] == "log power (dB); each image standardised on its own"
    assert json.loads(full_settings(data))["transform"] == t
    assert full_settings({}) is None


def test_a_record_made_under_the_one_reading_margin_is_read_by_todays_rule(tmp_path):
    # ITSC's ImageNet+SSL pretraining (diag 2dd4ff8): +0.090 in its best of 20 readings on 156 windows was
    # "learned" against the one-reading margin 0.080; the best-of-20 margin is 0.122, so it is re-read as failed.
    from diag.study.runs import pretraining_outcome

    curve = [{"epoch": 0, "accuracy": 0.551, "macro_f1": 0.54}] + \
        [{"epoch": e, "accuracy": 0.641 if e == 6 else 0.596, "macro_f1": 0.5} for e in range(1, 21)]
    probe = {"kind": "knn", "metric": "accuracy", "windows": 156, "curve": curve, "initial": 0.551, "best": 0.641,
             "best_epoch": 6, "delta": 0.090, "margin": 0.080, "learned": True, "last": 0.596}
    meta = {"format": "diag-ssl/2", "init": "imagenet", "probe": probe}
    out = pretraining_outcome(meta, tmp_path)
    assert out["learned"] is False and "within the noise margin 0.122" in out["text"]
    # A clear rise stays learned; a record without the window count keeps the verdict it wrote.
    clear = {**probe, "best": 0.851, "curve": [*curve[:6], {"epoch": 6, "accuracy": 0.851, "macro_f1": 0.8}, *curve[7:]]}
    assert pretraining_outcome({**meta, "probe": clear}, tmp_path)["learned"] is True
    bare = {k: v for k, v in probe.items() if k != "windows"}
    assert pretraining_outcome({**meta, "probe": bare}, tmp_path)["learned"] is True
