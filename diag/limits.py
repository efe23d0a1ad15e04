"""What fits in memory: the size a setting or a file header implies, checked before allocating.

Bottom layer (imports only :mod:`diag.errors`). A setting such as ``transform.size = [100000, 100000]``,
``transform.n_scales = 10000000``, a simulated ``duration = 1e9`` s or a MATLAB v7.3 file whose header
declares a 64 GiB array would otherwise make numpy or torch try the allocation and end in a
``MemoryError`` traceback or the kernel's out-of-memory killer. :func:`check_fits` compares the bytes
with the memory the machine has available now and refuses with one line that says what fits.
"""

from __future__ import annotations

import os

from diag.errors import DiagError

#: share of the available memory one allocation may take (the rest: the other arrays, the interpreter)
SHARE = 0.5


def available_bytes() -> int:
    """Memory available to a new allocation: ``MemAvailable`` of ``/proc/meminfo`` (Linux), else the
    physical memory (``os.sysconf``), else 8 GiB; ``$DIAG_MEMORY_BYTES`` overrides it (tests)."""
    env = os.environ.get("DIAG_MEMORY_BYTES", "").strip()
    if env.isdigit():
        return int(env)
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return 8 << 30


def human(nbytes: float) -> str:
    """``nbytes`` as ``12.3 GiB`` / ``512 MiB`` / ``4 KiB``."""
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if nbytes >= 1 << shift:
            return f"{nbytes / (1 << shift):.1f} {unit}"
    return f"{int(nbytes)} B"


def budget() -> int:
    """The bytes one allocation may take: :data:`SHARE` of :func:`available_bytes`."""
    return int(available_bytes() * SHARE)


def check_fits(nbytes: float, what: str, fits: str = "") -> None:
    """Refuse (one-line :class:`DiagError`) when ``nbytes`` exceeds :func:`budget`.

    ``what`` names the setting or file and what it implies; ``fits`` says what would fit, e.g.
    ``"at most 4096 scales fit"`` (the caller computes it from :func:`budget`).
    """
    limit = budget()
    if nbytes > limit:
        raise DiagError(f"{what} needs {human(nbytes)} of memory, more than the {human(limit)} one array may take "
                        f"here (half of the {human(available_bytes())} available)" + (f"; {fits}" if fits else ""))
