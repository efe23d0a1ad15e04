"""Every class held out in turn: how well the network-free ``rows`` unknown score flags a fault type it never saw.

``diag evaluate --held-out PREPARED`` (:mod:`diag.commands.evaluate`) prints and writes what
:func:`held_out_study` returns. ``PREPARED`` is a dataset prepared with whole recordings (or groups,
conditions, fault sizes) on the validation and test sides. For each class ``c`` in turn, ``c`` plays the
fault type never trained on:

- the score (:func:`diag.learning.unknown.fit_stats`, method ``rows``: each image row's mean, standardised
  by the training windows, the largest deviation) is fitted on the training windows of the *other* classes;
- its threshold is set on their validation windows with the false-alarm bound of the end of ``diag train``
  (:func:`diag.learning.unknown.bounded_threshold`: at most ``far`` with 90 % confidence);
- it is scored on their test windows (known classes, recordings never seen) and on every window of ``c``
  (none of which the score saw): the AUROC of telling them apart, the share of ``c``'s windows flagged
  unknown, and the share of known test windows flagged (the false-alarm rate).

Only a score that reads the input images alone can be measured this way without training one model per
held-out class, so the numbers do not depend on any model; a time or random split is refused because its
"known test" windows come from recordings the score was fitted on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from diag.errors import DiagError
from diag.learning.unknown import DEFAULT_FAR, auroc, bounded_threshold, fit_stats, image_row_profiles, scores_from

METHOD = "rows"
SPLITS = ("train", "val", "test")
#: split methods that keep whole recordings (or larger units) off the training side
UNSEEN_SPLITS = ("recording", "group", "condition", "fault-size")
FIX = "prepare it with --split recording (or group, condition, fault-size)"


def check_held_out_dataset(ds: Any) -> None:
    """Refuse, in one line naming the dataset and the fix, a dataset the study cannot honestly use."""
    method = (ds.manifest.get("split") or {}).get("method")
    if method not in UNSEEN_SPLITS:
        said = f"on a {method} split" if method else "with no recorded split method"
        raise DiagError(f"{ds.path}: prepared {said}, so its test windows share recordings with its training "
                        f"windows and the false-alarm rate would be flattered; {FIX}")
    missing = [s for s in SPLITS if s not in ds.splits]
    if missing:
        raise DiagError(f"{ds.path}: has no {'/'.join(missing)} split; {FIX}")
    if len(ds.classes) < 3:
        raise DiagError(f"{ds.path}: has {len(ds.classes)} class(es) ({', '.join(ds.classes)}); holding one out "
                        "needs at least 3 (two known classes left); prepare it with more fault types")
    for s in ("val", "test"):
        counts = np.bincount(ds.labels(s), minlength=len(ds.classes))
        empty = [c for c, n in zip(ds.classes, counts) if n == 0]
        if empty:
            raise DiagError(f"{ds.path}: class(es) {', '.join(empty)} have no {s} windows, so a held-out class "
                            f"would be judged without them; {FIX} and enough recordings per class")


def held_out_study(data: str | Path, far: float = DEFAULT_FAR) -> dict[str, Any]:
    """The ``rows`` score with every class of prepared dataset ``data`` held out in turn (module docstring).

    Returns ``{"data", "method", "far", "split", "transform", "classes": [row, ...]}``; each row holds
    ``held_out`` (the class), ``auroc`` (known test windows vs held-out windows), ``held_out_detected``
    and ``known_test_flagged`` (shares above the threshold), ``threshold``, ``guaranteed`` (False when
    there are too few validation windows for the bound) and the window counts.
    """
    from diag.signal.dataset import PreparedDataset

    if not 0 < far < 1:
        raise DiagError(f"--far {far}: a false-alarm rate must lie in (0, 1), e.g. 0.05")
    ds = PreparedDataset(data)
    check_held_out_dataset(ds)
    profiles = {s: image_row_profiles(ds.images(s)) for s in SPLITS}
    labels = {s: np.asarray(ds.labels(s)) for s in SPLITS}
    rows = [_hold_out(c, name, profiles, labels, len(ds.classes), far) for c, name in enumerate(ds.classes)]
    return {"data": str(data), "method": METHOD, "far": far, "split": ds.manifest["split"]["method"],
            "transform": (ds.manifest.get("transform") or {}).get("kind"), "classes": rows}


def _hold_out(c: int, name: str, profiles: dict[str, np.ndarray], labels: dict[str, np.ndarray],
              n_classes: int, far: float) -> dict[str, Any]:
    """One row of :func:`held_out_study`: class ``c`` never seen by the score."""
    import torch

    known = {s: labels[s] != c for s in SPLITS}
    stats = fit_stats(METHOD, profiles["train"][known["train"]], labels["train"][known["train"]], n_classes)

    def score(p: np.ndarray) -> np.ndarray:
        return scores_from(METHOD, torch.zeros(len(p), 1), torch.from_numpy(p), stats).numpy()

    s_val, s_test = score(profiles["val"][known["val"]]), score(profiles["test"][known["test"]])
    s_held = score(np.concatenate([profiles[s][~known[s]] for s in SPLITS]))
    th, _, ok = bounded_threshold(s_val, far)
    return {"held_out": name, "auroc": auroc(s_test, s_held), "held_out_detected": float((s_held > th).mean()),
            "known_test_flagged": float((s_test > th).mean()), "threshold": th, "guaranteed": bool(ok),
            "windows": {"held_out": int(len(s_held)), "known_test": int(len(s_test)), "known_val": int(len(s_val)),
                        "known_train": int(known["train"].sum())}}
