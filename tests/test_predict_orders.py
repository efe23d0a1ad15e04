"""diag predict on a run trained on envelope-order images (issue 10): every file's reference rate
(shaft rate) comes from --ref-hz / ref_hz=, else from the file's metadata as in diag prepare (here a
labels.csv meta rpm), and the images are then the prepared ones. The tiny run: test_predict_fixtures.py."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import diag
from diag.cli import app
from diag.signal.dataset import PreparedDataset
from diag.errors import DiagError
from diag.learning.unknown import forward_parts
from diag.sources.stream import Signal
from test_predict_fixtures import FS, RPM, modulated

runner = CliRunner()


@pytest.fixture(scope="module")
def orun(order_run):
    return order_run


@pytest.fixture(scope="module")
def pred(orun):
    return diag.load_model(orun[0])


def _cli(*args):
    res = runner.invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


def _one_error_line(out):
    lines = [ln for ln in out.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), out
    assert "Traceback" not in out
    return lines[0]


def _prepared(pred, data, name):
    """(the recording's file, its test window starts, the images diag prepare wrote for them)."""
    ds = PreparedDataset(json.loads((pred.run / "model.json").read_text())["dataset"]["path"])
    meta = ds.meta("test")
    src = data / name[:-1] / f"{name}.npy"
    rows = meta["source"] == str(src)
    assert rows.any(), f"{name} is not a test recording of the run"
    return src, meta["start"][rows].astype(int), np.asarray(ds.images("test"))[rows].astype(np.float32)


def _rebuilt(pred, path, starts, ref_hz=None):
    """The predictor's images of the windows at ``starts`` of the file, with the file's reference rate."""
    pre = pred.pre
    sig = pred.open(path, fs=FS)
    idx = pre.select_channels(sig)[0]
    ref = pre.reference_for(sig, ref_hz, idx)
    ready = pre.ready(sig, idx)
    return np.concatenate([im for _, im in pre.stream_images(ready, starts, ref)])


def _probs(pred, images):
    with torch.no_grad():
        return torch.softmax(forward_parts(pred.net, torch.from_numpy(images))[1], 1).numpy()


def test_a_file_scored_with_ref_hz_gives_back_the_prepared_images_and_probabilities(orun, pred, tmp_path):
    run, data = orun
    src, starts, want = _prepared(pred, data, "inner0")  # 1800 rpm = 30 Hz in its labels.csv
    copy = tmp_path / "inner0.npy"  # no labels.csv here: only --ref-hz knows the rate
    shutil.copy(src, copy)
    r = pred.predict_file(copy, fs=FS, ref_hz=30.0)
    assert r.ref_hz == [30.0, 30.0] and r.ref_from == "given (--ref-hz)"
    assert "order axis: reference 30 Hz from --ref-hz" in r.notes
    np.testing.assert_array_equal(r.windows.start, starts)  # a whole test recording: the same windows
    np.testing.assert_allclose(_rebuilt(pred, copy, starts, 30.0), want, atol=2e-2 * np.abs(want).max())
    np.testing.assert_allclose(r.windows.probs, _probs(pred, want), atol=1e-2)
    # the rate matters: 5 % off moves the order lines to other rows
    assert np.abs(_rebuilt(pred, copy, starts, 31.5) - want).max() > 0.3 * np.abs(want).max()

    # the CLI: --ref-hz, or --rpm (= 60 x Hz); the rate used is in the JSON
    for opt, val in (("--ref-hz", 30), ("--rpm", 1800)):
        out_json, out_csv = tmp_path / f"{opt[2:]}.json", tmp_path / f"{opt[2:]}.csv"
        code, out = _cli("predict", run, copy, "--fs", FS, opt, val, "--json", out_json, "--windows")
        assert code == 0, out
        f = json.loads(out_json.read_text())["files"][0]
        assert f["ref_hz"] == [30.0, 30.0] and f["ref_from"] == "given (--ref-hz)"
        code, out = _cli("predict", run, copy, "--fs", FS, opt, val, "--csv", out_csv)
        row = next(csv.DictReader(out_csv.open()))
        assert code == 0 and float(row["ref_hz_start"]) == float(row["ref_hz_end"]) == 30.0
        assert "order axis: reference 30 Hz from --ref-hz" in out
        np.testing.assert_allclose([w["probs"] for w in f["windows"]], r.windows.probs, atol=1e-4)


def test_without_ref_hz_the_rate_comes_from_the_files_metadata_as_in_prepare(orun, pred):
    _, data = orun
    src, starts, want = _prepared(pred, data, "outer0")  # a speed ramp: rpm [1680, 1920] in labels.csv
    r = pred.predict_file(src, fs=FS)
    assert r.ref_hz == [28.0, 32.0]
    assert r.ref_from == f"recording meta 'rpm' of {data / 'labels.csv'} line 2"
    assert any(n.startswith("order axis: reference 28..32 Hz from recording meta 'rpm'") for n in r.notes)
    np.testing.assert_allclose(_rebuilt(pred, src, starts), want, atol=2e-2 * np.abs(want).max())
    np.testing.assert_allclose(r.windows.probs, _probs(pred, want), atol=1e-2)
    # a given rate wins over the file's, and the note says which was used
    given = pred.predict_file(src, fs=FS, ref_hz=30.0)
    assert given.ref_hz == [30.0, 30.0] and given.ref_from == "given (--ref-hz)"
    assert any("from --ref-hz (not the 28..32 Hz of recording meta 'rpm'" in n for n in given.notes)
    assert np.abs(_rebuilt(pred, src, starts, 30.0) - want).max() > 0.3 * np.abs(want).max()
    # a reader's meta (a CWRU record's rpm) counts the same way; arrays take ref_hz=
    sig = Signal.from_array(modulated("outer", 1800.0, 0.5, seed=3), FS, name="rec")
    sig.meta = {"rpm": 1800.0}
    assert pred.predict_signal(sig).ref_from == "recording meta 'rpm' of the file"
    ramp = pred.predict(modulated("outer", [1500.0, 2100.0], 0.5, seed=3), fs=FS, ref_hz=[25.0, 35.0])
    assert ramp.ref_hz == [25.0, 35.0]
    with pytest.raises(DiagError, match=r"^array: .*pass --ref-hz"):
        pred.predict(modulated("outer", 1800.0, 0.5, seed=3), fs=FS)


def test_bad_reference_rates_are_one_line_exit_2_and_write_nothing(orun, tmp_path):
    run, data = orun
    f = tmp_path / "x.npy"
    np.save(f, modulated("inner", RPM["inner0"], 0.5, seed=9))
    cases = {
        "no rate": ((f,), f"{f}: the model's envorder images sit on an order axis and need this recording's "
                          "shaft rate, which neither the file nor a labels.csv listing it gives; pass --ref-hz HZ"),
        "negative": ((f, "--ref-hz", -30), f"{f}: --ref-hz must be a positive number of Hz"),
        "not finite": ((f, "--ref-hz", "nan"), f"{f}: --ref-hz must be a positive number of Hz"),
        "beyond the image": ((f, "--ref-hz", 500), f"{f}: reference rate 500 Hz (given (--ref-hz)) is out of reach"),
        "both options": ((f, "--ref-hz", 30, "--rpm", 1800), "--ref-hz and --rpm both given"),
        "bad rpm": ((f, "--rpm", 0), "--rpm: must be a positive shaft speed"),
    }
    for name, (args, expect) in cases.items():
        out_json = tmp_path / f"{name}.json"
        code, out = _cli("predict", run, *args, "--fs", FS, "--json", out_json)
        assert code == 2, (name, out)
        assert expect in _one_error_line(out), (name, out)
        assert not out_json.exists(), name


def test_plot_of_an_order_run_draws_its_images_with_the_files_rate(orun, tmp_path):
    run, data = orun
    code, out = _cli("predict", run, data / "outer" / "outer0.npy", "--fs", FS, "--plot", tmp_path / "plots")
    assert code == 0, out
    pngs = list((tmp_path / "plots").glob("*.png"))
    assert len(pngs) == 1 and pngs[0].read_bytes()[:4] == b"\x89PNG"


def test_export_of_an_order_run_without_its_dataset_says_what_is_missing(orun, tmp_path):
    pytest.importorskip("onnxruntime")
    run = shutil.copytree(orun[0], tmp_path / "run")
    meta = json.loads((run / "model.json").read_text())
    meta["dataset"]["path"] = str(tmp_path / "gone")
    (run / "model.json").write_text(json.dumps(meta))
    code, out = _cli("export", run, "--onnx", tmp_path / "m.onnx")
    assert code == 2 and "dataset is gone" in out and "transform.ref_hz" in out, out
    assert not (tmp_path / "m.onnx").exists()


def test_a_rate_far_outside_the_training_rates_gets_a_warning(orun, pred, tmp_path):
    from diag.provenance import trained_ref_range

    run, data = orun
    meta = json.loads((run / "model.json").read_text())
    manifest = json.loads((Path(meta["dataset"]["path"]) / "manifest.json").read_text())
    lo, hi = trained_ref_range(manifest)
    assert meta["preprocessing"]["ref_range"] == [lo, hi] and 20.0 <= lo < hi <= 40.0  # rpm 1200..2400
    x = modulated("outer", 1800.0, 0.5, seed=3)
    inside = pred.predict(x, fs=FS, ref_hz=(lo + hi) / 2)
    assert not any(n.startswith("warning:") for n in inside.notes)
    for far in (lo / 1.3, [hi, hi * 1.3]):  # below; a ramp that ends above
        r = pred.predict(x, fs=FS, ref_hz=far)
        assert any(n.startswith("warning: reference") and f"{lo:g}-{hi:g} Hz the model was trained at" in n
                   for n in r.notes), r.notes
    # a run trained before model.json recorded the range: its prepared dataset's, while it is there
    old = tmp_path / "old"
    shutil.copytree(run, old)
    del meta["preprocessing"]["ref_range"]
    (old / "model.json").write_text(json.dumps(meta))
    assert diag.load_model(old).pre.ref_range == [lo, hi]


def test_an_order_run_scores_unknown_by_its_image_rows_and_flags_an_untrained_fault_order(orun, pred, monkeypatch):
    """envorder runs default to the ``rows`` score (diag.learning.unknown.default_method): a recording whose
    envelope beats at an order no training recording had (4.71, a ball fault's 2 x BSF) puts energy in
    an empty row and is unknown; a trained fault order at an untrained speed is not."""
    import test_predict_fixtures as fx

    assert pred.unknown.method == "rows" and pred.unknown_features == "rows"
    monkeypatch.setitem(fx.ORDERS, "ball", 4.71)
    alien = pred.predict(fx.modulated("ball", 1800.0, 2.0, seed=11), fs=FS, ref_hz=30.0)
    known = pred.predict(fx.modulated("outer", 1710.0, 2.0, seed=11), fs=FS, ref_hz=28.5)
    assert known.verdict == "outer"
    assert alien.unknown_share >= 0.5 and known.unknown_share < 0.2, (alien.unknown_share, known.unknown_share)
