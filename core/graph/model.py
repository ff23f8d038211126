"""The flow graph model: what a graph builder plugin produces and everything else reads.

A graph builder (``flowkernel_build_graph``) turns a FlowSpec subclass into a :class:`FlowGraph`.
Parse-level trouble (a step without a tail ``self.next``, a malformed call) is recorded on the node
(``transition_error``) rather than raised, so that ``flow check`` can report every problem at once;
:func:`flowkernel.graph.lint.check_flow` turns the graph into a list of :class:`GraphProblem`.
"""

from __future__ import annotations

from typing import Any

import attrs

#: Node types, as Metaflow names them.
NODE_TYPES = ("start", "linear", "split", "foreach", "split-switch", "join", "end")


@attrs.frozen
class GraphProblem:
    """One validation finding: which rule, where, and how to fix it."""

    rule: str  #: short rule id, e.g. "unknown-target"
    message: str  #: plain-words description
    file: str | None = None
    line: int | None = None
    step: str | None = None
    hint: str | None = None

    def format(self) -> str:
        """Render as ``file:line: step 'x': message (rule)`` plus an indented hint."""
        where = f"{self.file or '<unknown file>'}:{self.line or '?'}"
        step = f" step '{self.step}':" if self.step else ""
        text = f"{where}:{step} {self.message} [{self.rule}]"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text


@attrs.frozen
class Node:
    """One step of the flow.

    ``out_funcs`` are the static successors in source order (switch: the case values in dict
    order). ``in_funcs`` are the steps whose ``self.next`` names this one (sorted).
    ``split_parents`` is the stack of enclosing split/foreach step names (outermost first).
    ``matching_join`` is set on split/foreach nodes: the join that closes them.
    """

    name: str
    type: str
    func_lineno: int  #: line of the ``def`` (first decorator line if decorated)
    source_file: str | None
    doc: str = ""
    num_args: int = 1
    out_funcs: tuple[str, ...] = ()
    in_funcs: tuple[str, ...] = ()
    next_lineno: int | None = None  #: line of the tail ``self.next`` call, if any
    has_tail_next: bool = False
    transition_error: str | None = None  #: why the tail ``self.next`` is malformed, if it is
    foreach_param: str | None = None
    num_parallel: int | str | None = None
    condition: str | None = None
    switch_cases: tuple[tuple[Any, str], ...] = ()
    matching_join: str | None = None
    split_parents: tuple[str, ...] = ()
    #: for each enclosing split/foreach (as in ``split_parents``), the branch this node is on:
    #: the first step after that split on the way here (a join: one fewer, the closed split's)
    split_branches: tuple[str, ...] = ()
    is_inside_foreach: bool = False
    decorators: tuple[str, ...] = ()  #: names of step decorators, outermost first
    parallel_step: bool = False
    is_start_annotated: bool = False
    is_end_annotated: bool = False
    def_lineno: int | None = None  #: line of the ``def`` itself (after any decorators)

    @property
    def is_recursive_switch(self) -> bool:
        """A switch whose cases include the step itself (a loop)."""
        return self.type == "split-switch" and self.name in self.out_funcs

    @property
    def is_parallel_split(self) -> bool:
        return self.type == "foreach" and self.num_parallel is not None

    # Metaflow's names for the same facts (flow._graph[name].<attr>)
    @property
    def parallel_foreach(self) -> bool:
        return self.is_parallel_split

    @property
    def tail_next_lineno(self) -> int | None:
        return self.next_lineno

    @property
    def invalid_tail_next(self) -> bool:
        return self.transition_error is not None


@attrs.frozen
class FlowGraph:
    """The whole graph. ``nodes`` keeps definition order; ``sorted_nodes`` is topological."""

    flow_name: str
    source_file: str | None
    nodes: dict[str, Node] = attrs.field(eq=False)
    start: str | None
    end: str | None
    sorted_nodes: tuple[str, ...] = ()
    doc: str = ""
    class_lineno: int | None = None
    #: problems the builder found that do not belong to one node's transition
    problems: tuple[GraphProblem, ...] = ()

    @property
    def name(self) -> str:
        """The flow's name (Metaflow's ``graph.name``)."""
        return self.flow_name

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def __contains__(self, name: object) -> bool:
        return name in self.nodes

    def __iter__(self):
        return iter(self.nodes.values())

    def downstream_of(self, name: str) -> set[str]:
        """``name`` plus every step reachable from it (used by resume)."""
        seen: set[str] = set()
        stack = [name]
        while stack:
            cur = stack.pop()
            if cur in seen or cur not in self.nodes:
                continue
            seen.add(cur)
            stack.extend(self.nodes[cur].out_funcs)
        return seen

    @classmethod
    def from_dict(cls, info: dict[str, Any]) -> FlowGraph:
        """The graph a run stored (:meth:`to_dict`), for drawing it: names, types, edges,
        foreach and switch details; switch case values come back as strings."""
        steps = info.get("steps") or {}
        nodes = {
            name: Node(
                name=name,
                type=d.get("type", "linear"),
                func_lineno=d.get("line") or 0,
                source_file=d.get("source_file"),
                doc=d.get("doc") or "",
                out_funcs=tuple(d.get("next") or ()),
                in_funcs=tuple(d.get("in_funcs") or ()),
                foreach_param=d.get("foreach_artifact"),
                num_parallel=d.get("num_parallel"),
                condition=d.get("condition"),
                switch_cases=tuple((d.get("switch_cases") or {}).items()),
                matching_join=d.get("matching_join"),
                decorators=tuple(d.get("decorators") or ()),
            )
            for name, d in steps.items()
        }
        return cls(
            flow_name=info.get("flow_name", ""),
            source_file=info.get("file"),
            nodes=nodes,
            start=info.get("start_step"),
            end=info.get("end_step"),
            sorted_nodes=tuple(n for n in info.get("sorted_steps") or () if n in nodes),
            doc=info.get("doc") or "",
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (stored with every run as ``_graph_info``)."""
        steps = {}
        for n in self.nodes.values():
            d: dict[str, Any] = {
                "name": n.name,
                "type": n.type,
                "line": n.func_lineno,
                "source_file": n.source_file,
                "doc": n.doc,
                "decorators": list(n.decorators),
                "next": list(n.out_funcs),
                "in_funcs": list(n.in_funcs),
            }
            if n.foreach_param is not None:
                d["foreach_artifact"] = n.foreach_param
            if n.num_parallel is not None:
                d["num_parallel"] = n.num_parallel
            if n.type == "split-switch":
                d["condition"] = n.condition
                d["switch_cases"] = {str(k): v for k, v in n.switch_cases}
            if n.matching_join:
                d["matching_join"] = n.matching_join
            steps[n.name] = d
        return {
            "flow_name": self.flow_name,
            "file": self.source_file,
            "start_step": self.start,
            "end_step": self.end,
            "doc": self.doc,
            "steps": steps,
            "sorted_steps": list(self.sorted_nodes),
        }
