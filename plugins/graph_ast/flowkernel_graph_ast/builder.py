"""Assemble a :class:`~flowkernel.graph.model.FlowGraph` from the parsed steps of a flow class.

Resolves the start and end steps, types every node, then walks the graph from the start to
compute the split stacks, the joins that close each split and a topological order. A graph
that is not valid still builds: :mod:`flowkernel.graph.lint` reports what is wrong with it.
"""

from __future__ import annotations

import linecache
import re
import sys
from typing import Any

import attrs

from flowkernel.graph.model import FlowGraph, GraphProblem, Node
from flowkernel_graph_ast.parser import ParsedStep, parse_step


def build_graph(flow_cls: type) -> FlowGraph:
    """The graph of ``flow_cls`` (built even when the flow is not valid)."""
    funcs = _step_functions(flow_cls)
    parsed = {name: parse_step(name, func) for name, func in funcs.items()}
    start = _resolve(funcs, "is_start", "start")
    end = _resolve(funcs, "is_end", "end")
    if len(funcs) == 1:
        start = end = next(iter(funcs))
    source_file = _flow_file(flow_cls, funcs, parsed)
    class_lineno = _class_lineno(flow_cls, source_file, parsed)
    problems = [
        GraphProblem(
            rule="source-unavailable",
            message=p.source_error,
            file=p.source_file,
            line=p.func_lineno,
            step=p.name,
            hint="define the flow in a .py file or a notebook cell so its source can be read",
        )
        for p in parsed.values()
        if p.source_error
    ]
    nodes = {
        name: _node(p, funcs[name], _node_type(p, name, start, end, len(funcs)))
        for name, p in parsed.items()
    }
    nodes, order = _traverse(nodes, start)
    return FlowGraph(
        flow_name=flow_cls.__name__,
        source_file=source_file,
        nodes=nodes,
        start=start,
        end=end,
        sorted_nodes=tuple(order),
        doc=_flow_doc(flow_cls),
        class_lineno=class_lineno,
        problems=tuple(problems),
    )


def _step_functions(flow_cls: type) -> dict[str, Any]:
    """Step functions by name, base-class steps first, each class in definition order."""
    steps = {}
    for name in dir(flow_cls):
        try:
            value = getattr(flow_cls, name)
        except Exception:  # a class attribute whose descriptor misbehaves is not a step
            continue
        if callable(value) and getattr(value, "is_step", False) is True:
            steps[name] = value
    ordered: dict[str, Any] = {}
    for klass in reversed(flow_cls.__mro__):
        for attr in vars(klass):
            if attr in steps and attr not in ordered:
                ordered[attr] = steps[attr]
    return ordered


def _resolve(funcs: dict[str, Any], flag: str, legacy: str) -> str | None:
    annotated = [n for n, f in funcs.items() if getattr(f, flag, False)]
    if len(annotated) == 1:
        return annotated[0]
    return legacy if legacy in funcs else None


def _node_type(p: ParsedStep, name: str, start: str | None, end: str | None, count: int) -> str:
    if name == end or count == 1:
        return "end"
    kind = p.kind
    if kind == "linear" and p.num_args > 1 and p.has_tail_next and p.out_funcs:
        kind = "join"
    if kind == "linear" and name == start:
        kind = "start"
    return kind


def _node(p: ParsedStep, func: Any, node_type: str) -> Node:
    decorators = tuple(d.name for d in getattr(func, "decorators", ()))
    return Node(
        name=p.name,
        type=node_type,
        func_lineno=p.func_lineno,
        def_lineno=p.def_lineno,
        source_file=p.source_file,
        doc=p.doc,
        num_args=p.num_args,
        out_funcs=tuple(p.out_funcs),
        next_lineno=p.next_lineno,
        has_tail_next=p.has_tail_next,
        transition_error=p.transition_error,
        foreach_param=p.foreach_param,
        num_parallel=p.num_parallel,
        condition=p.condition,
        switch_cases=tuple(p.switch_cases),
        decorators=decorators,
        parallel_step="parallel" in decorators,
        is_start_annotated=bool(getattr(func, "is_start", False)),
        is_end_annotated=bool(getattr(func, "is_end", False)),
    )


