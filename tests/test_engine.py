"""The engines that score images (issue 24): ONNX Runtime gives PyTorch's answers, the int8-quantised
network stays close to the float one, the producer-consumer pipeline changes nothing but the timing."""

import threading
import time

import numpy as np
import pytest

import diag
import diag.serving.predictor
from diag.errors import DiagError
from diag.serving.engine import make_engine, prefetch
from test_predict_fixtures import FS, tone


@pytest.fixture(scope="module")
def run(predict_run):
    return predict_run


@pytest.fixture(scope="module")
def recording():
    return np.concatenate([tone("low", 1.5, seed=21), tone("high", 1.5, seed=22), tone("alien", 1.0, seed=23)])


def test_the_pipeline_gives_the_same_answers(run, recording):
    a = diag.load_model(run)
    b = diag.serving.predictor.Predictor(run, pipeline=False)
    ra, rb = a.predict(recording, fs=FS), b.predict(recording, fs=FS)
    np.testing.assert_array_equal(ra.windows.probs, rb.windows.probs)
    np.testing.assert_array_equal(ra.windows.score, rb.windows.score)
    assert ra.spans == rb.spans


def test_onnx_runtime_gives_pytorchs_answers(run, recording):
    pytest.importorskip("onnxruntime")
    torch_pred = diag.load_model(run)
    onnx_pred = diag.serving.predictor.Predictor(run, engine="onnx")
    rt, ro = torch_pred.predict(recording, fs=FS), onnx_pred.predict(recording, fs=FS)
    np.testing.assert_allclose(ro.windows.probs, rt.windows.probs, atol=1e-4)
    np.testing.assert_allclose(ro.windows.score, rt.windows.score, rtol=1e-3, atol=1e-3)
    assert ro.verdict == rt.verdict and (ro.windows.unknown == rt.windows.unknown).mean() > 0.97
    assert onnx_pred.describe()["engine"] == "onnx"


def test_int8_linear_layers_stay_close_to_the_float_network(run, recording):
    f32 = diag.load_model(run).predict(recording, fs=FS)
    q = diag.serving.predictor.Predictor(run, quantize="int8")
    r8 = q.predict(recording, fs=FS)
    assert q.describe()["engine"] == "torch+int8"
    assert not np.array_equal(r8.windows.probs, f32.windows.probs)  # it did quantise
    agree = (r8.windows.probs.argmax(1) == f32.windows.probs.argmax(1)).mean()
    assert agree >= 0.9 and np.abs(r8.windows.probs - f32.windows.probs).max() < 0.2, agree


def test_engine_options_are_checked(run):
    net = diag.load_model(run).net
    with pytest.raises(DiagError, match="--engine: choose one of auto, torch, onnx"):
        make_engine(net, "pooled", "cpu", (1, 32, 32), engine="tensorrt")
    with pytest.raises(DiagError, match="--quantize: choose one of none, int8"):
        make_engine(net, "pooled", "cpu", (1, 32, 32), quantize="int4")


def test_prefetch_keeps_order_hands_over_errors_and_stops_its_thread():
    assert list(prefetch(iter(range(50)), depth=2)) == list(range(50))

    def failing():
        yield 1
        raise ValueError("bad batch")

    got = []
    with pytest.raises(ValueError, match="bad batch"):
        for item in prefetch(failing()):
            got.append(item)
    assert got == [1]
    before = threading.active_count()
    it = prefetch(iter(range(1000)), depth=2)
    assert next(it) == 0
    it.close()  # the consumer stops early: the producer must not hang on the full queue
    deadline = time.time() + 5
    while threading.active_count() > before and time.time() < deadline:
        time.sleep(0.01)
    assert threading.active_count() <= before
