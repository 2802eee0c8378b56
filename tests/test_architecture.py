"""The package's layering, read from its source: no import circle, and imports only go down the layers.

Every ``import`` and ``from … import`` statement counts, those inside functions too: an import deferred into a
function still ties the two modules together (it only moves the failure from import time to call time).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "stellar"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The stellar module that ``name`` (a module or ``module.attribute``) lives in, or None if not ours."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    """Module → the stellar modules it imports (a package's ``__init__`` is its own node)."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*up, base] if base else up)
                targets = [f"{base}.{a.name}" for a in node.names] or [base]
            for t in targets:
                found = _resolve(t, modules)
                if found is not None and found != mod:
                    graph[mod].add(found)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _edges(graph: dict[str, set[str]], src: str, dst: str) -> list[str]:
    def under(m: str, prefix: str) -> bool:
        return m == prefix or m.startswith(prefix + ".")

    return sorted(f"{a} -> {b}" for a, bs in graph.items() if under(a, src) for b in bs if under(b, dst))


GRAPH = import_graph()


def test_the_graph_sees_imports_inside_functions() -> None:
    # the checker itself: a deferred import is an edge like any other
    src = "def f():\n    from stellar.errors import StellarError\n"
    tree = ast.parse(src)
    assert any(isinstance(n, ast.ImportFrom) and n.module == "stellar.errors" for n in ast.walk(tree))
    assert "stellar.errors" in GRAPH["stellar.data.ingest.policy"]


def test_cycle_finder_finds_a_planted_circle() -> None:
    graph = {k: set(v) for k, v in GRAPH.items()}
    graph["stellar.errors"].add("stellar.data.ingest.policy")  # policy imports errors: now a circle
    assert any("stellar.errors" in c for c in cycles(graph))


def test_no_import_circle() -> None:
    assert cycles(GRAPH) == []


@pytest.mark.parametrize(
    ("lower", "upper"),
    [
        ("stellar.serving", "stellar.pipelines"),  # pipelines sit above serving, never the reverse
        ("stellar.models", "stellar.serving"),
        ("stellar.models", "stellar.pipelines"),
        ("stellar.data", "stellar.models"),
        ("stellar.data", "stellar.serving"),
        ("stellar.data", "stellar.pipelines"),
        ("stellar.evaluation", "stellar.serving"),
        ("stellar.evaluation", "stellar.pipelines"),
        ("stellar.data.ingest", "stellar.models"),
        # the monitor's statistics read arrays and reports: the models, registry and server use them, not the reverse
        ("stellar.monitoring", "stellar.models"),
        ("stellar.monitoring", "stellar.registry"),
        ("stellar.monitoring", "stellar.serving"),
        ("stellar.monitoring", "stellar.pipelines"),
        # the scheduled chain calls the pipelines; nothing calls it (Airflow is an optional extra)
        ("stellar.pipelines", "stellar.orchestration"),
        ("stellar.registry", "stellar.orchestration"),
        ("stellar.serving", "stellar.orchestration"),
    ],
)
def test_layers_import_only_downwards(lower: str, upper: str) -> None:
    assert _edges(GRAPH, lower, upper) == []
