"""Bring-your-own-data reader (read_files) and the writer used by `diag simulate` (write_recordings)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import scipy.io
import scipy.io.wavfile

from diag.errors import DiagError
from diag.sources.base import Recording
from diag.sources.files import read_files, write_recordings


def _recs(n_channels: int = 2) -> list[Recording]:
    rng = np.random.default_rng(0)
    out = []
    for i, (label, size) in enumerate([("normal", ""), ("IR", "0.007"), ("IR", "0.014"), ("OR@6", "0.021")]):
        out.append(
            Recording(
                signal=rng.standard_normal((n_channels, 500 + 10 * i)).astype(np.float32),
                fs=12000.0 if i else 48000.0,
                label=label,
                group=f"bearing{i}",
                condition=f"{i % 2}HP",
                source=f"simulate:bearing#{i}",
                fault_size=size,
                channels=tuple(f"acc{c}" for c in range(n_channels)),
                meta={"rpm": 1797.5 + i, "seed": np.int64(i), "tags": ["a", "b"]},
            )
        )
    return out


def _write_manifest(folder, rows, header=("path", "label", "fs")):
    with open(folder / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


# ------------------------------------------------------------------------------------------------
# writer


@pytest.mark.parametrize("fmt", ["npy", "csv"])
def test_write_then_read_round_trip(tmp_path, fmt):
    recs = _recs()
    out = write_recordings(recs, tmp_path / "sim", fmt=fmt)
    assert out == tmp_path / "sim"
    assert (out / "labels.csv").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["IR", "OR@6", "labels.csv", "normal"]
    files = sorted(out.glob(f"*/*.{fmt}"))
    assert len(files) == 4
    if fmt == "npy":
        arr = np.load(files[0])
        assert arr.dtype == np.float32 and arr.shape[0] == 2  # [channels, samples]
    back = read_files(out)
    assert len(back) == len(recs)
    for a, b in zip(recs, back):
        np.testing.assert_array_equal(a.signal, b.signal.astype(np.float32))  # csv parses to float64, exact
        assert (a.fs, a.label, a.group, a.condition, a.fault_size, a.channels) == (
            b.fs, b.label, b.group, b.condition, b.fault_size, b.channels
        )
        assert b.meta == {"rpm": a.meta["rpm"], "seed": int(a.meta["seed"]), "tags": ["a", "b"]}
        assert b.source.endswith(f".{fmt}")


def test_round_trip_through_the_source_config_registry(tmp_path):
    from diag.config import SourceConfig
    from diag.signal.recordings import load_recordings

    out = write_recordings(_recs(), tmp_path / "sim")
    recs = load_recordings(SourceConfig(kind="files", path=str(out), options={"classes": ["normal", "IR", "OR@6"]}))
    assert [r.label for r in recs] == ["normal", "IR", "IR", "OR@6"]


def test_write_unique_names_and_manifest_columns(tmp_path):
    recs = _recs(1)
    for r in recs:
        r.source = "same"
        r.label = "x"
    out = write_recordings(recs, tmp_path / "o")
    with open(out / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["path", "label", "fs", "group", "condition", "fault_size", "channels", "meta"]
    assert len({r["path"] for r in rows}) == 4
    assert all(r["path"].startswith("x/") for r in rows)


def test_write_refuses_non_empty_unless_overwrite(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(DiagError, match="not empty.*overwrite"):
        write_recordings(_recs(), out)
    assert (out / "keep.txt").exists()
    # issue 8 (data loss): --overwrite never deletes a file diag did not write
    with pytest.raises(DiagError, match=r"o: holds keep\.txt, which diag did not write; --overwrite only replaces"):
        write_recordings(_recs(), out, overwrite=True)
    assert (out / "keep.txt").read_text() == "x"
    (out / "keep.txt").unlink()
    write_recordings(_recs(), out)
    first = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    write_recordings(_recs()[:2], out, overwrite=True)  # a folder diag wrote is replaced
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["IR", "IR/simulate_bearing_1.npy",
                                                                            "labels.csv", "normal",
                                                                            "normal/simulate_bearing_0.npy"]
    assert len(first) > 5
    (out / "IR" / "notes.txt").write_text("mine")  # ... unless the user added a file to it
    with pytest.raises(DiagError, match=r"holds IR/notes\.txt, which diag did not write"):
        write_recordings(_recs(), out, overwrite=True)
    assert (out / "IR" / "notes.txt").read_text() == "mine"
    (out / "IR" / "notes.txt").unlink()
    (out / "labels.csv").write_text("path,label\nIR/simulate_bearing_1.npy,IR\n")  # or it is not diag's manifest
    with pytest.raises(DiagError, match=r"holds IR/simulate_bearing_1\.npy, labels\.csv, normal/simulate_bearing_0\.npy, which diag did not write"):
        write_recordings(_recs(), out, overwrite=True)
    # empty existing folder is fine without overwrite
    (tmp_path / "empty").mkdir()
    write_recordings(_recs(), tmp_path / "empty")
    # no temp leftovers beside the outputs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "o"]


def test_write_is_atomic_on_failure(tmp_path):
    recs = _recs()
    recs[2].signal[0, 3] = np.nan  # validate() fails before anything is written
    with pytest.raises(DiagError, match="NaN"):
        write_recordings(recs, tmp_path / "o")
    recs = _recs()
    recs[3].meta = {"obj": object()}  # fails midway, after some files were written
    with pytest.raises(DiagError, match="JSON"):
        write_recordings(recs, tmp_path / "o")
    assert list(tmp_path.iterdir()) == []


def test_write_bad_format(tmp_path):
    with pytest.raises(DiagError, match="fmt"):
        write_recordings(_recs(), tmp_path / "o", fmt="parquet")
    with pytest.raises(DiagError, match="no recordings"):
        write_recordings([], tmp_path / "o")


# ------------------------------------------------------------------------------------------------
# formats


def test_formats_with_manifest(tmp_path):
    x = np.arange(300, dtype=np.float64).reshape(100, 3) / 7.0  # [samples, channels]
    np.savetxt(tmp_path / "a.csv", x, delimiter=",", header="DE,FE,BA", comments="", fmt="%.17g")
    np.savetxt(tmp_path / "b.csv", x, delimiter=",", fmt="%.17g")  # no header
    np.save(tmp_path / "c.npy", x)  # [N, C]: channels on the shorter axis
    np.save(tmp_path / "d.npy", x.T)  # [C, N]
    np.savez(tmp_path / "e.npz", sig=x)
    scipy.io.savemat(tmp_path / "f.mat", {"acc": x, "rpm": np.array([[1797.0]])})  # scalar ignored
    sub = tmp_path / "sub"
    sub.mkdir()
    np.save(sub / "g.npy", x)
    _write_manifest(
        tmp_path,
        [
            ["a.csv", "IR", "12000", "b1", "0HP", "0.007", ""],
            ["b.csv", "IR", "12000", "", "", "", "x;y;z"],
            ["c.npy", "OR", "12000", "", "", "", ""],
            ["d.npy", "OR", "12000", "", "", "", ""],
            ["e.npz", "B", "", "", "", "", ""],
            ["f.mat", "B", "12000", "", "", "", ""],
            ["sub/g.npy", "normal", "12000", "", "", "", ""],
        ],
        header=("path", "label", "fs", "group", "condition", "fault_size", "channels"),
    )
    recs = read_files(tmp_path, fs=6000)
    assert [r.label for r in recs] == ["IR", "IR", "OR", "OR", "B", "B", "normal"]
    for r in recs:
        assert r.signal.shape == (3, 100)
        np.testing.assert_allclose(r.signal, x.T)
    assert recs[0].channels == ("DE", "FE", "BA")
    assert (recs[0].group, recs[0].condition, recs[0].fault_size) == ("b1", "0HP", "0.007")
    assert recs[1].channels == ("x", "y", "z")
    assert recs[2].channels == ("ch0", "ch1", "ch2")
    assert recs[2].group == "c.npy"  # default group: the file itself
    assert recs[4].fs == 6000.0  # empty fs cell -> fs option
    assert recs[6].source == str(sub / "g.npy")
    # the manifest file itself may be given as the path
    assert len(read_files(tmp_path / "labels.csv", fs=6000)) == 7


def test_channel_selection(tmp_path):
    x = np.arange(200.0).reshape(100, 2)
    np.savetxt(tmp_path / "a.csv", x, delimiter=",", header="DE,FE", comments="")
    np.save(tmp_path / "b.npy", x)
    _write_manifest(tmp_path, [["a.csv", "IR", "12000"]])
    (rec,) = read_files(tmp_path, channels=["FE"])
    assert rec.channels == ("FE",)
    np.testing.assert_array_equal(rec.signal[0], x[:, 1])
    _write_manifest(tmp_path, [["a.csv", "IR", "12000"], ["b.npy", "IR", "12000"]])
    with pytest.raises(DiagError, match=r"b\.npy: no channel\(s\) FE"):
        read_files(tmp_path, channels=["FE"])


def test_wav_fs_from_header_and_mismatch(tmp_path):
    d = tmp_path / "IR"
    d.mkdir()
    pcm = (np.sin(np.arange(800) / 5) * 20000).astype(np.int16)
    scipy.io.wavfile.write(d / "a.wav", 8000, pcm)
    (rec,) = read_files(tmp_path, label_from="folder")
    assert rec.fs == 8000 and rec.label == "IR" and rec.signal.shape == (1, 800)
    np.testing.assert_allclose(rec.signal[0], pcm / 32768.0, rtol=1e-6)
    with pytest.raises(DiagError, match=r"a\.wav: WAV header says 8000 Hz but the fs option says 12000"):
        read_files(tmp_path, label_from="folder", fs=12000)
    _write_manifest(tmp_path, [["IR/a.wav", "IR", "16000"]])
    with pytest.raises(DiagError, match=r"a\.wav: WAV header says 8000 Hz but the manifest says 16000"):
        read_files(tmp_path)
    _write_manifest(tmp_path, [["IR/a.wav", "IR", ""]])
    assert read_files(tmp_path)[0].fs == 8000


def test_labels_from_folders(tmp_path):
    for label in ("normal", "IR"):
        (tmp_path / label / "deeper").mkdir(parents=True)
        np.save(tmp_path / label / "deeper" / "x.npy", np.ones(64))
    (tmp_path / "notes.md").write_text("ignored")
    recs = read_files(tmp_path, label_from="folder", fs=1000)
    assert sorted(r.label for r in recs) == ["IR", "normal"]
    assert {r.group for r in recs} == {"IR/deeper/x.npy", "normal/deeper/x.npy"}
    with pytest.raises(DiagError, match="sampling rate unknown"):
        read_files(tmp_path, label_from="folder")
    np.save(tmp_path / "loose.npy", np.ones(64))
    with pytest.raises(DiagError, match="loose.npy: lies directly in .*sub-folder named by its label"):
        read_files(tmp_path, label_from="folder", fs=1000)


# ------------------------------------------------------------------------------------------------
# errors: one line, naming the file and the fix


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_error_missing_path_and_manifest(tmp_path):
    with pytest.raises(DiagError, match="no such file or folder") as e:
        read_files(tmp_path / "nope")
    _one_line(e)
    with pytest.raises(DiagError, match="no labels.csv in the folder.*path,label,fs"):
        read_files(tmp_path)
    with pytest.raises(DiagError, match="no path given"):
        read_files(None)
    with pytest.raises(DiagError, match="label_from"):
        read_files(tmp_path, label_from="guess")


def test_error_manifest_rows(tmp_path):
    np.save(tmp_path / "a.npy", np.ones(50))
    _write_manifest(tmp_path, [["missing.npy", "IR", "1000"]])
    with pytest.raises(DiagError, match=r"labels.csv line 2: file 'missing.npy' not found"):
        read_files(tmp_path)
    _write_manifest(tmp_path, [["a.npy", "", "1000"]])
    with pytest.raises(DiagError, match="line 2: empty label for 'a.npy'"):
        read_files(tmp_path)
    _write_manifest(tmp_path, [["a.npy", "IRR", "1000"]])
    with pytest.raises(DiagError, match="unknown label 'IRR'.*expected one of IR, OR, normal"):
        read_files(tmp_path, classes=["normal", "IR", "OR"])
    _write_manifest(tmp_path, [["a.npy", "IR", ""]])
    with pytest.raises(DiagError, match=r"a\.npy: sampling rate unknown; give it in the manifest's fs column"):
        read_files(tmp_path)
    _write_manifest(tmp_path, [["a.npy", "IR", "fast"]])
    with pytest.raises(DiagError, match="fs 'fast' is not a number"):
        read_files(tmp_path)
    _write_manifest(tmp_path, [["a.npy", "IR"]], header=("path", "labl"))
    with pytest.raises(DiagError, match="lacks column"):
        read_files(tmp_path)


def test_error_bad_csv_cell_nan_and_extension(tmp_path):
    (tmp_path / "a.csv").write_text("DE,FE\n1,2\n3,abc\n5,6\n")
    _write_manifest(tmp_path, [["a.csv", "IR", "1000"]])
    with pytest.raises(DiagError, match=r"a\.csv: line 3, column 2: 'abc' is not a number") as e:
        read_files(tmp_path)
    _one_line(e)
    (tmp_path / "a.csv").write_text("1,2\n3,nan\n5,6\n")
    with pytest.raises(DiagError, match=r"a\.csv: 1 NaN/Inf samples"):
        read_files(tmp_path)
    (tmp_path / "a.xyz").write_bytes(b"fLaC")
    _write_manifest(tmp_path, [["a.xyz", "IR", "1000"]])
    with pytest.raises(DiagError, match=r"a\.xyz: unsupported file type '.xyz'; convert it to one of"):
        read_files(tmp_path)


def test_error_inconsistent_channels(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((2, 50)))
    np.save(tmp_path / "b.npy", np.ones((3, 50)))
    _write_manifest(tmp_path, [["a.npy", "IR", "1000"], ["b.npy", "OR", "1000"]])
    with pytest.raises(DiagError, match=r"b\.npy: 3 channel\(s\) but .*a\.npy has 2"):
        read_files(tmp_path)


def test_error_ambiguous_mat_and_npz(tmp_path):
    scipy.io.savemat(tmp_path / "a.mat", {"X097_DE_time": np.ones((50, 1)), "X097_FE_time": np.ones((50, 1))})
    np.savez(tmp_path / "b.npz", one=np.ones(5), two=np.ones(5))
    _write_manifest(tmp_path, [["a.mat", "IR", "1000"]])
    with pytest.raises(DiagError, match=r"a\.mat: 2 numeric variables \(X097_DE_time, X097_FE_time\); choose one with the variable option"):
        read_files(tmp_path)
    (rec,) = read_files(tmp_path, variable="X097_FE_time")
    assert rec.signal.shape == (1, 50)
    _write_manifest(tmp_path, [["b.npz", "IR", "1000"]])
    with pytest.raises(DiagError, match=r"b\.npz: holds 2 arrays \(one, two\); choose one with the key option"):
        read_files(tmp_path)
    assert read_files(tmp_path, key="two")[0].n_samples == 5
    (tmp_path / "c.mat").write_bytes(b"not a mat file at all" * 10)
    _write_manifest(tmp_path, [["c.mat", "IR", "1000"]])
    with pytest.raises(DiagError, match=r"c\.mat: not a readable MATLAB file"):
        read_files(tmp_path)


def test_error_manifest_row_with_more_cells_than_header(tmp_path):
    np.save(tmp_path / "a.npy", np.ones(50))
    np.save(tmp_path / "b.npy", np.ones(50))
    _write_manifest(tmp_path, [["a.npy", "IR", "1000"], ["b.npy", "OR", "1000", "0HP"]])
    with pytest.raises(DiagError, match=r"labels\.csv: line 3 has 4 cells but the header has 3") as e:
        read_files(tmp_path)
    _one_line(e)
    _write_manifest(tmp_path, [["a.npy", "IR", "1000", ""]])  # a blank trailing cell is harmless
    assert read_files(tmp_path)[0].label == "IR"
