"""CWRU reader: the real files in ../shared/data/cwru12k plus small synthetic .mat files."""

from __future__ import annotations

import os
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import scipy.signal

from diag.errors import DiagError
from diag.sources.cwru import CWRU_RECORDS, DE_BEARING_MULTIPLES, read_cwru, record_number

REPO = Path(__file__).resolve().parents[1]


def _shared_cwru() -> Path:
    base = Path(os.environ.get("DIAG_SHARED_DATA") or REPO.parent / "shared" / "data")
    folder = base if base.name == "cwru12k" else base / "cwru12k"
    if not folder.is_dir():
        pytest.skip(f"real CWRU data not found at {folder} (set DIAG_SHARED_DATA to the shared data folder)")
    return folder


@pytest.fixture(scope="module")
def real():
    """All 37 real recordings with DE and FE channels (~0.4 s)."""
    return read_cwru(_shared_cwru(), channels=["DE", "FE"])


def _by_record(recs, rec):
    (r,) = [r for r in recs if r.meta["record"] == rec]
    return r


# ------------------------------------------------------------------------------------------------
# real data


@pytest.mark.shared_data
def test_all_37_real_files_load_with_right_labels_loads_and_rates(real):
    assert len(real) == 37
    assert sorted({r.label for r in real}) == [
        "B_0.007", "B_0.014", "B_0.021", "IR_0.007", "IR_0.014", "IR_0.021",
        "OR@6_0.007", "OR@6_0.014", "OR@6_0.021", "normal",
    ]
    for r in real:
        r.validate()
        assert r.channels == ("DE", "FE") and r.signal.shape[0] == 2
        assert r.signal.dtype in (np.float32, np.float64)
        # cross-check the table against the fault text of the long file names (never used by the reader)
        m = re.match(r"12k_Drive_End_(IR|B|OR)(\d{3})(@\d+)?_(\d)_(\d+)\.mat", Path(r.source).name)
        if m:
            fault, size, pos, load, rec = m.groups()
            assert r.label == f"{fault}{pos or ''}_0.{size}"
            assert r.condition == f"{load}HP" and r.meta["record"] == int(rec)
            assert r.fs == 12000.0 and 121_000 <= r.n_samples <= 123_000
            assert r.fault_size == f"0.{size}" and r.meta["end"] == "DE"
        else:
            assert Path(r.source).name == "normal_0_97.mat"
        assert Path(r.source).parent.name == r.condition  # folders 0HP..3HP
        assert 1700 < r.meta["rpm"] < 1800
    normal = _by_record(real, 97)
    assert (normal.label, normal.fs, normal.n_samples, normal.fault_size) == ("normal", 48000.0, 243_938, "")
    assert normal.condition == "0HP" and normal.group == "normal"
    assert normal.duration == pytest.approx(5.08, abs=0.01)
    assert _by_record(real, 130).meta["position"] == 6
    # every fault bearing is one group spanning the four loads
    groups = {}
    for r in real:
        groups.setdefault(r.group, set()).add(r.condition)
    assert len(groups) == 10
    assert all(conds == {"0HP", "1HP", "2HP", "3HP"} for g, conds in groups.items() if g != "normal")


@pytest.mark.shared_data
def test_through_the_source_config_registry():
    from diag.config import SourceConfig
    from diag.signal.recordings import load_recordings

    cfg = SourceConfig(kind="cwru", path=str(_shared_cwru()), options={"channels": ["DE"], "loads": [0]})
    recs = load_recordings(cfg)
    assert len(recs) == 10 and {r.condition for r in recs} == {"0HP"}
    with pytest.raises(DiagError, match="not understood by the 'cwru' reader"):
        load_recordings(SourceConfig(kind="cwru", path=str(_shared_cwru()), options={"chanels": ["DE"]}))


@pytest.mark.shared_data
def test_label_by_type_and_filters():
    folder = _shared_cwru()
    recs = read_cwru(folder, label_by="type", loads=["2HP"])
    assert len(recs) == 9 and {r.condition for r in recs} == {"2HP"}
    assert sorted({r.label for r in recs}) == ["B", "IR", "OR"]
    recs = read_cwru(folder, records=[97, 130], channels="DE")
    assert [r.meta["record"] for r in recs] == [97, 130]
    with pytest.raises(DiagError, match=r"records: \[98\] not found"):
        read_cwru(folder, records=[97, 98])


@pytest.mark.shared_data
def test_missing_ba_channel_in_normal_file_names_file_and_channel():
    folder = _shared_cwru()
    with pytest.raises(DiagError, match=r"normal_0_97\.mat: no BA channel \(X097_BA_time\).*has DE, FE") as e:
        read_cwru(folder / "0HP", channels=["DE", "BA"])
    assert "\n" not in str(e.value)
    (r,) = read_cwru(folder / "0HP" / "12k_Drive_End_IR007_0_105.mat", channels=["BA", "DE"])
    assert r.channels == ("BA", "DE")


