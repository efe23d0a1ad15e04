"""diag prepare on the real CWRU 12 kHz drive-end files in ../shared/data (skipped when absent)."""

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from diag.cli import app
from diag.signal.dataset import PreparedDataset

from helpers import shared_cwru

ROOT = Path(__file__).resolve().parents[1]


CWRU = shared_cwru()
pytestmark = [pytest.mark.shared_data,
              pytest.mark.skipif(CWRU is None, reason="../shared/data/cwru12k not present (set DIAG_SHARED_DATA)")]


def test_prepare_whole_cwru_set_time_split(tmp_path):
    res = CliRunner().invoke(app, ["prepare", "--config", str(ROOT / "configs/cwru.toml"),
                                   "--data", str(CWRU), "--out", str(tmp_path / "cwru")])
    assert res.exit_code == 0, res.output
    ds = PreparedDataset(tmp_path / "cwru")
    m = ds.manifest
    assert len(m["recordings"]) == 37 and len(ds.classes) == 10 and ds.classes[0] == "normal"
    assert ds.image_shape == (1, 64, 64)
    # Record 97 was read at its true 48 kHz and resampled to 12 kHz, like nothing else.
    rec97 = [r for r in m["recordings"] if r["source"].endswith("_97.mat")][0]
    assert rec97["fs_original"] == 48000.0 and rec97["fs"] == 12000.0
    assert rec97["samples"] == pytest.approx(243938 / 4, abs=1)
    assert len(m["source_checksums"]) == 38  # 37 .mat + SHA256SUMS
    for s in ("train", "val", "test"):
        assert set(ds.meta(s)["label"]) == set(ds.classes)
    print(f"prepared 37 CWRU recordings in {m['seconds']} s: sizes {m['sizes']}")


def test_prepare_cwru_condition_split_holds_out_3hp(tmp_path):
    res = CliRunner().invoke(app, ["prepare", "--config", str(ROOT / "configs/cwru.toml"), "--data", str(CWRU),
                                   "--out", str(tmp_path / "c"), "--split", "condition",
                                   "--set", 'split.test_conditions=["3HP"]', "--set", "transform.size=[32,32]",
                                   "--set", "transform.n_scales=32"])
    assert res.exit_code == 0, res.output
    ds = PreparedDataset(tmp_path / "c")
    test = ds.meta("test")
    faulty = test["label"] != "normal"
    assert set(test["condition"][faulty]) == {"3HP"}
    assert "3HP" not in set(ds.meta("train")["condition"])
    assert any("normal" in n for n in ds.manifest["split"]["notes"])
    assert np.isfinite(np.asarray(ds.images("test"), dtype=np.float32)).all()
