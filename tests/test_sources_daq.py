"""Readers for what data-acquisition systems write (TDMS, Parquet/Feather, FLAC), and the files
reader's issue-8 items: a file listed twice, symlinked label folders, a header-only CSV, the
find / read / check split. Every file is written by the test itself."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from diag.errors import DiagError
from diag.sources.files import (
    FileEntry,
    check_recording_set,
    find_recordings,
    read_files,
    read_recording,
)

FS = 5000.0


def _sig(n=2000, c=2, seed=0):
    return np.random.default_rng(seed).standard_normal((c, n))


def _manifest(folder, rows, header="path,label,fs"):
    (folder / "labels.csv").write_text("\n".join([header, *(",".join(map(str, r)) for r in rows)]) + "\n")


def _one_line(exc) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


# ------------------------------------------------------------------------------------------------
# TDMS


def _write_tdms(path, groups: dict[str, dict[str, np.ndarray]], fs=FS, props=None):
    from nptdms import ChannelObject, TdmsWriter

    with TdmsWriter(str(path)) as w:
        objs = []
        for g, chans in groups.items():
            for name, data in chans.items():
                p = {"wf_increment": 1.0 / fs, "wf_start_offset": 0.0} if fs else {}
                p.update((props or {}).get(name, {}))
                objs.append(ChannelObject(g, name, data, properties=p))
        w.write_segment(objs)


def test_tdms_group_and_channels_by_name_rate_from_wf_increment(tmp_path):
    x = _sig(c=3)
    _write_tdms(tmp_path / "run1.tdms", {"Vibration": {"DE": x[0], "FE": x[1], "BA": x[2]},
                                         "Slow": {"temp": np.linspace(20, 21, 50)}})
    _manifest(tmp_path, [["run1.tdms", "IR", ""]])
    with pytest.raises(DiagError, match=r"run1\.tdms: holds 2 groups \((Vibration, Slow|Slow, Vibration)\); choose one with the tdms_group option") as e:
        read_files(tmp_path)
    _one_line(e)
    (rec,) = read_files(tmp_path, tdms_group="Vibration")
    assert rec.fs == FS and rec.channels == ("DE", "FE", "BA")  # rate from wf_increment, names from the file
    np.testing.assert_array_equal(rec.signal, x)
    (rec,) = read_files(tmp_path, tdms_group="Vibration", channels=["FE", "DE"])
    assert rec.channels == ("FE", "DE")
    np.testing.assert_array_equal(rec.signal, x[[1, 0]])
    with pytest.raises(DiagError, match=r"no channel of group 'Vibration'\(s\) XX \(channels option\); it has DE, FE, BA"):
        read_files(tmp_path, tdms_group="Vibration", channels=["XX"])
    with pytest.raises(DiagError, match=r"no group 'Vib' \(tdms_group option\); the file holds: (Vibration, Slow|Slow, Vibration)"):
        read_files(tmp_path, tdms_group="Vib")
    # the rate agrees with the manifest / option or it is an error, as for WAV
    with pytest.raises(DiagError, match=r"run1\.tdms: TDMS wf_increment says 5000 Hz but the fs option says 12000 Hz"):
        read_files(tmp_path, tdms_group="Vibration", fs=12000)
    _manifest(tmp_path, [["run1.tdms", "IR", "5000"]])
    assert read_files(tmp_path, tdms_group="Vibration")[0].fs == FS


def test_tdms_without_wf_increment_and_bad_files(tmp_path):
    x = _sig()
    _write_tdms(tmp_path / "a.tdms", {"g": {"a": x[0], "b": x[1]}}, fs=None)
    _manifest(tmp_path, [["a.tdms", "IR", ""]])
    with pytest.raises(DiagError, match=r"a\.tdms: sampling rate unknown; give it in the manifest's fs column or with the fs option"):
        read_files(tmp_path)
    assert read_files(tmp_path, fs=1000)[0].fs == 1000.0
    # channels of different lengths or rates
    _write_tdms(tmp_path / "b.tdms", {"g": {"a": x[0], "b": x[1, :1000]}})
    _manifest(tmp_path, [["b.tdms", "IR", ""]])
    with pytest.raises(DiagError, match=r"b\.tdms: channels a, b of group 'g' have different lengths \[1000, 2000\]"):
        read_files(tmp_path)
    assert read_files(tmp_path, channels="a")[0].n_samples == 2000
    _write_tdms(tmp_path / "c.tdms", {"g": {"a": x[0], "b": x[1]}}, props={"b": {"wf_increment": 1 / 1000}})
    _manifest(tmp_path, [["c.tdms", "IR", ""]])
    with pytest.raises(DiagError, match=r"c\.tdms: channels of group 'g' have different rates \(1000, 5000 Hz"):
        read_files(tmp_path)
    # a truncated file, and a file with no data
    whole = (tmp_path / "c.tdms").read_bytes()
    (tmp_path / "d.tdms").write_bytes(whole[:100])
    _manifest(tmp_path, [["d.tdms", "IR", "1000"]])
    with pytest.raises(DiagError, match=r"d\.tdms: (not a readable TDMS file \(.*\)|the TDMS file holds no groups \(no data\)); re-export it") as e:
        read_files(tmp_path)
    _one_line(e)
    (tmp_path / "d.tdms").write_bytes(b"not a TDMS file at all")
    with pytest.raises(DiagError, match=r"d\.tdms: not a readable TDMS file \(.*\); re-export it") as e:
        read_files(tmp_path)
    _one_line(e)


# ------------------------------------------------------------------------------------------------
# Parquet / Feather


@pytest.mark.parametrize("ext", ["parquet", "feather"])
def test_parquet_and_feather_columns_are_channels(tmp_path, ext):
    import pyarrow as pa
    import pyarrow.feather as feather
    import pyarrow.parquet as pq

    x = _sig(c=2).astype(np.float32)
    table = pa.table({"time": np.arange(x.shape[1]) / FS, "ia": x[0], "ib": x[1], "note": ["ok"] * x.shape[1]})
    path = tmp_path / f"run.{ext}"
    (pq.write_table if ext == "parquet" else feather.write_feather)(table, path)
    _manifest(tmp_path, [[path.name, "normal", FS]])
    with pytest.raises(DiagError, match=rf"run\.{ext}: column 'note' is string, not numbers; choose the signal columns with the channels option") as e:
        read_files(tmp_path)
    _one_line(e)
    (rec,) = read_files(tmp_path, channels=["ia", "ib"])
    assert rec.channels == ("ia", "ib") and rec.fs == FS
    np.testing.assert_array_equal(rec.signal, x)
    with pytest.raises(DiagError, match=r"no column\(s\) ic \(channels option\); it has time, ia, ib, note"):
        read_files(tmp_path, channels=["ia", "ic"])
    # integer columns (an ADC's counts) are read as numbers; nulls become NaN and are refused
    (pq.write_table if ext == "parquet" else feather.write_feather)(
        pa.table({"a": pa.array([1, 2, None, 4] * 10, pa.int16())}), path)
    with pytest.raises(DiagError, match=rf"run\.{ext}: 10 NaN/Inf samples"):
        read_files(tmp_path)


def test_parquet_written_by_pandas_style_index_is_not_a_channel_and_empty_is_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    x = _sig(c=1)[0]
    pq.write_table(pa.table({"__index_level_0__": np.arange(x.size) * 2, "acc": x}), tmp_path / "a.parquet")
    _manifest(tmp_path, [["a.parquet", "IR", FS]])
    (rec,) = read_files(tmp_path)
    assert rec.channels == ("acc",)
    pq.write_table(pa.table({"acc": pa.array([], pa.float64())}), tmp_path / "a.parquet")
    with pytest.raises(DiagError, match=r"a\.parquet: no rows \(no samples\)"):
        read_files(tmp_path)
    (tmp_path / "a.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DiagError, match=r"a\.parquet: not a readable parquet file") as e:
        read_files(tmp_path)
    _one_line(e)


# ------------------------------------------------------------------------------------------------
# FLAC


def test_flac_rate_from_header_values_and_errors(tmp_path):
    import soundfile

    x = np.clip(_sig(c=2) * 0.2, -0.99, 0.99)
    soundfile.write(tmp_path / "a.flac", x.T, 8000, subtype="PCM_16")
    _manifest(tmp_path, [["a.flac", "OR", ""]])
    (rec,) = read_files(tmp_path)
    assert rec.fs == 8000.0 and rec.signal.shape == (2, 2000)
    np.testing.assert_allclose(rec.signal, x, atol=1.0 / 32768)  # 16-bit rounding
    with pytest.raises(DiagError, match=r"a\.flac: FLAC header says 8000 Hz but the manifest says 16000 Hz"):
        _manifest(tmp_path, [["a.flac", "OR", "16000"]])
        read_files(tmp_path)
    (tmp_path / "a.flac").write_bytes(b"fLaC" + b"\x00" * 10)
    with pytest.raises(DiagError, match=r"a\.flac: not a readable FLAC file \(") as e:
        read_files(tmp_path)
    assert str(tmp_path) not in _one_line(e).split(": ", 1)[1]  # the path is said once


# ------------------------------------------------------------------------------------------------
# issue 8, item 14: a file listed twice


def test_a_file_listed_twice_is_an_error_naming_both_lines(tmp_path):
    np.save(tmp_path / "a.npy", _sig())
    np.save(tmp_path / "b.npy", _sig(seed=1))
    _manifest(tmp_path, [["a.npy", "IR", FS], ["b.npy", "OR", FS], ["a.npy", "OR", FS]])
    with pytest.raises(DiagError) as e:
        read_files(tmp_path)
    msg = _one_line(e)
    assert "line 4: 'a.npy' is the same file as 'a.npy' on line 2 (labels 'IR' and 'OR')" in msg
    assert "list each file once" in msg
    # another spelling of the same path, same label: still a leak
    os.mkdir(tmp_path / "sub")
    _manifest(tmp_path, [["a.npy", "IR", FS], ["sub/../a.npy", "IR", FS]])
    with pytest.raises(DiagError, match=r"line 3: 'sub/\.\./a\.npy' is the same file as 'a\.npy' on line 2 \(label 'IR' both times\)"):
        read_files(tmp_path)
    # ... or a link to it
    os.symlink(tmp_path / "a.npy", tmp_path / "link.npy")
    _manifest(tmp_path, [["link.npy", "OR", FS], ["a.npy", "IR", FS]])
    with pytest.raises(DiagError, match=r"line 3: 'a\.npy' is the same file as 'link\.npy' on line 2"):
        read_files(tmp_path)


# ------------------------------------------------------------------------------------------------
# issue 8, item 15: a label folder that is a symbolic link


def test_symlinked_label_folder_is_followed_and_said(tmp_path):
    from diag.config import SourceConfig
    from diag.signal.recordings import load_recordings

    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere" / "inner_race"
    (data / "normal").mkdir(parents=True)
    elsewhere.mkdir(parents=True)
    np.save(data / "normal" / "n1.npy", _sig())
    np.save(elsewhere / "i1.npy", _sig(seed=1))
    os.symlink(elsewhere, data / "IR")
    recs = read_files(data, label_from="folder", fs=FS)
    assert [(r.label, os.path.basename(r.source)) for r in recs] == [("IR", "i1.npy"), ("normal", "n1.npy")]
    assert recs[0].notes == [f"label folder 'IR' is a symbolic link to {elsewhere}; followed"]
    assert recs[1].notes == []
    loaded = load_recordings(SourceConfig(kind="files", path=str(data), options={"label_from": "folder", "fs": FS}))
    assert [(f.problem, f.action, f.detail) for f in loaded.findings] == [
        ("note", "note", f"label folder 'IR' is a symbolic link to {elsewhere}; followed")
    ]
    # a link to nothing is refused, not skipped
    os.symlink(tmp_path / "gone", data / "OR")
    with pytest.raises(DiagError, match=r"OR: symbolic link to .*gone, which does not exist; fix or remove the link"):
        read_files(data, label_from="folder", fs=FS)
    os.unlink(data / "OR")
    # a link back into the data folder would loop: refused, loudly
    os.symlink(data, elsewhere / "loop")
    with pytest.raises(DiagError, match=r"loop: symbolic link to .*data, a folder that contains it \(a loop\); remove the link") as e:
        read_files(data, label_from="folder", fs=FS)
    _one_line(e)


def test_the_cwru_reader_follows_symlinked_folders_too(tmp_path):
    import scipy.io

    from diag.sources.cwru import read_cwru

    (tmp_path / "real").mkdir()
    scipy.io.savemat(tmp_path / "real" / "105.mat", {"X105_DE_time": _sig(c=1).T})
    (tmp_path / "data").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "data" / "0HP")
    assert [r.meta["record"] for r in read_cwru(tmp_path / "data")] == [105]


# ------------------------------------------------------------------------------------------------
# minor items and the three-step split


def test_header_only_csv_is_one_clean_error_without_numpy_warning(tmp_path):
    (tmp_path / "a.csv").write_text("DE,FE\n\n")
    _manifest(tmp_path, [["a.csv", "IR", "1000"]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "loadtxt: input contained no data" would raise here
        with pytest.raises(DiagError, match=r"a\.csv: no samples below the header") as e:
            read_files(tmp_path)
    _one_line(e)


def test_find_read_check_are_three_steps(tmp_path):
    np.save(tmp_path / "a.npy", _sig(c=2))
    (tmp_path / "b.npy").write_bytes(b"not an array")
    np.save(tmp_path / "c.npy", _sig(c=3))
    _manifest(tmp_path, [["a.npy", "IR", FS], ["b.npy", "OR", FS], ["c.npy", "OR", ""]])
    entries = find_recordings(tmp_path)  # opens no data file: b.npy's corruption is not seen yet
    assert [(e.file.name, e.label, e.fs) for e in entries] == [("a.npy", "IR", FS), ("b.npy", "OR", FS), ("c.npy", "OR", None)]
    assert isinstance(entries[0], FileEntry) and entries[0].group == "a.npy"
    a = read_recording(entries[0])
    assert a.n_channels == 2 and a.fs == FS
    with pytest.raises(DiagError, match=r"b\.npy: not an \.npy file"):
        read_recording(entries[1])
    c = read_recording(entries[2], fs=1000)
    assert c.fs == 1000.0
    with pytest.raises(DiagError, match=r"c\.npy: 3 channel\(s\) but .*a\.npy has 2"):
        check_recording_set([a, c])
    assert check_recording_set([a]) == [a]
    with pytest.raises(DiagError, match=r"unknown label 'OR' for b\.npy; expected one of IR"):
        find_recordings(tmp_path, classes=["IR"])