def _peak(x: np.ndarray, fs: float, lo: float, hi: float) -> tuple[float, float]:
    """Frequency of the largest Welch peak in [lo, hi] Hz (0.25 Hz bins) and its height over the band median."""
    f, p = scipy.signal.welch(x, fs, nperseg=int(fs * 4))
    band = (f >= lo) & (f <= hi)
    i = int(np.argmax(p[band]))
    return float(f[band][i]), float(p[band][i] / np.median(p[band]))


@pytest.mark.shared_data
def test_147_8_hz_line_lines_up_only_at_the_true_48k_rate(real):
    """Physics check of fs: the rig's 147.8 Hz line sits at the same frequency in 97 (48 kHz) and in a
    12 kHz fault file; reading 97 as 12 kHz would move it to 147.8 / 4 = 36.9 Hz."""
    normal, fault = _by_record(real, 97), _by_record(real, 105)
    f_normal, h_normal = _peak(normal.signal[0], normal.fs, 140, 155)
    f_fault, h_fault = _peak(fault.signal[0], fault.fs, 140, 155)
    assert f_normal == pytest.approx(147.8, abs=0.3) and h_normal > 100
    assert f_fault == pytest.approx(147.8, abs=0.3) and h_fault > 100
    assert abs(f_normal - f_fault) <= 0.25
    # read at the wrong rate, the line moves to a quarter of its frequency
    f_wrong, h_wrong = _peak(normal.signal[0], 12000.0, 35, 39)
    assert f_wrong == pytest.approx(147.8 / 4, abs=0.3) and h_wrong > 100
    f_wrong, _ = _peak(normal.signal[0], 12000.0, 140, 155)
    assert abs(f_wrong - f_fault) > 1.0


def _envelope_peak(x: np.ndarray, fs: float, lo: float, hi: float) -> float:
    b, a = scipy.signal.butter(4, [2000, 5000], btype="band", fs=fs)
    env = np.abs(scipy.signal.hilbert(scipy.signal.filtfilt(b, a, x)))
    env -= env.mean()
    spec = np.abs(np.fft.rfft(env * np.hanning(env.size)))
    freqs = np.fft.rfftfreq(env.size, 1 / fs)
    band = (freqs >= lo) & (freqs <= hi)
    return float(freqs[band][np.argmax(spec[band])])


@pytest.mark.shared_data
@pytest.mark.parametrize("record", [130, 234])
def test_outer_race_envelope_spectrum_peaks_at_bpfo(real, record):
    r = _by_record(real, record)
    bpfo = DE_BEARING_MULTIPLES["BPFO"] * r.meta["rpm"] / 60.0  # ~107.3 Hz at 1796 rpm
    peak = _envelope_peak(r.signal[0], r.fs, 50, 300)
    assert peak == pytest.approx(bpfo, rel=0.01)


# ------------------------------------------------------------------------------------------------
# synthetic files: exact-record selection, naming styles, errors


def _mat(path: Path, rec: int, n: int = 1000, channels=("DE", "FE", "BA"), rpm=1772.0, value=1.0, extra=None):
    data = {f"X{rec:03d}_{c}_time": np.full((n, 1), value) + np.arange(n)[:, None] * 1e-3 for c in channels}
    if rpm is not None:
        data[f"X{rec:03d}RPM"] = np.array([[rpm]])
    data.update(extra or {})
    scipy.io.savemat(path, data)
    return path


def test_picks_variables_of_the_exact_record_not_the_first_de_key(tmp_path):
    # a file of record 106 that also carries variables of record 105 (listed first)
    other = {"X105_DE_time": np.full((500, 1), -7.0), "X105RPM": np.array([[1797.0]])}
    f = _mat(tmp_path / "12k_Drive_End_B021_0_106.mat", 106, value=3.0, extra=other)  # misleading fault text
    (r,) = read_cwru(f)
    assert r.meta["record"] == 106 and r.label == "IR_0.007" and r.condition == "1HP"  # from the table
    assert r.n_samples == 1000 and r.signal[0, 0] == 3.0
    assert r.meta["rpm"] == 1772.0
    # a file holding only another record's variables is refused, listing what it holds
    scipy.io.savemat(tmp_path / "107.mat", other)
    with pytest.raises(DiagError, match=r"107\.mat: no variables of record 107 \(X107_DE_time\); the file holds X105RPM, X105_DE_time"):
        read_cwru(tmp_path / "107.mat")


