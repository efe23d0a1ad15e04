"""CWRU's healthy baseline (record 97, 48 kHz chain) carries an acquisition cue above the 12 kHz files'
anti-alias edge (~5.4 kHz); ``windows.band`` in configs/cwru.toml removes it from every recording.

Skipped when ../shared/data/cwru12k is absent (set DIAG_SHARED_DATA).
"""

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from diag.config import load_prepare_config
from diag.signal.recordings import load_recordings
from diag.signal.transforms import TOP_DB
from diag.signal.windows import extract, harmonise, normalize, window_starts

from helpers import shared_cwru

ROOT = Path(__file__).resolve().parents[1]


CWRU = shared_cwru()

pytestmark = [pytest.mark.shared_data, pytest.mark.slow,
              pytest.mark.skipif(CWRU is None, reason="../shared/data/cwru12k not present (set DIAG_SHARED_DATA)")]

ACQ_BAND_HZ = 5500.0  # above this the two acquisition chains differ (fault files are cut off, record 97 is not)


def _power(recs, length):
    """Per window (``length`` samples, hop 1024, z-scored, Hann): power spectra, frequencies, healthy flags."""
    starts = [window_starts(0, r.n_samples, length, 1024) for r in recs]
    rec = np.concatenate([np.full(len(s), i) for i, s in enumerate(starts)])
    x = normalize(extract(recs, rec, np.concatenate(starts), length), "zscore")[:, 0].astype(np.float64)
    p = np.abs(np.fft.rfft(x * np.hanning(length), axis=-1)) ** 2
    return p / p.sum(1, keepdims=True), np.fft.rfftfreq(length, 1.0 / recs[0].fs), np.array(
        [recs[i].label == "normal" for i in rec])


def test_band_limit_removes_the_healthy_acquisition_cue():
    cfg = load_prepare_config(ROOT / "configs/cwru.toml", [f"source.path={CWRU}"])
    lo, hi = cfg.windows.band
    assert 0 < hi < ACQ_BAND_HZ  # the config limits the band below the 12 kHz files' anti-alias edge
    before = load_prepare_config(ROOT / "configs/cwru.toml", [f"source.path={CWRU}", "windows.band=[]"])
    raw = load_recordings(cfg.source)
    # The one feature a model could learn "healthy" from: power share above 5.5 kHz, in dB, floored
    # at the images' dynamic range (TOP_DB).
    aucs = []
    for c in (before, cfg):
        p, f, healthy = _power(harmonise(raw, c.windows), c.windows.length)
        share = p[:, f > ACQ_BAND_HZ].sum(1)
        aucs.append(roc_auc_score(healthy, np.maximum(10 * np.log10(share + 1e-300), -TOP_DB)))
    # measured: 1.000 before (healthy windows at -27 dB median, fault windows at -42 dB), 0.500 after
    # (every window below the floor)
    assert aucs[0] > 0.95 and 0.25 <= aucs[1] <= 0.75, aucs
    assert share.max() < 10 ** (-TOP_DB / 10)
    # Above the limit itself only the analysis window's leakage from below it remains (measured:
    # at most 1.6e-4 of a window's power; the healthy windows had 1.3e-3 to 2.8e-3 above 5.5 kHz before).
    above = p[:, f > hi].sum(1)
    assert above.max() < 5e-4
    print(f"AUROC share > {ACQ_BAND_HZ:g} Hz before/after: {aucs}; share > {hi:g} Hz after: "
          f"{roc_auc_score(healthy, above):.3f}, max {above.max():.1e}")