def _traverse(nodes: dict[str, Node], start: str | None) -> tuple[dict[str, Node], list[str]]:
    """Set in_funcs, split_parents, split_branches, matching_join, is_inside_foreach; return a
    topological order.

    Depth-first from the start along known edges, ignoring self-loops (a recursive switch) and
    edges back into the current path; the first path to reach a node decides its split stack.
    A join pops the innermost open split and becomes that split's ``matching_join``.
    """
    in_funcs: dict[str, set[str]] = {name: set() for name in nodes}
    for node in nodes.values():
        for child in node.out_funcs:
            if child in nodes and child != node.name:
                in_funcs[child].add(node.name)
    stacks: dict[str, tuple[str, ...]] = {}
    branches_of: dict[str, tuple[str, ...]] = {}
    matching: dict[str, str] = {}
    postorder: list[str] = []
    done: set[str] = set()

    def visit(
        name: str, stack: tuple[str, ...], branches: tuple[str, ...], path: frozenset[str]
    ) -> None:
        node = nodes[name]
        closes = node.type == "join" and bool(stack)
        if name not in stacks:
            stacks[name] = stack
            branches_of[name] = branches[:-1] if closes else branches
        below, below_branches = stack, branches
        if node.type in ("split", "foreach"):
            below = (*stack, name)
        elif closes:
            matching.setdefault(stack[-1], name)
            below, below_branches = stack[:-1], branches[:-1]
        # children in reverse so that the reversed postorder lists them in source order
        for child in reversed(node.out_funcs):
            if child in nodes and child not in path and child not in done:
                opened = (child,) if node.type in ("split", "foreach") else ()
                visit(child, below, (*below_branches, *opened), path | {child})
        if name not in done:
            done.add(name)
            postorder.append(name)

    if start in nodes:
        sys.setrecursionlimit(max(sys.getrecursionlimit(), 4 * len(nodes) + 1000))
        visit(start, (), (), frozenset({start}))
    order = list(reversed(postorder)) + [n for n in nodes if n not in done]
    updated = {}
    for name, node in nodes.items():
        stack = stacks.get(name, ())
        open_splits = stack[:-1] if node.type == "join" and stack else stack
        updated[name] = attrs.evolve(
            node,
            in_funcs=tuple(sorted(in_funcs[name])),
            split_parents=stack,
            split_branches=branches_of.get(name, ()),
            matching_join=matching.get(name),
            is_inside_foreach=any(p in nodes and nodes[p].type == "foreach" for p in open_splits),
        )
    return updated, order


def _flow_file(flow_cls: type, funcs: dict[str, Any], parsed: dict[str, ParsedStep]) -> str | None:
    """The file that defines the flow class (a notebook cell's pseudo-file name works too)."""
    own = [parsed[n].source_file for n in funcs if n in vars(flow_cls)]
    if own:
        return own[0]
    module = sys.modules.get(flow_cls.__module__)
    path = getattr(module, "__file__", None)
    if path:
        return path
    return next((p.source_file for p in parsed.values()), None)


def _class_lineno(
    flow_cls: type, source_file: str | None, parsed: dict[str, ParsedStep]
) -> int | None:
    """The ``class`` line: searched upwards from the class's first own step."""
    firstlineno = getattr(flow_cls, "__firstlineno__", None)  # Python >= 3.13
    if firstlineno:
        return int(firstlineno)
    if not source_file:
        return None
    lines = linecache.getlines(source_file)
    own = [p.func_lineno for n, p in parsed.items() if n in vars(flow_cls)]
    begin = min(own) if own else len(lines)
    pattern = re.compile(rf"^\s*class\s+{re.escape(flow_cls.__name__)}\b")
    for index in range(min(begin, len(lines)) - 1, -1, -1):
        if pattern.match(lines[index]):
            return index + 1
    return None


def _flow_doc(flow_cls: type) -> str:
    import inspect

    return inspect.cleandoc(flow_cls.__doc__) if flow_cls.__doc__ else ""