def test_174_holding_record_173s_variables_is_read_with_a_note(tmp_path):
    """CWRU's 48 kHz IR 0.014" 0 HP file 174.mat holds X173_* (there is no record 173)."""
    from diag.config import SourceConfig
    from diag.signal.recordings import load_recordings

    rng = np.random.default_rng(0)
    f = tmp_path / "48k_Drive_End_IR014_0_174.mat"
    scipy.io.savemat(f, {"X173_DE_time": rng.standard_normal((1000, 1)), "X173_FE_time": rng.standard_normal((1000, 1)),
                         "X173RPM": np.array([[1796.0]])})
    (r,) = read_cwru(f, channels=["DE", "FE"])
    assert (r.meta["record"], r.label, r.condition, r.fs, r.meta["rpm"]) == (174, "IR_0.014", "0HP", 48000.0, 1796.0)
    assert len(r.notes) == 1 and "only the variables of record 173 (X173_*)" in r.notes[0]
    recs = load_recordings(SourceConfig(kind="cwru", path=str(tmp_path), options={"channels": ["DE"]}))
    assert [(f.problem, f.action) for f in recs.findings] == [("note", "note")]
    assert recs.findings[0].source == str(f) and "read them as record 174" in recs.findings[0].detail
    # variables of two records, one of them unpublished: ambiguous, still refused
    scipy.io.savemat(f, {"X173_DE_time": np.ones((10, 1)), "X172_DE_time": np.ones((10, 1))})
    with pytest.raises(DiagError, match=r"174\.mat: no variables of record 174 \(X174_DE_time\)"):
        read_cwru(f)


def test_naming_styles_zero_padding_and_nominal_rpm(tmp_path):
    _mat(tmp_path / "normal_1_98.mat", 98, channels=("DE", "FE"), rpm=None)
    _mat(tmp_path / "144.mat", 144)
    (tmp_path / "deep").mkdir()
    _mat(tmp_path / "deep" / "48k_Drive_End_OR007@12_3_164.mat", 164)
    _mat(tmp_path / "302.mat", 302)
    (tmp_path / "notes.txt").write_text("ignored")
    recs = read_cwru(tmp_path, label_by="type_size")
    assert [r.meta["record"] for r in recs] == [98, 144, 164, 302]
    n, o3, o12, fe = recs
    assert (n.label, n.fs, n.condition, n.meta["rpm"]) == ("normal", 48000.0, "1HP", 1772.0)  # nominal rpm
    assert (o3.label, o3.group, o3.fs, o3.meta["position"]) == ("OR@3_0.007", "OR_0.007", 12000.0, 3)
    assert (o12.label, o12.fs, o12.condition) == ("OR@12_0.007", 48000.0, "3HP")
    assert (fe.label, fe.group, fe.meta["end"]) == ("OR@12_0.007", "FE_OR_0.007", "FE")


def test_record_table_spot_checks():
    assert record_number("12k_Drive_End_OR007@6_0_130.mat") == 130
    assert record_number("normal_0_97.mat") == 97 and record_number("3001.mat") == 3001
    assert record_number("abc.mat") is None
    assert all(CWRU_RECORDS[r].fs == 48000 and CWRU_RECORDS[r].fault == "normal" for r in (97, 98, 99, 100))
    assert [CWRU_RECORDS[r].load_hp for r in (156, 158, 159, 160)] == [0, 1, 2, 3]
    assert 157 not in CWRU_RECORDS and 216 not in CWRU_RECORDS
    assert (CWRU_RECORDS[217].fault, CWRU_RECORDS[217].size, CWRU_RECORDS[217].load_hp) == ("IR", "0.021", 3)
    assert (CWRU_RECORDS[3005].fault, CWRU_RECORDS[3005].size) == ("B", "0.028")
    expected_12k_de = [*range(105, 109), *range(118, 122), *range(130, 134), *range(144, 148), 156, 158, 159, 160,
                       *range(169, 173), *range(185, 189), *range(197, 201), *range(209, 213), *range(222, 226),
                       *range(234, 238), *range(246, 250), *range(258, 262), *range(3001, 3009)]
    assert sorted(r for r, i in CWRU_RECORDS.items() if i.fs == 12000 and i.end == "DE") == expected_12k_de
    assert sum(1 for i in CWRU_RECORDS.values() if i.fs == 48000 and i.end == "DE") == 52


def test_028_files_use_their_published_variable_numbers(tmp_path):
    _mat(tmp_path / "3001.mat", 56, channels=("DE",))
    (r,) = read_cwru(tmp_path)
    assert (r.label, r.meta["record"], r.n_samples) == ("IR_0.028", 3001, 1000)


