"""The default split (split.method = auto): whole unseen recordings / groups wherever every class has two,
time blocks only as the announced fallback."""

import numpy as np
import pytest

from diag.config import SplitConfig, WindowConfig
from diag.sources.base import Recording
from diag.signal.split_auto import groups_given, resolve_split
from diag.signal.windows import check_no_shared_samples, plan_split

W = WindowConfig(fs=1000, length=256, hop=128)


def rec(label, j, group="", condition="c0", n=6000):
    x = np.random.default_rng(hash((label, j)) % 2**32).standard_normal((1, n)).astype(np.float32)
    return Recording(x, 1000.0, label, group=group, condition=condition, source=f"{label}-{j}.npy")


def per_class(k, classes=("normal", "inner", "outer"), group=lambda c, j: ""):
    return [rec(c, j, group(c, j), f"c{j % 4}") for c in classes for j in range(k)]


def test_default_is_auto_and_resolves_to_recording_with_two_or_more_per_class():
    assert SplitConfig().method == "auto"
    plan = plan_split(per_class(2), W, SplitConfig())
    assert plan.method == "recording"
    assert any("split.method=auto -> recording" in n for n in plan.notes) and not any("auto" in w for w in plan.warnings)
    check_no_shared_samples(plan, 256)


def test_four_recordings_per_class_give_two_train_one_val_one_test_recording_per_class():
    recs = per_class(4)
    plan = plan_split(recs, W, SplitConfig(seed=3))
    assert plan.method == "recording" and plan.val_by == "recording"
    w = plan.windows
    for label in ("normal", "inner", "outer"):
        idx = [i for i, r in enumerate(recs) if r.label == label]
        sides = {i: set(w.side[w.rec == i]) for i in idx}
        assert all(len(s) == 1 for s in sides.values()), "a recording split never cuts a recording"
        got = sorted(next(iter(s)) for s in sides.values())
        assert got == ["test", "train", "train", "val"], (label, got)


def test_shared_groups_make_it_a_group_split_that_never_splits_a_group():
    # two recordings per group (one bearing at two loads), two groups per class
    recs = per_class(4, group=lambda c, j: f"{c}-bearing{j // 2}")
    assert groups_given(recs)
    plan = plan_split(recs, W, SplitConfig())
    assert plan.method == "group"
    w = plan.windows
    for g in {r.group for r in recs}:
        sides = {str(s) for i, r in enumerate(recs) if r.group == g for s in w.side[w.rec == i]}
        assert sides == {"test"} or "test" not in sides, f"group {g} on sides {sides}"
    # one group per class is left for training: validation falls back to time blocks of it, and says so
    assert plan.val_by == "group+time" or plan.val_by == "time"
    assert any("validation" in x for x in plan.warnings)


def test_a_class_on_one_recording_falls_back_to_time_with_a_warning():
    recs = per_class(3) + [rec("ball", 0)]
    plan = plan_split(recs, W, SplitConfig())
    assert plan.method == "time"
    (warning,) = plan.warnings
    assert "auto -> time" in warning and "'ball'" in warning and "not how it does on a recording it never saw" in warning
    assert warning in plan.notes
    # the same where groups are given: one group per class is not enough (CWRU: one bearing per fault)
    recs = per_class(3, group=lambda c, j: f"{c}-bearing")
    cfg, _, warnings = resolve_split(recs, SplitConfig())
    assert cfg.method == "time" and warnings and "single group" in warnings[0]


def test_time_chosen_explicitly_says_what_it_measures_and_auto_leaves_the_config_alone():
    plan = plan_split(per_class(4), W, SplitConfig(method="time"))
    assert plan.method == "time" and not plan.warnings
    assert any(n.startswith("split.method=time:") and "later time blocks" in n for n in plan.notes)
    cfg = SplitConfig()
    resolve_split(per_class(4), cfg)
    assert cfg.method == "auto"  # resolved on a copy


@pytest.mark.parametrize("method", ["recording", "condition"])
def test_other_methods_pass_through_unchanged(method):
    extra = {"test_conditions": ["c1"]} if method == "condition" else {}
    cfg, notes, warnings = resolve_split(per_class(4), SplitConfig(method=method, **extra))
    assert cfg.method == method and notes == [] and warnings == []
