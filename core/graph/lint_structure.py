"""The rules of :mod:`flowkernel.graph.lint` that look at the shape of the whole graph: loops,
reachability from the start step, and the balance of splits and joins (a walk that carries the
stack of open splits along every path)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flowkernel.graph.lint import Linter
    from flowkernel.graph.model import GraphProblem, Node

_SPLITS = ("split", "foreach")

Stack = tuple[tuple[str, str], ...]  # (split step, branch it entered), outermost first


def check_cycles(lint: Linter) -> Iterator[GraphProblem]:
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    found: list[tuple[Node, list[str]]] = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        node = lint.nodes[name]
        for target in node.out_funcs:
            if target not in lint.nodes or (target == name and node.type == "split-switch"):
                continue
            if state.get(target) == 1:
                found.append((node, [*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in lint.nodes:
        if name not in state:
            visit(name, [name])
    lint.has_cycle = bool(found)
    for node, loop in found:
        yield lint.problem(
            "cycle",
            node,
            f"step '{node.name}' closes a loop: {' -> '.join(loop)}",
            "steps may not loop; only a switch may name itself as a case (a recursive switch)",
            lint.next_line(node),
        )


def reachable_steps(lint: Linter) -> list[str]:
    """Steps reachable from the start, in topological order (a switch's self-loop ignored)."""
    start = lint.graph.start
    if start not in lint.nodes:
        return []
    seen, todo = {start}, [start]
    while todo:
        for child in lint.children(lint.nodes[todo.pop()]):
            if child.name not in seen:
                seen.add(child.name)
                todo.append(child.name)
    indegree = {n: 0 for n in seen}
    for n in seen:
        for child in lint.children(lint.nodes[n]):
            indegree[child.name] += 1
    ready = [n for n in lint.nodes if n in seen and indegree[n] == 0]
    order: list[str] = []
    while ready:
        name = ready.pop(0)
        order.append(name)
        for child in lint.children(lint.nodes[name]):
            indegree[child.name] -= 1
            if indegree[child.name] == 0:
                ready.append(child.name)
    return order


def check_unreachable(lint: Linter) -> Iterator[GraphProblem]:
    if lint.graph.start not in lint.nodes:
        return
    reachable = set(reachable_steps(lint))
    for node in lint.nodes.values():
        if node.name not in reachable:
            yield lint.problem(
                "unreachable-step",
                node,
                f"step '{node.name}' cannot be reached from the start step '{lint.graph.start}'",
                f"name '{node.name}' in the self.next() of an earlier step, or delete it",
            )


def check_balance(lint: Linter) -> Iterator[GraphProblem]:
    """Walk the graph in topological order with a stack of open splits (rule 13).

    A static split or foreach pushes ``(split, branch)`` for each child; a join pops; a
    switch's cases inherit the same stack, so alternative branches may meet at any step.
    """
    nodes, end = lint.nodes, lint.graph.end
    arrivals: dict[str, list[tuple[str, Stack]]] = {}
    if lint.graph.start in nodes:
        arrivals[lint.graph.start] = [("", ())]
    for name in reachable_steps(lint):
        node = nodes[name]
        incoming = arrivals.get(name, [])
        if node.type == "join" or node.num_args == 2:  # a split or end with inputs joins too
            out, problem = check_join(lint, node, incoming)
            if problem:
                yield problem
        else:
            out = common_prefix([s for _, s in incoming])
            if len({s for _, s in incoming}) > 1:
                yield merge_problem(lint, node, incoming, out)
            if name == end and out:
                split = nodes[out[-1][0]]
                yield lint.problem(
                    "unjoined-split",
                    split,
                    f"the end step '{end}' is reached while the branches started at step "
                    f"'{split.name}' are not joined",
                    f"lead the branches of '{split.name}' into a join step "
                    "(def join(self, inputs)) before the end",
                    lint.next_line(split),
                )
        for child in lint.children(node):
            stack = (*out, (name, child.name)) if node.type in _SPLITS else out
            arrivals.setdefault(child.name, []).append((name, stack))


def merge_problem(
    lint: Linter, node: Node, incoming: list[tuple[str, Stack]], out: Stack
) -> GraphProblem:
    """A step without inputs reached from parents that are not alternatives of one switch."""
    where = {p: f"inside split '{s[-1][0]}'" if s else "outside any split" for p, s in incoming}
    parents = ", ".join(f"'{p}' ({where[p]})" for p in sorted(where))
    inside = sorted({p for p, s in incoming if s != out})
    if any(s == out for _, s in incoming):  # some branches left their split without a join
        splits = sorted({s[len(out)][0] for _, s in incoming if len(s) > len(out)})
        joins = [lint.nodes[s].matching_join for s in splits if s in lint.nodes]
        target = quote_names(j for j in joins if j) or "the join"
        closing = quote_names(splits)
        hint = f"lead {quote_names(inside)} into {target} (closing split {closing}) instead"
    elif node.name == lint.graph.end:
        hint = f"add a join step before '{node.name}'"
    else:
        hint = f"make it a join that receives them: def {node.name}(self, inputs)"
    return lint.problem(
        "multiple-parents",
        node,
        f"step '{node.name}' is reached from {parents}, which are not alternative branches "
        "of one switch, but it is not a join",
        hint,
    )


def check_join(
    lint: Linter, node: Node, incoming: list[tuple[str, Stack]]
) -> tuple[Stack, GraphProblem | None]:
    """The stack after the join ``node`` and what is wrong with its incoming branches, if any."""
    stacks = [s for _, s in incoming]
    if not any(stacks):
        return (), lint.problem(
            "join-without-split",
            node,
            f"step '{node.name}' takes inputs (a join) but no split comes before it",
            f"remove the inputs argument (def {node.name}(self)) or split before it",
        )
    groups = {(s[:-1], s[-1][0] if s else None) for s in stacks}
    if len(groups) > 1:
        where = ", ".join(
            f"'{p}' (from {'split ' + repr(s[-1][0]) if s else 'no split'})"
            for p, s in sorted(incoming)
        )
        return common_prefix(stacks), lint.problem(
            "join-unrelated-splits",
            node,
            f"join step '{node.name}' joins branches of different splits: {where}",
            "a join must close exactly one split: join the inner split first",
        )
    ((prefix, split_name),) = groups
    split = lint.nodes[split_name]
    reached = {s[-1][1] for s in stacks}
    expected = set(split.out_funcs)
    if reached != expected:
        missing = quote_names(sorted(expected - reached)) or "none"
        return prefix, lint.problem(
            "join-branch-count",
            node,
            f"join step '{node.name}' is reached from {len(reached)} of the "
            f"{len(expected)} branches of split '{split_name}' (missing: {missing})",
            f"lead every branch of '{split_name}' into '{node.name}'",
        )
    return prefix, None


def quote_names(names: Iterable[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def common_prefix(stacks: list[Stack]) -> Stack:
    if not stacks:
        return ()
    prefix = stacks[0]
    for stack in stacks[1:]:
        n = 0
        while n < min(len(prefix), len(stack)) and prefix[n] == stack[n]:
            n += 1
        prefix = prefix[:n]
    return prefix
