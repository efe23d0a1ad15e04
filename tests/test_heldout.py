"""``diag evaluate --held-out PREPARED``: the network-free unknown score with every class held out in turn
(diag.learning.heldout), on small datasets written here whose one odd class is plain to see."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from diag.cli import app
from diag.signal.dataset import DatasetWriter

SIZE = 16
ODD_ROW = 5


def _dataset(out: Path, split: str | None = "recording", classes: int = 4, odd: int = 3,
             per_class: dict[str, int] | None = None, seed: int = 0) -> Path:
    """Noise images for every class, except class ``odd`` whose row ODD_ROW is bright: only it differs."""
    rng = np.random.default_rng(seed)
    per_class = per_class or {"train": 40, "val": 20, "test": 20}
    names = [f"c{k}" for k in range(classes)]
    sizes = {s: n * classes for s, n in per_class.items()}
    metas = {}
    with DatasetWriter(out, sizes, (1, SIZE, SIZE)) as w:
        for s, n in sizes.items():
            y = np.repeat(np.arange(classes), n // classes)
            imgs = rng.normal(0, 1, (n, 1, SIZE, SIZE)).astype(np.float32)
            imgs[y == odd, 0, ODD_ROW, :] += 2.0
            w.add(s, imgs)
            metas[s] = {"y": y, "label": np.array([names[k] for k in y], dtype=object),
                        "group": np.array(["g"] * n, dtype=object), "condition": np.array(["-"] * n, dtype=object),
                        "fault_size": np.array([""] * n, dtype=object),
                        "source": np.array([f"{s}-{names[k]}" for k in y], dtype=object),
                        "start": np.arange(n), "rec": np.zeros(n, dtype=np.int64)}
        manifest = {"format_version": 1, "fingerprint": f"heldout-{seed}-{classes}", "config": {"source": {"kind": "test"}},
                    "classes": names, "fs": 1000.0, "transform": {"kind": "test"}, "image_shape": [1, SIZE, SIZE],
                    "sizes": sizes, **({"split": {"method": split}} if split else {})}
        w.commit(metas, manifest)
    return out


def _evaluate(*args: str):
    return CliRunner(env={"COLUMNS": "200"}).invoke(app, ["evaluate", *args])


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("heldout")
    data = _dataset(tmp / "data")
    res = _evaluate("--held-out", str(data), "--out", str(tmp / "eval"), "--csv")
    assert res.exit_code == 0, res.output
    return tmp, res.output, json.loads((tmp / "eval" / "heldout.json").read_text())


def test_the_odd_class_is_found_and_the_noise_classes_are_not(study):
    _, _, res = study
    rows = {r["held_out"]: r for r in res["classes"]}
    assert list(rows) == ["c0", "c1", "c2", "c3"] and res["method"] == "rows" and res["split"] == "recording"
    odd = rows["c3"]
    assert odd["auroc"] > 0.95 and odd["held_out_detected"] > 0.8
    for name in ("c0", "c1", "c2"):  # the same noise as the known classes: nothing to tell them apart by
        assert 0.25 < rows[name]["auroc"] < 0.75, rows[name]
        assert rows[name]["held_out_detected"] < 0.3, rows[name]
    for r in rows.values():  # the threshold was set with a 5 % bound on the known classes' val windows
        assert r["guaranteed"] and r["known_test_flagged"] < 0.2, r
        assert r["windows"] == {"held_out": 80, "known_test": 60, "known_val": 60, "known_train": 120}


def test_the_table_json_and_csv_say_the_same(study):
    tmp, output, res = study
    lines = {ln.split()[1]: ln for ln in output.splitlines() if re.match(r"^\W*c\d ", ln)}
    assert len(lines) == 4, output
    with open(tmp / "eval" / "heldout.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    for r, c in zip(res["classes"], table):
        nums = re.findall(r"\d+\.\d{3}", lines[r["held_out"]])
        assert nums == [f"{r['auroc']:.3f}", f"{r['held_out_detected']:.3f}", f"{r['known_test_flagged']:.3f}"]
        assert c["held_out"] == r["held_out"] and float(c["auroc"]) == r["auroc"]
        assert float(c["known_test_flagged"]) == r["known_test_flagged"] and int(c["n_held_out"]) == 80


def test_an_existing_evaluation_is_kept_without_force(study):
    tmp, _, _ = study
    before = (tmp / "eval" / "heldout.json").read_bytes()
    res = _evaluate("--held-out", str(tmp / "data"), "--out", str(tmp / "eval"))
    assert res.exit_code == 2 and "--force" in res.output
    assert (tmp / "eval" / "heldout.json").read_bytes() == before


def _refused(res, *words: str) -> None:
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert "Traceback" not in res.output and all(w in res.output for w in words), res.output


@pytest.mark.parametrize("case, words", [
    ("time", ("time split", "--split recording")),
    ("nosplit", ("no recorded split", "--split recording")),
    ("two", ("2 class", "at least 3")),
    ("notest", ("c1", "no test windows")),
])
def test_bad_datasets_are_one_line_and_exit_2(tmp_path, case, words):
    if case == "notest":
        data = _dataset(tmp_path / "d", per_class={"train": 40, "val": 20, "test": 20})
        meta = (data / "test.csv").read_text().splitlines()
        # relabel class c1's test windows as c0: c1 is left without test windows
        col = meta[0].split(",")
        iy, il = col.index("y"), col.index("label")
        fixed = [meta[0]]
        for ln in meta[1:]:
            f = ln.split(",")
            if f[il] == "c1":
                f[iy], f[il] = "0", "c0"
            fixed.append(",".join(f))
        (data / "test.csv").write_text("\n".join(fixed) + "\n")
    else:
        data = _dataset(tmp_path / "d", split={"time": "time", "nosplit": None}.get(case, "recording"),
                        classes=2 if case == "two" else 4, odd=1 if case == "two" else 3)
    res = _evaluate("--held-out", str(data), "--out", str(tmp_path / "eval"))
    _refused(res, str(data), *words)
    assert not (tmp_path / "eval" / "heldout.json").exists()


def test_mixed_modes_are_refused(tmp_path):
    data = _dataset(tmp_path / "d")
    _refused(_evaluate("runs/x", "--held-out", str(data), "--out", str(tmp_path / "e")), "takes no RUN")
    _refused(_evaluate("--held-out", str(data), "--split", "val", "--out", str(tmp_path / "e")), "--split")
    _refused(_evaluate("--held-out", str(data), "--far", "1.5", "--out", str(tmp_path / "e")), "--far 1.5")
    _refused(_evaluate("--out", str(tmp_path / "e")), "RUN and DATA")
    _refused(_evaluate("runs/x", str(data), "--csv", "--out", str(tmp_path / "e")), "--csv", "only with --held-out")


def test_a_folder_of_the_users_files_is_never_written(study, tmp_path):
    tmp, _, _ = study
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    _refused(_evaluate("--held-out", str(tmp / "data"), "--out", str(mine), "--force"), "did not write")
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
