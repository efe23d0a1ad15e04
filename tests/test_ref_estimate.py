"""transform.ref_search: order images for recordings that carry no rpm / f1 (issue 11, part 3: "using the
recording's rpm where known, else a stated estimate"). The rate is estimated from the spectrum of the
recording's first seconds, the same way by diag prepare and diag predict."""

from pathlib import Path

import numpy as np
import pytest

import diag
from diag.config import LATER_SETTINGS, PrepareConfig, TransformConfig, load_prepare_config
from diag.signal.dataset import PreparedDataset
from diag.errors import DiagError
from diag.commands.prepare import prepare
from diag.sources.base import Recording
from diag.sources.files import write_recordings
from diag.signal.transforms import REF_MIN_PROMINENCE, estimate_reference_hz, reference_hz

from helpers import shared_cwru

ROOT = Path(__file__).resolve().parents[1]
FS = 8000.0


def shaft_signal(hz: float, seconds: float, seed: int, channels: int = 1, fs: float = FS) -> np.ndarray:
    """Broadband noise with the first three shaft harmonics (unbalance, misalignment) well below it in power."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * fs))) / fs
    lines = sum(a * np.sin(2 * np.pi * k * hz * t + rng.uniform(0, 6.3)) for k, a in ((1, 0.3), (2, 0.2), (3, 0.1)))
    return np.stack([lines + rng.normal(0, 1.0, t.size) for _ in range(channels)]).astype(np.float32)


def test_the_estimate_finds_the_shaft_rate_and_refuses_noise():
    for hz in (17.3, 23.7, 31.05):
        est, prominence = estimate_reference_hz(shaft_signal(hz, 8.0, seed=1, channels=3), FS, [15.0, 35.0])
        assert abs(est - hz) < 0.05 and prominence >= REF_MIN_PROMINENCE, (hz, est, prominence)
    noise = np.random.default_rng(0).normal(size=(1, 80000))
    assert estimate_reference_hz(noise, FS, [15.0, 35.0])[1] < 1.0  # measured 0.4-0.7
    cfg = TransformConfig(kind="envorder", ref_search=[15.0, 35.0])
    with pytest.raises(DiagError, match=r"no clear shaft rate line between 15 and 35 Hz"):
        reference_hz({}, cfg, noise, FS)
    # the recording's own rate wins; without a signal there is nothing to estimate
    assert reference_hz({"rpm": 1800.0}, cfg, noise, FS) == ((30.0, 30.0), "recording meta 'rpm'")
    assert reference_hz({}, cfg) == (None, "none")
    assert reference_hz({}, TransformConfig(kind="cwt", ref_search=[15.0, 35.0]), noise, FS)[1] == "not needed"


def test_ref_search_is_checked_and_leaves_old_fingerprints_alone():
    for bad in ([20.0], [30.0, 20.0], [0.0, 20.0]):
        with pytest.raises(DiagError, match=r"transform.ref_search: expected \[lo, hi\]"):
            TransformConfig(kind="envorder", ref_search=bad).validate()
    with pytest.raises(DiagError, match="both set"):
        TransformConfig(kind="envorder", ref_hz=30.0, ref_search=[20.0, 40.0]).validate()
    # at its default the new setting does not change the fingerprint of datasets prepared before it
    import hashlib
    import json

    cfg = PrepareConfig()
    d = cfg.to_dict()
    for section, key in LATER_SETTINGS:  # every setting added since, at its default (ref_search among them)
        del d[section][key]
    assert ("transform", "ref_search") in LATER_SETTINGS
    old = hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]
    assert cfg.fingerprint() == old
    cfg.transform.ref_search = [20.0, 40.0]
    assert cfg.fingerprint() != old


def test_prepare_and_predict_estimate_the_same_rate(tmp_path):
    import torch

    from diag.learning.train import TrainConfig, train

    rates = {"outer0": 24.0, "outer1": 29.0, "inner0": 26.5, "inner1": 33.0}
    recs = [Recording(signal=shaft_signal(hz, 3.0, seed=k), fs=FS, label=g[:-1], group=g, source=g, channels=("acc",))
            for k, (g, hz) in enumerate(rates.items())]  # no rpm anywhere
    data = write_recordings(recs, tmp_path / "recordings")
    cfg = tmp_path / "est.toml"
    cfg.write_text(f'[source]\nkind = "files"\npath = "{data}"\n[windows]\nfs = {FS}\nlength = 512\nhop = 256\n'
                   '[split]\nmethod = "time"\n[transform]\nkind = "envorder"\nsize = [32, 32]\nref_search = [20.0, 40.0]\n')
    ds = prepare(cfg, tmp_path / "prepared", quiet=True)
    manifest = PreparedDataset(ds).manifest
    got = {Path(r["source"]).stem: r for r in manifest["recordings"]}
    for g, hz in rates.items():
        assert abs(got[g]["ref_hz"][0] - hz) < 0.05 and got[g]["ref_from"].startswith("estimated from the spectrum")
    torch.manual_seed(0)
    train(ds, tmp_path / "run", TrainConfig(epochs=1, batch_size=16, device="cpu", seed=0).validate(), quiet=True)
    pred = diag.load_model(tmp_path / "run")
    for g in ("outer1", "inner0"):
        src = Path(got[g]["source"])
        r = pred.predict_file(src, fs=FS)
        assert r.ref_hz == got[g]["ref_hz"] and r.ref_from.startswith("estimated from the spectrum"), (r.ref_hz, got[g])
    np.save(tmp_path / "noise.npy", np.random.default_rng(0).normal(size=(1, 24000)).astype(np.float32))
    with pytest.raises(DiagError, match=r"noise\.npy: no clear shaft rate line"):
        pred.predict_file(tmp_path / "noise.npy", fs=FS)
    # a rate given by the user still wins over the estimate
    assert pred.predict_file(Path(got["outer1"]["source"]), fs=FS, ref_hz=30.0).ref_hz == [30.0, 30.0]


CWRU = shared_cwru()


@pytest.mark.shared_data
@pytest.mark.skipif(CWRU is None, reason="../shared/data/cwru12k not present (set DIAG_SHARED_DATA)")
def test_cwru_shaft_rates_are_estimated_within_a_tenth_of_a_hertz():
    from diag.signal.recordings import load_recordings

    cfg = load_prepare_config(ROOT / "configs/cwru.toml", [f"source.path={CWRU}", 'transform.kind="envorder"',
                                                            "transform.ref_search=[15, 45]"])
    recs = load_recordings(cfg.source)
    errors = []
    for r in recs:
        truth, _ = reference_hz(r.meta, cfg.transform)  # X<rec>RPM / 60
        (est, _), how = reference_hz({}, cfg.transform, r.signal, r.fs)
        errors.append(abs(est - truth[0]))
        assert how.startswith("estimated from the spectrum (15-45 Hz search")
    # measured: every one of the 37 records within 0.037 Hz (0.13 %) of its file's rpm
    assert len(errors) == 37 and max(errors) < 0.1, max(errors)
