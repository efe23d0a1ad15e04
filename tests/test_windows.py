"""Resampling, windowing and the no-shared-sample guarantee of every non-leaky split."""

import numpy as np
import pytest

from diag.config import SplitConfig, WindowConfig
from diag.errors import DiagError
from diag.sources.base import Recording
from diag.signal.windows import (
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
        if r.label != "normal":  # validation holds out whole recordings too (val_method auto)
            assert sides in ({"test"}, {"val"}, {"train"})
    assert plan.val_by == "recording"
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


# ------------------------------------------------------------------------------------------------
# Band limit, relation-keeping normalisation, validation that mirrors the test side (issue 11)


def test_band_limit_keeps_the_band_and_removes_the_rest_identically():
    from diag.signal.windows import band_limit

    fs, n = 12000.0, 24000
    t = np.arange(n) / fs
    x = np.sin(2 * np.pi * 1000.0 * t) + 0.5 * np.sin(2 * np.pi * 5600.0 * t) + 0.2 * np.sin(2 * np.pi * 30.0 * t)
    r = Recording(x[None].astype(np.float32), fs, "a", source="tones.npy")
    y = band_limit(r, [100.0, 5000.0]).signal[0].astype(np.float64)
    spec = np.abs(np.fft.rfft(y * np.hanning(n))) / (np.hanning(n).sum() / 2)
    f = np.fft.rfftfreq(n, 1 / fs)
    amp = lambda f0: spec[np.argmin(np.abs(f - f0))]  # noqa: E731
    assert amp(1000.0) == pytest.approx(1.0, rel=1e-3)  # passband untouched
    assert amp(5600.0) < 1e-4 and amp(30.0) < 1e-4  # above hi and below lo removed
    # zero phase: the kept tone is not shifted in time (interior samples agree with the input tone)
    np.testing.assert_allclose(y[2000:-2000], np.sin(2 * np.pi * 1000.0 * t)[2000:-2000], atol=2e-3)
    assert band_limit(r, []) is r and band_limit(r, [0, 0]) is r
    with pytest.raises(DiagError, match="windows.band: upper edge 6000 Hz is at or above the Nyquist"):
        band_limit(r, [0, 6000.0])


def test_harmonise_applies_the_band_after_resampling():
    a = rec(4000, fs=1000.0, source="a.npy")
    b = rec(8000, fs=2000.0, source="b.npy")
    out = harmonise([a, b], WindowConfig(fs=1000.0, length=64, hop=32, band=[0, 200.0]))
    for r in out:
        p = np.abs(np.fft.rfft(r.signal[0].astype(np.float64) * np.hanning(r.n_samples))) ** 2
        f = np.fft.rfftfreq(r.n_samples, 1 / 1000.0)
        assert p[f > 205].sum() < 1e-8 * p.sum()  # white noise before: 60 % of the power was above 200 Hz


@pytest.mark.parametrize("method", ["zscore-joint", "rms-joint"])
def test_joint_normalisation_keeps_the_ratio_between_channels(method):
    rng = np.random.default_rng(0)
    base = rng.standard_normal((1, 1, 512)).astype(np.float32)  # one waveform at four levels
    x = np.concatenate([base, 1.05 * base, 0.9 * base], axis=1) * np.array([1, 10, 0.1, 3], np.float32)[:, None, None]
    y = normalize(x, method)
    # one map per window: the amplitude ratios survive and the window's overall level is gone
    np.testing.assert_allclose(y[:, 1].std(-1) / y[:, 0].std(-1), 1.05, rtol=1e-4)
    np.testing.assert_allclose(y[:, 2].std(-1) / y[:, 0].std(-1), 0.9, rtol=1e-4)
    np.testing.assert_allclose(y[0], y[1], rtol=1e-4, atol=1e-5)
    # per-channel z-score divides the ratio away
    z = normalize(x, "zscore")
    np.testing.assert_allclose(z[:, 1].std(-1) / z[:, 0].std(-1), 1.0, rtol=1e-4)
    assert (normalize(np.zeros((2, 3, 64), np.float32), method) == 0).all()


def test_dataset_normalisation_uses_stored_training_statistics_per_group():
    from diag.signal.windows import NormalizationStats, apply_normalization

    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 4, 128)) * np.array([2.0, 2.2, 100.0, 90.0])[:, None] + 5.0
    acc = NormalizationStats(["ia", "ib", "vab", "vbc"], [["ia", "ib"], ["vab", "vbc"]])
    acc.update(x[:30])
    acc.update(x[30:])
    st = acc.result()
    assert st["center"][0] == st["center"][1] and st["scale"][2] == st["scale"][3]  # one map per group
    assert st["scale"][0] == pytest.approx(np.std(x[:, :2]), rel=1e-9)
    y = apply_normalization(x[:3].astype(np.float32), "dataset", st)
    assert y[:, 1].std() / y[:, 0].std() == pytest.approx(x[:3, 1].std() / x[:3, 0].std(), rel=1e-5)
    # the same stored statistics give the same numbers later (predict): a fixed map, not per window
    np.testing.assert_array_equal(apply_normalization(x[:3].astype(np.float32), "dataset", st), y)
    with pytest.raises(DiagError, match="training-split statistics are missing"):
        apply_normalization(x[:3], "dataset", None)
    with pytest.raises(DiagError, match="channel_groups: channel\\(s\\) \\['vbc'\\] are in no group"):
        NormalizationStats(["ia", "ib", "vab", "vbc"], [["ia", "ib"], ["vab"]])
    assert apply_normalization(x[:2], "zscore") == pytest.approx(normalize(x[:2], "zscore"))


