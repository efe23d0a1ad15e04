"""The data audit (diag.signal.audit): one test per finding on recordings the test writes, --strict, diag audit, report."""

import io
import json

import numpy as np
from typer.testing import CliRunner

from diag.signal.audit import AuditFinding, auroc, check_sides
from diag.cli import app
from diag.sources.base import Recording
from diag.sources.files import write_recordings

FS = 2000.0
SMALL = ["--set", "windows.fs=2000", "--set", "windows.length=256", "--set", "windows.hop=128",
         "--set", "transform.size=[16,16]", "--set", "transform.n_scales=16", "--set", "transform.fmin=20"]


def recording(label, j, *, seconds=3.0, fs=FS, group="", condition="c0", dc=0.0, tone_hz=0.0, seed=0):
    """Noise with a class-independent 180 Hz line; optionally a DC offset and a tone."""
    rng = np.random.default_rng([seed, j, sum(map(ord, label))])
    t = np.arange(int(seconds * fs)) / fs
    x = rng.normal(0, 1.0, len(t)) + 0.5 * np.sin(2 * np.pi * 180 * t + rng.uniform(0, 6.3)) + dc
    if tone_hz:
        x = x + 2.0 * np.sin(2 * np.pi * tone_hz * t)
    return Recording(x[None].astype(np.float32), fs, label, group=group, condition=condition,
                     source=f"{label}-{j}", channels=("acc",))


def prepare(tmp_path, recs, *args):
    data = write_recordings(recs, tmp_path / "rec")
    out = tmp_path / "p"
    res = CliRunner().invoke(app, ["prepare", "--source", "files", "--data", str(data), "--out", str(out), *SMALL, *args])
    return res, out


def findings(out):
    return json.loads((out / "manifest.json").read_text())["audit"]["findings"]


def codes(out):
    return {f["code"]: f for f in findings(out)}


def test_clean_data_has_no_findings(tmp_path):
    recs = [recording(c, j, condition=f"c{j % 2}") for c in ("a", "b") for j in range(4)]
    res, out = prepare(tmp_path, recs)
    assert res.exit_code == 0, res.output
    assert findings(out) == [] and "data audit" not in res.output
    assert json.loads((out / "manifest.json").read_text())["split"]["method"] == "recording"


def test_a_class_on_one_recording(tmp_path):
    recs = [recording(c, j) for c in ("a", "b") for j in range(3)] + [recording("c", 0)]
    res, out = prepare(tmp_path, recs)
    assert res.exit_code == 0, res.output
    f = codes(out)["one-recording"]
    assert f["classes"] == ["c"] and "data audit (one-recording)" in res.output
    assert "auto -> time" in res.output  # and the split fell back to time, with its warning


def test_a_class_on_one_group(tmp_path):
    recs = ([recording("a", j, group="bearing-a") for j in range(3)]
            + [recording("b", j, group=f"bearing-b{j % 2}") for j in range(4)])
    res, out = prepare(tmp_path, recs)
    assert res.exit_code == 0, res.output
    assert codes(out)["one-group"]["classes"] == ["a"]


def test_a_class_at_one_condition(tmp_path):
    recs = [recording("a", j, condition="0HP") for j in range(3)] + [recording("b", j, condition=f"{j % 3}HP")
                                                                     for j in range(3)]
    res, out = prepare(tmp_path, recs)
    assert res.exit_code == 0, res.output
    f = codes(out)["one-condition"]
    assert f["classes"] == ["a"] and f["detail"]["conditions"] == {"a": "0HP"}


def test_one_image_row_separating_a_one_recording_class_is_named_with_its_band(tmp_path):
    recs = [recording(c, j) for c in ("a", "b") for j in range(3)] + [recording("c", 0, tone_hz=700.0)]
    res, out = prepare(tmp_path, recs)
    assert res.exit_code == 0, res.output
    f = codes(out)["row-separates"]
    assert f["classes"] == ["c"] and f["detail"]["auroc"] >= 0.99
    # the band that holds the tone is named (Hz of the CWT rows)
    spans = [b.split(": ")[1].replace(" Hz", "").split("-") for b in f["detail"]["bands"] if "Hz" in b]
    assert any(float(lo) <= 700.0 <= float(hi) for lo, hi in spans), f["detail"]["bands"]


def test_a_row_separating_a_class_over_several_recordings_is_not_a_finding(tmp_path):
    # the tone is the class's own cue on all its recordings (3 of 5 train): what a model should learn
    recs = [recording("a", j) for j in range(5)] + [recording("b", j, tone_hz=700.0) for j in range(5)]
    res, out = prepare(tmp_path, recs)
    assert res.exit_code == 0, res.output
    assert "row-separates" not in codes(out)


def test_a_per_recording_dc_offset_separating_a_class(tmp_path):
    recs = [recording("a", j, dc=3.0) for j in range(5)] + [recording("b", j) for j in range(5)]
    res, out = prepare(tmp_path, recs, "--split", "time")
    assert res.exit_code == 0, res.output
    f = codes(out)["stat-separates"]
    assert f["classes"] in (["a"], ["b"]) and f["detail"]["statistic"] == "dc" and f["detail"]["p"] < 0.01
    assert "windows.normalize=zscore removes" in f["advice"]
    # two recordings against two: a clean split by chance one time in three -- never reported
    res, out2 = prepare(tmp_path / "few", [recording("a", j, dc=3.0) for j in range(2)]
                        + [recording("b", j) for j in range(2)], "--split", "time")
    assert res.exit_code == 0 and "stat-separates" not in codes(out2)


