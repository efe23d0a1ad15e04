"""Checks every recording passes (issue 8, items 13 and 14): dead, flat-lined, constant-segment and
clipped channels, duplicate content; source.on_bad / source.on_clipped; findings in the manifest."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from diag.config import SourceConfig, load_prepare_config
from diag.errors import DiagError
from diag.signal.recordings import load_recordings
from diag.sources.base import Recording
from diag.sources.checks import check_recordings, check_signal, find_duplicates

SHARED = Path(os.environ.get("DIAG_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
CWRU = SHARED / "cwru12k"

FS = 12000.0
N = 24000


def _noise(seed: int = 0, n: int = N) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n)


def _rec(x, label="IR", source="a.npy", channels=("DE",)) -> Recording:
    return Recording(np.atleast_2d(x), FS, label, source=source, channels=channels)


# ------------------------------------------------------------------------------------------------
# the rules, on synthetic signals


def test_a_healthy_signal_passes_also_quantised_to_16_bit():
    assert check_signal(_noise(), FS) is None
    q = np.round(_noise(1) * 0.2 * 32767 / 4) / 32767  # a quiet signal on a 16-bit ADC
    assert check_signal(q.astype(np.float32), FS) is None
    assert check_signal(np.round(_noise(2) * 3000).astype(np.int16), FS) is None


def test_dead_flat_constant_and_clipped_are_found():
    assert check_signal(np.zeros(N), FS)[0] == "dead"
    assert check_signal(np.zeros(N, np.float32), FS)[0] == "dead"
    assert check_signal(np.full(N, 2.5), FS)[0] == "flat"
    # constant up to float rounding (a DC offset that went through arithmetic) is flat too
    wobble = 2.5 + 2.5 * np.finfo(np.float64).eps * np.random.default_rng(0).integers(-2, 3, N)
    kind, detail = check_signal(wobble, FS)
    assert kind == "flat" and "2.5" in detail
    # a drop-out: 5 % of the recording holds one value
    x = _noise()
    x[6000:7200] = x[6000]
    kind, detail = check_signal(x, FS)
    assert kind == "constant" and "1200 identical samples" in detail and "0.5 s" in detail
    # symmetric clipping at 1.5 sigma: ~13 % of samples at the rails
    kind, detail = check_signal(np.clip(_noise(), -1.5, 1.5), FS)
    assert kind == "clipped" and "1.5" in detail
    # one-sided clipping (only the positive rail)
    assert check_signal(np.minimum(_noise(), 2.0), FS)[0] == "clipped"
    # a slow signal clipped hard has long flat tops: clipping, not a drop-out
    t = np.arange(N) / FS
    kind, detail = check_signal(np.clip(3 * np.sin(2 * np.pi * 2 * t) + 0.1 * _noise(), -1, 1), FS)
    assert kind == "clipped" and "rail 1" in detail


def test_thresholds_are_relative_and_not_too_eager():
    # the same signal scaled by 1e-6 or 1e6 gives the same verdicts
    x = _noise()
    clipped = np.clip(x, -1.5, 1.5)
    for scale in (1e-6, 1.0, 1e6):
        assert check_signal(scale * x, FS) is None
        assert check_signal(scale * clipped, FS)[0] == "clipped"
    # below the thresholds: 0.5 % at a rail, a held value over 0.5 % of the samples
    y = _noise()
    y[np.argsort(y)[-100:]] = y.max()  # 100 samples = 0.42 % at the max
    assert check_signal(y, FS) is None
    y = _noise()
    y[:60] = 0.0  # 60 identical samples: < CONSTANT_MIN_RUN
    assert check_signal(y, FS) is None
    y[:400] = 0.0  # 400 = 1.7 %: a constant segment
    assert check_signal(y, FS)[0] == "constant"


# ------------------------------------------------------------------------------------------------
# actions


def test_dead_recording_is_an_error_by_default_naming_file_channel_and_setting():
    recs = [_rec(_noise(), source="ok.npy"), _rec(np.stack([_noise(1), np.zeros(N)]), source="dead.npy", channels=("DE", "FE"))]
    with pytest.raises(DiagError) as e:
        check_recordings(recs)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("dead.npy: channel FE: every sample is 0") and "source.on_bad=warn|skip" in msg


def test_warn_keeps_skip_drops_and_both_are_recorded():
    recs = [_rec(_noise(), source="ok.npy"), _rec(np.zeros(N), source="dead.npy")]
    found = []
    kept = check_recordings(recs, on_bad="warn", findings=found)
    assert [r.source for r in kept] == ["ok.npy", "dead.npy"]
    assert [f.to_dict() for f in found] == [
        {"source": "dead.npy", "problem": "dead", "action": "warn", "detail": "every sample is 0 (a dead or unplugged sensor)"}
    ]
    found = []
    kept = check_recordings(recs, on_bad="skip", findings=found)
    assert [r.source for r in kept] == ["ok.npy"] and [f.action for f in found] == ["skip"]
    with pytest.raises(DiagError, match=r"every one of the 1 recordings was skipped .*dead\.npy"):
        check_recordings(recs[1:], on_bad="skip")


def test_clipping_warns_by_default_and_follows_on_clipped():
    recs = [_rec(np.clip(_noise(), -1.5, 1.5), source="clip.npy")]
    found = []
    assert len(check_recordings(recs, findings=found)) == 1
    assert [(f.problem, f.action) for f in found] == [("clipped", "warn")]
    with pytest.raises(DiagError, match=r"clip\.npy: clipped: .* source\.on_clipped=warn\|skip"):
        check_recordings(recs, on_clipped="error")
    with pytest.raises(DiagError, match="source.on_bad: choose one of error, warn, skip"):
        check_recordings(recs, on_bad="ignore")


def test_duplicate_content_is_always_an_error_naming_both():
    x = _noise()
    recs = [_rec(x, "IR", "a.npy"), _rec(_noise(1), "OR", "b.npy"), _rec(x.copy(), "OR", "c.npy")]
    with pytest.raises(DiagError) as e:
        check_recordings(recs, on_bad="skip", on_clipped="skip")
    msg = str(e.value)
    assert msg.startswith("c.npy: identical samples to a.npy (under two labels ('IR' and 'OR'))") and "\n" not in msg
    # the same label twice is still a leak
    with pytest.raises(DiagError, match=r"b\.npy: identical samples to a\.npy \(both labelled 'IR'\)"):
        find_duplicates([_rec(x, "IR", "a.npy"), _rec(x, "IR", "b.npy")])
    # a one-sample difference is another recording
    y = x.copy()
    y[-1] += 1.0
    find_duplicates([_rec(x, "IR", "a.npy"), _rec(y, "IR", "b.npy")])


# ------------------------------------------------------------------------------------------------
# through the source config, and into the prepared dataset's manifest


def _folder(tmp_path, signals: dict[str, np.ndarray]) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    rows = ["path,label,fs"]
    for i, (name, x) in enumerate(signals.items()):
        np.save(d / name, np.atleast_2d(x).astype(np.float32))
        rows.append(f"{name},{'normal' if i % 2 == 0 else 'IR'},{FS}")
    (d / "labels.csv").write_text("\n".join(rows) + "\n")
    return d


def test_load_recordings_applies_the_checks_to_every_reader(tmp_path):
    d = _folder(tmp_path, {"a.npy": _noise(0), "b.npy": _noise(1), "dead.npy": np.zeros(N)})
    with pytest.raises(DiagError, match=r"dead\.npy: every sample is 0"):
        load_recordings(SourceConfig(kind="files", path=str(d)))
    recs = load_recordings(SourceConfig(kind="files", path=str(d), on_bad="skip"))
    assert [Path(r.source).name for r in recs] == ["a.npy", "b.npy"]
    assert [(Path(f.source).name, f.problem, f.action) for f in recs.findings] == [("dead.npy", "dead", "skip")]


def test_duplicate_content_under_another_name_is_an_error(tmp_path):
    x = _noise()
    d = _folder(tmp_path, {"a.npy": x, "copy_of_a.npy": x, "b.npy": _noise(1)})  # labels normal, IR, normal
    with pytest.raises(DiagError, match=r"copy_of_a\.npy: identical samples to .*a\.npy \(under two labels"):
        load_recordings(SourceConfig(kind="files", path=str(d), on_bad="warn"))


def test_the_same_recording_in_two_formats_is_a_duplicate(tmp_path):
    x = _noise().astype(np.float32)
    d = _folder(tmp_path, {"a.npy": x, "b.npy": _noise(1)})
    np.savetxt(d / "a_export.csv", x[:, None], fmt="%.9g")  # parses back to float64
    with open(d / "labels.csv", "a") as fh:
        fh.write(f"a_export.csv,IR,{FS}\n")
    with pytest.raises(DiagError, match=r"a_export\.csv: identical samples to .*a\.npy \(under two labels \('normal' and 'IR'\)\)"):
        load_recordings(SourceConfig(kind="files", path=str(d)))


def test_config_keys_validated_and_overridable(tmp_path):
    cfg = load_prepare_config(None, ["source.kind=files", f"source.path={tmp_path}", "source.on_bad=skip",
                                     "source.on_clipped=error"])
    assert (cfg.source.on_bad, cfg.source.on_clipped, cfg.source.options) == ("skip", "error", {})
    for key in ("on_bad", "on_clipped"):
        with pytest.raises(DiagError, match=rf"source\.{key}: unknown 'ignore'; choose one of error, warn, skip"):
            load_prepare_config(None, [f"source.{key}=ignore"])
    assert SourceConfig().on_bad == "error" and SourceConfig().on_clipped == "warn"


@pytest.mark.slow  # alone: mostly importing torch for the CLI
def test_prepare_lists_findings_in_the_manifest_and_refuses_a_dead_sensor(tmp_path):
    from typer.testing import CliRunner

    from diag.cli import app
    from diag.commands.prepare import prepare

    t = np.arange(N) / FS
    signals = {f"{k}.npy": np.sin(2 * np.pi * f * t) + 0.3 * _noise(k) for k, f in enumerate((50, 300, 60, 310))}
    signals["dead.npy"] = np.zeros(N)
    d = _folder(tmp_path, signals)
    small = ["source.kind=files", f"source.path={d}", "windows.fs=12000", "windows.length=256", "windows.hop=256",
             "transform.size=[16,16]", "transform.n_scales=16", "transform.fmin=50"]
    res = CliRunner().invoke(app, ["prepare", "--out", str(tmp_path / "ds"), *sum((["--set", s] for s in small), [])])
    assert res.exit_code == 2, res.output
    assert "dead.npy: every sample is 0" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "ds").exists()
    out = prepare(None, tmp_path / "ds", [*small, "source.on_bad=skip"], quiet=True)
    m = json.loads((out / "manifest.json").read_text())
    assert [(Path(c["source"]).name, c["problem"], c["action"]) for c in m["source_checks"]] == [("dead.npy", "dead", "skip")]
    assert len(m["recordings"]) == 4


# ------------------------------------------------------------------------------------------------
# the checks stay silent on real and simulated data


@pytest.mark.shared_data
def test_no_finding_on_any_real_cwru_file():
    if not CWRU.is_dir():
        pytest.skip(f"{CWRU} not present (../shared/data)")
    from diag.sources.cwru import read_cwru

    recs = read_cwru(CWRU, channels=["DE", "FE"])
    assert len(recs) == 37
    base_plate = read_cwru(CWRU, channels=["BA"], records=[r.meta["record"] for r in recs if r.label != "normal"])
    found = []
    assert len(check_recordings(recs, on_bad="error", on_clipped="error", findings=found)) == 37
    assert len(check_recordings(base_plate, on_bad="error", on_clipped="error", findings=found)) == 36
    assert found == []


@pytest.mark.parametrize("config, extra", [
    ("bearing_sim.toml", []),
    # open switches clamp a phase current near zero for half a period; PWM line voltages sit at +-Vdc
    ("inverter_sim.toml", ['source.classes=["normal","S1","S4","S1+S4","S2+S5","ia_gain","ia_offset"]',
                           "source.voltages=true"]),
])
def test_no_finding_on_the_simulators_output(config, extra):
    """The shipped simulator configs (shortened) pass every check, clipping included, with nothing to report."""
    root = Path(__file__).resolve().parents[1]
    cfg = load_prepare_config(root / "configs" / config, ["source.recordings_per_class=1", "source.duration=0.25",
                                                          "source.on_clipped=error", *extra])
    recs = load_recordings(cfg.source)
    assert len(recs) >= 4 and recs.findings == []
