"""Flow validation: every problem of a flow's graph, with file, line, step and a fix hint.

:func:`check_flow` runs all the rules below and returns every problem it finds (not only the
first), in a stable order: rule by rule as listed in :data:`RULES`, steps in definition order.
Rules that check the shape of the whole graph (reachability, split/join balance) run only once
every step's transition parses and names known steps (and, for the balance, every step takes one
or two arguments), so that one typo does not cascade into a dozen findings; fixing the reported
problems may reveal more of them.
"""

from __future__ import annotations

import inspect
import linecache
import re
from collections.abc import Iterator
from typing import Any

from flowkernel.graph.lint_structure import (
    check_balance,
    check_cycles,
    check_unreachable,
    quote_names,
)
from flowkernel.graph.model import FlowGraph, GraphProblem, Node

#: Every rule id, in the order the rules run, with what it checks.
RULES: dict[str, str] = {
    "source-unavailable": "the source of a step could not be read",
    "reserved-step-name": "a step uses a reserved name (name, next, input, index, cmd)",
    "step-shadows-flowspec": "a step has the name of a FlowSpec method (merge_artifacts, ...)",
    "no-start-step": "no step is the start step",
    "several-start-steps": "more than one step is marked @step(start=True)",
    "no-end-step": "no step is the end step",
    "several-end-steps": "more than one step is marked @step(end=True)",
    "ambiguous-start-end": "a step is marked start/end and another step is named start/end",
    "start-has-parents": "some step transitions into the start step",
    "end-has-next": "the end step calls self.next()",
    "end-is-join": "the end step takes an inputs argument",
    "invalid-step-name": "a step name is not lowercase letters, digits and underscores",
    "too-many-arguments": "a step takes more than self and inputs",
    "join-and-split": "a step takes inputs (a join) and also splits",
    "missing-self-argument": "a step takes no arguments at all",
    "missing-next": "a step other than the end does not end with self.next()",
    "invalid-next": "the tail self.next() call is not one of the supported forms",
    "unknown-target": "self.next() names a step that does not exist",
    "cycle": "the steps form a loop (only a switch may loop to itself)",
    "unreachable-step": "a step cannot be reached from the start step",
    "unjoined-split": "the end is reached while a split's branches are still apart",
    "join-without-split": "a join step has no split before it",
    "join-unrelated-splits": "a join step joins branches of different splits",
    "join-branch-count": "a join step is not reached from every branch of its split",
    "multiple-parents": "a step that is not a join has parents that run in parallel",
    "bad-switch": "a switch has no cases, fewer than two branches or a repeated case",
    "empty-foreach": "a foreach goes straight into a join",
    "num-parallel-needs-parallel": "the target of num_parallel= lacks @parallel",
    "parallel-needs-join": "the step after a @parallel step is not a join",
    "parallel-without-num-parallel": "a @parallel step is reached without num_parallel=",
    "switch-to-join": "a switch case goes straight into a join",
    "bad-parameter": "a Parameter is declared the wrong way",
}

RESERVED_STEP_NAMES = frozenset({"name", "next", "input", "index", "cmd"})
_FLOWSPEC_MODULE = "flowkernel.flow.flowspec"
_STEP_NAME = re.compile(r"^[a-z0-9_]+$")
_NEXT_FORMS = (
    "self.next(self.a) | self.next(self.a, self.b) | self.next(self.a, foreach='items') | "
    "self.next(self.a, num_parallel=4) | self.next({'x': self.a, 'y': self.b}, condition='var')"
)


def check_flow(flow_cls: type, graph: FlowGraph) -> list[GraphProblem]:
    """Every validation problem of ``flow_cls`` whose graph is ``graph`` (empty when valid)."""
    lint = Linter(graph, flow_cls)
    problems = list(graph.problems)
    for check in (
        _reserved_names,
        _flowspec_names,
        _start_end,
        _start_end_edges,
        _step_names,
        _arguments,
        _transitions,
        check_cycles,
    ):
        problems += check(lint)
    if lint.edges_complete and not lint.has_cycle:
        problems += check_unreachable(lint)
        if lint.roles_known:
            problems += check_balance(lint)
    if not (lint.edges_complete and not lint.has_cycle and lint.roles_known):
        problems += _joins_without_inputs(lint)  # what check_balance would have found
    for check in (_switches, _foreaches, _parallel, _switch_to_join):
        problems += check(lint)
    problems += _parameters(flow_cls, graph)
    return problems


