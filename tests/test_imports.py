"""Import structure: no cycles in ``zepad_bench`` or ``zepad_bench_plugins`` (no module imports from a
module that imports it back, directly or through others), and plugins import the contract, not the
machinery that runs them.

Every import statement counts, wherever it is: at module level, inside a function (a deferred import
hides a cycle, it does not remove it) and under ``if TYPE_CHECKING:`` — an annotation that names a
class of another module is a dependency on that module's layer, so a type-only import back is a
cycle too. ``from package import name`` is an edge to ``package.name`` when that is a module, else to
the package itself (its ``__init__``); importing ``a.b`` is not counted as importing ``a``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import zepad_bench
import zepad_bench_plugins

PACKAGES = {
    "zepad_bench": Path(zepad_bench.__file__).parent,
    "zepad_bench_plugins": Path(zepad_bench_plugins.__file__).parent,
}


def modules() -> dict[str, Path]:
    """Module name → file, for every ``.py`` file of both packages."""
    found = {}
    for package, root in PACKAGES.items():
        for path in sorted(root.rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ``known`` that ``name`` (at ``path``) imports anywhere in its file."""
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = name if is_package else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{node.module}" if node.module else package
            else:
                base = node.module or ""
            for alias in node.names:
                targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {t for t in targets if t in known and t != name}


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan), as a path a → … → a."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_path_through(graph, set(c)) for c in components]


def _path_through(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle from the component's first module back to itself (breadth first)."""
    start = min(component)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start] if v != start else [start, start]
                if w not in parents:
                    parents[w] = v
                    following.append(w)
        frontier = following
    raise AssertionError(f"no cycle through {start}")


def test_the_cycle_finder_finds_a_cycle_hidden_in_a_function_and_under_type_checking(tmp_path, monkeypatch):
    package = tmp_path / "zb_cycle_demo"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from zb_cycle_demo.b import g\n")
    (package / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\ndef g(): ...\n"
    )
    (package / "c.py").write_text("from zb_cycle_demo import a\n")
    monkeypatch.setitem(PACKAGES, "zb_cycle_demo", package)
    graph = import_graph()
    assert graph["zb_cycle_demo.a"] == {"zb_cycle_demo.b"} and graph["zb_cycle_demo.c"] == {"zb_cycle_demo.a"}
    assert ["zb_cycle_demo.a", "zb_cycle_demo.b", "zb_cycle_demo.a"] in cycles(graph)


def test_no_module_imports_a_module_that_imports_it_back():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" → ".join(c) for c in found)


RUN_MACHINERY = {
    f"zepad_bench.{name}"
    for name in (
        "registry", "runner", "stages", "stage_cache", "stage_codecs", "branch_stages", "attacked_images",
        "cell_row", "executors", "cli", "suite", "loading", "store", "cache", "locks", "zoo", "testing",
        "listing", "reports", "reference", "download", "plugin_failures",
    )
}  # fmt: skip
"""Host modules (and packages: their modules too) that load, schedule, run or report plugins: a plugin
that imports one depends on how it is run, not on the contract (``interfaces``, ``context``, ``nn``,
``data``, ``metrics``, …)."""


def machinery(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in RUN_MACHINERY)


def test_plugins_import_the_contract_not_the_machinery_that_runs_them():
    known = modules()
    found = []
    for name, path in known.items():
        if not name.startswith("zepad_bench_plugins"):
            continue
        for target in sorted(t for t in imports(name, path, known) if machinery(t)):
            found.append(f"{name} imports {target}")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "zepad_bench":
                found += [
                    f"{name} imports zepad_bench.load_registry"
                    for a in node.names
                    if a.name == "load_registry"
                ]
    assert not found, "\n".join(found)
