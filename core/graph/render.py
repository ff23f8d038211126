"""Render a flow's graph for people and tools: text, Mermaid, Graphviz dot, JSON or SVG.

Steps appear in topological order (``FlowGraph.sorted_nodes``). Used by ``flow show``, the
notebook's displays and the run report (SVG: :mod:`flowkernel.graph.svg`).
"""

from __future__ import annotations

import json

from flowkernel.graph.model import FlowGraph, Node
from flowkernel.graph.svg import graph_svg

FORMATS = ("text", "mermaid", "dot", "json", "svg")


def render_graph(graph: FlowGraph, fmt: str) -> str:
    """The graph as a string in ``fmt`` (one of :data:`FORMATS`).

    :raises ValueError: for an unknown format.
    """
    renderers = {"text": _text, "mermaid": _mermaid, "dot": _dot, "json": _json, "svg": graph_svg}
    if fmt not in renderers:
        raise ValueError(f"unknown graph format '{fmt}'; choose one of {', '.join(FORMATS)}")
    return renderers[fmt](graph)


def _ordered(graph: FlowGraph) -> list[Node]:
    names = list(graph.sorted_nodes) + [n for n in graph.nodes if n not in graph.sorted_nodes]
    return [graph.nodes[n] for n in names if n in graph.nodes]


def _edge_labels(node: Node) -> list[tuple[str, str]]:
    """``(target, label)`` for each outgoing edge; the label is empty for a plain edge."""
    if node.type == "split-switch":
        by_target: dict[str, list[str]] = {}
        for key, target in node.switch_cases:
            by_target.setdefault(target, []).append(str(key))
        return [(t, " | ".join(keys)) for t, keys in by_target.items()]
    if node.type == "foreach" and node.out_funcs:
        if node.num_parallel is not None:
            label = f"num_parallel={node.num_parallel}"
        else:
            label = f"foreach {node.foreach_param or '?'}"
        return [(node.out_funcs[0], label)]
    return [(t, "") for t in node.out_funcs]


def _text(graph: FlowGraph) -> str:
    out: list[str] = []
    if graph.doc:
        out += [graph.doc, ""]
    for node in _ordered(graph):
        out += [f"@{d}" for d in node.decorators]
        out.append(f"Step {node.name}")
        doc = node.doc or "?"
        out += ["    " + line if line else "" for line in doc.splitlines()]
        edges = _edge_labels(node)
        if edges:
            if node.type == "split-switch":
                targets = ", ".join(f"{t} (if {node.condition} is {k})" for t, k in edges)
            else:
                targets = ", ".join(t + (f" ({label})" if label else "") for t, label in edges)
            out.append(f"    => {targets}")
        out.append("")
    return "\n".join(out).rstrip("\n")


def _mermaid_label(text: str) -> str:
    return text.replace('"', "#quot;")


def _mermaid(graph: FlowGraph) -> str:
    shapes = {
        "start": ('(["', '"])'),
        "end": ('(["', '"])'),
        "split": ('{{"', '"}}'),
        "foreach": ('{{"', '"}}'),
        "split-switch": ('{"', '"}'),
    }
    out = ["flowchart TD"]
    for node in _ordered(graph):
        left, right = shapes.get(node.type, ('["', '"]'))
        out.append(f"    {_mermaid_id(node.name)}{left}{_mermaid_label(node.name)}{right}")
    for node in _ordered(graph):
        for target, label in _edge_labels(node):
            arrow = f'-->|"{_mermaid_label(label)}"|' if label else "-->"
            out.append(f"    {_mermaid_id(node.name)} {arrow} {_mermaid_id(target)}")
    return "\n".join(out)


def _mermaid_id(name: str) -> str:
    # "end" and a few other words are Mermaid keywords: prefix every id
    return f"step_{name}"


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot(graph: FlowGraph) -> str:
    shapes = {
        "start": "ellipse",
        "end": "ellipse",
        "split": "trapezium",
        "foreach": "trapezium",
        "split-switch": "diamond",
        "join": "invtrapezium",
    }
    out = [f"digraph {_dot_quote(graph.flow_name)} {{", "    rankdir=TB;", "    node [shape=box];"]
    for node in _ordered(graph):
        attrs = f"shape={shapes.get(node.type, 'box')}"
        if node.doc:
            attrs += f", tooltip={_dot_quote(node.doc.splitlines()[0])}"
        out.append(f"    {_dot_quote(node.name)} [{attrs}];")
    for node in _ordered(graph):
        for target, label in _edge_labels(node):
            extra = f" [label={_dot_quote(label)}]" if label else ""
            out.append(f"    {_dot_quote(node.name)} -> {_dot_quote(target)}{extra};")
    out.append("}")
    return "\n".join(out)


def _json(graph: FlowGraph) -> str:
    return json.dumps(graph.to_dict(), indent=2)
