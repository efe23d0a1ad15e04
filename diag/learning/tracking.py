"""Experiment tracking: one small interface over TensorBoard and MLflow (both optional extras, off by default).

:func:`open_run` returns a :class:`Tracker`; the training loops call three things on it:
:meth:`Tracker.epoch` with each row of their history (losses, learning rate, validation metrics),
:meth:`Tracker.finish` with the run's summary (final test metrics) and its folder (files logged as
artifacts), and nothing else. The settings are logged when the run opens. With tracking off every
call does nothing, so the loops carry no ``if``.

* TensorBoard (``torch.utils.tensorboard.SummaryWriter``, needs ``tensorboard``): scalars per epoch
  (``train/loss``, ``val/macro_f1``, ``lr``, ...), the settings as a text table, final metrics as
  ``test/...`` scalars at the selected epoch. Event files go to ``RUN/tensorboard`` (or
  ``track.tensorboard_dir/RUN-NAME``); ``tensorboard --logdir`` a compare folder shows every run.
* MLflow (``MlflowClient``, works with ``mlflow-skinny``): a run per training run with the settings as
  params, the same metric names per epoch (step = epoch), final test metrics, and the run's small
  files (``model.json``, ``test_metrics.json``, curves, confusion matrix; not the weights) as
  artifacts. The run id is kept in ``RUN/tracking.json``, so a resumed run logs into the same MLflow
  run; a run inside a ``diag compare`` folder is nested under the compare's MLflow run.

The store: ``track.mlflow_uri``, else ``$MLFLOW_TRACKING_URI``, else MLflow's classic local store
``./mlruns`` (as an absolute ``file:`` URI, so worker processes elsewhere log to the same place).
MLflow 3 keeps that file store in maintenance mode and refuses it unless ``MLFLOW_ALLOW_FILE_STORE``
is set; diag sets it for the file stores it is asked to use (a database store needs the full
``mlflow`` package, a tracking server works with either).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable

from diag.config import TrackConfig
from diag.errors import DiagError, describe
from diag.storage import atomic_write_json

__all__ = ["Tracker", "open_run", "check_available", "mlflow_uri", "metric_name", "RECORD"]

#: in a run (or compare) folder: the MLflow run it logs to, so a resumed run continues that run
RECORD = "tracking.json"
#: the files of a run folder logged as artifacts when it finishes (the weights are not: they can be large)
ARTIFACTS = ("config.json", "model.json", "test_metrics.json", "metrics.csv", "curves.png", "confusion_test.png",
             "unknown.json", "pretrain.json", "labeled.json")
#: history keys that are not metrics (or are the step itself)
NOT_METRICS = ("epoch", "step", "selected")
_NAMES = {"train_loss": "train/loss", "val_loss": "val/loss", "val_accuracy": "val/accuracy",
          "val_macro_f1": "val/macro_f1", "loss": "train/loss", "knn_accuracy": "val/knn_accuracy",
          "knn_macro_f1": "val/knn_macro_f1", "probe_accuracy": "val/probe_accuracy",
          "probe_macro_f1": "val/probe_macro_f1", "probe_design_effect": "val/probe_design_effect",
          "seconds": "time/epoch_seconds", "train_seconds": "time/train_seconds", "images_per_s": "time/images_per_s"}


def metric_name(key: str) -> str:
    """The tracked name of a history column (``val_macro_f1`` -> ``val/macro_f1``)."""
    return _NAMES.get(key, key)


def check_available(cfg: TrackConfig | None) -> None:
    """Fail at once (one line, with the fix) when a chosen tracker's package is missing."""
    from importlib.util import find_spec

    for wanted, module, package in ((cfg and cfg.tensorboard, "tensorboard", "tensorboard"),
                                    (cfg and cfg.mlflow, "mlflow", "mlflow-skinny")):
        if wanted and find_spec(module) is None:
            raise DiagError(f"--track {module}: the {package} package is not installed; "
                            f"pip install 'diag[track]' (or {package})")


def mlflow_uri(cfg: TrackConfig) -> str:
    """Where MLflow logs: ``track.mlflow_uri``, ``$MLFLOW_TRACKING_URI``, else ``file:`` + absolute ``./mlruns``."""
    uri = cfg.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri:
        return Path("mlruns").resolve().as_uri()
    if "://" not in uri and not uri.startswith("file:"):  # a plain folder
        return Path(uri).expanduser().resolve().as_uri()
    return uri


def _numbers(values: dict[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in values.items():
        if k in NOT_METRICS or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if math.isfinite(float(v)):
            out[metric_name(k)] = float(v)
    return out


class _TensorBoard:
    def __init__(self, log_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir), flush_secs=10)

    def params(self, params: dict[str, Any]) -> None:
        rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(params.items()))
        self.writer.add_text("settings", "| setting | value |\n|---|---|\n" + rows, 0)

    def metrics(self, values: dict[str, float], step: int) -> None:
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def artifacts(self, paths: list[Path]) -> None:
        for p in paths:  # TensorBoard keeps no files: the text ones become text (e.g. a compare's report)
            if p.suffix in (".md", ".txt"):
                self.writer.add_text(p.name, p.read_text(encoding="utf-8"), 0)

    def close(self, status: str) -> None:
        self.writer.close()


