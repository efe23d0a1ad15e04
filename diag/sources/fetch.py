"""Download the public datasets: ``fetch("cwru" | "paderborn" | "ottawa", out)``.

* ``cwru``: the ``<record>.mat`` files of the records in :data:`diag.sources.cwru.CWRU_RECORDS`
  from the CWRU Bearing Data Center (``https://engineering.case.edu/sites/default/files/<record>.mat``).
* ``paderborn``: one RAR archive per bearing code
  (``https://groups.uni-paderborn.de/kat/BearingDataCenter/<code>.rar``). RAR needs an external
  tool, so the archives are downloaded and *you* extract them (``unrar x``, ``7z x`` or
  ``bsdtar -xf``) so that ``<out>/KA01/N15_M07_F10_KA01_1.mat`` etc. exist.
* ``ottawa``: the whole Mendeley Data set ``v43hmbwxpm`` (version 2) as one zip, extracted in place.

Every file is streamed to ``<name>.part`` and renamed only when complete (and, where the format has
a signature, only if it starts with it: a server's HTML error page never becomes ``105.mat``). A file
already present with the size the server announces is skipped. Without a network the call fails
within a few seconds with a one-line :class:`DiagError` saying where to put the files by hand.
"""

from __future__ import annotations

import http.client
import os
import re
import socket
import threading
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Iterable
from urllib.parse import urlparse

from diag.errors import DiagError

__all__ = ["fetch", "DATASETS", "CWRU_BASE_URL", "PADERBORN_BASE_URL", "OTTAWA_URL", "LANDING_PAGES"]

CWRU_BASE_URL = "https://engineering.case.edu/sites/default/files/"
PADERBORN_BASE_URL = "https://groups.uni-paderborn.de/kat/BearingDataCenter/"
OTTAWA_URL = "https://data.mendeley.com/api/datasets-v2/datasets/v43hmbwxpm/zip/download?version=2"
LANDING_PAGES = {
    "cwru": "https://engineering.case.edu/bearingdatacenter/download-data-file",
    "paderborn": "https://mb.uni-paderborn.de/kat/forschung/kat-datacenter/bearing-datacenter/data-sets-and-download",
    "ottawa": "https://data.mendeley.com/datasets/v43hmbwxpm",
}
DATASETS = tuple(LANDING_PAGES)
OTTAWA_ZIP = "v43hmbwxpm-2.zip"
CHUNK = 1 << 20
# first bytes of a genuine file of each kind
SIGNATURES = {".mat": b"MATLAB", ".rar": b"Rar!", ".zip": b"PK"}


def _plan(dataset: str, records: Iterable[int | str] | None) -> list[tuple[str, str]]:
    """``[(file name, url)]`` to download."""
    if dataset == "cwru":
        from diag.sources.cwru import CWRU_RECORDS

        recs = sorted(CWRU_RECORDS) if records is None else list(records)
        plan = []
        for r in recs:
            try:
                num = int(str(r).strip().removesuffix(".mat"))
            except ValueError:
                raise DiagError(f"records: {r!r} is not a CWRU record number (e.g. 105)") from None
            if num not in CWRU_RECORDS:
                raise DiagError(f"records: {num} is not in diag's CWRU table; see diag.sources.cwru.CWRU_RECORDS")
            plan.append((f"{num}.mat", f"{CWRU_BASE_URL}{num}.mat"))
        return plan
    if dataset == "paderborn":
        from diag.sources.paderborn import PADERBORN_BEARINGS

        codes = sorted(PADERBORN_BEARINGS) if records is None else [str(c).strip().upper() for c in records]
        bad = [c for c in codes if not re.fullmatch(r"K\d{3}|K[AIB]\d{2}", c)]
        if bad:
            raise DiagError(f"records: {bad} are not Paderborn bearing codes (K001, KA01, KI04, KB23...)")
        return [(f"{c}.rar", f"{PADERBORN_BASE_URL}{c}.rar") for c in codes]
    if dataset == "ottawa":
        if records is not None:
            raise DiagError("records: the Ottawa data set is one archive; fetch it whole (no records option)")
        return [(OTTAWA_ZIP, OTTAWA_URL)]
    raise DiagError(f"fetch: unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")


def _offline_error(host: str, dataset: str, out: Path, reason: str = "") -> DiagError:
    why = f"{reason}; " if reason else ""
    then = {"paderborn": "extract the .rar archives there", "ottawa": "unzip it there"}.get(dataset, "read them from there")
    return DiagError(
        f"cannot reach {host} ({why}no internet?); download the files by hand into {out}/ "
        f"from {LANDING_PAGES[dataset]} and {then}"
    )


def _check_reachable(url: str, dataset: str, out: Path, timeout: float) -> None:
    """Resolve and connect to the server within ``timeout`` seconds, or raise a one-line DiagError.

    Name resolution is not bounded by socket timeouts, so it runs in a daemon thread we stop
    waiting for.
    """
    parsed = urlparse(url)
    host = parsed.hostname or url
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    result: dict[str, BaseException | None] = {}

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                pass
            result["error"] = None
        except BaseException as exc:  # noqa: BLE001 - reported below
            result["error"] = exc

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 0.5)
    if "error" not in result:
        raise _offline_error(host, dataset, out, f"no answer within {timeout:g} s")
    exc = result["error"]
    if exc is not None:
        reason = "name not resolved" if isinstance(exc, socket.gaierror) else type(exc).__name__
        raise _offline_error(host, dataset, out, reason)


def _progress(enabled: bool):
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        disable=not enabled, transient=False,
    )


