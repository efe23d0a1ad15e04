"""Issue 11 part 4: a fault whose only signature is a few percent of imbalance between phase currents
(simulated inter-turn short circuit) is divided away by per-channel normalisation and kept by the
joint ones. One feature family, a logistic regression, a held-out fundamental frequency."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from diag.simulate.inverter import simulate_inverter_recordings
from diag.signal.windows import NormalizationStats, apply_normalization, extract, window_starts

L = 1024


def make_windows():
    """Normal vs phase-A turn short, 8 drives each; train at 20-40 Hz, test at 50 Hz (held out)."""
    recs = simulate_inverter_recordings(classes=["normal", "itsc_a"], recordings_per_class=8, duration=1.0, seed=0)
    out = {}
    for side, keep in (("train", lambda r: r.condition != "50Hz"), ("test", lambda r: r.condition == "50Hz")):
        rs = [r for r in recs if keep(r)]
        starts = [window_starts(0, r.n_samples, L, 512) for r in rs]
        x = np.concatenate([extract([r], np.zeros(len(s), int), s, L) for r, s in zip(rs, starts)])
        y = np.concatenate([np.full(len(s), r.label != "normal") for r, s in zip(rs, starts)])
        out[side] = (x, y)
    return out


@pytest.fixture(scope="module")
def windows():
    return make_windows()


def fundamental_log_amplitude(x):
    """Per window and phase: log power of the fundamental (+-3 bins around the strongest common bin)."""
    p = np.abs(np.fft.rfft((x - x.mean(-1, keepdims=True)) * np.hanning(L), axis=-1)) ** 2
    k = p.sum(1).argmax(-1)
    return np.log(np.stack([p[i, :, max(k[i] - 3, 0) : k[i] + 4].sum(-1) for i in range(len(p))]))


def _auroc(windows, method):
    (xtr, ytr), (xte, yte) = windows["train"], windows["test"]
    acc = NormalizationStats(["ia", "ib", "ic"], [])
    acc.update(xtr)
    stats = acc.result()
    f = lambda x: fundamental_log_amplitude(apply_normalization(x, method, stats))  # noqa: E731
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)).fit(f(xtr), ytr)
    return roc_auc_score(yte, clf.predict_proba(f(xte))[:, 1])


def test_simulated_turn_short_is_a_few_percent_of_phase_imbalance(windows):
    x, y = windows["train"]
    rms = x.std(-1)
    ratio = rms[:, 0] / rms[:, 1:].mean(1)
    assert abs(np.median(ratio[~y]) - 1) < 0.005
    assert 1.01 < np.median(ratio[y]) < 1.06  # a few percent, no more


@pytest.mark.parametrize("method", ["zscore", "rms"])
def test_per_channel_normalisation_loses_the_imbalance(windows, method):
    # measured (seed 0): zscore 0.685, rms 0.696 (none 0.692, dataset 0.692: the drives' load level swamps
    # the contrast for this small classifier) -- what is left is the ripple share, not the level
    assert 0.25 <= _auroc(windows, method) <= 0.75


@pytest.mark.parametrize("method", ["zscore-joint", "rms-joint"])
def test_joint_normalisation_keeps_the_imbalance(windows, method):
    assert _auroc(windows, method) >= 0.95  # measured (seed 0): 0.998
