"""Fixtures shared by the test modules: the tiny trained runs (built once per session; see
tests/test_predict_fixtures.py for how) and where the shared real data lies."""

import os

import pytest

from test_predict_fixtures import order_run as _build_order_run
from test_predict_fixtures import trained_run


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """diag's cache (the ONNX graphs of diag predict --engine auto|onnx) in a temporary folder, never the
    user's ~/.cache/diag."""
    old = os.environ.get("DIAG_CACHE_DIR")
    os.environ["DIAG_CACHE_DIR"] = str(tmp_path_factory.mktemp("diag_cache"))
    yield
    if old is None:
        os.environ.pop("DIAG_CACHE_DIR", None)
    else:
        os.environ["DIAG_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def predict_run(tmp_path_factory):
    """A finished run on two noisy tones (8 kHz, 32x32 CWT) with its unknown detector: predict / evaluate /
    export tests score with it."""
    return trained_run(tmp_path_factory.getbasetemp() / "predict_run")


@pytest.fixture(scope="session")
def order_run(tmp_path_factory):
    """``(run, recordings folder)``: a finished run on envelope-order images of modulated noise."""
    return _build_order_run(tmp_path_factory.getbasetemp() / "order_run")
