"""Flow parameters: ``Parameter``, ``JSONType`` and ``IncludeFile``.

A Parameter is a class attribute of a flow. Its value comes, in this order, from the command line
(``--name VALUE``), the environment (``FLOWKERNEL_RUN_<NAME>``, upper case, dashes to
underscores), or its default (a callable default is evaluated once per run). Inside steps the
value is read with ``self.<attribute>`` and cannot be assigned.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import attrs
import click

from flowkernel.errors import ParameterError, UsageError

#: Names that clash with ``flow run`` options.
RESERVED_NAMES = frozenset(
    n.replace("-", "_")
    for n in (
        "params", "with", "tag", "namespace", "obj", "tags", "decospecs", "run-id-file",
        "max-num-splits", "max-workers", "max-log-size", "user-namespace", "run-id", "task-id",
        "runner-attribute-file", "runtime", "datastore-root", "quiet", "isolation", "origin-run-id",
        "config", "config-value",
    )
)  # fmt: skip
ENV_PREFIX = "FLOWKERNEL_RUN_"


class JSONTypeClass(click.ParamType):
    """A parameter type whose value is parsed with ``json.loads``."""

    name = "JSON"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except ValueError as exc:
            self.fail(f"{value!r} is not valid JSON: {exc}", param, ctx)

    def __repr__(self) -> str:
        return "JSONType"


JSONType = JSONTypeClass()

_SIMPLE_TYPES: dict[Any, click.ParamType] = {
    str: click.STRING,
    int: click.INT,
    float: click.FLOAT,
    bool: click.BOOL,
}


@attrs.frozen
class ParameterContext:
    """What a callable default receives."""

    flow_name: str
    user_name: str
    parameter_name: str
    logger: Callable[[str], None]
    ds_type: str = "local"
    configs: Any = None


class Parameter:
    """A run parameter (see the module docstring).

    :param name: the command-line name (``--name``); may contain dashes.
    :param default: a value, or a callable taking a :class:`ParameterContext`.
    :param type: ``str``, ``int``, ``float``, ``bool`` or ``JSONType``; inferred from a
        non-callable default, else ``str``. A bool takes a value (``--flag false``).
    :param required: a value must be given (a default satisfies it).
    :param separator: string parameters only: split the value into a list.
    """

    IS_INCLUDE_FILE = False

    def __init__(
        self,
        name: str,
        default: Any = None,
        type: Any = None,
        help: str | None = None,
        required: bool | None = None,
        show_default: bool | None = None,
        separator: str | None = None,
        **kwargs: Any,
    ):
        self.name = name
        self.default = default
        self.help = help
        self.required = bool(required)
        self.show_default = True if show_default is None else show_default
        self.separator = separator
        self.kwargs = kwargs
        self._type = type
        self._owner: type | None = None
        if separator is not None and type not in (None, str):
            raise ParameterError(f"Parameter '{name}': separator is only allowed for strings")

    @property
    def type(self) -> Any:
        """The declared type, else the type of the default (a config_expr default resolved)."""
        if self._type is None:
            default = self.default
            if _is_config_expr(default):
                default = self._config_default()
            is_value = default is not None and not callable(default)
            self._type = builtins_type(default) if is_value else str
        return self._type

    def _config_default(self) -> Any:
        from flowkernel.flow.config import resolve_deferred

        if self._owner is None:
            raise ParameterError(f"Parameter '{self.name}': config_expr default outside a flow")
        return resolve_deferred(self.default, self._owner)

    @property
    def click_type(self) -> click.ParamType:
        if isinstance(self.type, click.ParamType):
            return self.type
        if self.type in _SIMPLE_TYPES:
            return _SIMPLE_TYPES[self.type]
        raise ParameterError(
            f"Parameter '{self.name}' has an unsupported type {self.type!r}; "
            "use str, int, float, bool or JSONType"
        )

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.name.upper().replace("-", "_")

    def convert(self, value: Any) -> Any:
        """Convert a command-line string (or a Python value) to the parameter's type.

        :raises UsageError: naming the parameter when the value does not fit.
        """
        if value is None:
            return None
        try:
            converted = self.click_type.convert(value, None, None)
        except click.BadParameter as exc:
            raise UsageError(f"Invalid value for parameter '{self.name}': {exc.message}")
        if self.type is bool and not isinstance(value, (bool, str)):
            raise UsageError(f"Invalid value for parameter '{self.name}': expected a bool")
        return self.split(converted)

    def split(self, value: Any) -> Any:
        if self.separator is not None and isinstance(value, str):
            return value.split(self.separator)
        return value

    def default_value(self, ctx: ParameterContext) -> Any:
        """The default, calling a callable default (once: the caller caches per run).

        A plain default goes through the parameter's type like a command-line value does
        (a JSONType default given as a JSON string is parsed), then ``separator`` splits it.
        """
        if _is_config_expr(self.default):
            return self.convert(self._config_default())
        if not callable(self.default):
            return self.convert(self.default)
        try:
            value = self.default(ctx)
        except Exception as exc:
            raise UsageError(
                f"The default function of parameter '{self.name}' failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        expected = self.type if self.type in (bool, int, float) else None
        if expected is not None and builtins_type(value) is not expected:
            raise UsageError(
                f"The default function of parameter '{self.name}' returned "
                f"{type(value).__name__} {value!r}; expected {expected.__name__}"
            )
        if self.type is JSONType and isinstance(value, str):
            return JSONType.convert(value, None, None)
        if self.type is str and not isinstance(value, str) and not isinstance(value, list):
            raise UsageError(
                f"The default function of parameter '{self.name}' returned "
                f"{type(value).__name__}; expected str"
            )
        return self.split(value)

    # A data descriptor: inside a task ``self.<attr>`` is the value, and cannot be assigned.
    def __set_name__(self, owner: type, attr: str) -> None:
        self.attr = attr
        self._owner = owner

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        state = instance.__dict__
        attr = getattr(self, "attr", self.name)
        if attr in state:
            return state[attr]
        return instance.__getattr__(attr)

    def __set__(self, instance: Any, value: Any) -> None:
        raise AttributeError(
            f"Cannot set '{self.name}': Flow level attributes and Parameters are not modifiable"
        )

    def __repr__(self) -> str:
        return f"Parameter({self.name!r}, default={self.default!r})"


builtins_type = type


def _is_config_expr(value: Any) -> bool:
    from flowkernel.flow.config import ConfigExpr

    return isinstance(value, ConfigExpr)


class IncludeFile(Parameter):
    """A parameter whose value is a local file path; steps see the file's contents.

    :param is_text: decode as text (default True) with ``encoding`` (default utf-8); else bytes.
    :param parser: callable post-processing the contents.
    """

    IS_INCLUDE_FILE = True

    def __init__(
        self,
        name: str,
        required: bool | None = None,
        is_text: bool | None = None,
        encoding: str | None = None,
        help: str | None = None,
        parser: Callable[[Any], Any] | None = None,
        default: Any = None,
        **kwargs: Any,
    ):
        super().__init__(name, default=default, type=str, help=help, required=required, **kwargs)
        self.is_text = True if is_text is None else is_text
        self.encoding = encoding or "utf-8"
        self.parser = parser

    def load(self, path: str | None) -> Any:
        """Read the file at ``path`` (None stays None); a missing file is a usage error."""
        if path is None:
            return None
        if "://" in path:
            raise UsageError(f"IncludeFile '{self.name}': only local paths are supported: {path}")
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except OSError as exc:
            raise UsageError(f"IncludeFile '{self.name}': cannot read {path}: {exc.strerror}")
        content: Any = raw.decode(self.encoding) if self.is_text else raw
        return self.parser(content) if self.parser is not None else content


def flow_parameters(flow_cls: type) -> dict[str, Parameter]:
    """Every Parameter of a flow class by attribute name, in definition order (MRO-aware)."""
    found: dict[str, Parameter] = {}
    for klass in reversed(flow_cls.__mro__):
        for attr, value in vars(klass).items():
            if isinstance(value, Parameter):
                found[attr] = value
    return found


def parameter_problems(flow_cls: type) -> list[str]:
    """Declaration errors: reserved names and names given twice (case-insensitive)."""
    problems = []
    seen: dict[str, str] = {}
    for attr, param in flow_parameters(flow_cls).items():
        key = param.name.lower().replace("-", "_")
        if key in RESERVED_NAMES:
            problems.append(f"Parameter name '{param.name}' is reserved; choose another name")
        if key in seen:
            problems.append(f"Parameter '{param.name}' is specified twice")
        seen[key] = attr
        try:
            param.click_type  # noqa: B018 - validates the type
        except ParameterError as exc:
            problems.append(str(exc))
    return problems


def resolve_parameters(
    flow_cls: type, given: dict[str, Any], user: str, logger: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Final parameter values by attribute name for one run.

    :param given: values by attribute name from the command line or environment (already
        converted); missing ones fall back to defaults.
    :raises UsageError: a required parameter has no value.
    """
    from flowkernel.flow.config import config_values

    log = logger or logging.getLogger("flowkernel").info
    configs = config_values(flow_cls)
    values: dict[str, Any] = {}
    for attr, param in flow_parameters(flow_cls).items():
        if given.get(attr) is not None:
            value = given[attr]
        else:
            ctx = ParameterContext(flow_cls.__name__, user, param.name, log, configs=configs)
            value = param.default_value(ctx)
        if value is None and param.required:
            raise UsageError(f"Missing value for required parameter '{param.name}'")
        if param.IS_INCLUDE_FILE:
            value = param.load(value)  # type: ignore[attr-defined]
        values[attr] = value
    return values
