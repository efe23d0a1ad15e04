"""The ``diag`` command line. Thin: parse, call one function, print.

Every command turns a :class:`~diag.errors.DiagError` into one line on stderr and exit status 2;
no traceback reaches the user for a problem with their input.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Callable, List, Optional

import typer
from rich.console import Console

from diag.errors import DiagError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Diagnose faults in machines and power converters from raw waveforms.",
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


@app.callback()
def _root() -> None:
    """Diagnose faults in machines and power converters from raw waveforms.

    Pipeline: simulate or fetch recordings -> prepare (windows, leakage-free split, CWT/STFT images)
    -> pretrain (self-supervised, optional) -> train --init imagenet|ssl|scratch.
    """


def friendly(fn: Callable) -> Callable:
    """Run a command, printing a DiagError as one line and exiting 2 (130 on Ctrl-C)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DiagError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]; outputs written so far are intact (writes are atomic)")
            raise typer.Exit(130) from None

    return wrapper


# ------------------------------------------------------------------------------------------------
# diag prepare


@app.command()
@friendly
def prepare(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML config (see configs/)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory of the prepared dataset."),
    data: Optional[str] = typer.Option(None, "--data", help="Override source.path (file or folder)."),
    source: Optional[str] = typer.Option(None, "--source", help="Override source.kind."),
    split: Optional[str] = typer.Option(None, "--split", help="Split method: time|recording|group|condition|fault-size|random."),
    transform: Optional[str] = typer.Option(None, "--transform", help="cwt|stft|cwt+stft."),
    allow_leaky: bool = typer.Option(False, "--allow-leaky", help="Permit the leaky 'random' split (prints a warning)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output prepared with a different config."),
    set_: List[str] = typer.Option([], "--set", "-s", help="Override any setting: section.key=value (repeatable)."),
) -> None:
    """Read recordings, resample, window, split without leakage, and write time-frequency images."""
    from diag.prepare import prepare as run_prepare

    overrides = list(set_)
    if data is not None:
        overrides.append(f"source.path={_toml_str(data)}")
    if source is not None:
        overrides.append(f"source.kind={_toml_str(source)}")
    if split is not None:
        overrides.append(f"split.method={_toml_str(split)}")
    if transform is not None:
        overrides.append(f"transform.kind={_toml_str(transform)}")
    if allow_leaky:
        overrides.append("split.allow_leaky=true")
    run_prepare(config, out, overrides=overrides, force=force)


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ------------------------------------------------------------------------------------------------
# diag fetch


@app.command()
@friendly
def fetch(
    dataset: str = typer.Argument(..., help="cwru | paderborn | ottawa"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Target folder (default data_raw/DATASET)."),
    records: Optional[str] = typer.Option(None, "--records", help="CWRU record numbers, e.g. 97,105,130 (default: all)."),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds to wait for the server."),
) -> None:
    """Download a public dataset from its official site into data_raw/ (needs internet)."""
    from diag.sources.fetch import DATASETS
    from diag.sources.fetch import fetch as run_fetch

    if dataset not in DATASETS:
        raise DiagError(f"unknown dataset '{dataset}'; choose one of {', '.join(DATASETS)}")
    target = out or Path("data_raw") / dataset
    recs = [r.strip() for r in records.split(",") if r.strip()] if records else None
    files = run_fetch(dataset, target, records=recs, timeout=timeout)
    console.print(f"{len(files)} files in {target}")


# ------------------------------------------------------------------------------------------------
# Further commands (simulate, fetch, pretrain, train) are added below, one section each.


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
