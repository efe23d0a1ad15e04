"""Fixtures shared by the test modules: the tiny trained runs (built once per session; see
tests/test_predict_fixtures.py for how) and where the shared real data lies."""

import pytest

from test_predict_fixtures import order_run as _build_order_run
from test_predict_fixtures import trained_run


@pytest.fixture(scope="session")
def predict_run(tmp_path_factory):
    """A finished run on two noisy tones (8 kHz, 32x32 CWT) with its unknown detector: predict / evaluate /
    export tests score with it."""
    return trained_run(tmp_path_factory.getbasetemp() / "predict_run")


@pytest.fixture(scope="session")
def order_run(tmp_path_factory):
    """``(run, recordings folder)``: a finished run on envelope-order images of modulated noise."""
    return _build_order_run(tmp_path_factory.getbasetemp() / "order_run")
