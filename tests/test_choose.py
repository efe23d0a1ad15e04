"""diag prepare --transform auto: a cheap probe on the validation split picks the image kind, never the test."""

import dataclasses
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from diag.signal.choose import candidate_kinds, choose_transform, pick, row_profile
from diag.cli import app
from diag.config import PrepareConfig, SplitConfig, TransformConfig, WindowConfig
from diag.sources.base import Recording
from diag.sources.files import write_recordings
from diag.signal.windows import harmonise, plan_split

FS = 12000.0


def impacts(order: float, shaft_hz: float, carrier_hz: float, seconds: float, rng) -> np.ndarray:
    """Decaying bursts at ``carrier_hz`` repeating at ``order`` x ``shaft_hz`` (1 % jitter), in noise."""
    n = int(seconds * FS)
    t = np.arange(int(0.01 * FS)) / FS
    burst = np.exp(-t * 600) * np.sin(2 * np.pi * carrier_hz * t)
    x = rng.normal(0, 0.3, n)
    period = FS / (order * shaft_hz)
    pos = 0.0
    while pos + len(burst) < n:
        i = int(pos)
        x[i : i + len(burst)] += burst * rng.uniform(0.8, 1.2)
        pos += period * (1 + rng.normal(0, 0.01))
    return x.astype(np.float32)


def order_classes(per_class: int = 5, seconds: float = 2.0, seed: int = 0) -> list[Recording]:
    """Two classes told apart only by the impact rate in orders of the shaft rate (3x vs 5x): the shaft
    rates are drawn so that both classes' impact rates (Hz) cover the same 75-120 Hz, and every recording
    rings its own resonance, so a Hz-axis image (cwt, stft) sees no class difference; the rpm is in meta."""
    rng = np.random.default_rng(seed)
    out = []
    for label, order, (lo, hi) in (("three", 3.0, (25.0, 40.0)), ("five", 5.0, (15.0, 24.0))):
        for j in range(per_class):
            shaft = rng.uniform(lo, hi)
            x = impacts(order, shaft, rng.uniform(1500, 4500), seconds, rng)
            out.append(Recording(x[None], FS, label, source=f"{label}-{j}.npy", condition="c0",
                                 channels=("accel",), meta={"rpm": shaft * 60.0}))
    return out


def config() -> PrepareConfig:
    return PrepareConfig(windows=WindowConfig(fs=FS, length=2048, hop=1024, normalize="zscore"),
                         split=SplitConfig(), transform=TransformConfig(kind="auto", norm="image")).validate()


def test_candidates_and_the_tie_rule():
    assert candidate_kinds(["cwt", "stft"]) == ["cwt", "stft", "cwt+stft"]
    kinds = candidate_kinds(["cwt", "stft", "envorder", "harmonics"])
    assert "envorder+harmonics" not in kinds and "cwt+envorder" in kinds and "stft+harmonics" in kinds
    rows = [{"kind": "cwt", "parts": 1, "val_macro_f1": 0.80}, {"kind": "envorder", "parts": 1, "val_macro_f1": 0.90},
            {"kind": "cwt+envorder", "parts": 2, "val_macro_f1": 0.905}]
    assert pick(rows) == "envorder"  # the pair wins by less than the tolerance
    rows[2]["val_macro_f1"] = 0.95
    assert pick(rows) == "cwt+envorder"
    img = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    assert row_profile(img).shape == (2, 2 * 3 * 4) and row_profile(img, spread=False).shape == (2, 12)


def test_auto_picks_the_kind_that_separates_on_validation():
    raw = order_classes()
    cfg = config()
    rec = choose_transform(raw, harmonise(raw, cfg.windows), cfg)
    scores = {r["kind"]: r["val_macro_f1"] for r in rec["candidates"]}
    assert rec["chosen"] == "envorder" == cfg.transform.kind
    assert scores["envorder"] >= 0.9 and scores["cwt"] < 0.8 and scores["stft"] < 0.8, scores
    assert "harmonics" not in scores and any("harmonics not tried" in n for n in rec["notes"])
    assert rec["val_by"] == "recording" and rec["scored_on"] == "validation"


def test_auto_never_reads_the_test_split():
    raw = order_classes()
    cfg = config()
    recs = harmonise(raw, cfg.windows)
    clean = choose_transform(raw, recs, dataclasses.replace(cfg, transform=TransformConfig(kind="auto", norm="image")))
    plan = plan_split(recs, cfg.windows, cfg.split)
    test = sorted({int(i) for i in plan.windows.rec[plan.windows.side == "test"]})
    assert test and len(test) < len(recs)
    poisoned = list(recs)
    for i in test:  # NaN samples: a probe that scored (or fit on) test windows would get other numbers
        poisoned[i] = dataclasses.replace(recs[i], signal=np.full_like(recs[i].signal, np.nan))
    again = choose_transform(raw, poisoned, dataclasses.replace(cfg, transform=TransformConfig(kind="auto", norm="image")))
    assert again["candidates"] == clean["candidates"] and again["chosen"] == clean["chosen"]


def test_prepare_transform_auto_records_the_choice(tmp_path):
    data = write_recordings(order_classes(per_class=4), tmp_path / "rec")
    res = CliRunner().invoke(app, ["prepare", "--source", "files", "--data", str(data), "--out", str(tmp_path / "p"),
                                   "--transform", "auto", "--set", "windows.length=2048", "--set", "windows.hop=1024"])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "p" / "manifest.json").read_text())
    choice = m["transform_choice"]
    assert choice["chosen"] == m["transform"]["kind"] == m["config"]["transform"]["kind"] == "envorder"
    assert {r["kind"] for r in choice["candidates"]} >= {"cwt", "stft", "envorder", "cwt+envorder"}
    assert "transform=auto: candidates scored" in res.output and "chosen" in res.output
    # the prepared set is reused with --transform auto (its fingerprint is the config as given)
    res = CliRunner().invoke(app, ["prepare", "--source", "files", "--data", str(data), "--out", str(tmp_path / "p"),
                                   "--transform", "auto", "--set", "windows.length=2048", "--set", "windows.hop=1024"])
    assert res.exit_code == 0 and "up to date" in res.output


def test_auto_without_validation_is_a_one_line_error(tmp_path):
    data = write_recordings(order_classes(per_class=3), tmp_path / "rec")
    res = CliRunner().invoke(app, ["prepare", "--source", "files", "--data", str(data), "--out", str(tmp_path / "p"),
                                   "--transform", "auto", "--set", "split.val_fraction=0"])
    assert res.exit_code == 2 and "validation" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("kind", ["auto+cwt", "cwt+auto"])
def test_auto_is_not_a_part(kind):
    from diag.errors import DiagError

    with pytest.raises(DiagError, match="transform.kind"):
        TransformConfig(kind=kind).validate()
