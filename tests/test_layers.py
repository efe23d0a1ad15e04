"""The package's shape: imports point one way (no cycle), nobody imports another module's private name,
and the commands never import each other. Walks every import with ``ast``, including those inside
functions, so a lazy import cannot hide a cycle."""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "diag"
# Commands: the top of the package; none may import another.
COMMANDS = {"diag.commands.prepare", "diag.learning.train", "diag.learning.pretrain", "diag.study.compare", "diag.commands.predict", "diag.commands.evaluate",
            "diag.serving.export", "diag.study.report"}
# Known exceptions to the rules below: none. Add none.
KNOWN: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, str | None, int]]:
    """(module, imported name or None, line) for every import of a diag module in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names if a.name.split(".")[0] == "diag"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "diag":
                continue
            for a in node.names:
                sub = f"{mod}.{a.name}"
                if (PKG.parent / Path(*sub.split("."))).with_suffix(".py").is_file() or \
                        (PKG.parent / Path(*sub.split(".")) / "__init__.py").is_file():
                    out.append((sub, None, node.lineno))  # `from diag import train`: the module itself
                else:
                    out.append((mod, a.name, node.lineno))
    return out


def _graph() -> dict[str, list[tuple[str, str | None, int]]]:
    return {_module_name(p): _imports(p) for p in sorted(PKG.rglob("*.py"))}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def _edges(graph) -> dict[str, set[str]]:
    # A package's __init__ is imported with any of its modules; the edge "diag.x -> diag" (for
    # diag.__version__) is not a layering edge.
    return {m: {dep for dep, _, _ in deps if dep != m and dep != "diag" and (m, dep) not in KNOWN}
            for m, deps in graph.items()}


def test_the_walk_sees_function_level_imports():
    graph = _graph()
    deps = {d for d, _, _ in graph["diag.cli"]}
    assert "diag.learning.train" in deps and "diag.commands.prepare" in deps  # lazy, per-command imports inside functions


def test_no_import_cycle():
    assert _cycle(_edges(_graph())) is None, f"import cycle: {' -> '.join(_cycle(_edges(_graph())))}"


def test_known_exceptions_are_still_needed():
    graph = _graph()
    stale = [pair for pair in KNOWN if pair[1] not in {d for d, _, _ in graph.get(pair[0], [])}]
    assert not stale, f"no longer needed, remove from KNOWN: {stale}"


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_module_imports_another_modules_private_name():
    bad = [f"{m}:{line} imports {dep}.{name}" for m, deps in _graph().items() for dep, name, line in deps
           if name and name.startswith("_") and dep != m and (m, dep) not in KNOWN]
    assert not bad, bad


def test_commands_never_import_each_other():
    bad = [f"{m} imports {dep}" for m, deps in _graph().items() if m in COMMANDS for dep, _, _ in deps
           if dep in COMMANDS and dep != m and not (m == "diag.study.compare" and dep == "diag.learning.train")]
    assert not bad, bad


@pytest.mark.parametrize("low", ["diag.errors", "diag.storage", "diag.config", "diag.provenance"])
def test_the_bottom_imports_nothing_above_it(low):
    allowed = {"diag.errors", "diag.storage", "diag"}
    deps = {d for d, _, _ in _graph()[low]}
    assert deps <= allowed, deps - allowed
