"""A run folder as an object: the file names of a ``diag train`` / ``diag pretrain`` run, what they say
(finished, resumable, the saved settings, the model record), and the typed ``model.json`` schema.

Run folder of ``diag train``::

    .diag-output       marker: a diag training run (only such a folder is ever replaced, with --force)
    config.json        the training config, data path and dataset fingerprint (written first)
    labeled.json       which training windows were used with their labels
    model.safetensors  selected weights;  model.json: the :class:`ModelRecord`
    metrics.jsonl / metrics.csv    one row per epoch
    last.pt            the resumable state, every epoch
    test_metrics.json  accuracy, macro-F1, per-class report, confusion matrix (split: test): the run is finished
    unknown.json / unknown.safetensors   the calibrated unknown detector
    confusion_test.png, curves.png

A pretraining folder (:class:`PretrainDir`) has ``pretrain.json``, ``backbone.safetensors`` and ``last.pt``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from diag.errors import DiagError
from diag.storage import atomic_write_json, read_json

__all__ = ["RunDir", "PretrainDir", "ModelRecord", "MODEL_FORMAT"]

MODEL_FORMAT = "diag-model/2"
#: model.json formats this diag reads (/1: preprocessing recorded as the dataset manifest's keys)
MODEL_FORMATS = ("diag-model/1", MODEL_FORMAT)


@dataclass
class ModelRecord:
    """``model.json``: what a trained run is and how it was made. Written by ``diag train`` when it selects an
    epoch; read by everything that uses a run (predict, evaluate, export, compare, report)."""

    model: str  #: timm model name
    in_chans: int  #: image channels
    classes: list[str]  #: class names, in the order of the network's outputs
    preprocessing: dict[str, Any]  #: :meth:`diag.signal.preprocessing.Preprocessing.to_dict`
    train: dict[str, Any] = field(default_factory=dict)  #: the training config
    replicate_channels: bool = False
    dataset: dict[str, Any] = field(default_factory=dict)  #: path, fingerprint, split sizes
    start: dict[str, Any] = field(default_factory=dict)  #: how the weights were first initialised
    selected: dict[str, Any] = field(default_factory=dict)  #: epoch, by what, validation scores
    labeled: dict[str, Any] = field(default_factory=dict)  #: labelled training windows used / available
    schedule: dict[str, Any] = field(default_factory=dict)  #: epochs, steps, warmup
    seed: int = 0
    world_size: int = 1
    runtime: dict[str, Any] = field(default_factory=dict)  #: device, precision, threads
    versions: dict[str, Any] = field(default_factory=dict)  #: python, diag, numpy, torch, ...
    created: str = ""
    refit: dict[str, Any] | None = None  #: train.refit_from: the run whose selected epochs it took
    format: str = MODEL_FORMAT

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["refit"] is None:
            del d["refit"]
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str) -> "ModelRecord":
        if not isinstance(d, dict) or d.get("format", MODEL_FORMATS[0]) not in MODEL_FORMATS:
            fmt = d.get("format") if isinstance(d, dict) else None
            raise DiagError(f"{where}: not a diag model record{f' (format {fmt!r})' if fmt else ''}; "
                            "train the run again (or upgrade diag)")
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in d.items() if k in names})
        except TypeError as exc:
            raise DiagError(f"{where}: damaged model record ({exc}); train the run again") from None


class RunDir:
    """A ``diag train`` run folder (see the module docstring for its files)."""

    CONFIG = "config.json"
    LAST = "last.pt"
    WEIGHTS = "model.safetensors"
    RECORD = "model.json"
    TEST = "test_metrics.json"
    LABELED = "labeled.json"
    METRICS = "metrics.jsonl"
    KIND = "train-run"  #: the output marker's kind (diag.storage.write_marker)

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    @property
    def started(self) -> bool:
        """Its settings were written (it may have stopped before its first checkpoint)."""
        return (self.path / self.CONFIG).is_file()

    @property
    def has_checkpoint(self) -> bool:
        return (self.path / self.LAST).is_file()

    @property
    def finished(self) -> bool:
        """Scored on its test split (the last thing a run writes)."""
        return (self.path / self.TEST).is_file()

    @property
    def resumable(self) -> bool:
        """Started and not finished: ``--resume`` continues it (from ``last.pt``, or from the start if it
        stopped before its first checkpoint)."""
        return self.started and not self.finished

    def saved(self) -> dict[str, Any]:
        """The saved settings (``config.json``) of a started run, checked."""
        saved = read_json(self.path / self.CONFIG, "the run's saved settings",
                          "not resumed; start the run again with --force")
        if not isinstance(saved, dict) or not isinstance(saved.get("train"), dict) or "dataset_fingerprint" not in saved:
            raise DiagError(f"{self.path / self.CONFIG}: not the saved settings of a diag train run; not resumed; "
                            "start the run again with --force")
        return saved

    def record(self) -> ModelRecord:
        """The model record (``model.json``) of a run that selected an epoch."""
        path = self.path / self.RECORD
        if not path.is_file():
            raise DiagError(f"{self.path}: not a trained model (no {self.RECORD}); run `diag train`")
        return ModelRecord.from_dict(read_json(path, "the run's model record", "train the run again"), str(path))

    def write_record(self, record: ModelRecord) -> None:
        atomic_write_json(self.path / self.RECORD, record.to_dict())

    def test_metrics(self) -> dict[str, Any] | None:
        """The test metrics of a finished run, else None."""
        return read_json(self.path / self.TEST, "the run's test metrics") if self.finished else None


class PretrainDir(RunDir):
    """A ``diag pretrain`` folder: ``pretrain.json`` (settings, probe curve, whether it learned), the
    backbone's weights and ``last.pt``."""

    RECORD = "pretrain.json"
    WEIGHTS = "backbone.safetensors"
    KIND = "pretrain"
