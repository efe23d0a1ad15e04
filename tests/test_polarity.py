"""transform.polarity: magnitude images are blind to the sign of a signal, and an open upper switch of
an inverter leg gives the current of the open lower switch mirrored and shifted by half a period
(S1 <-> S4). Split into half-waves, the images keep the polarity that tells them apart."""

import hashlib
import json

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from diag.config import PrepareConfig, TransformConfig
from diag.simulate.inverter import simulate_inverter, simulate_inverter_recordings
from diag.signal.transforms import make_transform
from diag.signal.windows import apply_normalization, extract, window_starts

FS, L = 10000.0, 1024


def transform(polarity: bool):
    cfg = TransformConfig(kind="cwt", size=[32, 32], n_scales=32, fmin=20.0, norm="image-joint", polarity=polarity)
    return make_transform(cfg, FS, L, threads=1)


def images(t, x):
    return t(apply_normalization(np.ascontiguousarray(x, dtype=np.float32), "rms-joint"))


def test_s1_is_s4_mirrored_and_only_polarity_images_tell_them_apart():
    s1, _ = simulate_inverter(fault="S1", f1=40.0, fs=FS, duration=0.4, seed=3)
    s4, _ = simulate_inverter(fault="S4", f1=40.0, fs=FS, duration=0.4, seed=3)
    ok, _ = simulate_inverter(fault="normal", f1=40.0, fs=FS, duration=0.4, seed=3)
    half = int(FS / 40.0 / 2)  # 125 samples
    assert np.abs(s1[:, 1000:3000] + s4[:, 1000 + half:3000 + half]).max() < 0.02 * np.abs(s1).max()
    win = lambda x, a: x[None, :, a:a + L]  # noqa: E731
    for polarity, channels in ((False, 3), (True, 6)):
        t = transform(polarity)
        a, b, n = images(t, win(s1, 1000)), images(t, win(s4, 1000 + half)), images(t, win(ok, 1000))
        assert a.shape == (1, channels, 32, 32) and t.out_channels_per_input == channels // 3
        mirror, fault = np.abs(a - b).mean(), np.abs(a - n).mean()
        if polarity:
            assert mirror > fault  # the half-waves put S1 and S4 at least as far apart as S1 and healthy
        else:
            assert mirror < 0.05 * fault  # same image: no model on these images can tell S1 from S4


def test_polarity_images_separate_s1_from_s4_on_other_drives():
    """Channel means of the images, a logistic regression, train on 4 drives per class, test on 4 others
    (other modulation, carrier, PWM, noise; every window start): ~chance without polarity, ~1 with it."""
    recs = simulate_inverter_recordings(classes=["S1", "S4"], recordings_per_class=8, duration=0.5, seed=1)
    auc = {}
    for polarity in (False, True):
        t = transform(polarity)
        feats = {"train": ([], []), "test": ([], [])}
        seen: dict[str, int] = {}
        for r in recs:
            seen[r.label] = j = seen.get(r.label, -1) + 1
            side = "train" if j < 4 else "test"  # drive j runs at f1[j % 4]: both sides see every f1
            st = window_starts(0, r.n_samples, L, 197)
            img = images(t, extract([r], np.zeros(len(st), int), st, L))
            feats[side][0].append(img.mean(axis=(2, 3)))
            feats[side][1].append(np.full(len(st), r.label == "S1"))
        (xa, ya), (xb, yb) = ((np.concatenate(f), np.concatenate(y)) for f, y in feats.values())
        clf = LogisticRegression(max_iter=2000).fit(xa, ya)
        auc[polarity] = roc_auc_score(yb, clf.decision_function(xb))
    assert auc[True] > 0.95, auc
    assert 0.2 < auc[False] < 0.8, auc


def test_channel_order_and_old_fingerprints():
    t = transform(True)
    x = np.zeros((1, 2, L), np.float32)
    x[0, 0] = np.abs(np.sin(2 * np.pi * 50.0 * np.arange(L) / FS)) + 0.1  # channel 0 never negative
    x[0, 1] = -x[0, 0]  # channel 1 never positive
    img = t(x)
    spread = img.reshape(4, -1).std(axis=1)  # an empty half-wave is a flat image at the floor
    assert spread[0] > 0.1 and spread[3] > 0.1 and spread[1] < 1e-3 and spread[2] < 1e-3
    assert "max(x, 0)" in t.to_dict()["polarity"]
    cfg = PrepareConfig()
    d = cfg.to_dict()
    del d["transform"]["polarity"], d["transform"]["ref_search"]
    assert cfg.fingerprint() == hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]
    cfg.transform.polarity = True
    assert cfg.fingerprint() != hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def test_prepare_notes_channels_whose_level_changes_sign():
    from diag.commands.prepare import signed_levels
    from diag.sources.base import Recording

    recs = simulate_inverter_recordings(classes=["normal", "S1", "S4"], recordings_per_class=1, duration=0.2, seed=0)
    signed = signed_levels(recs)
    # S1 pulls i_a's mean to about -0.65 of its RMS, S4 to +0.65; the other two phases carry half of it back
    assert signed["ia"][0] < -0.5 and signed["ia"][1] > 0.5 and set(signed) <= {"ia", "ib", "ic"}
    rng = np.random.default_rng(0)
    vib = [Recording(signal=rng.normal(off, 1.0, (1, 4000)), fs=FS, label=str(k), source=f"v{k}", channels=("acc",))
           for k, off in enumerate((0.01, 0.17, 0.05))]  # a sensor offset of one sign: not signed information
    assert signed_levels(vib) == {}