def _download(url: str, dest: Path, dataset: str, out: Path, timeout: float, progress) -> bool:
    """Download ``url`` to ``dest`` atomically; return False if an up-to-date copy was already there."""
    host = urlparse(url).hostname or url
    req = urllib.request.Request(url, headers={"User-Agent": "diag-fetch/0.1"})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise DiagError(
            f"{url}: the server answered {exc.code} {exc.reason}; check the name, or download it by hand "
            f"from {LANDING_PAGES[dataset]} into {out}/"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _offline_error(host, dataset, out, str(reason)[:80]) from None
    part = dest.with_name(dest.name + ".part")
    try:
        with resp:
            size_text = resp.headers.get("Content-Length")
            size = int(size_text) if size_text and size_text.isdigit() else None
            if dest.is_file() and size is not None and dest.stat().st_size == size:
                return False
            task = progress.add_task(dest.name, total=size)
            written = 0
            with part.open("wb") as fh:
                while True:
                    chunk = resp.read(CHUNK)
                    if not chunk:
                        break
                    fh.write(chunk)
                    written += len(chunk)
                    progress.update(task, advance=len(chunk))
        if size is not None and written != size:
            raise DiagError(f"{url}: download stopped after {written} of {size} bytes; run fetch again")
        sig = SIGNATURES.get(dest.suffix.lower())
        if sig is not None:
            with part.open("rb") as fh:
                head = fh.read(len(sig))
            if head != sig:
                raise DiagError(
                    f"{url}: the server sent something that is not a {dest.suffix} file (an error page?); "
                    f"download it by hand from {LANDING_PAGES[dataset]} into {out}/"
                )
        os.replace(part, dest)
        return True
    except (http.client.IncompleteRead, OSError, TimeoutError) as exc:
        raise DiagError(f"{url}: download interrupted ({type(exc).__name__}); run fetch again") from None
    finally:
        if part.exists():
            part.unlink()


def fetch(
    dataset: str,
    out: str | Path,
    records: Iterable[int | str] | None = None,
    timeout: float = 10.0,
    progress: bool = True,
) -> list[Path]:
    """Download a public dataset into ``out``.

    Parameters
    ----------
    dataset : {"cwru", "paderborn", "ottawa"}
    out : str or Path
        Destination folder (created), e.g. ``data_raw/cwru``.
    records : list, optional
        CWRU record numbers (default: every record of the table) or Paderborn bearing codes
        (default: all 32). Not accepted for Ottawa (one archive).
    timeout : float
        Seconds to wait for the server (connection and each read). Offline, the call fails within
        about ``min(timeout, 5)`` seconds.
    progress : bool
        Show a rich progress bar per file.

    Returns
    -------
    list of Path
        The files now present (downloaded or already there). For Paderborn these are the RAR
        archives (extract them yourself); for Ottawa the extracted ``.mat`` files.
    """
    if dataset not in DATASETS:
        raise DiagError(f"fetch: unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    try:
        timeout = float(timeout)
    except (TypeError, ValueError):
        raise DiagError(f"timeout: expected seconds, got {timeout!r}") from None
    if not timeout > 0:
        raise DiagError(f"timeout: must be > 0 seconds, got {timeout}")
    out = Path(out).expanduser()
    plan = _plan(dataset, records)
    if out.exists() and not out.is_dir():
        raise DiagError(f"{out}: exists and is not a folder; choose another --out")
    _check_reachable(plan[0][1], dataset, out, min(timeout, 5.0))  # offline: fail before creating --out
    created = [p for p in (out, *out.parents) if not p.exists()]
    out.mkdir(parents=True, exist_ok=True)

    paths = []
    try:
        with _progress(progress) as bar:
            for name, url in plan:
                dest = out / name
                _download(url, dest, dataset, out, timeout, bar)
                paths.append(dest)
    except BaseException:
        # nothing was downloaded: leave no empty folder behind (only the ones this call created)
        for folder in created:
            try:
                folder.rmdir()  # only if empty
            except OSError:
                break
        raise

    if dataset == "ottawa":
        return _extract_zip(paths[0], out)
    if dataset == "paderborn" and progress:
        from rich.console import Console

        Console(stderr=True).print(
            f"Downloaded {len(paths)} RAR archive(s) into {out}/. Extract each one there "
            "(e.g. `unrar x KA01.rar`, `7z x KA01.rar` or `bsdtar -xf KA01.rar`) so that "
            f"{out}/KA01/N15_M07_F10_KA01_1.mat exists, then read {out} with the paderborn reader."
        )
    return paths


def _extract_zip(archive: Path, out: Path) -> list[Path]:
    """Extract the Ottawa zip (skipping members already present with the right size)."""
    try:
        with zipfile.ZipFile(archive) as z:
            members = []
            root = out.resolve()
            for info in z.infolist():
                target = (out / info.filename).resolve()
                if root not in target.parents and target != root:
                    raise DiagError(f"{archive}: unsafe path {info.filename!r} in the archive; not extracting it")
                if info.is_dir():
                    continue
                if not (target.is_file() and target.stat().st_size == info.file_size):
                    z.extract(info, out)
                members.append(target)
    except zipfile.BadZipFile:
        raise DiagError(f"{archive}: not a readable zip archive; delete it and run fetch again") from None
    # Mendeley wraps the data in nested zips (one per folder) in some versions: extract those too
    for inner in [m for m in members if m.suffix.lower() == ".zip"]:
        members.remove(inner)
        members.extend(_extract_zip(inner, inner.parent))
    return sorted(m for m in members if m.suffix.lower() == ".mat") or members
