"""diag prepare: layout, manifest, reuse, refusal to overwrite, atomicity, CLI errors."""

import json
import os

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import diag.commands.prepare as prep
from diag.cli import app
from diag.signal.dataset import PreparedDataset
from diag.errors import DiagError
from diag.sources.base import Recording

SMALL = ["windows.fs=1000", "windows.length=256", "windows.hop=128", "transform.size=[32,32]",
         "transform.n_scales=32", "transform.fmin=10"]


def tone_recordings():
    """Three classes told apart by a tone frequency, two conditions each, one of them 2 kHz (resampled)."""
    rng = np.random.default_rng(0)
    recs = []
    for k, (label, f) in enumerate([("normal", 50.0), ("inner", 150.0), ("outer", 300.0)]):
        for c, fs in (("0HP", 1000.0), ("1HP", 2000.0)):
            t = np.arange(int(fs * 8)) / fs
            x = np.sin(2 * np.pi * f * t) + 0.3 * rng.standard_normal(len(t))
            recs.append(Recording(x[None].astype(np.float32), fs, label, group=f"{label}-bearing",
                                  condition=c, source=f"sim/{label}_{c}.npy", channels=("accel",)))
    return recs


@pytest.fixture
def fake_source(monkeypatch):
    monkeypatch.setattr(prep, "load_recordings", lambda cfg: tone_recordings())


def test_prepare_writes_a_complete_dataset(tmp_path, fake_source):
    out = prep.prepare(None, tmp_path / "ds", SMALL, quiet=True)
    ds = PreparedDataset(out)
    assert ds.classes == ["normal", "inner", "outer"]
    assert ds.image_shape == (1, 32, 32)
    m = ds.manifest
    assert m["fs"] == 1000.0 and m["window"]["length"] == 256
    assert m["config"]["windows"]["hop"] == 128 and m["versions"]["numpy"]
    assert {r["fs_original"] for r in m["recordings"]} == {1000.0, 2000.0}
    for split in ("train", "val", "test"):
        x, meta = ds.images(split), ds.meta(split)
        assert x.dtype == np.float16 and len(x) == len(meta["y"]) == m["sizes"][split] > 0
        assert np.isfinite(x.astype(np.float32)).all()
        assert set(meta["label"]) == set(ds.classes)
        assert [m["counts"][split][c] for c in ds.classes] == np.bincount(meta["y"], minlength=3).tolist()
    # Every window is traceable: start + length lies inside its recording's block on that side.
    blocks = m["split"]["blocks"]
    meta = ds.meta("test")
    for rec, start in zip(meta["rec"], meta["start"]):
        assert any(b[0] == rec and b[3] == "test" and b[1] <= start and start + 256 <= b[2] for b in blocks)
    # No temporary directories left beside the output.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_same_config_is_reused_and_a_different_one_is_refused(tmp_path, fake_source):
    out = prep.prepare(None, tmp_path / "ds", SMALL, quiet=True)
    stamp = os.stat(out / "train.npy").st_mtime_ns
    prep.prepare(None, out, SMALL, quiet=True)
    assert os.stat(out / "train.npy").st_mtime_ns == stamp  # reused, not rewritten
    with pytest.raises(DiagError, match="different config.*--force"):
        prep.prepare(None, out, SMALL + ["windows.hop=64"], quiet=True)
    assert os.stat(out / "train.npy").st_mtime_ns == stamp  # untouched
    prep.prepare(None, out, SMALL + ["windows.hop=64"], force=True, quiet=True)
    assert json.loads((out / "manifest.json").read_text())["config"]["windows"]["hop"] == 64


