"""A flow's graph as a self-contained SVG (``render_graph(graph, "svg")``): it shows in any
notebook front end (VS Code included, which renders no Mermaid) and in a report page, with no
layout engine to install.

Layout: steps in rows by depth (a step sits one row below its lowest predecessor in the graph's
topological order), each row centred; edges are straight arrows, except edges back up the graph
(recursive switches), drawn as dashed curves on the right. Each step is a ``<g class="node"
data-step="NAME">`` and each edge has ``class="edge"``; a caller may give each step its own
colours, a second line, a tooltip and ``data-*`` attributes (:class:`StepLook`).
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape

import attrs

from flowkernel.graph.model import FlowGraph, Node

ROW, GAP, MARGIN = 64, 24, 16
HEIGHT, NOTE_HEIGHT = 30, 44  # a box, and a box with a second line
CHAR = 7.5  # average glyph width of the 13px font, for box widths
BACK = 80  # room on the right for back edges and their labels
FILLS = {"start": "#dbeafe", "end": "#dbeafe", "join": "#fef3c7"}
SPLITS = ("split", "foreach", "split-switch")


@attrs.frozen
class StepLook:
    """How one step's box looks.

    :param fill: the box's colour (None: by step type).
    :param stroke: the outline's colour.
    :param fill_opacity: the fill's opacity.
    :param note: a second, smaller line under the step's name.
    :param tooltip: the box's ``<title>``.
    :param data: ``data-NAME`` attributes of the step's ``<g>`` (``{"status": "ok"}``).
    """

    fill: str | None = None
    stroke: str = "#555"
    fill_opacity: float = 1.0
    note: str = ""
    tooltip: str = ""
    data: dict[str, str] = attrs.field(factory=dict, hash=False)


def graph_svg(
    graph: FlowGraph,
    look: Callable[[Node], StepLook] | None = None,
    element_id: str | None = None,
) -> str:
    """The SVG document for ``graph``; ``look(node)`` styles each step, ``element_id`` is the
    ``id`` of the ``<svg>`` element."""
    order = list(graph.sorted_nodes) + [n for n in graph.nodes if n not in graph.sorted_nodes]
    looks = {name: (look or _default_look)(graph.nodes[name]) for name in order}
    height = NOTE_HEIGHT if any(lk.note for lk in looks.values()) else HEIGHT
    depth = _depths(graph, order)
    rows: dict[int, list[str]] = {}
    for name in order:
        rows.setdefault(depth[name], []).append(name)
    width = {
        name: max(60.0, max(len(name), len(looks[name].note) * 0.85) * CHAR + 24) for name in order
    }
    row_width = {
        d: sum(width[n] for n in names) + GAP * (len(names) - 1) for d, names in rows.items()
    }
    total = max(row_width.values(), default=0) + 2 * MARGIN + BACK
    box: dict[str, tuple[float, float]] = {}  # name -> (left, top)
    for d, names in rows.items():
        x = MARGIN + (total - BACK - 2 * MARGIN - row_width[d]) / 2
        for name in names:
            box[name] = (x, MARGIN + d * (ROW + height - HEIGHT))
            x += width[name] + GAP
    full = MARGIN * 2 + max(rows, default=0) * (ROW + height - HEIGHT) + height
    ident = f' id="{escape(element_id)}"' if element_id else ""
    parts = [
        f'<svg{ident} xmlns="http://www.w3.org/2000/svg" width="{total:.0f}" '
        f'height="{full:.0f}" viewBox="0 0 {total:.0f} {full:.0f}" role="img" '
        f'aria-label="graph of {escape(graph.flow_name)}" font-family="sans-serif" '
        'font-size="13">',
        f"<title>{escape(graph.flow_name)}</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#555"/></marker></defs>',
    ]
    geometry = _Geometry(box, width, height, total)
    for name in order:
        labels = _labels(graph.nodes[name])
        for target in graph.nodes[name].out_funcs:
            if target in box:
                parts.append(geometry.edge(name, target, labels.get(target, "")))
    for name in order:
        parts.append(_box(graph, graph.nodes[name], looks[name], geometry))
    parts.append("</svg>")
    return "\n".join(parts)


def _default_look(node: Node) -> StepLook:
    return StepLook()


def _depths(graph: FlowGraph, order: list[str]) -> dict[str, int]:
    """Each step's row: one below its lowest predecessor that comes earlier in ``order``."""
    index = {name: i for i, name in enumerate(order)}
    depth: dict[str, int] = {}
    for name in order:
        parents = [p for p in graph.nodes[name].in_funcs if index.get(p, 1 << 30) < index[name]]
        depth[name] = 1 + max((depth[p] for p in parents if p in depth), default=-1)
    return depth


