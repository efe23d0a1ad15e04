"""List every function (and method) in diag/ longer than a limit (default 100 lines), longest first.

    python scripts/dev/long_functions.py [--limit 100] [--modules 700] [PATH ...]

Lines are counted from the ``def`` line to the last line of the body (decorators and the docstring
included), as ``ast`` reports them. ``--modules N`` also lists modules over N lines. Exit status 0.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def long_functions(paths: list[Path], limit: int) -> list[tuple[int, str, str]]:
    """``(lines, "path:line", qualified name)`` of every function over ``limit`` lines."""
    out = []
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))

        def visit(node: ast.AST, prefix: str) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    n = child.end_lineno - child.lineno + 1
                    name = f"{prefix}{child.name}"
                    if n > limit:
                        out.append((n, f"{path.relative_to(ROOT)}:{child.lineno}", name))
                    visit(child, name + ".")
                elif isinstance(child, ast.ClassDef):
                    visit(child, f"{prefix}{child.name}.")
                else:
                    visit(child, prefix)

        visit(tree, "")
    return sorted(out, key=lambda t: (-t[0], t[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*", type=Path, help="files or folders (default: diag/)")
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--modules", type=int, default=0, metavar="N", help="also list modules over N lines")
    a = ap.parse_args()
    files = sorted(f.resolve() for p in (a.paths or [ROOT / "diag"])
                   for f in ([p] if p.is_file() else Path(p).rglob("*.py")))
    found = long_functions(files, a.limit)
    for n, where, name in found:
        print(f"{n:5d}  {where}  {name}")
    print(f"{len(found)} functions over {a.limit} lines")
    if a.modules:
        big = sorted(((len(f.read_text(encoding="utf-8").splitlines()), f) for f in files), reverse=True)
        big = [(n, f) for n, f in big if n > a.modules]
        for n, f in big:
            print(f"{n:5d}  {f.relative_to(ROOT)}")
        print(f"{len(big)} modules over {a.modules} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