def test_auto_normalisation_is_joint_for_several_channels_and_stored_resolved(tmp_path, monkeypatch):
    """Default windows.normalize / transform.norm = auto: per channel for one channel (as before auto),
    one scale for several (phases keep their ratio); the manifest stores the resolved values, the
    fingerprint the config as given (so the dataset is reused)."""
    monkeypatch.setattr(prep, "load_recordings", lambda cfg: tone_recordings())
    one = prep.prepare(None, tmp_path / "one", SMALL, quiet=True)
    m1 = PreparedDataset(one).manifest
    assert m1["window"]["normalize"] == "zscore" and m1["transform"]["norm"] == "image"
    assert m1["config"]["windows"]["normalize"] == "zscore" and m1["config"]["transform"]["norm"] == "image"

    def three_phase(cfg):  # phase b 3 % above a and c: the relation a per-channel scale divides away
        out = []
        for r in tone_recordings():
            x = r.signal[0]
            out.append(Recording(np.stack([x, 1.03 * x, x]), r.fs, r.label, group=r.group, condition=r.condition,
                                 source=r.source, channels=("ia", "ib", "ic")))
        return out

    monkeypatch.setattr(prep, "load_recordings", three_phase)
    out = prep.prepare(None, tmp_path / "three", SMALL, quiet=True)
    ds = PreparedDataset(out)
    m = ds.manifest
    assert m["window"]["normalize"] == "zscore-joint" and m["transform"]["norm"] == "image-joint"
    assert m["config"]["windows"]["normalize"] == "zscore-joint"
    x = ds.images("train")[:32].astype(np.float32)
    gap = (x[:, 1] - x[:, 0]).mean()  # ib's image sits 20 log10(1.03) = 0.26 dB above ia's, in std units > 0
    assert gap > 0.01 and np.abs(x[:, 2] - x[:, 0]).max() < 1e-2
    stamp = os.stat(out / "train.npy").st_mtime_ns
    prep.prepare(None, out, SMALL, quiet=True)  # same config (auto) -> reused
    assert os.stat(out / "train.npy").st_mtime_ns == stamp
    per = PreparedDataset(prep.prepare(None, tmp_path / "per", SMALL + ['windows.normalize="zscore"',
                                                                       'transform.norm="image"'], quiet=True))
    xp = per.images("train")[:32].astype(np.float32)
    assert np.abs(xp[:, 1] - xp[:, 0]).max() < 1e-2  # per channel: the 3 % is gone


def test_an_unrelated_existing_folder_is_never_overwritten(tmp_path, fake_source):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "thesis.tex").write_text("precious")
    with pytest.raises(DiagError, match="not a prepared dataset"):
        prep.prepare(None, target, SMALL, quiet=True)
    assert (target / "thesis.tex").read_text() == "precious"


