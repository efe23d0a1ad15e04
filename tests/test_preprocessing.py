"""The one fitted preprocessing from prepare to predict (issue 22), and predict reading what prepare reads
(issue 21): the same object makes the same images from the same file in both; it saves and loads whole;
the band limit and the source checks stream with bounded memory and give what the whole recording gives;
fs / channels / meta come from a labels.csv listing the file; a file that fails the source checks gets an
``unusable`` verdict in prepare's words."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import diag
from diag.cli import app
from diag.config import TransformConfig
from diag.errors import DiagError
from diag.signal.dataset import PreparedDataset
from diag.signal.preprocessing import Preprocessing
from diag.signal.stream import BandLimitedReader
from diag.signal.windows import band_limit
from diag.sources.base import Recording
from diag.sources.checks import check_signal, scan_signal
from diag.sources.stream import Signal, open_signal
from test_predict_fixtures import CONFIG, FS, recordings, tone

runner = CliRunner()


@pytest.fixture(scope="module")
def run(predict_run):
    return predict_run


@pytest.fixture(scope="module")
def resampled_set(tmp_path_factory):
    """Recordings stored at 16 kHz, prepared at 8 kHz with a band limit, the training split's ``dataset``
    scale and polarity: every step of the preprocessing does something."""
    from diag.commands.prepare import prepare
    from diag.sources.files import write_recordings

    root = tmp_path_factory.mktemp("resampled")
    recs = [Recording(signal=tone(r.label, 1.5, seed=7 + i, fs=16000.0)[None], fs=16000.0, label=r.label,
                      source=r.source, channels=("mic",)) for i, r in enumerate(recordings(2, 1.5, seed=3))]
    write_recordings(recs, root / "data")
    cfg = root / "cfg.toml"
    cfg.write_text(CONFIG.format(data=root / "data", fs=FS).replace(
        'normalize = "zscore"', 'normalize = "dataset"\nband = [100.0, 3000.0]') + "polarity = true\n")
    return prepare(cfg, root / "prep", quiet=True), root / "data"


def test_prepare_and_predict_make_identical_images_through_the_one_object(resampled_set):
    ds_path, data = resampled_set
    ds = PreparedDataset(ds_path)
    pre = ds.preprocessing  # the object prepare fitted and stored
    assert pre.norm_stats and pre.band == [100.0, 3000.0] and pre.transform.polarity and pre.fs_range == [16000.0] * 2
    meta = ds.meta("test")
    for rec in np.unique(meta["rec"]):
        rows = meta["rec"] == rec
        path = Path(str(meta["source"][rows][0]))
        sig = open_signal(path)  # no --fs: the labels.csv beside it says 16 kHz
        assert sig.fs == 16000.0 and sig.listed.endswith(f"line {int(rec) + 2}")
        ready = pre.ready(sig, pre.select_channels(sig)[0])
        assert any("resampled 16000 Hz -> 8000 Hz" in n for n in ready.notes)
        got = np.concatenate([im for _, im in pre.stream_images(ready, meta["start"][rows].astype(int), batch=3)])
        want = np.asarray(ds.images("test"))[rows].astype(np.float32)
        # identical up to the float16 the dataset stores
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-3 * np.abs(want).max())


def test_the_preprocessing_saves_and_loads_whole_and_names_what_differs(resampled_set):
    pre = PreparedDataset(resampled_set[0]).preprocessing
    again = Preprocessing.from_dict(json.loads(json.dumps(pre.to_dict())))
    assert again == pre and again.difference(pre) is None
    other = Preprocessing.from_dict({**pre.to_dict(), "length": 256})
    assert pre.difference(other, ("run", "dataset")) == "windows.length: run 512, dataset 256"
    cwt = Preprocessing.from_dict({**pre.to_dict(), "transform": {**pre.to_dict()["transform"], "fmin": 60.0}})
    assert pre.difference(cwt) == "transform.fmin: this 50.0, other 60.0"
    with pytest.raises(DiagError, match="newer than this diag reads"):
        Preprocessing.from_dict({**pre.to_dict(), "format": "diag-preprocessing/9"})


def test_a_legacy_record_is_read_as_the_same_preprocessing(resampled_set):
    """Datasets and runs made before the object existed recorded the manifest's keys; they load as the same."""
    from diag.provenance import preprocessing_of

    ds = PreparedDataset(resampled_set[0])
    legacy = preprocessing_of(ds.manifest)
    old = Preprocessing.from_dict(legacy)
    new = ds.preprocessing
    assert old.difference(new) is None and old.norm_stats == new.norm_stats and old.band == new.band


@pytest.mark.parametrize("chunk", [1, 700, 5000, 100_000])
def test_the_streamed_band_limit_equals_the_whole_recording_band_limited(chunk):
    rng = np.random.default_rng(chunk)
    x = rng.normal(size=(2, 30_000)) + np.sin(np.arange(30_000) * 0.9)
    whole = band_limit(Recording(signal=x, fs=12000.0, label="a"), [100.0, 4000.0]).signal
    reads = []
    sig = Signal("x", 12000.0, x.shape[1], ("a", "b"), lambda a, b: (reads.append(b - a), x[:, a:b])[1], False)
    bl = BandLimitedReader(sig, [100.0, 4000.0])
    got = np.concatenate([bl.read(a, min(a + chunk, x.shape[1])) for a in range(0, x.shape[1], chunk)], axis=1)
    np.testing.assert_allclose(got, whole, atol=1e-5)
    assert max(reads) <= chunk + 2 * bl.h  # memory bounded by the read plus the filter's reach


