"""The rules of ``docs/architecture.md``, checked on the source: who may import whom, no import cycle, no file over
400 lines, one console script.

Imports are read with ``ast`` (nothing of the project is imported), function-level (lazy) imports included: a
lazy import is still a dependency. ``from pkg import name`` counts as an import of ``pkg.name`` when that is a
module, else of ``pkg`` (its ``__init__``). A command reached by name (``chanmusic.cli.EXTRA_COMMANDS``, ``python
-m ...`` in a subprocess) is not an import.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("chanmusic", "encoders", "datamodules", "callbacks", "benchmarks")
MAX_LINES = 400

#: Layers, lowest first. A module may import its own unit and units of *lower* layers only; units that share a
#: layer do not import each other. A module belongs to the unit with the longest matching name.
LAYERS: list[list[str]] = [
    ["chanmusic.core"],                            # facts and I/O: errors, files, checkpoints, electrodes, constants
    ["encoders", "chanmusic.audio"],               # EEG encoders: one interface, many models; audio models (CLAP, …)
    ["datamodules"],                               # files -> cache -> batches (datasets, prepare, demo data, splits)
    ["callbacks"],                                 # Lightning callbacks
    ["chanmusic", "chanmusic.modules"],            # package root (itself only); nn pieces
    ["chanmusic.lightning_cli"],                   # a stage + data from YAML
    ["chanmusic.evaluation"],                      # metrics (torchmetrics), intervals, collapse, provenance
    ["chanmusic.results"],                         # metrics.json, run layout, checkpoint rule, metric registry, run loader
    ["chanmusic.stages",                           # one LightningModule a file
     "chanmusic.evaluation.interpret", "chanmusic.evaluation.robustness"],  # finished runs: compute, never draw
    ["chanmusic.cli"],                             # the entry point; commands reached by name, not imported
    ["chanmusic.report"],                          # tables, plots (every figure), HTML
    ["chanmusic.evaluation.robustness.command", "chanmusic.runner"],  # commands that draw or report
    ["chanmusic.demo", "chanmusic.evaluation.robustness.__main__"],  # `python -m ...`: forward to a command
    ["benchmarks"],                                # make bench
]

#: units that hold only the module of that name (a new ``chanmusic/x.py`` must be given a layer)
EXACT = {"chanmusic"}

LAYER_OF = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str | None:
    """The unit (a key of ``LAYER_OF``) ``module`` belongs to: the longest name equal to it or a prefix of it."""
    best = None
    for unit in LAYER_OF:
        inside = module == unit or (unit not in EXACT and module.startswith(unit + "."))
        if inside and (best is None or len(unit) > len(best)):
            best = unit
    return best


def project_modules() -> dict[str, Path]:
    """Module name -> file, for every ``.py`` under the project's packages."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.stmt) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _import_nodes(tree: ast.Module, module_scope_only: bool) -> list[ast.Import | ast.ImportFrom]:
    """Import statements of a file; with ``module_scope_only``, those run when the module is imported (not in
    function bodies, not under ``if TYPE_CHECKING``)."""
    if not module_scope_only:
        return [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    found, todo = [], list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) or _is_type_checking(node):
            continue
        else:
            todo.extend(n for n in ast.iter_child_nodes(node) if isinstance(n, ast.stmt))
    return found


def imports_of(module: str, path: Path, modules: dict[str, Path], module_scope_only: bool = False
               ) -> list[tuple[str, int]]:
    """``(imported project module, line)`` for every import of the project's packages in ``path``."""
    is_pkg = path.name == "__init__.py"
    out = []
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8")), module_scope_only):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                anchor = parts[: len(parts) - node.level + (1 if is_pkg else 0)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        out += [(t, node.lineno) for t in dict.fromkeys(targets) if t.split(".")[0] in PACKAGES]
    return out


def layer_violations(edges: list[tuple[str, str, str]]) -> list[str]:
    """The edges ``(importer, imported, where)`` that break ``LAYERS``, as readable lines."""
    bad = []
    for src, dst, where in edges:
        us, ud = unit_of(src), unit_of(dst)
        if us is None or ud is None:
            bad.append(f"{where}: {src} -> {dst}: module in no layer (add its unit to LAYERS)")
        elif us != ud and LAYER_OF[ud] >= LAYER_OF[us]:
            bad.append(f"{where}: {src} ({us}) imports {dst} ({ud}), which is not in a lower layer")
    return bad


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


