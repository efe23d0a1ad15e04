"""Paderborn KAt reader on small files written in the published struct layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from diag.errors import DiagError
from diag.sources.paderborn import PADERBORN_BEARINGS, parse_name, read_paderborn

# (Name, Raster, samples per "4 s" in these tiny files: 64 kHz -> 2560, 4 kHz -> 160, 1 Hz -> 4)
SIGNALS = [
    ("force", "Mech_4kHz", 160),
    ("phase_current_1", "HostService", 2560),
    ("phase_current_2", "HostService", 2560),
    ("speed", "Mech_4kHz", 160),
    ("temp_2_bearing_module", "Temp_1Hz", 4),
    ("torque", "Mech_4kHz", 160),
    ("vibration_1", "HostService", 2560),
]


def write_pu(folder: Path, stem: str, seed: int = 0, signals=SIGNALS, fields=("Name", "Type", "Data", "Unit", "Raster"),
             var: str | None = None) -> Path:
    """Write one file as published: struct `stem` with Info, X (time axes), Y (signals)."""
    rng = np.random.default_rng(seed)
    dt = [(f, "O") for f in fields]
    y = np.zeros((1, len(signals)), dtype=dt)
    for i, (name, raster, n) in enumerate(signals):
        values = {"Name": name, "Type": "raw", "Data": rng.standard_normal((1, n)), "Unit": "", "Raster": raster}
        y[0, i] = tuple(values[f] for f in fields)
    x = np.zeros((1, 3), dtype=[("Name", "O"), ("Data", "O"), ("Raster", "O")])
    for i, (raster, n) in enumerate([("HostService", 2560), ("Mech_4kHz", 160), ("Temp_1Hz", 4)]):
        x[0, i] = (raster, np.arange(n)[None, :] / n * 4.0, raster)
    top = {"Info": np.array([[1.0, 2.0, 3.0]]), "X": x, "Y": y, "Description": "test"}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.mat"
    scipy.io.savemat(path, {var or stem: top}, do_compression=True)
    return path


@pytest.fixture
def pu(tmp_path):
    root = tmp_path / "paderborn"
    seed = 0
    for code in ("K001", "KA01", "KI04", "KB23"):
        for cond in ("N15_M07_F10", "N09_M07_F10"):
            for meas in (1, 2):
                seed += 1
                write_pu(root / code, f"{cond}_{code}_{meas}", seed=seed)
    return root


def test_reads_folder_labels_groups_conditions(pu):
    recs = read_paderborn(pu)
    assert len(recs) == 16
    r = recs[0]
    assert (r.label, r.group, r.condition, r.fs, r.channels) == ("healthy", "K001", "N09_M07_F10", 64000.0, ("vibration_1",))
    assert r.signal.shape == (1, 2560) and r.fault_size == ""
    assert r.meta == {
        "bearing": "K001", "rpm": 900, "torque_nm": 0.7, "radial_force_n": 1000, "measurement": 1,
        "damage": "healthy", "method": "", "location": "healthy",
    }
    by_code = {rec.group: rec for rec in recs}
    assert by_code["KA01"].label == "outer" and by_code["KA01"].meta["damage"] == "artificial"
    assert by_code["KA01"].fault_size == "1"
    assert by_code["KI04"].label == "inner" and by_code["KI04"].meta["damage"] == "real"
    assert by_code["KB23"].label == "combined" and by_code["KB23"].fault_size == "2"
    assert {rec.condition for rec in recs} == {"N15_M07_F10", "N09_M07_F10"}
    # the signal is the file's vibration_1, not another entry of Y
    f = pu / "KA01" / "N15_M07_F10_KA01_2.mat"
    raw = scipy.io.loadmat(f, simplify_cells=True)[f.stem]["Y"][6]
    (one,) = read_paderborn(f)
    np.testing.assert_array_equal(one.signal[0], raw["Data"])
    assert (one.meta["measurement"], one.meta["rpm"]) == (2, 1500)


def test_channels_label_by_and_filters(pu):
    recs = read_paderborn(pu, channels=["phase_current_1", "phase_current_2", "vibration_1"], label_by="bearing")
    assert recs[0].signal.shape == (3, 2560) and recs[0].channels == ("phase_current_1", "phase_current_2", "vibration_1")
    assert sorted({r.label for r in recs}) == ["K001", "KA01", "KB23", "KI04"]
    mech = read_paderborn(pu, channels="speed,torque", bearings=["KA01"], conditions="N15_M07_F10")
    assert len(mech) == 2 and mech[0].fs == 4000.0 and mech[0].signal.shape == (2, 160)
    real = read_paderborn(pu, damage=["healthy", "real"])
    assert sorted({r.group for r in real}) == ["K001", "KB23", "KI04"]
    with pytest.raises(DiagError, match="different rates"):
        read_paderborn(pu, channels=["vibration_1", "speed"])
    with pytest.raises(DiagError, match="no signal vibration_2; the file has force"):
        read_paderborn(pu, channels=["vibration_2"])
    with pytest.raises(DiagError, match="label_by"):
        read_paderborn(pu, label_by="type")
    with pytest.raises(DiagError, match="damage: unknown"):
        read_paderborn(pu, damage=["lifetime"])
    with pytest.raises(DiagError, match="no Paderborn recordings left"):
        read_paderborn(pu, bearings=["KA99"])


def test_table_and_names():
    assert len(PADERBORN_BEARINGS) == 32
    assert sum(v[1] == "artificial" for v in PADERBORN_BEARINGS.values()) == 12
    assert sum(v[1] == "real" for v in PADERBORN_BEARINGS.values()) == 14
    info = parse_name("N15_M01_F04_KI21_20.mat")
    assert info == {"condition": "N15_M01_F04", "rpm": 1500, "torque_nm": 0.1, "radial_force_n": 400,
                    "bearing": "KI21", "measurement": 20}
    with pytest.raises(DiagError, match="not a Paderborn file name"):
        parse_name("vibration.mat")
    with pytest.raises(DiagError, match="unknown operating setting N12_M07_F10"):
        parse_name("N12_M07_F10_K001_1.mat")


def test_raster_missing_falls_back_to_channel_rate_and_unknown_code(tmp_path):
    f = write_pu(tmp_path / "KA02", "N15_M07_F10_KA02_1", fields=("Name", "Data"))
    (r,) = read_paderborn(f)
    assert r.fs == 64000.0 and r.label == "outer" and r.meta["damage"] == "unknown"


def test_bad_struct_errors(tmp_path):
    stem = "N15_M07_F10_K001_1"
    f = tmp_path / f"{stem}.mat"
    scipy.io.savemat(f, {stem: np.ones((10, 1))})
    with pytest.raises(DiagError, match=r"N15_M07_F10_K001_1\.mat: variable .* is not the Paderborn struct") as e:
        read_paderborn(f)
    assert "\n" not in str(e.value)
    scipy.io.savemat(f, {"something": np.ones(3), "other": np.ones(3)})
    with pytest.raises(DiagError, match=r"no struct variable 'N15_M07_F10_K001_1' \(the file holds other, something\)"):
        read_paderborn(f)
    scipy.io.savemat(f, {stem: {"X": 1, "Y": np.ones(4)}})
    with pytest.raises(DiagError, match="field 'Y' is not a struct array of signals"):
        read_paderborn(f)
    write_pu(tmp_path, stem, fields=("Name", "Raster"))
    with pytest.raises(DiagError, match=r"Y\(1\) has no field Data"):
        read_paderborn(f)
    write_pu(tmp_path, stem, signals=[("vibration_1", "Weird", 100)])
    (r,) = read_paderborn(f)  # known channel name: rate from the published table
    assert r.fs == 64000.0
    write_pu(tmp_path, stem, signals=[("vibration_9", "Weird", 100)])
    with pytest.raises(DiagError, match="unknown raster 'weird'"):
        read_paderborn(f, channels=["vibration_9"])
    f.write_bytes(b"\x00garbage" * 50)
    with pytest.raises(DiagError, match="not a readable MATLAB file"):
        read_paderborn(f)


def test_renamed_variable_and_folder_errors(tmp_path):
    f = write_pu(tmp_path / "K002", "N15_M07_F10_K002_3", var="whatever")  # a single struct: used
    (r,) = read_paderborn(f)
    assert r.group == "K002"
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "KA01.rar").write_bytes(b"Rar!")
    with pytest.raises(DiagError, match=r"1 \.rar archives found: extract them first"):
        read_paderborn(tmp_path / "empty")
    with pytest.raises(DiagError, match="no such file or folder"):
        read_paderborn(tmp_path / "nope")
    (tmp_path / "K002" / "notes.mat").write_bytes(b"")
    with pytest.raises(DiagError, match=r"notes\.mat: not a Paderborn file name"):
        read_paderborn(tmp_path / "K002")
