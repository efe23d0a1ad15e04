"""MkDocs hooks for diag's documentation (mkdocs.yml: ``hooks: [scripts/dev/docs_hooks.py]``).

Two kinds of generated text, so the pages cannot drift from the code:

* ``<!-- diag-options: NAME -->`` becomes the usage line and the option table of ``diag NAME``, read
  from the typer app (``diag.cli.app``) at build time. Every command of the app must have a page with
  its marker, and every marker must name a command: otherwise the build fails.
* ``<!-- diag-modules -->`` becomes a table of diag's modules and the first line of each one's
  docstring, read with :mod:`ast` (nothing is imported, so torch is not needed to build the docs).
"""

from __future__ import annotations

import ast
import html
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OPTIONS = re.compile(r"<!--\s*diag-options:\s*([\w-]+)\s*-->")
MODULES = re.compile(r"<!--\s*diag-modules\s*-->")


class DocsError(Exception):
    """A page and the code disagree (an unknown command, a command without a page)."""


def _commands():
    """The typer app's commands as click commands, by name, in the app's order."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import typer

    from diag.cli import app

    group = typer.main.get_command(app)
    return group, dict(group.commands)


def _cell(text: str) -> str:
    """Text for a markdown table cell: no pipes, no raw HTML, one line."""
    return html.escape(" ".join(text.split()), quote=False).replace("|", "\\|")


def options_markdown(name: str) -> str:
    """The usage line and the table of arguments and options of ``diag NAME``."""
    import typer

    group, commands = _commands()
    if name not in commands:
        raise DocsError(f"<!-- diag-options: {name} -->: diag has no command {name!r} (it has {', '.join(commands)})")
    cmd = commands[name]
    ctx = typer.Context(cmd, info_name=name, parent=typer.Context(group, info_name="diag"))
    usage = " ".join(["diag", name, *cmd.collect_usage_pieces(ctx)])
    rows = ["| argument / option | what it does |", "| --- | --- |"]
    for param in cmd.params:
        record = param.get_help_record(ctx)
        if record is None:  # hidden
            continue
        opts, help_text = record
        rows.append(f"| `{opts}` | {_cell(help_text)} |")
    rows.append("| `--help` | Show the command's help and exit. |")
    return "\n".join([f"```text\n{usage}\n```", "", f"{_cell(cmd.help or '')}", "", *rows])


def _first_line(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return doc.strip().splitlines()[0] if doc.strip() else "(no docstring)"


def modules_markdown() -> str:
    """One row per module of the ``diag`` package: its path and its docstring's first line."""
    rows = ["| module | what it is (its docstring's first line) |", "| --- | --- |"]
    for path in sorted((ROOT / "diag").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if path.name == "__init__.py":
            rel = rel[: -len("/__init__.py")] + "/"
        rows.append(f"| `{rel}` | {_cell(_first_line(path))} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 (mkdocs hook signature)
    from mkdocs.exceptions import PluginError

    try:
        markdown = OPTIONS.sub(lambda m: options_markdown(m.group(1)), markdown)
    except DocsError as exc:
        raise PluginError(f"{page.file.src_uri}: {exc}") from None
    return MODULES.sub(lambda m: modules_markdown(), markdown)


def on_files(files, config):  # noqa: ARG001 (mkdocs hook signature)
    """Fail the build when a command of the app has no page carrying its options marker."""
    documented = set()
    for f in files:
        if f.src_uri.endswith(".md"):
            documented.update(OPTIONS.findall(Path(f.abs_src_path).read_text(encoding="utf-8")))
    missing = [name for name in _commands()[1] if name not in documented]
    if missing:
        from mkdocs.exceptions import PluginError

        raise PluginError(f"docs: no page documents diag {', '.join(missing)}: add docs/commands/NAME.md "
                          "with <!-- diag-options: NAME --> and list it in mkdocs.yml's nav")
    return files

