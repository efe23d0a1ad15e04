"""``diag train``: settle the settings (a resumed run's saved ones; with ``--refit-from``, that run's under the
given ones), then train (:func:`diag.learning.train.train`: the loop, then the finished run scored on test)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from diag.errors import DiagError
from diag.learning.rundir import RunDir
from diag.learning.train import load_train_config, train


def run(data: str | Path | None, out: str | Path, config: str | Path | None = None, overrides: Sequence[str] = (),
        resume: bool = False, force: bool = False, quiet: bool = False,
        refit_from: str | Path | None = None, track: Any = None) -> dict[str, Any]:
    """What ``diag train`` calls."""
    rd = RunDir(out)
    base = None
    if resume:
        if not rd.started:
            raise DiagError(f"{rd.path}: nothing to resume (no config.json); start it without --resume")
        base = rd.saved()
    base_train = base["train"] if base else None
    if refit_from is not None and not resume:
        src = RunDir(refit_from)
        if not src.started:
            raise DiagError(f"--refit-from {refit_from}: not a diag train run (no config.json)")
        base_train = {**src.saved()["train"], "refit_from": str(refit_from)}
    cfg = load_train_config(config, overrides, base=base_train)
    if data is None:
        if base is None:
            raise DiagError("--data: the prepared dataset folder is required (made by `diag prepare`)")
        data = base["data"]
    return train(data, out, cfg, resume=resume, force=force, quiet=quiet, track=track)
