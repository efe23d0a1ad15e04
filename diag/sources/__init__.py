"""Readers of recordings: your own files (:mod:`diag.sources.files`, streamed for scoring by
:mod:`diag.sources.stream`), the public bearing sets (CWRU, Paderborn, Ottawa; :mod:`diag.sources.fetch`
downloads them), and the checks every recording passes (:mod:`diag.sources.checks`). Every reader returns a
list of :class:`~diag.sources.base.Recording`; :func:`diag.signal.recordings.load_recordings` picks one by
``source.kind`` (simulators included).

Layer: above the bottom (errors, storage, config, checks), below :mod:`diag.simulate` and :mod:`diag.signal`.
"""

from diag.sources.base import Recording
from diag.sources.checks import Finding

__all__ = ["Recording", "Finding"]
