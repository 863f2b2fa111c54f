"""The package layout: no import cycle between modules, and every import between packages goes down
the layers (`pytest tests/test_layout.py` is the check; it reads the sources, importing nothing).

    lpi_core < claims.storage < claims.statistics < claims.fixtures < claims.records
             < claims.catalogue < claims.running < claims.reporting < claims.exploring < claims (plugin, CLI)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"lpi_core": ROOT / "lpi_core", "claims": ROOT / "claims", "claims.fixtures": ROOT / "fixtures"}
LAYERS = (
    "lpi_core",
    "claims.storage",
    "claims.statistics",
    "claims.fixtures",
    "claims.records",
    "claims.catalogue",
    "claims.running",
    "claims.reporting",
    "claims.exploring",
    "claims",
)


def project_modules() -> dict[str, Path]:
    """Module name -> source file, as the package is installed (fixtures/ is claims.fixtures)."""
    found = {}
    for prefix, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            if prefix == "claims" and path.relative_to(folder).parts[0] == "fixtures":
                continue
            name = ".".join((prefix, *path.relative_to(folder).with_suffix("").parts)).removesuffix(".__init__")
            found[name] = path
    return found


def imported_names(module: str, path: Path) -> set[str]:
    """Every module (or module attribute) the source imports, at any depth, relative imports resolved."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return names


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {m: {n for n in imported_names(m, p) if n in modules and n != m} for m, p in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for child in graph.get(node, ()):
            if child not in index:
                visit(child)
                low[node] = min(low[node], low[child])
            elif child in stack:
                low[node] = min(low[node], index[child])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def layer_of(module: str) -> str:
    """The longest entry of LAYERS that is the module or a package above it."""
    return max((layer for layer in LAYERS if module == layer or module.startswith(layer + ".")), key=len)


def test_the_cycle_finder_finds_a_planted_cycle_and_nothing_else():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_relative_and_function_level_imports():
    graph = import_graph()
    assert "claims.records.provenance" in graph["claims.records.compute"]  # a module-level absolute import
    assert "claims.fixtures.series" in graph["claims.fixtures.hub"]  # a relative one, in fixtures/
    assert "claims.reporting.report" in graph["claims.plugin"]  # one inside a function


def test_no_import_cycle_between_modules():
    assert cycles(import_graph()) == []


def test_every_import_between_packages_goes_down_the_layers():
    upward = [
        f"{module} ({layer_of(module)}) imports {target} ({layer_of(target)})"
        for module, targets in import_graph().items()
        for target in targets
        if LAYERS.index(layer_of(target)) > LAYERS.index(layer_of(module))
    ]
    assert upward == []


def test_every_package_folder_is_installed():
    tomllib = pytest.importorskip("tomllib")
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {m for m, p in project_modules().items() if p.name == "__init__.py"}
    assert listed == folders
