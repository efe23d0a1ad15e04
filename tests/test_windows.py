"""Resampling, windowing and the no-shared-sample guarantee of every non-leaky split."""

import numpy as np
import pytest

from diag.config import SplitConfig, WindowConfig
from diag.errors import DiagError
from diag.sources.base import Recording
from diag.windows import (
    check_no_shared_samples,
    extract,
    harmonise,
    normalize,
    plan_split,
    resample,
    window_starts,
)


def rec(n, label="a", group="g", condition="c0", fault_size="", fs=1000.0, channels=1, source=None, seed=0):
    x = np.random.default_rng(seed).standard_normal((channels, n)).astype(np.float32)
    return Recording(x, fs, label, group=group, condition=condition, fault_size=fault_size,
                     source=source or f"{label}-{group}-{condition}-{seed}")


def cwru_like():
    """4 faulty classes x 4 conditions x 2 sizes plus one healthy recording (as CWRU has)."""
    out = [rec(9000, "normal", "n", "0HP", "", seed=99)]
    k = 0
    for label in ("IR", "OR", "B"):
        for size in ("0.007", "0.014"):
            for c in ("0HP", "1HP", "2HP", "3HP"):
                k += 1
                out.append(rec(6000 + 37 * k, label, f"{label}{size}", c, size, seed=k))
    return out


def test_resample_48k_to_12k_keeps_a_tone_at_its_frequency():
    fs, f = 48000.0, 147.8
    t = np.arange(int(fs * 2)) / fs
    r = Recording(np.sin(2 * np.pi * f * t)[None], fs, "normal", source="97.mat")
    y = resample(r, 12000.0)
    assert y.fs == 12000.0 and y.n_samples == len(t) // 4
    assert y.meta["fs_original"] == 48000.0
    spec = np.abs(np.fft.rfft(y.signal[0] * np.hanning(y.n_samples)))
    peak = np.fft.rfftfreq(y.n_samples, 1 / 12000.0)[np.argmax(spec)]
    assert abs(peak - f) < 0.6  # one FFT bin is 0.5 Hz


def test_harmonise_refuses_mixed_rates_without_target_and_resamples_with_one():
    a, b = rec(4000, fs=1000.0, source="a.npy"), rec(8000, fs=2000.0, source="b.npy")
    with pytest.raises(DiagError, match="inconsistent sampling rates.*a.npy.*b.npy"):
        harmonise([a, b], WindowConfig(fs=0, length=64, hop=32))
    out = harmonise([a, b], WindowConfig(fs=1000.0, length=64, hop=32))
    assert [r.fs for r in out] == [1000.0, 1000.0] and out[1].n_samples == 4000


def test_harmonise_rejects_nan_and_channel_mismatch():
    bad = rec(1000, source="bad.csv")
    bad.signal[0, 17] = np.nan
    with pytest.raises(DiagError, match="bad.csv: 1 NaN/Inf samples.*first at sample 17"):
        harmonise([bad], WindowConfig(fs=0))
    with pytest.raises(DiagError, match="two.npy: 2 channels"):
        harmonise([rec(100, source="one.npy"), rec(100, channels=2, source="two.npy")], WindowConfig(fs=0))


def test_window_starts_and_extract():
    s = window_starts(10, 110, 32, 16)
    assert s[0] == 10 and s[-1] + 32 <= 110 and np.all(np.diff(s) == 16)
    assert len(window_starts(0, 31, 32, 16)) == 0
    r = Recording(np.arange(200, dtype=np.float32)[None].repeat(2, 0), 100.0, "a", source="x")
    w = extract([r], np.array([0, 0]), np.array([5, 50]), 8)
    assert w.shape == (2, 2, 8) and w[1, 1, 0] == 50 and w[0, 0, -1] == 12