@pytest.fixture(scope="module")
def modules() -> dict[str, Path]:
    return project_modules()


@pytest.fixture(scope="module")
def edges(modules) -> list[tuple[str, str, str]]:
    return [(m, dst, f"{p.relative_to(ROOT)}:{line}")
            for m, p in modules.items() for dst, line in imports_of(m, p, modules)]


def test_the_checker_sees_imports_and_catches_violations(edges):
    assert ("chanmusic.stages.align", "chanmusic.evaluation.metrics") in {(s, d) for s, d, _ in edges}
    assert layer_violations([("encoders.base", "chanmusic.audio", "x")])
    assert not layer_violations([("datamodules.datamodule", "encoders.base", "x")])  # a lower layer
    assert layer_violations([("encoders.base", "datamodules.datamodule", "x")])
    assert not layer_violations([("datamodules.datamodule", "chanmusic.core.electrodes", "x")])
    assert layer_violations([("chanmusic.core.errors", "encoders.base", "x")])  # the bottom imports nothing
    assert layer_violations([("chanmusic.stages.align", "chanmusic.report.plots", "x")])
    assert layer_violations([("chanmusic.results.runs", "chanmusic.cli", "x")])  # evaluation never reaches up
    assert layer_violations([("chanmusic.evaluation.interpret", "chanmusic.report.plots", "x")])  # nor draws
    assert layer_violations([("chanmusic.evaluation.robustness.evaluate", "chanmusic.report.plots", "x")])
    assert not layer_violations([("chanmusic.evaluation.robustness.command", "chanmusic.report.plots", "x")])
    assert layer_violations([("chanmusic.evaluation.metrics", "chanmusic.results.registry", "x")])
    assert not layer_violations([("chanmusic.cli", "chanmusic.results.checkpoint_rule", "x")])
    assert layer_violations([("chanmusic.audio.mel", "chanmusic.modules.losses", "x")])  # a higher layer
    assert layer_violations([("chanmusic.newthing", "encoders.base", "x")])  # in no layer
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_every_module_is_in_a_layer(modules):
    assert [m for m in modules if unit_of(m) is None] == []


def test_encoders_and_datamodules_import_only_the_lower_layers_of_chanmusic(edges):
    """Of ``chanmusic``, the plug-in packages see only the units below ``datamodules`` (core; audio, for prepare)."""
    lower = {u for u in LAYER_OF if u.split(".")[0] == "chanmusic" and LAYER_OF[u] < LAYER_OF["datamodules"]}
    bad = [f"{w}: {s} -> {d}" for s, d, w in edges
           if s.split(".")[0] in ("encoders", "datamodules", "callbacks") and d.split(".")[0] == "chanmusic"
           and unit_of(d) not in lower]
    assert bad == []


def test_imports_follow_the_layers(edges):
    bad = layer_violations(edges)
    assert bad == [], "import rules of docs/architecture.md broken:\n" + "\n".join(bad)


def test_no_import_cycle(modules):
    graph = {m: {d for d, _ in imports_of(m, p, modules, module_scope_only=True) if d != m}
             for m, p in modules.items()}
    assert find_cycle(graph) is None


def test_no_file_over_400_lines(modules):
    long = {str(p.relative_to(ROOT)): n for p in modules.values()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}, f"split these files (over {MAX_LINES} lines): {long}"


def test_one_console_script():
    tomllib = pytest.importorskip("tomllib")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert scripts == {"chanmusic": "chanmusic.cli:main"}


def test_the_map_names_every_source_file(modules):
    """``docs/architecture.md`` names every source file (its path, or its name inside the package's section)."""
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    unnamed = [str(p.relative_to(ROOT)) for p in modules.values() if p.name != "__init__.py"
               and str(p.relative_to(ROOT)) not in doc and p.relative_to(ROOT).name not in doc]
    assert unnamed == [], f"add these to docs/architecture.md: {unnamed}"