def _box(graph: FlowGraph, node: Node, look: StepLook, geometry: _Geometry) -> str:
    left, top = geometry.box[node.name]
    box_width = geometry.width[node.name]
    ends = node.name in (graph.start, graph.end)
    fill = look.fill or FILLS.get(
        "start" if ends else node.type, "#ede9fe" if node.type in SPLITS else "#f3f4f6"
    )
    data = "".join(f' data-{key}="{escape(value)}"' for key, value in look.data.items())
    opacity = f' fill-opacity="{look.fill_opacity}"' if look.fill_opacity != 1.0 else ""
    centre = left + box_width / 2
    text = f'<text x="{centre:.1f}" y="{top + 19}" text-anchor="middle">{escape(node.name)}</text>'
    if look.note:
        text += (
            f'<text x="{centre:.1f}" y="{top + 35}" text-anchor="middle" font-size="11" '
            f'fill="#4b5563">{escape(look.note)}</text>'
        )
    tooltip = f"<title>{escape(look.tooltip)}</title>" if look.tooltip else ""
    return (
        f'<g class="node" data-step="{escape(node.name)}"{data}>{tooltip}'
        f'<rect x="{left:.1f}" y="{top}" width="{box_width:.1f}" height="{geometry.height}" '
        f'rx="{15 if ends else 4}" fill="{fill}"{opacity} stroke="{look.stroke}"/>{text}</g>'
    )


def _labels(node: Node) -> dict[str, str]:
    """Edge labels by target: the foreach variable, or a switch's case values."""
    if node.type == "foreach" and node.out_funcs:
        return {node.out_funcs[0]: f"foreach {node.foreach_param or ''}".strip()}
    labels: dict[str, list[str]] = {}
    for value, target in node.switch_cases:
        labels.setdefault(target, []).append(str(value))
    return {t: " | ".join(values) for t, values in labels.items()}


@attrs.frozen
class _Geometry:
    box: dict[str, tuple[float, float]]
    width: dict[str, float]
    height: float
    total: float

    def edge(self, source: str, target: str, label: str) -> str:
        (sx, sy), (tx, ty) = self.box[source], self.box[target]
        text = ""
        if ty > sy:  # downwards: bottom centre to top centre
            x1, y1 = sx + self.width[source] / 2, sy + self.height
            x2, y2 = tx + self.width[target] / 2, ty
            if label:
                text = _text((x1 + x2) / 2 + 6, (y1 + y2) / 2 + 4, label)
            return (
                f'<line class="edge" x1="{x1:.1f}" y1="{y1}" x2="{x2:.1f}" y2="{y2}" '
                f'stroke="#555" marker-end="url(#arrow)"/>{text}'
            )
        x1, y1 = sx + self.width[source], sy + self.height / 2
        x2, y2 = tx + self.width[target], ty + self.height / 2
        if source == target:  # a step that loops on itself: a loop on its right
            y1, y2, bend = y1 - 7, y2 + 7, x1 + 28
        else:  # back up the graph: around the right-hand side
            bend = self.total - 12
        if label:
            text = _text(bend - 2, (y1 + y2) / 2 + 4, label)
        c1, c2 = (y1 - 10, y2 + 10) if source == target else (y1, y2)
        return (
            f'<path class="edge" d="M{x1:.1f},{y1} C{bend:.1f},{c1} {bend:.1f},{c2} '
            f'{x2:.1f},{y2}" fill="none" stroke="#555" stroke-dasharray="4 3" '
            f'marker-end="url(#arrow)"/>{text}'
        )


def _text(x: float, y: float, label: str) -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" font-size="11" fill="#555">{escape(label)}</text>'