def test_the_band_limit_removes_what_is_outside_the_band():
    fs, n = 12000.0, 48_000
    t = np.arange(n) / fs
    x = np.sin(2 * np.pi * 1000 * t) + np.sin(2 * np.pi * 5100 * t) + np.sin(2 * np.pi * 50 * t)
    y = band_limit(Recording(signal=x[None], fs=fs, label="a"), [100.0, 5000.0]).signal[0].astype(np.float64)
    spec = np.abs(np.fft.rfft(y * np.hanning(n))) / (np.hanning(n).sum() / 2)
    f = np.fft.rfftfreq(n, 1 / fs)
    amp = {f0: spec[np.argmin(np.abs(f - f0))] for f0 in (50, 1000, 5100)}
    assert amp[1000] == pytest.approx(1.0, rel=1e-3) and amp[50] < 1e-4 and amp[5100] < 1e-4, amp


@pytest.mark.parametrize("chunk", [1, 13, 4096])
def test_the_streamed_source_checks_say_what_prepare_says(chunk):
    rng = np.random.default_rng(0)
    x = rng.normal(size=20_000)
    cases = [x, np.zeros(500), np.full(500, 2.0), np.clip(x, -1.5, 1.5), np.r_[x[:9000], np.full(800, 0.3), x[9800:]],
             np.r_[x[:1000], np.full(900, x.max()), x[1900:]]]
    for c in cases:
        assert scan_signal(lambda a, b: c[None, a:b], len(c), [0], 1000.0, chunk)[0] == check_signal(c, 1000.0)


def _cli(*args):
    res = runner.invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


def test_predict_takes_fs_channels_and_meta_from_a_labels_csv_listing_the_file(run, tmp_path):
    """A folder laid out for diag prepare (labels.csv with fs) scores with no --fs, as diag simulate's does."""
    from diag.sources.files import write_recordings

    write_recordings(recordings(1, 1.0, seed=9), tmp_path / "new")
    code, out = _cli("predict", run, tmp_path / "new", "--json", tmp_path / "p.json", "-q")
    assert code == 0, out
    files = json.loads((tmp_path / "p.json").read_text())["files"]
    assert [Path(f["path"]).parent.name for f in files] == ["high", "low"]
    assert [f["verdict"] for f in files] == ["high", "low"] and all(f["fs_original"] == FS for f in files)
    # a rate given both ways must agree
    one = next((tmp_path / "new").rglob("*.npy"))
    code, out = _cli("predict", run, one, "--fs", 4000)
    assert code == 2 and "--fs 4000 Hz but" in out and "labels.csv line" in out and "fix one of them" in out


def test_a_file_failing_the_source_checks_is_unusable_in_prepares_words(run, tmp_path):
    x = tone("low", 1.0, seed=1)
    np.save(tmp_path / "good.npy", x)
    flat = x.copy()
    flat[2000:5000] = 0.25  # a drop-out: 3000 identical samples
    np.save(tmp_path / "dropout.npy", flat)
    code, out = _cli("predict", run, tmp_path / "good.npy", tmp_path / "dropout.npy", "--fs", FS,
                     "--json", tmp_path / "p.json", "--csv", tmp_path / "p.csv")
    assert code == 0, out
    files = {Path(f["path"]).name: f for f in json.loads((tmp_path / "p.json").read_text())["files"]}
    assert files["good.npy"]["verdict"] == "low" and "unusable" not in files["good.npy"]
    bad = files["dropout.npy"]
    words = check_signal(flat, FS)[1]
    assert bad["verdict"] == "unusable" and bad["unusable"] == words and bad["n_windows"] == 0
    assert words.startswith("constant segment: 3000 identical samples") and "at 0.25 s" in words
    assert "unusable" in out
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert rows[0].endswith(",unusable,engine") and rows[2].startswith(str(tmp_path / "dropout.npy"))
    assert words in rows[2]
    # through the API too: a result, not an exception
    r = diag.load_model(run).predict(flat, fs=FS)
    assert r.verdict == "unusable" and r.unusable == words


def test_a_file_with_other_channel_names_is_told_so(run, tmp_path):
    from diag.sources.files import write_recordings

    recs = recordings(1, 1.0, seed=4, labels=("low",))
    recs[0].channels = ("accel",)
    write_recordings(recs, tmp_path / "named")
    r = diag.load_model(run).predict_file(next((tmp_path / "named").rglob("*.npy")))
    assert any("channels accel taken as the model's mic by position" in n for n in r.notes), r.notes


def test_transform_config_is_not_shared_between_objects(resampled_set):
    pre = PreparedDataset(resampled_set[0]).preprocessing
    other = Preprocessing.from_dict(pre.to_dict())
    other.transform.fmin = 99.0
    assert pre.transform.fmin == 50.0 and isinstance(pre.transform, TransformConfig)
