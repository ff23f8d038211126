"""A flow's graph as a self-contained SVG: renders in any notebook front end (VS Code included,
which does not render Mermaid), with no layout engine to install.

Layout: steps in rows by depth (a step sits one row below its lowest predecessor in the graph's
topological order), each row centred; edges are straight arrows, except edges back up the
graph (recursive switches), drawn as curves on the right.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowkernel.graph.model import FlowGraph

ROW, GAP, HEIGHT, MARGIN = 64, 24, 30, 16
CHAR = 7.5  # average glyph width of the 13px font, for box widths
FILLS = {"start": "#dbeafe", "end": "#dbeafe", "join": "#fef3c7"}
SPLITS = ("split", "foreach", "split-switch")


def graph_svg(graph: FlowGraph) -> str:
    """The SVG document for ``graph``."""
    order = list(graph.sorted_nodes) + [n for n in graph.nodes if n not in graph.sorted_nodes]
    index = {name: i for i, name in enumerate(order)}
    depth: dict[str, int] = {}
    for name in order:
        parents = [p for p in graph.nodes[name].in_funcs if index.get(p, 1 << 30) < index[name]]
        depth[name] = 1 + max((depth[p] for p in parents if p in depth), default=-1)
    rows: dict[int, list[str]] = {}
    for name in order:
        rows.setdefault(depth[name], []).append(name)
    width = {name: max(60.0, len(name) * CHAR + 24) for name in order}
    row_width = {
        d: sum(width[n] for n in names) + GAP * (len(names) - 1) for d, names in rows.items()
    }
    total = max(row_width.values(), default=0) + 2 * MARGIN + 80  # room for back edges, labels
    box: dict[str, tuple[float, float]] = {}  # name -> (left, top)
    for d, names in rows.items():
        x = MARGIN + (total - 80 - 2 * MARGIN - row_width[d]) / 2
        for name in names:
            box[name] = (x, MARGIN + d * ROW)
            x += width[name] + GAP
    height = MARGIN * 2 + (max(rows, default=0)) * ROW + HEIGHT
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {total:.0f} {height:.0f}" font-family="sans-serif" font-size="13">',
        f"<title>{escape(graph.flow_name)}</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#555"/></marker></defs>',
    ]
    for name in order:
        labels = _labels(graph.nodes[name])
        for target in graph.nodes[name].out_funcs:
            if target in box:
                parts.append(_edge(box, width, name, target, total, labels.get(target, "")))
    for name in order:
        left, top = box[name]
        node = graph.nodes[name]
        ends = name in (graph.start, graph.end)
        kind = "start" if ends else node.type
        fill = FILLS.get(kind, "#ede9fe" if node.type in SPLITS else "#f3f4f6")
        rx = 15 if ends else 4
        parts.append(
            f'<rect x="{left:.1f}" y="{top}" width="{width[name]:.1f}" height="{HEIGHT}" '
            f'rx="{rx}" fill="{fill}" stroke="#555"/>'
            f'<text x="{left + width[name] / 2:.1f}" y="{top + 19}" text-anchor="middle">'
            f"{escape(name)}</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _labels(node: Any) -> dict[str, str]:
    """Edge labels by target: the foreach variable, or a switch's case values."""
    if node.type == "foreach" and node.out_funcs:
        return {node.out_funcs[0]: f"foreach {node.foreach_param or ''}".strip()}
    labels: dict[str, list[str]] = {}
    for value, target in node.switch_cases:
        labels.setdefault(target, []).append(str(value))
    return {t: " | ".join(values) for t, values in labels.items()}


def _edge(
    box: dict[str, tuple[float, float]],
    width: dict[str, float],
    source: str,
    target: str,
    total: float,
    label: str,
) -> str:
    (sx, sy), (tx, ty) = box[source], box[target]
    text = ""
    if ty > sy:  # downwards: bottom centre to top centre
        x1, y1 = sx + width[source] / 2, sy + HEIGHT
        x2, y2 = tx + width[target] / 2, ty
        if label:
            text = _text((x1 + x2) / 2 + 6, (y1 + y2) / 2 + 4, label)
        return (
            f'<line x1="{x1:.1f}" y1="{y1}" x2="{x2:.1f}" y2="{y2}" stroke="#555" '
            f'marker-end="url(#arrow)"/>{text}'
        )
    x1, y1 = sx + width[source], sy + HEIGHT / 2
    x2, y2 = tx + width[target], ty + HEIGHT / 2
    if source == target:  # a step that loops on itself: a loop on its right
        y1, y2, bend = y1 - 7, y2 + 7, x1 + 28
    else:  # back up the graph: around the right-hand side
        bend = total - 12
    if label:
        text = _text(bend - 2, (y1 + y2) / 2 + 4, label)
    return (
        f'<path d="M{x1:.1f},{y1} C{bend:.1f},{y1 - 10 if source == target else y1} '
        f'{bend:.1f},{y2 + 10 if source == target else y2} {x2:.1f},{y2}" fill="none" '
        f'stroke="#555" stroke-dasharray="4 3" marker-end="url(#arrow)"/>{text}'
    )


def _text(x: float, y: float, label: str) -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" font-size="11" fill="#555">{escape(label)}</text>'
