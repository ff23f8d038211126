"""Parse one step function's own source into a :class:`ParsedStep`.

Only the function's code object is used to find its source (``co_filename``/``co_firstlineno``
through :mod:`linecache`), never ``inspect.getsource`` of the class: that fails for classes
defined in a Jupyter cell, while the cell's lines are in :mod:`linecache` all the same.
Nothing here raises on a malformed step; the trouble is recorded for the linter.
"""

from __future__ import annotations

import ast
import inspect
import linecache
import textwrap
from typing import Any

import attrs

_KEYWORDS = ("foreach", "num_parallel", "condition")


@attrs.define
class ParsedStep:
    """What the source of one step says (line numbers are lines of ``source_file``)."""

    name: str
    source_file: str | None
    func_lineno: int  #: first line, decorators included
    def_lineno: int  #: the ``def`` line
    doc: str = ""
    num_args: int = 1
    has_tail_next: bool = False
    next_lineno: int | None = None
    last_lineno: int | None = None  #: last line of the body (where a tail self.next belongs)
    out_funcs: list[str] = attrs.field(factory=list)
    kind: str = "linear"  #: linear | split | foreach | split-switch (before start/end/join typing)
    transition_error: str | None = None
    foreach_param: str | None = None
    num_parallel: int | str | None = None
    condition: str | None = None
    switch_cases: list[tuple[Any, str]] = attrs.field(factory=list)
    source_error: str | None = None  #: why the source could not be read, if it could not


class _BadNext(Exception):
    """A tail ``self.next`` call that is not one of the supported shapes."""


def parse_step(name: str, func: Any) -> ParsedStep:
    """Parse the step ``name`` from its function's own source lines."""
    func = inspect.unwrap(func)
    code = func.__code__
    filename, first = code.co_filename, code.co_firstlineno
    step = ParsedStep(name, filename, first, first, doc=inspect.cleandoc(func.__doc__ or ""))
    lines = linecache.getlines(filename, func.__globals__)
    if not lines or first > len(lines):
        step.source_error = f"the source of step '{name}' is not available (file {filename})"
        return step
    try:
        block = inspect.getblock(lines[first - 1 :])
        tree = ast.parse(textwrap.dedent("".join(block)))
    except (SyntaxError, IndentationError, ValueError) as exc:
        step.source_error = f"the source of step '{name}' could not be parsed: {exc}"
        return step
    fn = next(
        (n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))), None
    )
    if fn is None:
        step.source_error = f"no function definition found for step '{name}'"
        return step
    offset = first - 1
    step.def_lineno = fn.lineno + offset
    step.num_args = len(fn.args.posonlyargs) + len(fn.args.args)
    step.doc = ast.get_docstring(fn) or step.doc
    tail = fn.body[-1]
    step.last_lineno = (tail.end_lineno or tail.lineno) + offset
    call = tail.value if isinstance(tail, ast.Expr) else None
    if not (isinstance(call, ast.Call) and _is_self_attr(call.func, "next")):
        return step
    step.has_tail_next = True
    step.next_lineno = call.lineno + offset
    try:
        _read_next(step, call)
    except _BadNext as exc:
        step.transition_error = str(exc)
    return step


def _is_self_attr(node: ast.AST, attr: str | None = None) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
        and (attr is None or node.attr == attr)
    )


def _target(node: ast.AST) -> str:
    if not _is_self_attr(node):
        raise _BadNext(f"target {ast.unparse(node)} is not a step: write it as self.<step_name>")
    assert isinstance(node, ast.Attribute)
    return node.attr


def _read_next(step: ParsedStep, call: ast.Call) -> None:
    """Fill targets, kind and keyword values of ``step`` from its tail ``self.next`` call."""
    kwargs: dict[str, ast.expr] = {}
    for kw in call.keywords:
        if kw.arg is None:
            raise _BadNext("self.next() does not accept **kwargs")
        if kw.arg not in _KEYWORDS:
            raise _BadNext(
                f"unknown keyword '{kw.arg}='; self.next() accepts only foreach=, "
                "num_parallel= or condition="
            )
        kwargs[kw.arg] = kw.value
    if len(kwargs) > 1:
        raise _BadNext(f"use only one of {', '.join(k + '=' for k in kwargs)}, not several")
    if any(isinstance(a, ast.Starred) for a in call.args):
        raise _BadNext("self.next() needs its targets written out, not unpacked with *")
    if "condition" in kwargs:
        _read_switch(step, call.args, kwargs["condition"])
        return
    if any(isinstance(a, ast.Dict) for a in call.args):
        raise _BadNext("a dict of cases needs condition='<artifact name>' to choose a branch")
    if not call.args:
        raise _BadNext("self.next() names no step to go to")
    step.out_funcs = [_target(a) for a in call.args]
    if "foreach" in kwargs or "num_parallel" in kwargs:
        if len(step.out_funcs) != 1:
            raise _BadNext("a foreach or num_parallel transition must name exactly one step")
        step.kind = "foreach"
        if "foreach" in kwargs:
            value = kwargs["foreach"]
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                step.foreach_param = value.value
        else:
            step.num_parallel = _num_parallel(kwargs["num_parallel"])
    elif len(step.out_funcs) > 1:
        step.kind = "split"


def _num_parallel(value: ast.expr) -> int | str:
    if isinstance(value, ast.Constant) and type(value.value) is int:
        if value.value < 1:
            raise _BadNext(f"num_parallel={value.value} must be at least 1")
        return value.value
    if isinstance(value, ast.Name):
        return value.id
    return ast.unparse(value)


def _read_switch(step: ParsedStep, args: list[ast.expr], condition: ast.expr) -> None:
    if not (isinstance(condition, ast.Constant) and isinstance(condition.value, str)):
        raise _BadNext("condition= must be a string literal naming an artifact")
    if len(args) != 1 or not isinstance(args[0], ast.Dict):
        raise _BadNext(
            "a switch takes exactly one dict literal of cases, "
            "e.g. self.next({'a': self.x, 'b': self.y}, condition='choice')"
        )
    cases = args[0]
    step.kind = "split-switch"
    step.condition = condition.value
    for key_node, value_node in zip(cases.keys, cases.values, strict=True):
        if key_node is None:
            raise _BadNext("a switch's cases must be written out, not unpacked with **")
        key = _case_key(key_node)
        target = _target(value_node)
        step.switch_cases.append((key, target))
        if target not in step.out_funcs:
            step.out_funcs.append(target)


def _case_key(node: ast.expr) -> Any:
    if isinstance(node, ast.Constant) and type(node.value) in (str, int, float):
        return node.value
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and isinstance(node.operand, ast.Constant)
        and type(node.operand.value) in (int, float)
    ):
        return -node.operand.value
    parts = []
    cur: ast.expr = node
    while isinstance(cur, ast.Attribute):
        parts.append(cur.attr)
        cur = cur.value
    if isinstance(cur, ast.Name) and cur.id == "self" and len(parts) >= 2:
        return "config:" + ".".join(reversed(parts))
    raise _BadNext(
        f"switch case key '{ast.unparse(node)}' must be a string or number literal, "
        "or a config value written self.<config>.<key>"
    )