def _units_by_side(recs, plan, key):
    w = plan.windows
    return {side: {key(recs[i]) for i in np.unique(w.rec[w.side == side])} for side in ("train", "val", "test")}


def many_groups(per_class=5, n=3000):
    return [rec(n, label, f"{label}{k}", f"c{k % 3}", seed=10 * j + k)
            for j, label in enumerate(("A", "B", "C")) for k in range(per_class)]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("method", ["group", "recording"])
def test_validation_holds_out_whole_groups_never_shared_with_train_or_test(seed, method):
    recs = many_groups()
    # a shared rig run: group "X" holds recordings of two classes; class D has one group only (split by
    # time), which it shares with a recording of class C: that group can be neither test nor validation
    recs += [rec(3000, "A", "X", seed=101), rec(3000, "B", "X", seed=102),
             rec(3000, "D", "Y", seed=103), rec(3000, "C", "Y", seed=104)]
    plan = plan_split(recs, WindowConfig(fs=1000, length=256, hop=128),
                      SplitConfig(method=method, test_fraction=0.2, val_fraction=0.2, seed=seed))
    key = (lambda r: r.group) if method == "group" else (lambda r: r.source)
    u = _units_by_side(recs, plan, key)
    d = key(recs[-2])  # D's only unit (group Y / its recording) sits on every side (time split) ...
    assert u["train"] & u["val"] & u["test"] == {d}
    u = {k: v - {d} for k, v in u.items()}  # ... and nothing else may meet another side
    assert not u["train"] & u["val"] and not u["train"] & u["test"] and not u["val"] & u["test"], u
    assert plan.val_by == method and not plan.warnings
    check_no_shared_samples(plan, 256)
    # every class is validated and tested on units it was not trained on
    w = plan.windows
    for label in "ABC":
        for side in ("train", "val", "test"):
            assert any(recs[i].label == label for i in np.unique(w.rec[w.side == side]))


def test_condition_and_fault_size_splits_validate_on_held_out_conditions_and_sizes():
    recs = cwru_like()
    wcfg = WindowConfig(fs=1000, length=256, hop=128)
    plan = plan_split(recs, wcfg, SplitConfig(method="condition", test_conditions=["3HP"]))
    faulty = lambda side: {recs[i].condition for i in np.unique(plan.windows.rec[plan.windows.side == side])  # noqa: E731
                           if recs[i].label != "normal"}
    assert plan.val_by == "condition" and faulty("val") and not faulty("val") & faulty("train")
    assert "3HP" not in faulty("val") | faulty("train")
    plan = plan_split([r for r in recs if r.fault_size != "0.007"] + [rec(6000, lab, f"{lab}0.021", c, "0.021", seed=50 + k)
                                                                     for k, (lab, c) in enumerate([("IR", "0HP"), ("OR", "1HP"), ("B", "2HP")])],
                      wcfg, SplitConfig(method="fault-size", test_fault_sizes=["0.014"], val_fraction=0.3))
    # each faulty class has one training size left (0.021): too few to hold one out -> time, with a warning
    assert plan.val_by == "time" and plan.warnings and "time blocks" in plan.warnings[0]
    allrecs = recs + [rec(6000, lab, f"{lab}0.021", "0HP", "0.021", seed=60 + k) for k, lab in enumerate(["IR", "OR", "B"])]
    plan = plan_split(allrecs, wcfg, SplitConfig(method="fault-size", test_fault_sizes=["0.014"]))
    w = plan.windows
    side_sizes = {s: {allrecs[i].fault_size for i in np.unique(w.rec[w.side == s]) if allrecs[i].fault_size}
                  for s in ("train", "val", "test")}
    assert plan.val_by.startswith("fault-size") and side_sizes["test"] == {"0.014"}
    assert len(side_sizes["val"]) == 1 and not side_sizes["val"] & side_sizes["train"]
    # the healthy class has no size: it is split by time (validation included), and the plan says so
    assert any("'normal'" in n and "split by time" in n for n in plan.notes)


