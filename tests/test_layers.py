"""The package's shape: layers whose imports point down only, no cycle, nobody importing another module's
private name, commands never importing each other -- with no list of exceptions. Walks every import with
``ast``, including those inside functions (a lazy import cannot hide an edge) and ``importlib`` loads of
diag modules (a load by name is an import too; one whose name is not a literal cannot be checked and is
refused)."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "diag"

#: bottom to top: a module may import its own layer and the layers below it, never above
LAYERS = (
    ("base", ("diag.version", "diag.errors", "diag.checks", "diag.show", "diag.limits", "diag.storage", "diag.config",
              "diag.provenance")),
    ("sources", ("diag.sources",)),
    ("simulate", ("diag.simulate",)),
    ("signal", ("diag.signal",)),
    ("learning", ("diag.learning",)),
    ("serving", ("diag.serving",)),
    ("study", ("diag.study",)),
    ("commands", ("diag.commands",)),
    ("top", ("diag.cli", "diag.__main__", "diag")),  # the CLI, and the package's public facade (load_model)
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    p = PKG.parent / Path(*name.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def _imports(path: Path, here: str | None = None) -> list[tuple[str, str | None, int]]:
    """(module, imported name or None, line) for every import of a diag module in ``path`` (module ``here``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = here or _module_name(path)
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
                out.append((sub, None, node.lineno) if _is_module(sub) else (mod, a.name, node.lineno))
        elif isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            if name in ("import_module", "__import__"):
                arg = node.args[0] if node.args else None
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    if arg.value.split(".")[0] == "diag":
                        out.append((arg.value, None, node.lineno))
                else:  # a module loaded by a computed name: no check can see where it points
                    out.append(("<importlib: computed name>", None, node.lineno))
    return out


def _graph() -> dict[str, list[tuple[str, str | None, int]]]:
    return {_module_name(p): _imports(p) for p in sorted(PKG.rglob("*.py"))}


def _layer(module: str) -> int:
    best = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > best[1]):
                best = (i, len(p))
    assert best is not None, f"{module} is in no layer; add it to LAYERS"
    return best[0]


def _edges(graph) -> dict[str, set[str]]:
    # ``from diag import __version__`` style edges to the package itself are not layering edges
    return {m: {dep for dep, _, _ in deps if dep not in (m, "diag")} for m, deps in graph.items()}


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


def test_the_walk_sees_function_level_and_importlib_imports(tmp_path):
    graph = _graph()
    deps = {d for d, _, _ in graph["diag.cli"]}
    assert "diag.commands.train" in deps and "diag.commands.prepare" in deps  # lazy, per-command imports
    assert "diag.serving.predictor" in {d for d, _, _ in graph["diag"]}  # the load_model facade, inside a function
    probe = tmp_path / "probe.py"
    probe.write_text("import importlib\ndef f(name):\n    importlib.import_module('diag.cli')\n"
                     "    return importlib.import_module(name)\n")
    got = {d for d, _, _ in _imports(probe, "diag.probe")}
    assert "diag.cli" in got and "<importlib: computed name>" in got


def test_no_module_loads_another_by_a_computed_name():
    bad = [f"{m}:{line}" for m, deps in _graph().items() for dep, _, line in deps if dep.startswith("<importlib")]
    assert not bad, f"importlib loads whose target no check can see: {bad}"


def test_every_import_points_down_the_layers():
    bad = []
    for m, deps in _graph().items():
        for dep, _, line in deps:
            if dep.startswith("<") or dep == "diag" or not _is_module(dep):
                continue
            if _layer(dep) > _layer(m):
                bad.append(f"{m}:{line} ({LAYERS[_layer(m)][0]}) imports {dep} ({LAYERS[_layer(dep)][0]})")
    assert not bad, "imports that point up the layers:\n" + "\n".join(bad)


def test_no_import_cycle():
    assert _cycle(_edges(_graph())) is None, f"import cycle: {' -> '.join(_cycle(_edges(_graph())))}"


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_layer_check_finds_an_upward_import():
    assert _layer("diag.signal.windows") < _layer("diag.learning.train") < _layer("diag.commands.prepare")
    assert _layer("diag") == _layer("diag.cli") and _layer("diag.version") == 0


def test_no_module_imports_another_modules_private_name():
    bad = [f"{m}:{line} imports {dep}.{name}" for m, deps in _graph().items() for dep, name, line in deps
           if name and name.startswith("_") and not name.endswith("__") and dep != m]
    assert not bad, bad


def test_commands_never_import_each_other():
    commands = {m for m in _graph() if m.startswith("diag.commands.")}
    bad = [f"{m} imports {dep}" for m in commands for dep, _, _ in _graph()[m] if dep in commands and dep != m]
    assert not bad, bad


#: modules split by concern inside a layer point one way too: tier by tier, lowest first; a module may import
#: only modules of lower tiers of its group (none of its own tier: siblings by concern stay independent)
TIERS = (
    (("diag.signal.tfbase", "diag.signal.pixels"),
     ("diag.signal.cwt", "diag.signal.stft", "diag.signal.orders", "diag.signal.refrate"),
     ("diag.signal.transforms",)),
    (("diag.signal.resampling", "diag.signal.normalization", "diag.signal.splits"), ("diag.signal.windows",)),
    (("diag.simulate.params",), ("diag.simulate.circuit",), ("diag.simulate.bearing", "diag.simulate.inverter"),
     ("diag.simulate",)),
)


def test_modules_split_by_concern_point_one_way():
    graph, bad = _graph(), []
    for group in TIERS:
        tier = {m: i for i, mods in enumerate(group) for m in mods}
        for m in tier:
            assert m in graph, f"{m} is listed in TIERS but is no module"
            bad += [f"{m}:{line} imports {dep} (tier {tier[dep]} >= {tier[m]})"
                    for dep, _, line in graph[m] if dep in tier and dep != m and tier[dep] >= tier[m]]
    assert not bad, bad


#: packages of the optional extras (diag[cluster], diag[track]): imported only inside the functions that use them
OPTIONAL = ("dask", "distributed", "mlflow", "tensorboard")


def test_optional_extras_are_imported_only_where_used():
    """The base install stays light: no module imports an optional engine at import time (module level), so
    ``import diag.study.compare`` or ``diag train`` works without diag[cluster] / diag[track]."""
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:  # module level only
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{_module_name(path)}:{node.lineno} imports {n}" for n in names if n.split(".")[0] in OPTIONAL]
    assert not bad, bad
    uses = {m for m, deps in _graph().items() if m in ("diag.study.cluster", "diag.learning.tracking")}
    assert uses == {"diag.study.cluster", "diag.learning.tracking"}  # the modules this guards exist
