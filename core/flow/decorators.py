"""Step decorators: ``step`` and the declarations runtimes read (retry, catch, timeout, ...).

A step decorator does not wrap the function: it records a :class:`StepDecorator` on it, so the
graph builder still sees the original code object and line numbers. ``@step`` must be the
innermost decorator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from flowkernel.errors import DecoratorError

#: Most attempts a task may make (first try + retries), as in Metaflow.
MAX_ATTEMPTS = 6


@attrs.frozen
class StepDecorator:
    """A decorator attached to a step: its name and its (defaults-filled) attributes."""

    name: str
    attributes: dict[str, Any] = attrs.field(factory=dict, eq=False)
    statically_defined: bool = True

    def __getitem__(self, key: str) -> Any:
        return self.attributes[key]


@attrs.frozen
class _DecoratorKind:
    name: str
    defaults: dict[str, Any]
    validate: Callable[[dict[str, Any]], None] | None = None


def _validate_retry(attrs_: dict[str, Any]) -> None:
    times = int(attrs_["times"])
    if times < 0:
        raise DecoratorError("@retry(times=...) must be 0 or more")
    if times + 2 > MAX_ATTEMPTS:
        raise DecoratorError(
            f"@retry(times={times}) is too many: the maximum number of retries is "
            f"@retry(times={MAX_ATTEMPTS - 2})"
        )


def _validate_timeout(attrs_: dict[str, Any]) -> None:
    if timeout_seconds(attrs_) <= 0:
        raise DecoratorError("@timeout needs a duration: specify seconds, minutes and/or hours")


def timeout_seconds(attrs_: dict[str, Any]) -> float:
    """Total seconds of a ``@timeout`` declaration."""
    return (
        float(attrs_.get("seconds") or 0)
        + 60 * float(attrs_.get("minutes") or 0)
        + 3600 * float(attrs_.get("hours") or 0)
    )


KINDS: dict[str, _DecoratorKind] = {
    k.name: k
    for k in (
        _DecoratorKind("retry", {"times": 3, "minutes_between_retries": 2}, _validate_retry),
        _DecoratorKind("catch", {"var": None, "print_exception": True}),
        _DecoratorKind("timeout", {"seconds": 0, "minutes": 0, "hours": 0}, _validate_timeout),
        _DecoratorKind(
            "resources",
            {"cpu": 1, "gpu": None, "disk": None, "memory": 4096, "shared_memory": None},
        ),
        _DecoratorKind("environment", {"vars": {}}),
        _DecoratorKind("parallel", {}),
    )
}


def make_decorator(name: str, attributes: dict[str, Any], static: bool = True) -> StepDecorator:
    """Build a validated :class:`StepDecorator` (unknown attributes are an error)."""
    kind = KINDS.get(name)
    if kind is None:
        raise DecoratorError(f"Unknown step decorator '@{name}'; known: {', '.join(KINDS)}")
    unknown = sorted(set(attributes) - set(kind.defaults))
    if unknown:
        raise DecoratorError(
            f"Unknown decorator attribute {', '.join(repr(u) for u in unknown)} for @{name}; "
            f"supported: {', '.join(kind.defaults) or 'none'}"
        )
    values = {**kind.defaults, **attributes}
    if kind.validate is not None and not _deferred(values):
        kind.validate(values)
    return StepDecorator(name, values, static)


def _deferred(values: dict[str, Any]) -> bool:
    from flowkernel.flow.config import ConfigExpr

    return any(isinstance(v, ConfigExpr) for v in values.values())


def finalize_decorators(flow_cls: type) -> None:
    """Evaluate ``config_expr`` attributes of every step decorator, then validate them.

    Called before the flow's graph is built, once its configs can be resolved.
    """
    from flowkernel.flow.config import resolve_deferred

    for attr in dir(flow_cls):
        func = getattr(flow_cls, attr, None)
        for deco in getattr(func, "decorators", ()) if getattr(func, "is_step", False) else ():
            if not _deferred(deco.attributes):
                continue
            for key, value in list(deco.attributes.items()):
                deco.attributes[key] = resolve_deferred(value, flow_cls)
            kind = KINDS[deco.name]
            if kind.validate is not None:
                kind.validate(deco.attributes)


def _attach(func: Any, deco: StepDecorator) -> Any:
    if not getattr(func, "is_step", False):
        raise DecoratorError(
            f"@{deco.name} was applied to '{getattr(func, '__name__', func)}', which is not a "
            "step: the decorator was applied to a function that is not a step. "
            "Put @step last (closest to the def)."
        )
    if any(d.name == deco.name for d in func.decorators):
        raise DecoratorError(f"Step '{func.__name__}' already has a @{deco.name} decorator")
    func.decorators.insert(0, deco)  # decorators apply bottom-up; keep them outermost first
    return func


def _decorator_factory(name: str) -> Callable[..., Any]:
    def decorator(func: Any = None, **attributes: Any) -> Any:
        if func is not None and callable(func) and not attributes:
            return _attach(func, make_decorator(name, {}))
        if func is not None:
            raise DecoratorError(f"@{name} takes keyword arguments only")
        deco = make_decorator(name, attributes)
        return lambda f: _attach(f, deco)

    decorator.__name__ = decorator.__qualname__ = name
    decorator.__doc__ = (
        f"Step decorator ``@{name}`` (attributes: {', '.join(KINDS[name].defaults) or 'none'})."
    )
    return decorator


retry = _decorator_factory("retry")
catch = _decorator_factory("catch")
timeout = _decorator_factory("timeout")
resources = _decorator_factory("resources")
environment = _decorator_factory("environment")
parallel = _decorator_factory("parallel")


def step(func: Any = None, *, start: bool = False, end: bool = False) -> Any:
    """Mark a method as a step. Forms: ``@step`` or ``@step(start=True)`` / ``@step(end=True)``.

    Must be the innermost decorator. The function itself is returned with ``is_step``,
    ``decorators`` (a list of :class:`StepDecorator`), ``is_start`` and ``is_end`` set.
    """

    def mark(f: Any) -> Any:
        if not callable(f):
            raise DecoratorError("@step must decorate a method")
        f.is_step = True
        f.decorators = []
        f.is_start = start
        f.is_end = end
        f.name = f.__name__
        return f

    if func is None:
        return mark
    return mark(func)


def step_decorators(func: Any) -> dict[str, StepDecorator]:
    """The decorators of a step function by name."""
    return {d.name: d for d in getattr(func, "decorators", ())}


#: Decorators ``--with`` may attach to every step.
WITH_DECORATORS = ("retry", "catch", "timeout", "resources", "environment")


def parse_decospec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"retry:times=2,minutes_between_retries=0"`` -> ``("retry", {...})``.

    Values are read as JSON, else kept as strings; commas inside brackets, braces or quotes do
    not split (``environment:vars={"A": "1", "B": "2"}``).
    """
    import json

    name, _, rest = spec.partition(":")
    attributes: dict[str, Any] = {}
    for part in _split_top_level(rest):
        key, eq, raw = part.partition("=")
        if not eq or not key.strip():
            raise DecoratorError(f"--with {spec}: expected NAME:attr=value,attr=value")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        attributes[key.strip()] = value
    if name not in WITH_DECORATORS:
        allowed = ", ".join(WITH_DECORATORS)
        raise DecoratorError(f"--with {spec}: '{name}' cannot be attached with --with ({allowed})")
    return name, attributes


def _split_top_level(text: str) -> list[str]:
    parts, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p for p in parts if p.strip()]


def attach_decospecs(flow_cls: type, specs: tuple[str, ...] | list[str]) -> None:
    """Add each ``--with`` decorator to every step that does not declare it itself (the step's
    own decorator wins). Call before the flow's graph is built."""
    parsed = [parse_decospec(spec) for spec in specs]
    for attr in dir(flow_cls):
        func = getattr(flow_cls, attr, None)
        if not getattr(func, "is_step", False):
            continue
        for name, attributes in parsed:
            if name not in step_decorators(func):
                func.decorators.append(make_decorator(name, attributes, static=False))