@pytest.mark.parametrize("method", ["zscore", "rms", "minmax", "none"])
def test_normalize(method):
    x = np.random.default_rng(0).normal(3, 2, (5, 2, 256)).astype(np.float32)
    x[0, 0] = 1.0  # a constant window must not divide by zero
    y = normalize(x, method)
    assert np.isfinite(y).all()
    if method == "zscore":
        np.testing.assert_allclose(y[1:].mean(-1), 0, atol=1e-5)
        np.testing.assert_allclose(y[1:].std(-1), 1, atol=1e-4)
        assert (y[0, 0] == 0).all()
    if method == "minmax":
        assert y[1:].min() == pytest.approx(-1) and y[1:].max() == pytest.approx(1)


SPLITS = [
    SplitConfig(method="time"),
    SplitConfig(method="time", test_fraction=0.3, val_fraction=0.0, guard_windows=2.5),
    SplitConfig(method="recording", seed=3),
    SplitConfig(method="group", seed=1),
    SplitConfig(method="condition", test_conditions=["3HP"]),
    SplitConfig(method="fault-size", test_fault_sizes=["0.014"]),
]


@pytest.mark.parametrize("scfg", SPLITS, ids=lambda s: s.method)
@pytest.mark.parametrize("length,hop", [(256, 256), (256, 64), (200, 333), (512, 128)])
def test_no_train_and_test_window_share_a_sample(scfg, length, hop):
    recs = cwru_like()
    plan = plan_split(recs, WindowConfig(fs=1000, length=length, hop=hop), scfg)
    check_no_shared_samples(plan, length)
    # The same property computed the slow, obvious way: a sample-level owner map per recording.
    w = plan.windows
    for r in range(len(recs)):
        owner = np.full(recs[r].n_samples, "", dtype="<U5")
        m = np.nonzero(w.rec == r)[0]
        for i in m:
            seg = owner[w.start[i] : w.start[i] + length]
            assert np.all((seg == "") | (seg == w.side[i])), f"recording {r} sample shared across sides"
            seg[:] = w.side[i]
    for side in ("train", "test"):
        assert (w.side == side).any()


def test_time_split_guard_is_at_least_one_window():
    r = rec(10000)
    plan = plan_split([r], WindowConfig(fs=1000, length=500, hop=100), SplitConfig(method="time"))
    w = plan.windows
    end_train = (w.start[w.side == "train"] + 500).max()
    first_val = w.start[w.side == "val"].min()
    end_val = (w.start[w.side == "val"] + 500).max()
    first_test = w.start[w.side == "test"].min()
    assert first_val - end_train >= 500 and first_test - end_val >= 500


def test_condition_split_holds_out_the_condition_and_time_splits_single_side_classes():
    recs = cwru_like()
    plan = plan_split(recs, WindowConfig(fs=1000, length=256, hop=128),
                      SplitConfig(method="condition", test_conditions=["3HP"]))
    w = plan.windows
    test_recs = {recs[i].condition for i in np.unique(w.rec[(w.side == "test")]) if recs[i].label != "normal"}
    train_recs = {recs[i].condition for i in np.unique(w.rec[(w.side == "train")])}
    assert test_recs == {"3HP"} and "3HP" not in train_recs
    # The healthy recording exists only at 0HP: it is split by time and the plan says so.
    assert any("'normal'" in n for n in plan.notes)
    normal = [i for i, r in enumerate(recs) if r.label == "normal"][0]
    assert set(w.side[w.rec == normal]) == {"train", "val", "test"}


def test_fault_size_split_tests_only_unseen_sizes():
    recs = cwru_like()
    plan = plan_split(recs, WindowConfig(fs=1000, length=256, hop=128),
                      SplitConfig(method="fault-size", test_fault_sizes=["0.014"]))
    w = plan.windows
    sizes_test = {recs[i].fault_size for i in np.unique(w.rec[w.side == "test"])}
    sizes_train = {recs[i].fault_size for i in np.unique(w.rec[w.side == "train"])}
    assert sizes_test == {"0.014", ""} and "0.014" not in sizes_train