class Linter:
    """The graph plus helpers shared by the rules."""

    def __init__(self, graph: FlowGraph, flow_cls: type | None = None):
        self.graph = graph
        self.flow_cls = flow_cls
        self.nodes = graph.nodes
        self.has_cycle = False
        self.edges_complete = not graph.problems and all(
            (n.has_tail_next or n.name == graph.end)
            and not n.transition_error
            and all(t in self.nodes for t in n.out_funcs)
            for n in self.nodes.values()
        )
        # whether a step with 0 or 3+ arguments was meant to be a join is anyone's guess
        self.roles_known = all(0 < n.num_args <= 2 for n in self.nodes.values())

    def problem(
        self, rule: str, node: Node | None, message: str, hint: str, line: int | None = None
    ) -> GraphProblem:
        if line is None:
            line = (node.def_lineno or node.func_lineno) if node else self.graph.class_lineno
        return GraphProblem(
            rule=rule,
            message=message,
            file=(node.source_file if node else None) or self.graph.source_file,
            line=line,
            step=node.name if node else None,
            hint=hint,
        )

    def plain_method_line(self, name: str) -> int | None:
        """The line of ``name`` when the flow defines it as a method that is not a step."""
        func = getattr(self.flow_cls, name, None) if self.flow_cls else None
        if not inspect.isfunction(func) or name in self.nodes:
            return None
        try:
            return inspect.getsourcelines(func)[1]
        except (OSError, TypeError):
            return None

    def next_line(self, node: Node) -> int | None:
        return node.next_lineno or node.def_lineno or node.func_lineno

    def children(self, node: Node) -> list[Node]:
        """Known successors, a switch's loop to itself left out."""
        return [self.nodes[t] for t in node.out_funcs if t in self.nodes and t != node.name]


def _reserved_names(lint: Linter) -> Iterator[GraphProblem]:
    for node in lint.nodes.values():
        if node.name in RESERVED_STEP_NAMES:
            yield lint.problem(
                "reserved-step-name",
                node,
                f"'{node.name}' is a reserved word and cannot be the name of a step",
                f"rename the step (reserved: {', '.join(sorted(RESERVED_STEP_NAMES))})",
            )


def _flowspec_names(lint: Linter) -> Iterator[GraphProblem]:
    """A step named like a FlowSpec method replaces it: ``merge_artifacts`` as a step makes every
    join that calls ``self.merge_artifacts(inputs)`` call the step instead."""
    base = next(
        (k for k in getattr(lint.flow_cls, "__mro__", ()) if k.__module__ == _FLOWSPEC_MODULE),
        None,
    )
    if base is None:
        return
    taken = {n for n in dir(base) if not n.startswith("_")} - RESERVED_STEP_NAMES
    for node in lint.nodes.values():
        if node.name in taken:
            yield lint.problem(
                "step-shadows-flowspec",
                node,
                f"step '{node.name}' has the name of the FlowSpec method {node.name}() and "
                "would replace it",
                f"rename the step (FlowSpec's names: {', '.join(sorted(taken))})",
            )


def _start_end(lint: Linter) -> Iterator[GraphProblem]:
    nodes = lint.nodes
    if len(nodes) == 1:
        return
    for which in ("start", "end"):
        flag = f"is_{which}_annotated"
        marked = [n for n in nodes.values() if getattr(n, flag)]
        if len(marked) > 1:
            names = quote_names(n.name for n in marked)
            yield lint.problem(
                f"several-{which}-steps",
                marked[1],
                f"steps {names} are all marked @step({which}=True); a flow has one {which} step",
                f"keep {which}=True on exactly one step",
            )
        elif not marked and which not in nodes:
            line = lint.plain_method_line(which)
            hint = (
                f"'{which}' (line {line}) is a method without @step: add @step above it"
                if line
                else f"add a step named '{which}': @step above def {which}(self)"
            )
            yield lint.problem(
                f"no-{which}-step", None, f"flow {lint.graph.flow_name} has no {which} step", hint
            )
        if marked and which in nodes and not getattr(nodes[which], flag):
            yield lint.problem(
                "ambiguous-start-end",
                nodes[which],
                f"ambiguous {which} step: '{marked[0].name}' is marked @step({which}=True) "
                f"but another step is named '{which}'",
                f"rename step '{which}' or drop {which}=True from '{marked[0].name}'",
            )


def _start_end_edges(lint: Linter) -> Iterator[GraphProblem]:
    start, end = lint.graph.start, lint.graph.end
    if start in lint.nodes and start != end:
        for parent in lint.nodes[start].in_funcs:
            node = lint.nodes[parent]
            yield lint.problem(
                "start-has-parents",
                node,
                f"step '{parent}' goes to the start step '{start}'; nothing may come before it",
                f"point self.next() of '{parent}' at another step",
                lint.next_line(node),
            )
    if end in lint.nodes:
        node = lint.nodes[end]
        if node.has_tail_next and start != end:
            yield lint.problem(
                "end-has-next",
                node,
                f"the end step '{end}' calls self.next(); the end step is the last one",
                f"remove the self.next() call from '{end}'",
                lint.next_line(node),
            )
        if node.num_args == 2:
            yield lint.problem(
                "end-is-join",
                node,
                f"the end step '{end}' takes inputs, so it would be a join; it may not be one",
                f"add a join step before '{end}' and remove the inputs argument of '{end}'",
            )