class _MLflow:
    def __init__(self, cfg: TrackConfig, folder: Path, name: str, kind: str, parent: str | None):
        from mlflow.tracking import MlflowClient

        uri = mlflow_uri(cfg)
        if uri.startswith("file:"):  # MLflow 3's file store is kept, but only on request
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(uri)
        saved = _read_record(folder)
        if saved.get("mlflow_uri") == uri and saved.get("mlflow_run_id"):
            self.run_id = saved["mlflow_run_id"]  # a resumed run continues its MLflow run
            self.client.update_run(self.run_id, status="RUNNING")
            return
        exp = self.client.get_experiment_by_name(cfg.experiment)
        exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(cfg.experiment)
        tags = {"diag.kind": kind, "diag.folder": str(folder.resolve())}
        if parent:
            tags["mlflow.parentRunId"] = parent
        self.run_id = self.client.create_run(exp_id, run_name=name, tags=tags).info.run_id
        atomic_write_json(folder / RECORD, {"mlflow_uri": uri, "mlflow_run_id": self.run_id,
                                            "experiment": cfg.experiment})

    def params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException

        try:  # logging a param again with the same value is allowed (a resumed run)
            self.client.log_batch(self.run_id, params=[Param(k, str(v)[:6000]) for k, v in sorted(params.items())])
        except MlflowException:  # ... a changed value is not: the first value stays, the run goes on
            pass

    def metrics(self, values: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in values.items()])

    def artifacts(self, paths: list[Path]) -> None:
        for p in paths:
            self.client.log_artifact(self.run_id, str(p))

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=status)


def _read_record(folder: Path) -> dict[str, Any]:
    import json

    try:
        return json.loads((folder / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


class Tracker:
    """Where a run logs: none, TensorBoard, MLflow or both, behind one interface.

    A tracker that fails while training (a server gone away) warns once and stops logging; the run
    itself goes on: tracking is a view of a run, never a reason to lose it.
    """

    def __init__(self, sinks: Iterable[Any] = (), warn: Any = None):
        self.sinks = list(sinks)
        self.warn = warn

    def _each(self, method: str, *args: Any) -> None:
        for sink in list(self.sinks):
            try:
                getattr(sink, method)(*args)
            except Exception as exc:  # noqa: BLE001 -- any tracker failure: stop that tracker, keep training
                self.sinks.remove(sink)
                if self.warn is not None:
                    self.warn(f"[yellow]warning:[/] tracking to {type(sink).__name__.strip('_')} stopped "
                              f"({describe(exc, 120)}); the run goes on")

    def params(self, params: dict[str, Any]) -> None:
        self._each("params", params)

    def metrics(self, values: dict[str, Any], step: int) -> None:
        numbers = _numbers(values)
        if numbers:
            self._each("metrics", numbers, step)

    def artifacts(self, paths: Iterable[str | Path]) -> None:
        found = [Path(p) for p in paths if Path(p).is_file()]
        if found:
            self._each("artifacts", found)

    def epoch(self, row: dict[str, Any]) -> None:
        """One row of a loop's history (``epoch`` is the step)."""
        self.metrics(row, int(row["epoch"]))

    def finish(self, summary: dict[str, Any], folder: str | Path | None = None, step: int | None = None) -> dict[str, Any]:
        """Log the final test metrics (``test/...``) and the folder's small files; close; return ``summary``."""
        test = summary.get("test") or {}
        at = step if step is not None else int(summary.get("selected_epoch") or 0)
        self.metrics({f"test/{k}": v for k, v in test.items()}, at)
        if "knn_final" in summary:
            self.metrics({f"final/{k}": v for k, v in summary["knn_final"].items() if k != "epoch"}, at)
        probe = summary.get("probe") or {}
        self.metrics({f"final/probe_{k}": probe[k] for k in ("initial", "best", "delta")
                      if isinstance(probe.get(k), (int, float))}, at)
        if folder is not None:
            self.artifacts(Path(folder) / name for name in ARTIFACTS)
        self.close()
        return summary

    def close(self, status: str = "FINISHED") -> None:
        self._each("close", status)
        self.sinks = []

    @property
    def mlflow_run_id(self) -> str | None:
        return next((s.run_id for s in self.sinks if isinstance(s, _MLflow)), None)


def open_run(cfg: TrackConfig | None, folder: str | Path, kind: str, params: dict[str, Any], main: bool = True,
             parent: str | None = None, warn: Any = None) -> Tracker:
    """A tracker for the run in ``folder`` (``kind``: train, pretrain, compare) with ``params`` logged;
    a tracker that does nothing when ``cfg`` is None or off, or on a rank other than the main one.

    A run inside a ``diag compare`` folder (``compare.json`` beside it, an MLflow run recorded there)
    is nested under that compare's MLflow run unless ``parent`` is given.
    """
    if cfg is None or not cfg.enabled or not main:
        return Tracker()
    check_available(cfg)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sinks: list[Any] = []
    if cfg.tensorboard:
        log_dir = Path(cfg.tensorboard_dir) / folder.name if cfg.tensorboard_dir else folder / "tensorboard"
        sinks.append(_TensorBoard(log_dir))
    if cfg.mlflow:
        if parent is None and (folder.parent / "compare.json").is_file():
            up = _read_record(folder.parent)
            parent = up.get("mlflow_run_id") if up.get("mlflow_uri") == mlflow_uri(cfg) else None
        try:
            sinks.append(_MLflow(cfg, folder, folder.name, kind, parent))
        except Exception as exc:  # noqa: BLE001 -- an unreachable server, a refused store: say which, fix
            raise DiagError(f"--track mlflow: cannot log to {mlflow_uri(cfg)} ({describe(exc, 160)}); check "
                            "track.mlflow_uri / $MLFLOW_TRACKING_URI") from None
    tracker = Tracker(sinks, warn)
    tracker.params(params)
    return tracker