def test_issue_example_five_short_recordings_per_class():
    # five 1000-sample recordings per class, 256-sample windows, val_fraction 0.2 (issue 11)
    recs = [rec(1000, lab, f"{lab}{k}", seed=10 * j + k) for j, lab in enumerate("AB") for k in range(5)]
    wcfg = WindowConfig(fs=1000, length=256, hop=64)
    with pytest.raises(DiagError, match=r"its validation block \(split.val_fraction=0.2 of 1000 = 200 samples\) "
                                        r"is shorter than one 256-sample window"):
        plan_split(recs, wcfg, SplitConfig(method="recording", val_fraction=0.2, val_method="time", seed=0))
    plan = plan_split(recs, wcfg, SplitConfig(method="recording", val_fraction=0.2, seed=0))
    w = plan.windows
    per_rec = {i: set(w.side[w.rec == i]) for i in range(len(recs))}
    assert all(len(s) == 1 for s in per_rec.values())  # whole recordings on one side each
    train = [i for i, s in per_rec.items() if s == {"train"}]
    assert train and all((w.rec == i).sum() == 12 for i in train)  # all twelve windows of a training recording
    with pytest.raises(DiagError, match="val_method: 'group' holds out whole units"):
        SplitConfig(method="time", val_method="group").validate()


@pytest.mark.parametrize("kwargs,match", [
    (dict(band=[5000.0]), r"windows.band: expected \[low, high\]"),
    (dict(band=[3000.0, 2000.0]), "low edge 3000 Hz must be below the high edge 2000 Hz"),
    (dict(fs=12000.0, band=[0, 6000.0]), "must be below the Nyquist frequency 6000 Hz"),
    (dict(normalize="joint"), "windows.normalize: unknown 'joint'"),
    (dict(channel_groups=[["ia"]]), "channel_groups: only used by windows.normalize=dataset"),
])
def test_window_config_refuses_nonsense(kwargs, match):
    with pytest.raises(DiagError, match=match):
        WindowConfig(**kwargs).validate()


def test_split_and_transform_config_refuse_unknown_values():
    from diag.config import TransformConfig

    with pytest.raises(DiagError, match="split.val_method: unknown 'holdout'"):
        SplitConfig(method="group", val_method="holdout").validate()
    with pytest.raises(DiagError, match="transform.norm: choose one of auto, image, image-joint, none"):
        TransformConfig(norm="joint").validate()
    # an explicit kind that no class can hold out is an error, not a silent fallback
    recs = [rec(3000, lab, f"{lab}0", seed=j) for j, lab in enumerate("AB")] + [rec(3000, "A", "A1", seed=5)]
    with pytest.raises(DiagError, match="val_method=group: no class has two or more group units"):
        plan_split(recs, WindowConfig(fs=1000, length=256, hop=128),
                   SplitConfig(method="group", test_groups=["A1"], val_method="group"))


def test_a_group_that_is_split_by_time_is_never_a_validation_group():
    # D has one group (Y), so D is split by time: Y is on every side. A also has a recording in Y.
    recs = [rec(3000, "A", g, seed=k) for k, g in enumerate(["g1", "g2", "g3", "Y"])] + [rec(3000, "D", "Y", seed=9)]
    for seed in range(10):
        plan = plan_split(recs, WindowConfig(fs=1000, length=256, hop=128),
                          SplitConfig(method="group", test_groups=["g1"], seed=seed))
        w = plan.windows
        val_groups = {recs[i].group for i in np.unique(w.rec[w.side == "val"]) if recs[i].label == "A"}
        assert val_groups and "Y" not in val_groups, (seed, val_groups)