def _step_names(lint: Linter) -> Iterator[GraphProblem]:
    for node in lint.nodes.values():
        if not _STEP_NAME.match(node.name) or node.name.startswith("_"):
            yield lint.problem(
                "invalid-step-name",
                node,
                f"'{node.name}' is not a valid step name",
                "use lowercase ascii letters, digits and underscores, not starting with '_'",
            )


def _arguments(lint: Linter) -> Iterator[GraphProblem]:
    for node in lint.nodes.values():
        if node.num_args > 2:
            yield lint.problem(
                "too-many-arguments",
                node,
                f"step '{node.name}' takes {node.num_args} arguments; a step takes self, "
                "and a join also takes inputs",
                f"write def {node.name}(self) or def {node.name}(self, inputs)",
            )
        elif node.num_args == 2 and node.type in ("split", "foreach", "split-switch"):
            yield lint.problem(
                "join-and-split",
                node,
                f"step '{node.name}' takes inputs (a join) and also splits",
                "a step cannot both join and split: add a new step after the join that splits",
            )
        elif node.num_args == 0:
            yield lint.problem(
                "missing-self-argument",
                node,
                f"step '{node.name}' takes no arguments",
                f"write def {node.name}(self)",
            )


def _transitions(lint: Linter) -> Iterator[GraphProblem]:
    for node in lint.nodes.values():
        if any(p.step == node.name for p in lint.graph.problems):
            continue
        if not node.has_tail_next and node.name != lint.graph.end and not node.is_end_annotated:
            yield lint.problem(
                "missing-next",
                node,
                f"step '{node.name}' does not end with a self.next() transition",
                "make self.next(self.<next step>) the last statement of the step"
                + (f" (after line {_last_line(node)})" if _last_line(node) else ""),
            )
        if node.transition_error:
            yield lint.problem(
                "invalid-next",
                node,
                f"invalid self.next() in step '{node.name}': {node.transition_error}",
                f"use one of: {_NEXT_FORMS}",
                lint.next_line(node),
            )
        for target in node.out_funcs:
            if target not in lint.nodes:
                import difflib  # (only for a problem: a flow that is valid never needs it)

                close = difflib.get_close_matches(target, list(lint.nodes), n=1)
                yield lint.problem(
                    "unknown-target",
                    node,
                    f"step '{node.name}' goes to '{target}', which is not a step of the flow",
                    _unknown_target_hint(lint, target, close),
                    lint.next_line(node),
                )


def _joins_without_inputs(lint: Linter) -> Iterator[GraphProblem]:
    """Steps without ``inputs`` that two or more reachable steps lead to, in a flow without
    switches or loops.

    There, every step runs, so a step with several parents is where parallel branches meet;
    this holds even when other problems keep the full split/join check from running.
    """
    if lint.has_cycle or any(n.type == "split-switch" for n in lint.nodes.values()):
        return
    reached, todo = set(), [lint.graph.start]
    while todo:
        name = todo.pop()
        if name in lint.nodes and name not in reached:
            reached.add(name)
            todo += lint.nodes[name].out_funcs
    for node in lint.nodes.values():
        parents = sorted({p for p in reached if node.name in lint.nodes[p].out_funcs})
        if node.num_args == 1 and len(parents) > 1 and node.name != lint.graph.end:
            yield lint.problem(
                "multiple-parents",
                node,
                f"step '{node.name}' is reached from {quote_names(parents)}, which run in "
                "parallel, but it is not a join",
                f"make it a join that receives them: def {node.name}(self, inputs)",
            )


def _unknown_target_hint(lint: Linter, target: str, close: list[str]) -> str:
    line = lint.plain_method_line(target)
    if line:
        return f"'{target}' (line {line}) is a method without @step: add @step above it"
    return f"did you mean self.{close[0]}?" if close else "define it, or fix the name"


def _last_line(node: Node) -> int | None:
    """The last line of the step's body, read back from its source."""
    if not node.source_file or not node.func_lineno:
        return None
    lines = linecache.getlines(node.source_file)
    try:
        block = inspect.getblock(lines[node.func_lineno - 1 :])
    except Exception:
        return None
    while block and not block[-1].strip():
        block = block[:-1]
    return node.func_lineno + len(block) - 1 if block else None


