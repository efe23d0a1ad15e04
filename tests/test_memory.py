"""Memory that does not grow with the file (issue 26): ``diag predict`` reads NPY ranges by positioned reads
and CSV in row chunks, windows far apart are read alone, and ``diag prepare`` parses a CSV in blocks
straight into float32. The peak-memory checks run in child processes (``ru_maxrss`` of that child),
on a small file and one four times longer."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import diag.sources.stream as stream
from diag.sources.formats import read_csv
from diag.sources.stream import open_signal

ROOT = Path(__file__).resolve().parents[1]


def _child_peak_mb(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints ``KEY VALUE`` lines; returns them (ru_maxrss in MB)."""
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1"))
    assert res.returncode == 0, res.stderr[-3000:]
    return {k: float(v) for k, v in (ln.split() for ln in res.stdout.splitlines() if ln.count(" ") == 1)}


# ------------------------------------------------------------------------------------------------
# The readers give the file's samples


@pytest.mark.parametrize("arr", [np.arange(50, dtype=np.float32), np.arange(150).reshape(3, 50).astype(np.int16),
                                 np.arange(150.0).reshape(50, 3), np.asfortranarray(np.arange(150.0).reshape(50, 3)),
                                 np.asfortranarray(np.arange(150.0).reshape(3, 50))])
def test_npy_ranges_are_the_arrays_samples_whatever_its_layout(tmp_path, arr):
    np.save(tmp_path / "a.npy", arr)
    sig = open_signal(tmp_path / "a.npy", fs=100)
    want = np.atleast_2d(arr if arr.ndim == 1 or arr.shape[0] <= arr.shape[1] else arr.T)
    got = np.concatenate([sig.read(0, 7), sig.read(7, 30), sig.read(41, 50)], axis=1)
    np.testing.assert_array_equal(got, np.concatenate([want[:, :30], want[:, 41:]], axis=1))
    assert got.dtype == np.float64 and sig.n_samples == 50


def test_a_truncated_npy_is_one_line(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(1000, np.float32))
    raw = (tmp_path / "a.npy").read_bytes()
    (tmp_path / "a.npy").write_bytes(raw[: len(raw) - 100])
    with pytest.raises(Exception, match="truncated"):
        open_signal(tmp_path / "a.npy", fs=100)


def test_streamed_csv_reads_skip_rows_between_windows_far_apart(tmp_path, monkeypatch):
    monkeypatch.setattr(stream, "CSV_STREAM_BYTES", 0)
    monkeypatch.setattr(stream, "CSV_CHUNK_ROWS", 7)
    x = np.round(np.random.default_rng(0).standard_normal(300), 4)
    (tmp_path / "a.csv").write_text("v\n" + "\n".join(map(str, x)) + "\n")
    sig = open_signal(tmp_path / "a.csv", fs=10)
    assert sig.streamed
    for a, b in [(0, 5), (3, 9), (100, 110), (108, 120), (290, 300), (0, 4), (50, 60), (280, 290)]:
        np.testing.assert_array_equal(sig.read(a, b)[0], x[a:b])  # forwards; again from the top (after a scan)


def test_csv_is_parsed_in_blocks_into_float32_with_its_errors(tmp_path, monkeypatch):
    import diag.sources.formats as files

    monkeypatch.setattr(files, "CSV_BLOCK_ROWS", 4)
    x = np.random.default_rng(1).standard_normal((11, 2))
    (tmp_path / "a.csv").write_text("a,b\n" + "\n".join(f"{u:.6f},{v:.6f}" for u, v in x) + "\n\n")
    data, names = read_csv(tmp_path / "a.csv")
    assert names == ("a", "b") and data.dtype == np.float32 and data.shape == (2, 11)
    np.testing.assert_allclose(data, x.T, atol=1e-6)
    (tmp_path / "b.csv").write_text("1\n2\n\n3\n4\n5\nabc\n")
    with pytest.raises(Exception, match=r"b\.csv: line 7, column 1: 'abc' is not a number"):
        read_csv(tmp_path / "b.csv")
    (tmp_path / "c.csv").write_text("1,2\n" * 5 + "3\n")
    with pytest.raises(Exception, match="different numbers of columns"):
        read_csv(tmp_path / "c.csv")


def test_windows_far_apart_are_read_alone_and_give_the_same_images():
    from diag.config import load_prepare_config
    from diag.signal.preprocessing import Preprocessing
    from diag.sources.base import Recording
    from diag.sources.stream import Signal

    cfg = load_prepare_config(ROOT / "configs" / "bearing_sim.toml", ["transform.kind=cwt", "transform.size=[16,16]",
                                                                      "transform.n_scales=16"])
    x = np.random.default_rng(2).standard_normal((1, 60000)).astype(np.float32)
    rec = Recording(signal=x, fs=cfg.windows.fs, label="a", source="r", channels=("accel",))
    pre = Preprocessing.from_config(cfg, rec)
    reads = []
    sig = Signal("r", cfg.windows.fs, x.shape[1], ("accel",), lambda a, b: reads.append(b - a) or x[:, a:b], True)
    starts = np.array([0, 20000, 40000, 55000])
    far = np.concatenate([im for _, im in pre.stream_images(sig, starts, batch=4)])
    assert max(reads) == pre.length  # each window read alone, not the 57,000 samples between the first and last
    near = np.concatenate([pre(x[:, s : s + pre.length][None]) for s in starts])
    np.testing.assert_array_equal(far, near)


# ------------------------------------------------------------------------------------------------
# Peak memory: a file four times longer costs (almost) nothing more