def test_recording_split_keeps_each_recording_on_one_side():
    recs = cwru_like()
    plan = plan_split(recs, WindowConfig(fs=1000, length=256, hop=128), SplitConfig(method="recording", seed=0))
    w = plan.windows
    for i, r in enumerate(recs):
        sides = set(w.side[w.rec == i])
        if r.label != "normal":
            assert sides in ({"test"}, {"train", "val"}, {"train"})
    # Deterministic from the seed.
    plan2 = plan_split(recs, WindowConfig(fs=1000, length=256, hop=128), SplitConfig(method="recording", seed=0))
    assert (plan2.windows.side == w.side).all()


def test_random_split_is_flagged_leaky_and_fails_the_check():
    recs = cwru_like()[:3]
    plan = plan_split(recs, WindowConfig(fs=1000, length=256, hop=64),
                      SplitConfig(method="random", allow_leaky=True))
    assert plan.leaky and plan.notes
    with pytest.raises(AssertionError, match="overlaps"):
        check_no_shared_samples(plan, 256)


def test_too_short_recording_names_the_file():
    with pytest.raises(DiagError, match="short.wav: 900 samples is too short"):
        plan_split([rec(900, source="short.wav")], WindowConfig(fs=1000, length=256, hop=128), SplitConfig())


def test_unknown_test_condition_is_refused():
    with pytest.raises(DiagError, match=r"\['9HP'\] not found"):
        plan_split(cwru_like(), WindowConfig(fs=1000, length=256, hop=128),
                   SplitConfig(method="condition", test_conditions=["9HP"]))


def _groups_by_side(recs, plan):
    w = plan.windows
    return {side: {recs[i].group for i in np.unique(w.rec[w.side == side])} for side in ("train", "test")}


@pytest.mark.parametrize("seed", range(8))
def test_group_split_never_trains_on_a_group_it_holds_out(seed):
    # One rig run ("g1") holds two classes; A has two groups, B three.
    recs = [rec(3000, "A", "g1", seed=1), rec(3000, "A", "g2", seed=2),
            rec(3000, "B", "g1", seed=3), rec(3000, "B", "g3", seed=4), rec(3000, "B", "g4", seed=5)]
    plan = plan_split(recs, WindowConfig(fs=1000, length=256, hop=128),
                      SplitConfig(method="group", test_fraction=0.3, seed=seed))
    sides = _groups_by_side(recs, plan)
    assert not sides["train"] & sides["test"], sides
    held = [i for i, r in enumerate(recs) if set(plan.windows.side[plan.windows.rec == i]) == {"test"}]
    assert held  # something really is held out


def test_a_class_that_would_only_be_tested_is_refused():
    recs = [r for r in cwru_like()]
    for r in recs:  # labels that include the size: under fault-size each class is one size
        if r.fault_size:
            r.label = f"{r.label}_{r.fault_size}"
    with pytest.raises(DiagError, match="class 'B_0.014' is in the test_fault_sizes, so it would never be trained on"):
        plan_split(recs, WindowConfig(fs=1000, length=256, hop=128),
                   SplitConfig(method="fault-size", test_fault_sizes=["0.014"]))
    with pytest.raises(DiagError, match="would never be trained on"):
        plan_split(cwru_like(), WindowConfig(fs=1000, length=256, hop=128),
                   SplitConfig(method="condition", test_conditions=["0HP", "1HP", "2HP", "3HP"]))


def test_a_class_missing_from_a_side_is_an_error_not_a_silent_gap():
    recs = [rec(3000, "A", "g1", seed=1), rec(3000, "A", "g2", seed=2),
            rec(3000, "B", "g3", seed=3), rec(200, "B", "g4", seed=4)]  # B's second bearing: shorter than a window
    with pytest.raises(DiagError, match=r"class\(es\) \['B'\] have no windows on the test side"):
        plan_split(recs, WindowConfig(fs=1000, length=256, hop=128), SplitConfig(method="group", test_groups=["g2", "g4"]))


def test_random_split_needs_the_explicit_flag_even_through_the_api():
    with pytest.raises(DiagError, match="allow_leaky"):
        plan_split(cwru_like()[:3], WindowConfig(fs=1000, length=256, hop=64), SplitConfig(method="random"))