def test_recordings_resampled_for_one_class_only(tmp_path):
    recs = [recording("a", j) for j in range(3)] + [recording("b", j, fs=4000.0) for j in range(3)]
    res, out = prepare(tmp_path, recs)
    assert res.exit_code == 0, res.output
    f = codes(out)["resampled-some"]
    assert f["classes"] == ["b"] and f["detail"] == {"rate_hz": 4000.0, "to_hz": 2000.0}
    # every class resampled alike is not a finding
    res, out2 = prepare(tmp_path / "all", [recording(c, j, fs=4000.0) for c in ("a", "b") for j in range(3)])
    assert res.exit_code == 0 and "resampled-some" not in codes(out2)


def test_a_condition_on_the_test_side_only(tmp_path):
    recs = [recording(c, j, condition="slow" if j == 3 else "fast") for c in ("a", "b") for j in range(4)]
    data = write_recordings(recs, tmp_path / "rec")
    test = [str(data / c / f"{c}-3.npy") for c in ("a", "b")]
    res = CliRunner().invoke(app, ["prepare", "--source", "files", "--data", str(data), "--out", str(tmp_path / "p"),
                                   *SMALL, "--split", "recording", "--set", f"split.test_groups={json.dumps(test)}"])
    assert res.exit_code == 0, res.output
    f = codes(tmp_path / "p")["one-side"]
    assert f["detail"]["conditions"] == ["slow"] and f["classes"] == ["a", "b"]


def test_a_class_missing_from_a_side_is_found_in_a_manifest():
    m = {"classes": ["a", "b"], "recordings": [], "split": {"method": "recording", "blocks": []},
         "counts": {"train": {"a": 10, "b": 10}, "val": {"a": 3, "b": 0}, "test": {"a": 4, "b": 5}}}
    (f,) = check_sides(m)
    assert f.code == "one-side" and f.classes == ["b"] and "no val windows" in f.message


def test_strict_makes_findings_errors_and_writes_nothing(tmp_path):
    recs = [recording(c, j) for c in ("a", "b") for j in range(3)] + [recording("c", 0)]
    res, out = prepare(tmp_path, recs, "--strict")
    assert res.exit_code == 2 and "--strict" in res.output and "Traceback" not in res.output
    assert not out.exists()
    res, out = prepare(tmp_path / "again", recs)
    assert res.exit_code == 0
    # diag audit re-runs the same findings; --strict exits 2; a reused dataset keeps --strict honest
    res = CliRunner().invoke(app, ["audit", str(out)])
    assert res.exit_code == 0 and "data audit (one-recording)" in res.output
    assert CliRunner().invoke(app, ["audit", str(out), "--strict"]).exit_code == 2
    data = tmp_path / "again" / "rec"
    res = CliRunner().invoke(app, ["prepare", "--source", "files", "--data", str(data), "--out", str(out), *SMALL,
                                   "--strict"])
    assert res.exit_code == 2 and "up to date" in " ".join(res.output.split())


def test_diag_audit_finds_what_prepare_found(tmp_path):
    from rich.console import Console

    from diag.signal.audit import audit_prepared

    recs = [recording(c, j) for c in ("a", "b") for j in range(3)] + [recording("c", 0, tone_hz=700.0)]
    res, out = prepare(tmp_path, recs)
    assert res.exit_code == 0
    again = audit_prepared(out, Console(file=io.StringIO()))
    assert [f.to_dict() for f in again] == findings(out)
    assert {f.code for f in again} >= {"one-recording", "row-separates"}


def test_auroc_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3))
    y = rng.random(50) < 0.3
    x[y, 1] += 1.0
    np.testing.assert_allclose(auroc(x, y), [roc_auc_score(y, x[:, k]) for k in range(3)])


def test_finding_reads_as_one_warning_with_what_to_do():
    f = AuditFinding("one-recording", "class 'c' rests on one recording", "Record more", ["c"])
    assert str(f) == "class 'c' rests on one recording. Record more"


def test_the_report_lists_the_findings(tmp_path):
    from test_report import fake_run

    from diag.study.report import write_report

    recs = [recording(c, j) for c in ("a", "b") for j in range(3)] + [recording("c", 0)]
    res, out = prepare(tmp_path, recs)
    assert res.exit_code == 0
    runs = tmp_path / "runs"
    for seed in (0, 1):
        fake_run(runs, f"scratch-s{seed}", "scratch", seed, 0.8, dataset=out)
    write_report(runs, quiet=True)
    md = (runs / "report.md").read_text()
    section = md.split("## Data audit", 1)[1].split("\n## ", 1)[0]
    assert "one-recording: class(es) 'c' rest on a single recording" in section
    assert "Data audit</h2>" in (runs / "report.html").read_text()