PREDICT = """
import resource, sys
sys.path.insert(0, "scripts/bench")
from pathlib import Path
import numpy as np
from bench_predict import make_run
from diag.serving.predictor import Predictor
tmp = Path(sys.argv[1]) if len(sys.argv) > 1 else Path({tmp!r})
run = tmp / "run"
if not run.exists():
    run.mkdir()
    make_run(run, ["a", "b"])
pred = Predictor(run, hop=65536, batch_size=16)
pred.predict_file(tmp / "small.npy", fs=24000.0)  # warm: every buffer of the network allocated once
small = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
pred.predict_file(tmp / "{name}", fs=24000.0)  # resampled 24 -> 12 kHz, band-limited, streamed
print("before", small)
print("after", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def test_predict_peak_memory_does_not_grow_with_the_npy_file(tmp_path):
    """48 MB more file: a memory map scanned whole (the old reader) added >= 48 MB resident; positioned reads
    add at most what the larger number of windows' results take (a few MB)."""
    n = 4 * 2**20  # 16 MB of float32
    rng = np.random.default_rng(3)
    np.save(tmp_path / "small.npy", rng.standard_normal(n).astype(np.float32))
    big = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.float32, shape=(4 * n,))
    for k in range(4):
        big[k * n : (k + 1) * n] = rng.standard_normal(n).astype(np.float32)
    big.flush()
    del big
    res = _child_peak_mb(PREDICT.format(tmp=str(tmp_path), name="big.npy"))
    assert res["after"] - res["before"] < 16, res


def test_prepare_reads_a_csv_in_memory_proportional_to_its_float32_samples(tmp_path):
    """The old whole-text parse took about 12 MB per MB of CSV (text, a list of lines, float64 values); in
    blocks it is the float32 samples (4 bytes each) plus one block."""
    n = 2_000_000
    x = np.random.default_rng(4).standard_normal(n)
    with open(tmp_path / "a.csv", "w") as fh:
        fh.write("accel\n")
        for i in range(0, n, 200_000):
            fh.write("\n".join(f"{v:.6f}" for v in x[i : i + 200_000]) + "\n")
    mb = (tmp_path / "a.csv").stat().st_size / 2**20
    res = _child_peak_mb(f"""
        import resource
        from pathlib import Path
        from diag.sources.formats import read_csv
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        data, _ = read_csv(Path({str(tmp_path / 'a.csv')!r}))
        print("before", before)
        print("after", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        print("float32_mb", data.nbytes / 2**20)
    """)
    grew = res["after"] - res["before"]
    assert res["float32_mb"] == pytest.approx(n * 4 / 2**20)
    assert grew < res["float32_mb"] + 24, (grew, mb, res)  # the samples, one block of text and floats
    assert grew < 0.5 * mb, (grew, mb)  # far below the text's size, let alone 12x it


# ------------------------------------------------------------------------------------------------
# diag prepare: resampling, band limit and the source checks work in blocks, never on a float64 copy


@pytest.mark.parametrize("fs_from,fs_to", [(24000.0, 12000.0), (12000.0, 16000.0), (48000.0, 12800.0)])
def test_resample_and_band_limit_in_blocks_equal_the_whole_recording(fs_from, fs_to):
    from scipy.signal import oaconvolve, resample_poly

    from diag.signal.resampling import band_filter, band_limit, rational_ratio, resample
    from diag.sources.base import Recording

    x = np.random.default_rng(5).standard_normal((2, 20_011)).astype(np.float32)
    rec = Recording(signal=x, fs=fs_from, label="a", source="r")
    up, down = rational_ratio(fs_from, fs_to)
    whole = resample_poly(x.astype(np.float64), up, down, axis=-1)
    for block in (997, 4096, 1 << 20):  # many blocks, a few, one
        got = resample(rec, fs_to, block=block).signal
        assert got.dtype == np.float32 and got.shape == whole.shape
        np.testing.assert_allclose(got, whole, rtol=0, atol=2e-6)
    low = resample(rec, fs_to)
    taps = band_filter(fs_to, 100.0, 4000.0)
    h = len(taps) // 2
    ref = oaconvolve(np.pad(low.signal.astype(np.float64), ((0, 0), (h, h)), "symmetric"), taps[None], "valid", axes=-1)
    for block in (333, 5000, 1 << 20):
        got = band_limit(low, [100.0, 4000.0], block=block).signal
        assert got.dtype == np.float32 and got.shape == low.signal.shape
        np.testing.assert_allclose(got, ref, rtol=0, atol=2e-6)


def test_harmonise_and_the_source_checks_hold_no_float64_copy_of_the_recording(tmp_path):
    """A 32 MB float32 recording at 24 kHz resampled to 12 kHz, band-limited and checked: the result (16 MB)
    and blocks, where whole-recording float64 copies took over 100 MB and the checks' run statistics
    (int64 per sample) about 8 times the recording."""
    res = _child_peak_mb("""
        import resource
        import numpy as np
        from diag.signal.resampling import band_limit, resample
        from diag.sources.base import Recording
        from diag.sources.checks import check_signal
        x = np.random.default_rng(6).standard_normal((1, 8 * 2**20)).astype(np.float32)
        rec = Recording(signal=x, fs=24000.0, label="a", source="r")
        check_signal(np.ones(10, np.float32)); band_limit(resample(Recording(signal=x[:, :50000], fs=24000.0,
            label="a", source="r"), 12000.0), [0, 5000])  # imports and filter design, before the baseline
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        assert check_signal(x[0], 24000.0) is None
        out = band_limit(resample(rec, 12000.0), [0, 5000])
        print("before", before)
        print("after", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        print("result_mb", out.signal.nbytes / 2**20)
    """)
    grew = res["after"] - res["before"]
    assert res["result_mb"] == pytest.approx(16)
    assert grew < 2 * res["result_mb"] + 40, res  # the result, the resampled copy before the band, blocks
