"""Ottawa (Huang & Baddour 2018) reader on small files in the published layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from diag.errors import DiagError
from diag.sources.ottawa import OTTAWA_FS, parse_name, read_ottawa


def write_ottawa(path: Path, n: int = 4000, seed: int = 0, variables=("Channel_1", "Channel_2")) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {}
    if "Channel_1" in variables:
        data["Channel_1"] = rng.standard_normal((n, 1))
    if "Channel_2" in variables:
        # encoder: a square wave whose period shrinks (speed increasing)
        t = np.arange(n) / OTTAWA_FS
        data["Channel_2"] = (np.sin(2 * np.pi * (200 + 5e4 * t) * t) > 0).astype(float)[:, None] * 5.0
    scipy.io.savemat(path, data)
    return path


@pytest.fixture
def ottawa(tmp_path):
    root = tmp_path / "ottawa"
    folders = {"H": "1 Data collected from a healthy bearing", "I": "2 Data collected from a bearing with inner race fault",
               "O": "3 Data collected from a bearing with outer race fault", "B": "4 Data collected from a bearing with ball fault",
               "C": "5 Data collected from a bearing with a combination of faults"}
    seed = 0
    for h, folder in folders.items():
        for s in "ABCD":
            for t in (1, 2):
                seed += 1
                write_ottawa(root / folder / f"{h}-{s}-{t}.mat", seed=seed)
    return root


def test_reads_labels_conditions_groups(ottawa):
    recs = read_ottawa(ottawa)
    assert len(recs) == 40
    r = recs[0]
    assert (r.label, r.condition, r.group, r.fs, r.channels) == ("healthy", "increasing", "H-A-1", 200000.0, ("vibration",))
    assert r.signal.shape == (1, 4000) and r.signal.dtype == np.float32
    assert r.meta == {"health": "H", "profile": "A", "trial": 1, "bearing": "H"}
    assert [x.label for x in recs[::8]] == ["healthy", "inner", "outer", "ball", "combined"]
    assert sorted({x.condition for x in recs}) == ["decreasing", "decreasing-increasing", "increasing", "increasing-decreasing"]
    assert len({x.group for x in recs}) == 40  # every file is its own run
    f = ottawa / "3 Data collected from a bearing with outer race fault" / "O-C-2.mat"
    (one,) = read_ottawa(f)
    np.testing.assert_allclose(one.signal[0], scipy.io.loadmat(f)["Channel_1"].ravel(), rtol=1e-6)
    assert (one.label, one.condition) == ("outer", "increasing-decreasing")


def test_encoder_channel_and_filters(ottawa):
    recs = read_ottawa(ottawa, channels=["vibration", "encoder"], health=["H", "outer"], profiles="D")
    assert [r.group for r in recs] == ["H-D-1", "H-D-2", "O-D-1", "O-D-2"]
    assert recs[0].channels == ("vibration", "encoder") and recs[0].signal.shape == (2, 4000)
    assert set(np.unique(recs[0].signal[1])) == {0.0, 5.0}
    with pytest.raises(DiagError, match="health: unknown 'X'"):
        read_ottawa(ottawa, health=["X"])
    with pytest.raises(DiagError, match="channels: unknown"):
        read_ottawa(ottawa, channels=["tacho"])
    with pytest.raises(DiagError, match="no Ottawa recordings left"):
        read_ottawa(ottawa / "1 Data collected from a healthy bearing", health="I")


def test_errors(tmp_path):
    assert parse_name("c-d-3.mat") == ("C", "D", 3)
    with pytest.raises(DiagError, match=r"x\.mat: not an Ottawa file name"):
        parse_name("x.mat")
    f = write_ottawa(tmp_path / "H-A-1.mat", variables=("Channel_2",))
    with pytest.raises(DiagError, match=r"H-A-1\.mat: no variable Channel_1; the file holds Channel_2") as e:
        read_ottawa(tmp_path)
    assert "\n" not in str(e.value)
    f.write_bytes(b"PK\x03\x04 zip not mat" * 10)
    with pytest.raises(DiagError, match=r"H-A-1\.mat: not a readable MATLAB file"):
        read_ottawa(f)
    write_ottawa(tmp_path / "H-A-1.mat")
    write_ottawa(tmp_path / "copy" / "H-A-1.mat")
    with pytest.raises(DiagError, match="the same run as"):
        read_ottawa(tmp_path)
    with pytest.raises(DiagError, match="no such file or folder"):
        read_ottawa(tmp_path / "nope")