def test_corrupt_truncated_and_non_mat_files(tmp_path):
    f = _mat(tmp_path / "105.mat", 105, n=5000)
    raw = f.read_bytes()
    f.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DiagError, match=r"105\.mat: not a readable MATLAB file .*re-download it") as e:
        read_cwru(f)
    assert "\n" not in str(e.value)
    f.write_bytes(b"<html>404 Not Found</html>" * 20)
    with pytest.raises(DiagError, match=r"105\.mat: not a readable MATLAB file"):
        read_cwru(tmp_path)
    f.write_bytes(b"")
    with pytest.raises(DiagError, match=r"105\.mat: not a readable MATLAB file"):
        read_cwru(tmp_path)


def test_matlab_v73_hdf5_file(tmp_path):
    f = tmp_path / "105.mat"
    with h5py.File(f, "w", userblock_size=512) as h:
        h["X105_DE_time"] = np.arange(800, dtype=np.float64)[None, :]  # MATLAB N x 1 is stored 1 x N
        h["X105RPM"] = np.array([[1797.0]])
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    with f.open("r+b") as fh:
        fh.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM")
    (r,) = read_cwru(f)
    assert r.n_samples == 800 and r.signal[0, 5] == 5.0 and r.meta["rpm"] == 1797.0


def test_errors_unknown_record_duplicates_and_options(tmp_path):
    _mat(tmp_path / "999.mat", 999)
    with pytest.raises(DiagError, match=r"999\.mat: record 999 is not in diag's CWRU table; pass a labels manifest via the files reader"):
        read_cwru(tmp_path)
    (tmp_path / "999.mat").unlink()
    _mat(tmp_path / "105.mat", 105)
    _mat(tmp_path / "12k_Drive_End_IR007_0_105.mat", 105)
    with pytest.raises(DiagError, match="record 105 is also in"):
        read_cwru(tmp_path)
    (tmp_path / "105.mat").unlink()
    _mat(tmp_path / "noname.mat", 105)
    with pytest.raises(DiagError, match=r"noname\.mat: no record number in the file name"):
        read_cwru(tmp_path)
    (tmp_path / "noname.mat").unlink()
    with pytest.raises(DiagError, match="channels: unknown XX"):
        read_cwru(tmp_path, channels=["DE", "XX"])
    with pytest.raises(DiagError, match="label_by"):
        read_cwru(tmp_path, label_by="size")
    with pytest.raises(DiagError, match="loads: CWRU loads are 0, 1, 2, 3"):
        read_cwru(tmp_path, loads=[5])
    with pytest.raises(DiagError, match="no CWRU recordings left"):
        read_cwru(tmp_path, loads=[3])
    with pytest.raises(DiagError, match="no such file or folder"):
        read_cwru(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DiagError, match=r"no \.mat files"):
        read_cwru(empty)


def test_two_column_channel_variable_is_refused_not_interleaved(tmp_path):
    f = tmp_path / "105.mat"
    scipy.io.savemat(f, {"X105_DE_time": np.ones((500, 2)), "X105RPM": np.array([[1797.0]])})
    with pytest.raises(DiagError, match=r"105\.mat: variable X105_DE_time has shape 500x2, .*re-download the file") as e:
        read_cwru(f)
    assert "\n" not in str(e.value)
    scipy.io.savemat(f, {"X105_DE_time": np.arange(500.0)[None, :]})  # 1 x N is fine
    assert read_cwru(f)[0].n_samples == 500


def test_non_numeric_rpm_variable_falls_back_to_nominal(tmp_path):
    f = _mat(tmp_path / "106.mat", 106, channels=("DE",), rpm=None, extra={"X106RPM": "fast"})
    (r,) = read_cwru(f)
    assert r.meta["rpm"] == r.meta["rpm_nominal"] == 1772
    cell = np.empty((1, 1), dtype=object)
    cell[0, 0] = "1772 rpm"
    _mat(f, 106, channels=("DE",), rpm=None, extra={"X106RPM": cell})
    assert read_cwru(f)[0].meta["rpm"] == 1772.0


def test_loads_accept_whole_number_floats(tmp_path):
    _mat(tmp_path / "105.mat", 105)  # 0 HP
    _mat(tmp_path / "106.mat", 106)  # 1 HP
    assert [r.meta["record"] for r in read_cwru(tmp_path, loads=0.0)] == [105]
    assert [r.meta["record"] for r in read_cwru(tmp_path, loads=[1.0, 0])] == [105, 106]
    with pytest.raises(DiagError, match=r"^loads: expected whole numbers 0-3, got 0\.5$"):
        read_cwru(tmp_path, loads=0.5)


def test_records_filter_matching_nothing_lists_the_records_held(tmp_path):
    _mat(tmp_path / "105.mat", 105)
    _mat(tmp_path / "12k_Drive_End_B007_1_119.mat", 119)
    with pytest.raises(DiagError, match=r"records: \[130\] not found under .*; the folder holds records 105, 119 \(choose"):
        read_cwru(tmp_path, records=[130])
