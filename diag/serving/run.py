"""A trained run, loaded: :func:`load_run` gives the network, the fitted preprocessing, the unknown detector
and the classes of a ``diag train`` folder, checked, in one object (:class:`LoadedRun`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diag.errors import DiagError
from diag.learning.rundir import ModelRecord, RunDir
from diag.signal.preprocessing import Preprocessing
from diag.learning.unknown import UnknownDetector

__all__ = ["LoadedRun", "load_run", "torch_device"]


@dataclass
class LoadedRun:
    """What scoring a recording needs from a run."""

    dir: RunDir
    net: Any  #: the network, in eval mode, on ``device``
    record: ModelRecord  #: model.json
    preprocessing: Preprocessing  #: the fitted preprocessing the run was trained with
    unknown: UnknownDetector | None  #: the calibrated unknown detector, or None (see ``notes``)
    device: Any
    notes: list[str]

    @property
    def classes(self) -> list[str]:
        return list(self.record.classes)

    @property
    def meta(self) -> dict[str, Any]:
        """model.json as a dict."""
        return self.record.to_dict()


def torch_device(spec: Any) -> Any:
    """``cpu`` / ``cuda`` / ``cuda:N`` as a torch device, checked (one line naming the option otherwise)."""
    import torch

    try:
        dev = torch.device(spec)
    except (RuntimeError, TypeError):
        raise DiagError(f"--device: '{spec}' is not one of cpu, cuda, cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise DiagError(f"--device: '{spec}' is not one of cpu, cuda, cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DiagError("--device cuda: no CUDA GPU is available here; use --device cpu")
    return dev


def _network(run: RunDir, record: ModelRecord, device: Any) -> Any:
    from safetensors.torch import load_file

    from diag.learning.models import create_backbone

    weights = run / RunDir.WEIGHTS
    if not weights.is_file():
        raise DiagError(f"{run.path}: not a trained model (no {RunDir.WEIGHTS}); run `diag train`")
    net = create_backbone(record.model, "scratch", in_chans=record.in_chans, num_classes=len(record.classes),
                          replicate_channels=record.replicate_channels)
    try:
        state = load_file(str(weights), device="cpu")
    except Exception as exc:  # noqa: BLE001 -- safetensors' errors on a damaged file
        first = str(exc).splitlines()[0][:120] if str(exc) else ""
        raise DiagError(f"{weights}: weights do not load ({type(exc).__name__}: {first}); train the run again") from None
    import torch

    bad = next((k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
    if bad is not None:  # checked once, when the run is opened
        raise DiagError(f"{weights}: weight '{bad}' holds NaN or infinite values (a training that diverged, or a "
                        "damaged file); nothing it scores would mean anything; train the run again")
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise DiagError(f"{weights}: does not match {record.model} ({str(exc).splitlines()[0]}); "
                        "train the run again") from None
    return net.to(device).eval()


def _dataset_ref_range(record: ModelRecord) -> list[float] | None:
    from diag.signal.dataset import PreparedDataset

    path = Path((record.dataset or {}).get("path") or "")
    try:
        return PreparedDataset(path).preprocessing.ref_range if path.name else None
    except (DiagError, OSError, ValueError):
        return None


def load_run(run: str | Path, device: Any = "cpu", calibrate: bool = True, quiet: bool = True) -> LoadedRun:
    """Load a ``diag train`` run: network (eval mode, on ``device``), preprocessing, unknown detector, classes.

    The preprocessing is rebuilt and must describe its images as the run recorded them. The unknown
    detector is the run's calibrated one; a run without one is calibrated now on its prepared dataset's
    validation split when that is still there (``calibrate``), else it has none and ``notes`` says so.
    """
    rd = RunDir(Path(run).expanduser())
    if not rd.path.is_dir():
        raise DiagError(f"{rd.path}: no such run folder; pass the --out folder of `diag train`")
    dev = torch_device(device)
    record = rd.record()
    pre = Preprocessing.from_dict(record.preprocessing, f"{rd / RunDir.RECORD}")
    pre.check_images(str(rd.path))
    if pre.needs_ref and pre.ref_range is None:  # recorded since: the training rates, from the dataset if there
        pre.ref_range = _dataset_ref_range(record)
    net = _network(rd, record, dev)
    notes = []
    unknown = UnknownDetector.for_run(rd.path, net, record.to_dict(), device=dev, calibrate=calibrate, quiet=quiet)
    if unknown is None:
        notes.append("no unknown threshold: the run has no unknown.json and no validation windows to "
                     "calibrate one on (its prepared dataset is gone, or has none, as after a refit); "
                     "every window gets a class (a moved dataset: `diag predict --calibrate DATA`)")
    if not rd.finished:
        notes.append("the run has no test_metrics.json (it stopped before it was scored on its test split): "
                     "nothing says how well it does on recordings it never saw")
    return LoadedRun(rd, net, record, pre, unknown, dev, notes)
