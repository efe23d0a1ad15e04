"""The engineer's path with the shipped defaults (issue 21): prepare -> train -> predict on recordings of
another simulator seed, no --split, no --transform. The defaults must test on recordings never trained on
and name new recordings right; a shortened version of the issue's five commands (3 s recordings, 3
epochs), about a minute on the 2-core CPU."""

import json
from pathlib import Path

from typer.testing import CliRunner

from diag.cli import app

ROOT = Path(__file__).resolve().parents[1]
CFG = str(ROOT / "configs/bearing_sim.toml")


def run(*args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res


def test_shipped_defaults_name_recordings_of_another_simulator_seed(tmp_path):
    p, r, new = tmp_path / "P", tmp_path / "R", tmp_path / "NEW"
    run("prepare", "--config", CFG, "--out", p, "--set", 'source.classes=["normal","inner","outer"]',
        "--set", "source.recordings_per_class=4", "--set", "source.duration=3.0", "-q")
    m = json.loads((p / "manifest.json").read_text())
    assert m["split"]["method"] == "recording"  # the default split tests on recordings never trained on
    tested = {r["source"] for i, r in enumerate(m["recordings"]) if any(b[0] == i and b[3] == "test"
                                                                         for b in m["split"]["blocks"])}
    trained = {r["source"] for i, r in enumerate(m["recordings"]) if any(b[0] == i and b[3] == "train"
                                                                          for b in m["split"]["blocks"])}
    assert tested and not tested & trained
    run("train", "--config", CFG, "--data", p, "--out", r, "--epochs", "3", "-q")
    test = json.loads((r / "test_metrics.json").read_text())
    run("simulate", "bearing", "--out", new, "--set", "seed=11", "--set", "recordings_per_class=2",
        "--set", "duration=3.0", "--set", 'classes=["normal","inner","outer","ball"]')
    # no options: fs, channels and shaft speeds come from the labels.csv diag simulate wrote
    run("predict", r, new, "--json", tmp_path / "p.json", "-q")
    files = json.loads((tmp_path / "p.json").read_text())["files"]
    truth = {f["path"]: Path(f["path"]).parent.name for f in files}
    known = [f for f in files if truth[f["path"]] != "ball"]
    ball = [f for f in files if truth[f["path"]] == "ball"]
    right = sum(f["verdict"] == truth[f["path"]] for f in known)
    print(f"test split accuracy {test['accuracy']:.3f}; new recordings: {right}/{len(known)} known right; "
          + ", ".join(f"{truth[f['path']]}:{f['verdict']}" for f in files))
    # (the old defaults, CWT images on a time split: 2-5 of 12 new recordings right with 6 epochs)
    assert test["accuracy"] >= 0.7
    assert right >= len(known) - 1, [(truth[f["path"]], f["verdict"]) for f in known]
    # the never-seen class: 3 epochs are too few to calibrate "unknown" (docs/findings/engineer-path.md has the 6-epoch
    # numbers); here only no known recording may be called unknown
    assert all(f["verdict"] != "unknown" for f in known) and len(ball) == 2
