"""diag predict streams a file that must be resampled (issue 10): chunk by chunk through
diag.signal.windows.resample with overlap, equal to resampling the whole file, reading bounded chunks."""

import numpy as np
import pytest

import diag.signal.stream as dp
from diag.sources.stream import open_signal
from diag.sources.base import Recording
from diag.signal.windows import rational_ratio, resample


def _counting(sig):
    """``sig`` with its reads recorded (the ranges asked of the file)."""
    reads = []
    inner = sig.read

    def read(a, b):
        reads.append((a, b))
        return inner(a, b)

    sig.read = read
    return sig, reads


@pytest.mark.parametrize("n, fs_from, fs_to, chunk", [
    (200_000, 48000.0, 12000.0, 4096),   # a long file, many chunks
    (200_000, 48000.0, 12000.0, dp.RESAMPLE_CHUNK),
    (3_000, 48000.0, 12000.0, 4096),     # shorter than one chunk
    (3_000, 48000.0, 12000.0, 100),      # chunks shorter than the filter
    (60_000, 44100.0, 12000.0, 1000),    # up/down = 40/147
    (20_000, 8000.0, 12000.0, 500),      # upsampling, 3/2
])
def test_streamed_resampling_equals_resampling_the_whole_file(tmp_path, monkeypatch, n, fs_from, fs_to, chunk):
    monkeypatch.setattr(dp, "RESAMPLE_CHUNK", chunk)
    rng = np.random.default_rng(n)
    t = np.arange(n) / fs_from
    x = np.stack([rng.normal(0, 1, n) + 3 * np.sin(2 * np.pi * 440 * t), rng.normal(0, 0.1, n) + 1.0])
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    whole = resample(Recording(signal=x.astype(np.float32), fs=fs_from, label="?"), fs_to).signal
    sig, reads = _counting(open_signal(tmp_path / "x.npy", fs_from))
    out = dp.resample_signal(sig, fs_to, [1, 0])
    assert out.fs == fs_to and out.fs_original == fs_from and out.n_samples == whole.shape[1]
    assert out.channels == ("ch1", "ch0") and out.streamed
    # read as predict reads: batches of overlapping windows, in order
    length, hop, batch = 512, 256, 7
    got = np.full_like(whole, np.nan)
    starts = np.arange(0, out.n_samples - length + 1, hop)
    for i in range(0, len(starts), batch):
        a, b = int(starts[i]), int(starts[min(i + batch, len(starts)) - 1]) + length
        got[::-1, a:b] = out.read(a, b)
    covered = int(starts[-1]) + length
    rms = np.sqrt(np.mean(np.square(whole), axis=1))
    assert (np.abs(got[:, :covered] - whole[:, :covered]).max(axis=1) <= 1e-5 * rms).all()
    # memory bounded by the chunk: every read of the file is about one chunk plus the filter overlap
    up, down = rational_ratio(fs_from, fs_to)
    block = -(-chunk // up) * up
    bound = block * down // up + 2 * (10 * max(up, down) // up + 2 * down + 1)
    assert max(b - a for a, b in reads) <= bound, (max(b - a for a, b in reads), bound)
    assert all(a1 <= a2 and b1 <= b2 for (a1, b1), (a2, b2) in zip(reads, reads[1:]))  # in order
    assert len(reads) >= covered // block  # one read per chunk: it did stream (12 for the long file)