def _switches(lint: Linter) -> Iterator[GraphProblem]:
    for node in lint.nodes.values():
        if node.type != "split-switch" or node.transition_error:
            continue
        keys = [k for k, _ in node.switch_cases]
        repeated = sorted({repr(k) for k in keys if keys.count(k) > 1})
        if not keys:
            message = f"switch step '{node.name}' has no cases"
        elif len(set(node.out_funcs)) < 2:
            message = f"switch step '{node.name}' has only one branch ('{node.out_funcs[0]}')"
        elif repeated:
            message = f"switch step '{node.name}' repeats case {', '.join(repeated)}"
        else:
            continue
        yield lint.problem(
            "bad-switch",
            node,
            message,
            "give the switch at least two cases leading to different steps, each key once; "
            "for a single successor use self.next(self.<step>)",
            lint.next_line(node),
        )


def _foreaches(lint: Linter) -> Iterator[GraphProblem]:
    for node in lint.nodes.values():
        if node.type == "foreach":
            for child in lint.children(node):
                if child.type == "join":
                    yield lint.problem(
                        "empty-foreach",
                        node,
                        f"foreach step '{node.name}' goes straight into the join '{child.name}'",
                        "add at least one step that runs for each item between them",
                        lint.next_line(node),
                    )


def _parallel(lint: Linter) -> Iterator[GraphProblem]:
    for node in lint.nodes.values():
        if node.is_parallel_split:
            for child in lint.children(node):
                if not child.parallel_step:
                    yield lint.problem(
                        "num-parallel-needs-parallel",
                        node,
                        f"step '{node.name}' starts '{child.name}' with num_parallel=, but "
                        f"'{child.name}' is not a @parallel step",
                        f"decorate '{child.name}' with @parallel (above @step)",
                        lint.next_line(node),
                    )
    for node in lint.nodes.values():
        if not node.parallel_step:
            continue
        for child in lint.children(node):
            if child.type != "join":
                yield lint.problem(
                    "parallel-needs-join",
                    node,
                    f"the step after @parallel step '{node.name}' must be a join, "
                    f"but '{child.name}' is not one",
                    f"add a join step after '{node.name}'"
                    if child.name == lint.graph.end
                    else f"give it an inputs argument: def {child.name}(self, inputs)",
                    lint.next_line(node),
                )
        parents = [lint.nodes[p] for p in node.in_funcs if p in lint.nodes]
        for parent in parents or [None]:
            if parent is not None and parent.is_parallel_split:
                continue
            via = f"from step '{parent.name}' " if parent else ""
            yield lint.problem(
                "parallel-without-num-parallel",
                parent or node,
                f"@parallel step '{node.name}' is reached {via}without num_parallel=",
                f"reach it with self.next(self.{node.name}, num_parallel=N)",
                lint.next_line(parent) if parent else None,
            )


def _switch_to_join(lint: Linter) -> Iterator[GraphProblem]:
    for node in lint.nodes.values():
        if node.type == "split-switch":
            for child in lint.children(node):
                if child.type == "join":
                    yield lint.problem(
                        "switch-to-join",
                        node,
                        f"a case of switch step '{node.name}' leads straight into the join "
                        f"'{child.name}'",
                        "add an intermediate step between the switch and the join",
                        lint.next_line(node),
                    )


def _parameters(flow_cls: type, graph: FlowGraph) -> list[GraphProblem]:
    from flowkernel.flow.parameters import flow_parameters, parameter_problems

    params = flow_parameters(flow_cls)
    problems = []
    for message in parameter_problems(flow_cls):
        named = [a for a, p in params.items() if f"'{p.name}'" in message]
        attr = named[-1] if named else None  # a name given twice: point at the second
        problems.append(
            GraphProblem(
                rule="bad-parameter",
                message=message,
                file=graph.source_file,
                line=_attribute_line(graph, attr) if attr else graph.class_lineno,
                hint="fix the Parameter declaration",
            )
        )
    return problems


def _attribute_line(graph: FlowGraph, attr: str) -> int | None:
    """The last line in the flow class that assigns ``attr`` (else the class line)."""
    if not graph.source_file or not graph.class_lineno:
        return graph.class_lineno
    lines = linecache.getlines(graph.source_file)
    try:
        block: list[Any] = inspect.getblock(lines[graph.class_lineno - 1 :])
    except Exception:
        return graph.class_lineno
    pattern = re.compile(rf"^\s+{re.escape(attr)}\s*(:[^=]*)?=")
    hits = [i for i, text in enumerate(block) if pattern.match(text)]
    return graph.class_lineno + hits[-1] if hits else graph.class_lineno
