"""``--engine auto`` (issue 24 section 4): ONNX Runtime where it can run (CPU, onnxruntime installed, no int8),
torch elsewhere; the exported graph is cached per run in diag's cache folder (DIAG_CACHE_DIR, set to a
temporary folder by tests/conftest.py), reused on a hit, exported again when damaged, never written into
the run folder."""

import json
from pathlib import Path

import numpy as np
import pytest
from test_predict_fixtures import FS, tone

import diag.serving.engine as engine_mod
import diag.serving.onnx_cache as oc
from diag.serving.engine import OPSET, TwoOutputs, resolve_engine
from diag.serving.predictor import Predictor


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DIAG_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "onnx"


@pytest.fixture(scope="module")
def recording():
    return np.concatenate([tone("low", 1.5, seed=41), tone("high", 1.5, seed=42), tone("alien", 1.0, seed=43)])


def test_auto_picks_onnx_on_a_cpu_with_onnxruntime_and_torch_elsewhere(monkeypatch):
    monkeypatch.setattr(engine_mod, "onnxruntime_available", lambda: True)
    assert resolve_engine("auto", "none", "cpu") == "onnx"
    assert resolve_engine("auto", "none", "cuda:0") == "torch"
    assert resolve_engine("auto", "int8", "cpu") == "torch"
    assert resolve_engine("torch", "none", "cpu") == "torch" and resolve_engine("onnx", "none", "cpu") == "onnx"
    monkeypatch.setattr(engine_mod, "onnxruntime_available", lambda: False)
    assert resolve_engine("auto", "none", "cpu") == "torch"


def test_auto_without_onnxruntime_scores_with_torch(predict_run, cache, monkeypatch):
    monkeypatch.setattr(engine_mod, "onnxruntime_available", lambda: False)
    pred = Predictor(predict_run, engine="auto")
    assert pred.engine_name == "torch" and pred.describe()["engine"] == "torch"
    assert not cache.exists()


def test_auto_falls_back_to_torch_when_the_export_fails(predict_run, cache, monkeypatch):
    pytest.importorskip("onnxruntime")

    def broken(*a, **k):
        raise RuntimeError("exporter says no")

    monkeypatch.setattr(oc, "export_bytes", broken)
    pred = Predictor(predict_run, engine="auto")
    assert pred.engine_name == "torch"
    assert any("exporter says no" in n and "scoring with torch" in n for n in pred.notes)
    with pytest.raises(RuntimeError, match="exporter says no"):  # an explicit --engine onnx does not hide it
        Predictor(predict_run, engine="onnx")


def test_auto_matches_torch_and_caches_the_graph_outside_the_run(predict_run, cache, recording):
    pytest.importorskip("onnxruntime")
    before = sorted(p.name for p in Path(predict_run).iterdir())
    auto = Predictor(predict_run, engine="auto")
    assert auto.engine_name == "onnx" and auto.engine.source == "exported"
    ref = Predictor(predict_run, engine="torch").predict(recording, fs=FS)
    got = auto.predict(recording, fs=FS)
    np.testing.assert_allclose(got.windows.probs, ref.windows.probs, atol=1e-4)
    np.testing.assert_allclose(got.windows.score, ref.windows.score, rtol=1e-3, atol=1e-3)
    assert got.verdict == ref.verdict and got.is_unknown == ref.is_unknown
    graphs = list(cache.glob("*.onnx"))
    assert len(graphs) == 1 and graphs[0].with_suffix(".json").is_file()
    assert sorted(p.name for p in Path(predict_run).iterdir()) == before  # nothing written into the run


def test_a_cache_hit_reuses_the_file(predict_run, cache, monkeypatch):
    pytest.importorskip("onnxruntime")
    first = Predictor(predict_run, engine="auto").engine
    stamp = first.path.stat().st_mtime_ns

    def no_export(*a, **k):
        raise AssertionError("exported although the cache holds the graph")

    monkeypatch.setattr(oc, "export_bytes", no_export)
    again = Predictor(predict_run, engine="auto").engine
    assert again.source == "cache" and again.path == first.path and first.path.stat().st_mtime_ns == stamp


@pytest.mark.parametrize("damage", ["truncate", "flip", "sidecar", "stale"])
def test_a_damaged_cache_file_is_exported_again(predict_run, cache, recording, damage):
    pytest.importorskip("onnxruntime")
    path = Predictor(predict_run, engine="auto").engine.path
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":  # a changed weight byte: the graph still loads, its sha256 does not match
        i = len(data) - 1000
        path.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :])
    elif damage == "sidecar":
        path.with_suffix(".json").write_text("{not json")
    else:  # a consistent file (sha256 recorded) whose graph is not this network's: the probe batch catches it
        import copy

        import torch

        tp = Predictor(predict_run, engine="torch")
        other = copy.deepcopy(tp.net)
        with torch.no_grad():
            for w in other.parameters():
                w.add_(0.05 * torch.randn_like(w))
        oc.store(path, oc.export_bytes(TwoOutputs(other, tp.unknown_features), tp.pre.image_shape, OPSET), {})
    pred = Predictor(predict_run, engine="auto")
    assert pred.engine.source == "exported" and pred.engine_name == "onnx"
    assert path.read_bytes() == data or oc.load_cached(path) is not None
    ref = Predictor(predict_run, engine="torch").predict(recording, fs=FS)
    np.testing.assert_allclose(pred.predict(recording, fs=FS).windows.probs, ref.windows.probs, atol=1e-4)
    assert json.loads(path.with_suffix(".json").read_text())["sha256"]


def test_an_unwritable_cache_costs_only_speed(predict_run, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("DIAG_CACHE_DIR", str(blocker))
    pred = Predictor(predict_run, engine="auto")
    assert pred.engine_name == "onnx" and pred.engine.source == "memory"


def test_a_cache_folder_inside_the_run_is_never_written(predict_run, monkeypatch):
    pytest.importorskip("onnxruntime")
    before = sorted(str(p) for p in Path(predict_run).rglob("*"))
    monkeypatch.setenv("DIAG_CACHE_DIR", str(Path(predict_run) / "cache"))
    pred = Predictor(predict_run, engine="auto")
    assert pred.engine_name == "onnx" and pred.engine.source == "memory"
    assert sorted(str(p) for p in Path(predict_run).rglob("*")) == before


def test_the_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("DIAG_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert oc.onnx_dir() == tmp_path / "xdg" / "diag" / "onnx"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert oc.onnx_dir() == tmp_path / "home" / ".cache" / "diag" / "onnx"
    monkeypatch.setenv("DIAG_CACHE_DIR", str(tmp_path / "mine"))
    assert oc.onnx_dir() == tmp_path / "mine" / "onnx"
