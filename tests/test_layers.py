"""core/ is layered: imports point down, and no two modules import each other, directly or
through others, counting imports inside functions (they run too, only later).

The upward calls that Metaflow's user API requires stay, as the named exceptions below; any
other cycle fails here with the modules that form it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent / "core"

# (importer, imported): the only upward imports allowed.
ALLOWED_UPWARD = {
    # `FlowSpec()` in `if __name__ == "__main__"` starts the command line (`python flow.py run`).
    ("flowkernel.flow.flowspec", "flowkernel.cli.main"),
    # `current.run` / `current.task` inside a step build client objects.
    ("flowkernel.flow.current", "flowkernel.client"),
    # `flow._graph` on a flow the kernel has not built a graph for yet asks the installed graph
    # builder (Metaflow's graph navigation, `for step in flow`).
    ("flowkernel.flow.flowspec", "flowkernel.kernel"),
    # a root with a URL scheme asks the installed storage backends for one (a client in a
    # notebook has no kernel of its own yet)
    ("flowkernel.storage.backend", "flowkernel.kernel"),
}

# Which layer each subpackage or top-level module belongs to; a module imports only from its own
# layer or the ones below it (smaller numbers). The kernel facade sits above what it composes
# (``Kernel.run`` runs a flow in-process through the runner layer).
LAYERS = {
    "errors": 0,
    "exception": 0,
    "unbounded_foreach": 0,
    "not_provided": 0,
    "specs": 0,
    "startup": 0,
    "hookspecs": 1,
    "entrypoints": 1,
    "storage": 1,
    "flow": 2,
    "graph": 2,
    "datastore": 2,
    "engine": 3,
    "client": 4,
    "runner": 5,
    "kernel": 6,
    "builtins": 6,
    "cli": 7,
    # Deployer reads the deployer registry (kernel) and drives commands (runner): a front-end
    "deployer": 7,
    # a deployer plugin's command scaffolding (click group, attribute file, describe/list)
    "deployer_commands": 7,
    "testing": 8,
    "testing_s3": 8,
    "testing_procs": 8,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(CORE).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(("flowkernel", *parts))


def core_modules() -> dict[str, Path]:
    return {module_name(p): p for p in CORE.rglob("*.py")}


def _type_checking_only(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name | ast.Attribute) and "TYPE_CHECKING" in ast.unparse(
        node.test
    )


def _imports(tree: ast.AST) -> list[tuple[str, list[str]]]:
    """(module, names) of every import statement that runs, at any depth."""
    found: list[tuple[str, list[str]]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [alias.name for alias in node.names]))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _lazy_names() -> dict[str, str]:
    """``flowkernel.NAME`` -> the module that defines it (the package's PEP 562 table)."""
    import flowkernel

    return dict(flowkernel._LAZY)


def _ancestors(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:depth]) for depth in range(1, len(parts))}


def _allowed(importer: str, imported: str) -> bool:
    return any(
        importer == a and (imported == b or imported in _ancestors(b)) for a, b in ALLOWED_UPWARD
    )


def import_graph() -> dict[str, set[str]]:
    modules = core_modules()
    lazy = _lazy_names()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target, names in _imports(ast.parse(path.read_text())):
            if not target.startswith("flowkernel"):
                continue
            hits = {f"{target}.{n}" for n in names if f"{target}.{n}" in modules}
            if target == "flowkernel":
                hits |= {lazy[n] for n in names if n in lazy}
            elif target in modules:
                hits.add(target)
            for hit in hits:
                # importing a.b.c runs the __init__ of a.b too (unless the importer is inside a.b)
                parts = hit.split(".")
                for depth in range(2, len(parts) + 1):
                    graph[name].add(".".join(parts[:depth]))
        graph[name] -= {name, *_ancestors(name)}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_the_checks_find_a_cycle_and_an_upward_import() -> None:
    graph = {"flowkernel.a": {"flowkernel.b"}, "flowkernel.b": {"flowkernel.c"}}
    assert cycles(graph) == []
    graph["flowkernel.c"] = {"flowkernel.a"}
    assert cycles(graph) == [["flowkernel.a", "flowkernel.b", "flowkernel.c"]]


def test_the_graph_sees_imports_inside_functions() -> None:
    graph = import_graph()
    # kernel.py imports the built-in plugin inside a function
    assert "flowkernel.builtins" in graph["flowkernel.kernel"]
    assert ("flowkernel.flow.flowspec", "flowkernel.cli.main") in {
        (a, b) for a in graph for b in graph[a]
    }


def test_no_import_cycles_but_the_named_exceptions() -> None:
    graph = import_graph()
    for importer, imported in ALLOWED_UPWARD:
        assert imported in graph[importer], f"stale exception: {importer} -> {imported}"
    allowed_only = {a: {b for b in targets if not _allowed(a, b)} for a, targets in graph.items()}
    assert cycles(allowed_only) == []


def test_imports_point_down_the_layers() -> None:
    graph = import_graph()
    upward = sorted(
        (a, b)
        for a, targets in graph.items()
        for b in targets
        if not _allowed(a, b)
        and _layer(a) is not None
        and _layer(b) is not None
        and _layer(b) > _layer(a)
    )
    assert upward == []


@pytest.mark.parametrize("package", ["flow", "graph", "engine", "client", "runner", "cli"])
def test_every_layer_is_a_package(package: str) -> None:
    assert (CORE / package / "__init__.py").is_file()


def test_every_top_level_module_has_a_layer() -> None:
    names = {p.stem for p in CORE.glob("*.py")} | {p.name for p in CORE.iterdir() if p.is_dir()}
    names -= {"__init__", "__pycache__"}
    assert sorted(names - set(LAYERS)) == []
