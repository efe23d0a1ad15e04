"""Printing user text safely: the one place that escapes what diag prints through rich.

Bottom layer (imports only rich). Rich reads ``[...]`` as markup and ``:name:`` as an emoji code, so a file
name, a class label, a CSV cell or a config table name such as ``[/]``, ``[bold]`` or ``:x:`` printed as
part of a message either crashes it (``rich.errors.MarkupError``) or silently changes it (``b/[bold]rec.csv``
shown as ``b/rec.csv``, ``:x:`` as an emoji). Every message diag prints goes through :func:`esc` (user text
and diag's own bracketed hints such as ``[low, high]``) and every console comes from :func:`console`
(emoji codes off); diag's own styling (``[yellow]note:[/]``) stays markup.
"""

from __future__ import annotations

from typing import Any


def esc(value: Any) -> str:
    """``str(value)`` with rich markup escaped, so it prints exactly as written."""
    from rich.markup import escape

    return escape(str(value))


def console(stderr: bool = False, **kwargs: Any) -> Any:
    """A rich ``Console`` that never turns ``:name:`` into an emoji (``stderr``: print to standard error)."""
    from rich.console import Console

    kwargs.setdefault("emoji", False)
    return Console(stderr=stderr, **kwargs)


def tagged(tag: str, text: Any) -> str:
    """diag's styled ``tag`` (markup, e.g. ``[yellow]note:[/]``) followed by ``text`` escaped."""
    return f"{tag} {esc(text)}"
