"""``diag predict --engine auto|torch|onnx --quantize none|int8`` (issue 24 section 4): the options reach the scoring
engine, give the float model's verdicts, and impossible combinations are refused in one line before any work."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from diag.cli import app
from test_predict_fixtures import FS, tone

runner = CliRunner()


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    d = tmp_path_factory.mktemp("engine_cli")
    x = np.concatenate([tone("low", 1.5, seed=31), tone("high", 1.5, seed=32)])
    np.save(d / "rec.npy", x)
    return d


def _predict(run, rec_dir, *extra):
    out = rec_dir / f"p{'_'.join(extra).replace('-', '')}.json"
    res = runner.invoke(app, ["predict", str(run), str(rec_dir / "rec.npy"), "--fs", str(FS), "-q", "--windows",
                              "--json", str(out), "--force", *extra])
    assert res.exit_code == 0, res.output
    return json.loads(out.read_text())


def test_engines_from_the_command_line_agree_with_torch(predict_run, recording):
    pytest.importorskip("onnxruntime")
    ref = _predict(predict_run, recording, "--engine", "torch")
    assert ref["model"]["engine"] == "torch"
    # the default (auto) on a CPU with onnxruntime runs ONNX Runtime; with int8 it stays on torch
    for extra, name in (([], "onnx"), (["--engine", "onnx"], "onnx"), (["--quantize", "int8"], "torch+int8")):
        got = _predict(predict_run, recording, *extra)
        assert got["model"]["engine"] == name
        a, b = ref["files"][0], got["files"][0]
        assert a["verdict"] == b["verdict"]
        pa, pb = (np.array([w["probs"] for w in f["windows"]]) for f in (a, b))
        assert pa.shape == pb.shape and len(pa) > 10
        assert (pa.argmax(1) == pb.argmax(1)).mean() >= 0.9


@pytest.mark.parametrize("extra, message", [
    (["--engine", "tensorrt"], "--engine: choose one of auto, torch, onnx"),
    (["--quantize", "int4"], "--quantize: choose one of none, int8"),
    (["--engine", "onnx", "--quantize", "int8"], "--engine onnx --quantize int8: not supported"),
])
def test_impossible_engines_are_refused_in_one_line(predict_run, recording, extra, message):
    out = recording / "never.json"
    res = runner.invoke(app, ["predict", str(predict_run), str(recording / "rec.npy"), "--fs", str(FS), "-q",
                              "--json", str(out), *extra])
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split()) and "Traceback" not in res.output
    assert not out.exists()
