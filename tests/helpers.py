"""Helpers shared by the tests: the tiny prepared dataset (diag.signal.toy) and where the shared real data lies."""

from __future__ import annotations

import os
from pathlib import Path


from diag.signal.toy import make_toy_dataset  # noqa: F401 -- re-exported for the tests


def shared_cwru() -> Path | None:
    """The CWRU 12 kHz folder of ../shared/data (or $DIAG_SHARED_DATA), None when absent."""
    env = os.environ.get("DIAG_SHARED_DATA")
    root = Path(__file__).resolve().parents[1]
    for base in ([Path(env)] if env else []) + [root.parent / "shared" / "data"]:
        for cand in (base / "cwru12k", base):
            if (cand / "0HP").is_dir():
                return cand
    return None


def kill_when_checkpointed(run: Path, find_pid, epochs_done: int = 1, poll: float = 0.02):
    """Watch ``run`` in a thread; once it has ``last.pt`` and ``epochs_done`` epochs in metrics.jsonl, SIGKILL
    the process ``find_pid()`` names (None: not found yet, keep watching). Returns ``stop()``: ends the
    watch and gives the killed process ids."""
    import signal
    import threading
    import time

    done, killed = threading.Event(), []

    def watch():
        while not done.is_set():
            hist = run / "metrics.jsonl"
            if (run / "last.pt").is_file() and hist.is_file() and len(hist.read_text().splitlines()) >= epochs_done:
                pid = find_pid()
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
            time.sleep(poll)

    t = threading.Thread(target=watch, daemon=True)
    t.start()

    def stop():
        done.set()
        t.join()
        return killed
    return stop