def test_interrupted_prepare_leaves_nothing_behind(tmp_path, fake_source, monkeypatch):
    import diag.signal.preprocessing as tr

    real = tr.make_transform

    def exploding(*a, **k):
        t = real(*a, **k)
        calls = {"n": 0}

        def call(x):
            calls["n"] += 1
            if calls["n"] > 2:
                raise KeyboardInterrupt
            return t(x)

        class T:
            def __call__(self, x):
                return call(x)

            def to_dict(self):
                return t.to_dict()

        return T()

    monkeypatch.setattr(tr, "make_transform", exploding)
    with pytest.raises(KeyboardInterrupt):
        prep.prepare(None, tmp_path / "ds", SMALL, quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_same_config_same_images(tmp_path, fake_source):
    a = PreparedDataset(prep.prepare(None, tmp_path / "a", SMALL, quiet=True))
    b = PreparedDataset(prep.prepare(None, tmp_path / "b", SMALL, quiet=True))
    for s in ("train", "val", "test"):
        assert np.array_equal(np.asarray(a.images(s)), np.asarray(b.images(s)))


def test_transform_device_is_checked_and_recorded(tmp_path, fake_source):
    a = PreparedDataset(prep.prepare(None, tmp_path / "a", SMALL, quiet=True, device="auto"))
    assert a.manifest["transform_device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DiagError, match="--device: 'tpu' is not one of cpu, cuda, cuda:N, auto"):
        prep.prepare(None, tmp_path / "b", SMALL, quiet=True, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DiagError, match="'cuda' requested but CUDA is not available here"):
            prep.prepare(None, tmp_path / "b", SMALL, quiet=True, device="cuda")
    assert not (tmp_path / "b").exists()


def test_cli_errors_are_one_line_without_traceback(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["prepare", "--config", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "config file not found" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["prepare", "--source", "cwru", "--data", str(tmp_path / "nowhere"),
                              "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "nowhere: no such file or folder" in res.output
    res = runner.invoke(app, ["prepare", "--split", "random", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "allow_leaky" in res.output
    res = runner.invoke(app, ["prepare", "--set", "windows.band=[0, 7000]", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "windows.band: high edge 7000 Hz must be below the Nyquist" in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) <= 2
    assert not (tmp_path / "o").exists()


def test_cli_fetch_offline_fails_fast_with_one_line(tmp_path, monkeypatch):
    import diag.sources.fetch as f

    monkeypatch.setattr(f, "CWRU_BASE_URL", "http://nonexistent.invalid/files/")
    res = CliRunner().invoke(app, ["fetch", "cwru", "--records", "97", "--out", str(tmp_path / "cwru"), "--timeout", "3"])
    assert res.exit_code == 2 and "cannot reach" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(app, ["fetch", "nasa", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "unknown dataset 'nasa'" in res.output


def test_outputs_are_readable_by_others_under_the_umask(tmp_path, fake_source):
    old = os.umask(0o022)
    try:
        out = prep.prepare(None, tmp_path / "ds", SMALL, quiet=True)
    finally:
        os.umask(old)
    assert (out.stat().st_mode & 0o777) == 0o755
    assert ((out / "manifest.json").stat().st_mode & 0o777) == 0o644


def test_manifest_records_validation_band_and_dataset_scale(tmp_path, fake_source):
    out = prep.prepare(None, tmp_path / "ds", SMALL + ["split.method=condition", 'split.test_conditions=["1HP"]',
                                                      "windows.band=[0, 400]", "windows.normalize=dataset"],
                       quiet=True)
    m = PreparedDataset(out).manifest
    assert m["split"]["val_method"] == "auto" and m["split"]["val_by"] == "time"  # one training condition per class
    assert m["window"]["band"] == [0, 400]
    st = m["window"]["normalization_stats"]
    assert st["groups"] == [["accel"]] and st["scale"][0] > 0
    # the stored scale is the training windows' (0HP only), not the test side's
    from diag.signal.windows import extract, harmonise, plan_split
    from diag.config import load_prepare_config

    cfg = load_prepare_config(None, SMALL + ["split.method=condition", 'split.test_conditions=["1HP"]',
                                             "windows.band=[0, 400]"])
    recs = harmonise(tone_recordings(), cfg.windows)
    tr = plan_split(recs, cfg.windows, cfg.split).windows.select("train")
    x = extract(recs, tr.rec, tr.start, 256).astype(np.float64)
    assert st["scale"][0] == pytest.approx(x.std(), rel=1e-6) and st["center"][0] == pytest.approx(x.mean(), abs=1e-6)


def test_image_joint_keeps_the_level_difference_between_channels(tmp_path):
    from diag.config import TransformConfig
    from diag.signal.transforms import make_transform

    rng = np.random.default_rng(0)
    base = rng.standard_normal((2, 1, 256)).astype(np.float32)
    x = np.concatenate([base, 2.0 * base], axis=1)  # channel 1 is 6 dB above channel 0
    cfg = dict(size=[32, 32], n_scales=32, fmin=10.0)
    per = make_transform(TransformConfig(**cfg, norm="image"), fs=1000.0, length=256)(x)
    joint = make_transform(TransformConfig(**cfg, norm="image-joint"), fs=1000.0, length=256)(x)
    np.testing.assert_allclose(per[:, 0], per[:, 1], atol=1e-4)  # the 6 dB are divided away
    gap = (joint[:, 1] - joint[:, 0]).mean(axis=(-2, -1))
    assert (gap > 0.1).all()  # kept: channel 1 stays above channel 0
    np.testing.assert_allclose(joint.mean(axis=(1, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(joint.std(axis=(1, 2, 3)), 1, atol=1e-3)
