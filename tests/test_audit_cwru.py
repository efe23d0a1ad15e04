"""The data audit on the real CWRU 12 kHz files in ../shared/data (skipped when absent): the one healthy
recording (48 kHz, another acquisition chain) is separated by a top image row's mean alone, even after the
shipped config's band limit, and the audit says so with the band."""

import json
from pathlib import Path

import pytest
from helpers import shared_cwru
from typer.testing import CliRunner

from diag.cli import app

ROOT = Path(__file__).resolve().parents[1]
CWRU = shared_cwru()
pytestmark = [pytest.mark.shared_data,
              pytest.mark.skipif(CWRU is None, reason="../shared/data/cwru12k not present (set DIAG_SHARED_DATA)")]


def test_the_audit_names_the_healthy_recordings_shortcut_and_the_default_split_says_time(tmp_path):
    res = CliRunner().invoke(app, ["prepare", "--config", str(ROOT / "configs/cwru.toml"), "--data", str(CWRU),
                                   "--out", str(tmp_path / "cwru"), "-q"])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "cwru" / "manifest.json").read_text())
    # the default split: every fault class is one bearing (group) and 'normal' one recording -> time, warned
    assert m["split"]["method"] == "time" and "auto -> time" in " ".join(res.output.split())
    found = {}
    for f in m["audit"]["findings"]:
        found.setdefault(f["code"], []).append(f)
    assert found["one-recording"][0]["classes"] == ["normal"]
    assert found["resampled-some"][0]["classes"] == ["normal"]
    assert found["resampled-some"][0]["detail"] == {"rate_hz": 48000.0, "to_hz": 12000.0}
    (row,) = [f for f in found["row-separates"] if f["classes"] == ["normal"]]
    assert row["detail"]["auroc"] == 1.0
    top = m["image_shape"][1] - 1
    assert top in row["detail"]["rows"], "the top CWT row (at the 5 kHz band limit) separates it"
    assert any(b.endswith("Hz") and float(b.split(": ")[1].split("-")[1].split()[0]) > 4500 for b in row["detail"]["bands"])
    assert "AUROC 1.000" in row["message"] and "cwt rows" in row["message"]
    # every fault class rests on one bearing
    assert len(found["one-group"][0]["classes"]) == 9
