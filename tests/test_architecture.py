"""The import graph: no cycles (not even through imports inside functions), and layers that import downwards only.

The layers, top to bottom (``shared/STYLE.md``): the command line, flows, tasks, core services, engines,
the machinery engines run on (runner, environments, GPUs, cache keys), media helpers, the basic modules
(config, script, files, errors) and the bottom vocabulary (timings). A module may import its own layer
(as long as no cycle forms) or any layer below it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("podforge", "flows", "tasks")

LAYERS: list[tuple[str, ...]] = [
    ("podforge", "podforge.timing", "podforge.errors", "podforge.textnorm"),
    ("podforge.config", "podforge.script", "podforge.io", "podforge.output", "podforge.prefect_env", "podforge.training.settings"),
    ("podforge.media",),
    ("podforge.runner", "podforge.workers", "podforge.envs", "podforge.gpu", "podforge.memory", "podforge.caching", "podforge.cost"),
    ("podforge.engines",),
    ("podforge.steps", "podforge.planning", "podforge.preflight", "podforge.dialogue", "podforge.publish", "podforge.publishing", "podforge.manifest", "podforge.report", "podforge.progress", "podforge.doctor", "podforge.qa", "podforge.training"),
    ("tasks",),
    ("flows",),
    ("podforge.prefect_server", "podforge.notifications"),
    ("podforge.cli", "podforge.serve", "podforge.envs_cli", "podforge.training_cli", "podforge.__main__"),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports, anywhere in its body (functions included)."""
    files = {module_name(path): path for package in PACKAGES for path in (REPO / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module)
                imported.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = {target for target in imported if target in files and target != name}
    return graph


def layer_of(module: str) -> int:
    """The layer whose longest matching prefix names ``module``."""
    best, best_length = -1, -1
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_length:
                best, best_length = rank, len(prefix)
    return best


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_has_no_cycles():
    assert cycles(import_graph()) == []


def test_every_module_has_a_layer():
    assert [module for module in import_graph() if layer_of(module) < 0] == []


def test_imports_only_run_downwards():
    upward = [
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in import_graph().items()
        for target in targets
        if layer_of(target) > layer_of(module)
    ]
    assert upward == []


@pytest.mark.parametrize(
    "graph, expected",
    [
        ({"a": {"b"}, "b": {"a"}, "c": set()}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": set()}, []),
    ],
)
def test_the_cycle_finder_finds_cycles(graph, expected):
    assert cycles(graph) == expected
