"""Tracked experiments: what TensorBoard and MLflow hold after a run is read back and checked against the
run's own files (metrics.jsonl, test_metrics.json, config.json); off by default; a missing package is one line."""

import json
import sys
from dataclasses import asdict

import pytest

from diag.config import TrackConfig
from diag.errors import DiagError
from diag.learning import tracking
from helpers import make_toy_dataset

pytest.importorskip("tensorboard", reason="needs the track extra: pip install 'diag[track]'")
pytest.importorskip("mlflow", reason="needs the track extra: pip install 'diag[track]'")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy") / "ds", n_train=24, n_val=8, n_test=8, classes=3, size=32)


def _scalars(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}, acc


def _history(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_trained_run_is_logged_to_tensorboard_and_mlflow(toy, tmp_path):
    from mlflow.tracking import MlflowClient

    from diag.learning.train import TrainConfig, train

    uri = (tmp_path / "mlruns").as_uri()
    track = TrackConfig(tensorboard=True, mlflow=True, mlflow_uri=uri, experiment="t")
    cfg = TrainConfig(epochs=3, batch_size=16, device="cpu")
    run = tmp_path / "run"
    res = train(toy, run, cfg, quiet=True, track=track)
    hist = _history(run)
    test = json.loads((run / "test_metrics.json").read_text())

    # TensorBoard: one point per epoch for the losses, the learning rate and the validation metrics
    scalars, acc = _scalars(run / "tensorboard")
    for key, tag in (("train_loss", "train/loss"), ("val_loss", "val/loss"), ("val_macro_f1", "val/macro_f1"),
                     ("lr", "lr")):
        assert [s for s, _ in scalars[tag]] == [1, 2, 3]
        assert [v for _, v in scalars[tag]] == pytest.approx([h[key] for h in hist], rel=1e-6)
    assert scalars["test/macro_f1"] == [(res["selected_epoch"], pytest.approx(test["macro_f1"], rel=1e-6))]
    assert "| model | convnext_atto |" in acc.Tensors("settings/text_summary")[0].tensor_proto.string_val[0].decode()

    # MLflow: the settings as params, the same curves, the test metrics, the run's files
    client = MlflowClient(uri)
    (mr,) = client.search_runs([client.get_experiment_by_name("t").experiment_id])
    assert mr.info.status == "FINISHED"
    assert mr.data.params == {k: str(v) for k, v in asdict(cfg).items()}
    curve = client.get_metric_history(mr.info.run_id, "val/macro_f1")
    assert [(m.step, m.value) for m in sorted(curve, key=lambda m: m.step)] == [
        (h["epoch"], pytest.approx(h["val_macro_f1"])) for h in hist]
    assert mr.data.metrics["test/accuracy"] == pytest.approx(test["accuracy"])
    logged = {a.path for a in client.list_artifacts(mr.info.run_id)}
    assert {"model.json", "test_metrics.json", "config.json", "curves.png", "metrics.csv"} <= logged
    assert json.loads((run / tracking.RECORD).read_text())["mlflow_run_id"] == mr.info.run_id


def test_pretraining_is_logged(toy, tmp_path):
    from diag.learning.pretrain import PretrainConfig, pretrain

    out = tmp_path / "ssl"
    pretrain(toy, out, PretrainConfig(method="simclr", epochs=2, batch_size=16, knn_every=1, knn_k=3), quiet=True,
             track=TrackConfig(tensorboard=True))
    meta = json.loads((out / "pretrain.json").read_text())
    scalars, _ = _scalars(out / "tensorboard")
    assert [v for _, v in scalars["train/loss"]] == pytest.approx([h["loss"] for h in meta["history"][1:]], rel=1e-6)
    assert [v for _, v in scalars["val/probe_accuracy"]] == pytest.approx(
        [h["probe_accuracy"] for h in meta["history"][1:]], rel=1e-6)
    assert scalars["final/probe_best"][0][1] == pytest.approx(meta["probe"]["best"])
    assert scalars["final/knn_accuracy"][0][1] == pytest.approx(meta["knn_last"]["knn_accuracy"])


def test_tracking_is_off_by_default_and_a_missing_package_is_one_line(toy, tmp_path, monkeypatch):
    from diag.learning.train import TrainConfig, train

    run = tmp_path / "plain"
    train(toy, run, TrainConfig(epochs=1, batch_size=16, device="cpu"), quiet=True)
    assert not (run / "tensorboard").exists() and not (run / tracking.RECORD).exists()
    assert not (tmp_path / "mlruns").exists()
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    with pytest.raises(DiagError, match=r"--track tensorboard: the tensorboard package is not installed; "
                                        r"pip install 'diag\[track\]'"):
        tracking.check_available(TrackConfig.from_flag("tensorboard"))
    with pytest.raises(DiagError, match="--track: unknown 'wandb'"):
        TrackConfig.from_flag("tensorboard,wandb")


def test_a_resumed_run_continues_its_mlflow_run_and_runs_nest_under_their_compare(tmp_path):
    from mlflow.tracking import MlflowClient

    cfg = TrackConfig(mlflow=True, mlflow_uri=(tmp_path / "mlruns").as_uri())
    (tmp_path / "cmp").mkdir()
    (tmp_path / "cmp" / "compare.json").write_text("{}")
    parent = tracking.open_run(cfg, tmp_path / "cmp", "compare", {"grid.seeds": "0,1"}, warn=pytest.fail)
    first = tracking.open_run(cfg, tmp_path / "cmp" / "scratch-all-none-w0-s0", "train", {"lr": 0.001}, warn=pytest.fail)
    first.epoch({"epoch": 1, "train_loss": 1.5, "lr": 0.001, "selected": True})
    again = tracking.open_run(cfg, tmp_path / "cmp" / "scratch-all-none-w0-s0", "train", {"lr": 0.001}, warn=pytest.fail)
    assert again.mlflow_run_id == first.mlflow_run_id  # resumed: the same MLflow run
    again.epoch({"epoch": 2, "train_loss": 1.2, "lr": 0.0005, "selected": False})
    run_id, parent_id = again.mlflow_run_id, parent.mlflow_run_id
    again.close()
    parent.close()
    client = MlflowClient(cfg.mlflow_uri)
    run = client.get_run(run_id)
    assert run.data.tags["mlflow.parentRunId"] == parent_id and run.info.status == "FINISHED"
    assert [m.value for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1.5, 1.2]
    assert "selected" not in run.data.metrics  # a flag is not a metric


def test_a_failing_tracker_stops_logging_but_not_the_run():
    class Broken:
        def metrics(self, values, step):
            raise ConnectionError("server gone")

    said = []
    t = tracking.Tracker([Broken()], warn=said.append)
    t.epoch({"epoch": 1, "train_loss": 1.0})
    t.epoch({"epoch": 2, "train_loss": 0.9})  # no second warning, no error
    assert len(said) == 1 and "server gone" in said[0] and t.sinks == []


def test_compare_logs_each_run_under_its_own_tracked_run_with_the_report(toy, tmp_path):
    """Through the CLI, two runs side by side (child processes): each logs its own MLflow child run of the
    compare's, and its TensorBoard curves; the compare's run holds the grid and the report."""
    from mlflow.tracking import MlflowClient
    from typer.testing import CliRunner

    from diag.cli import app

    uri = (tmp_path / "mlruns").as_uri()
    out = tmp_path / "cmp"
    res = CliRunner().invoke(app, ["compare", "--data", str(toy), "--out", str(out), "--inits", "scratch",
                                   "--seeds", "0,1", "--warmup", "0", "--jobs", "2", "--track", "tensorboard,mlflow",
                                   "--set", f'track.mlflow_uri="{uri}"', "--set", "train.epochs=1",
                                   "--set", "train.batch_size=16", "-q"])
    assert res.exit_code == 0, res.output
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("diag").experiment_id])
    (parent,) = [r for r in runs if r.data.tags["diag.kind"] == "compare"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in children) == ["scratch-all-none-w0-s0", "scratch-all-none-w0-s1"]
    for r in children:
        test = json.loads((out / r.info.run_name / "test_metrics.json").read_text())
        assert r.data.metrics["test/macro_f1"] == pytest.approx(test["macro_f1"]) and r.info.status == "FINISHED"
        scalars, _ = _scalars(out / r.info.run_name / "tensorboard")
        assert [s for s, _ in scalars["val/macro_f1"]] == [1]
    assert parent.data.params["grid.seeds"] == "0,1" and parent.data.params["compare.jobs"] == "2"
    logged = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"report.html", "report.md", "answer.txt", "summary.csv"} <= logged
