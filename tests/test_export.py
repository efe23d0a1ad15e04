"""diag export: ONNX with a dynamic batch, agreement with PyTorch, the preprocessing JSON, refusals."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from diag.cli import app

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
runner = CliRunner()


@pytest.fixture(scope="module")
def run(predict_run):
    return predict_run


def test_export_matches_pytorch_for_any_batch_and_writes_the_preprocessing(run, tmp_path):
    from diag.learning.models import load_trained

    out = tmp_path / "m.onnx"
    res = runner.invoke(app, ["export", str(run), "--onnx", str(out)])
    assert res.exit_code == 0, res.output
    assert "max |diff| logits" in res.output and "validation images" in res.output
    info = json.loads(out.with_suffix(".json").read_text())
    meta = json.loads((run / "model.json").read_text())
    assert info["classes"] == meta["classes"]
    assert info["preprocessing"]["fs"] == meta["preprocessing"]["fs"]
    assert info["preprocessing"]["length"] == 512 and info["preprocessing"]["format"] == "diag-preprocessing/1"
    assert info["preprocessing"]["transform"] == meta["preprocessing"]["transform"]
    assert info["check"]["max_abs_diff_logits"] <= 1e-4 and info["transform_in_graph"] is False
    assert info["unknown"]["method"] == json.loads((run / "unknown.json").read_text())["method"]
    if info["unknown"].get("stats_file"):  # feature-space methods ship their fitted statistics
        assert (tmp_path / info["unknown"]["stats_file"]).is_file()
    net, _ = load_trained(run)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for b in (1, 5):
        x = np.random.default_rng(b).standard_normal((b, 1, 32, 32)).astype(np.float32)
        logits, feats = sess.run(["logits", "features"], {"images": x})
        with torch.no_grad():
            ref = net(torch.from_numpy(x)).numpy()
        assert logits.shape == (b, 2) and feats.shape[0] == b
        np.testing.assert_allclose(logits, ref, atol=1e-4)


def test_export_refuses_to_overwrite_and_bad_names(run, tmp_path):
    (tmp_path / "m.onnx").write_text("mine")
    res = runner.invoke(app, ["export", str(run), "--onnx", str(tmp_path / "m.onnx")])
    assert res.exit_code == 2 and "already exists" in res.output
    assert (tmp_path / "m.onnx").read_text() == "mine"
    res = runner.invoke(app, ["export", str(run), "--onnx", str(tmp_path / "m.bin")])
    assert res.exit_code == 2 and ".onnx suffix" in res.output
    res = runner.invoke(app, ["export", str(tmp_path / "norun"), "--onnx", str(tmp_path / "x.onnx")])
    assert res.exit_code == 2 and not (tmp_path / "x.onnx").exists()
    res = runner.invoke(app, ["export", str(run), "--onnx", str(tmp_path / "y.onnx"), "--with-transform"])
    assert res.exit_code == 2 and "cannot be exported" in res.output
    assert not list(tmp_path.glob(".*tmp*"))
