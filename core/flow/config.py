"""Flow configuration: ``Config`` values resolved before the graph and decorators are final.

A ``Config`` is a class attribute. Its value comes, first match wins, from ``--config-value NAME
JSON``, ``--config NAME PATH`` (also ``FLOWKERNEL_FLOW_CONFIG_VALUE`` / ``FLOWKERNEL_FLOW_CONFIG``
as JSON maps of name to value / path), the ``default`` file, or ``default_value`` (which may be
callable). The command line registers its sources with :func:`set_sources` *before* the flow
file is imported, so a config can be used while the class body runs: ``@retry(**cfg.retry)``,
``@retry(times=config_expr("cfg.retries"))``, ``Parameter("n", default=config_expr("cfg.n"))``.

Values are immutable: a :class:`ConfigValue` (dict-like, attribute access; assignment raises
``TypeError``). Each config is stored with the run as a plain dict artifact named after the
attribute, and a resumed run reuses the origin run's configs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from flowkernel.errors import ConfigError, UsageError

ENV_FILES = "FLOWKERNEL_FLOW_CONFIG"
ENV_VALUES = "FLOWKERNEL_FLOW_CONFIG_VALUE"

_files: dict[str, str] = {}
_values: dict[str, Any] = {}


def set_sources(files: Mapping[str, str] | None = None, values: Mapping[str, Any] | None = None):
    """Register command-line config sources (by config name) for the flows imported next."""
    _files.clear()
    _values.clear()
    _files.update(files or {})
    for name, raw in (values or {}).items():
        _values[name] = _parse_json(name, raw) if isinstance(raw, str) else raw


def add_sources(files: Mapping[str, str] | None = None, values: Mapping[str, Any] | None = None):
    """Like :func:`set_sources`, keeping the sources already registered."""
    _files.update(files or {})
    for name, raw in (values or {}).items():
        _values[name] = _parse_json(name, raw) if isinstance(raw, str) else raw


def take_config_options(args: list[str]) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """Split ``--config NAME PATH`` / ``--config-value NAME JSON`` out of ``args``.

    Returns ``(remaining args, files, values)``.
    """
    rest: list[str] = []
    files: dict[str, str] = {}
    values: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("--config", "--config-value"):
            if i + 2 >= len(args):
                what = "PATH" if arg == "--config" else "JSON"
                raise UsageError(f"{arg} needs two values: NAME and {what}")
            (files if arg == "--config" else values)[args[i + 1]] = args[i + 2]
            i += 3
            continue
        rest.append(arg)
        i += 1
    return rest, files, values


def _parse_json(name: str, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"config '{name}': the value is not valid JSON: {exc}") from None


def _env_map(var: str) -> dict[str, Any]:
    raw = os.environ.get(var)
    if not raw:
        return {}
    try:
        found = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{var} is not a JSON object: {exc}") from None
    if not isinstance(found, dict):
        raise ConfigError(f"{var} must be a JSON object mapping config names to values")
    return found


def freeze(value: Any) -> Any:
    """Immutable view: dicts become ConfigValue, lists become tuples."""
    if isinstance(value, Mapping) and not isinstance(value, ConfigValue):
        return ConfigValue(value)
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Back to plain dicts and lists (what is stored as the artifact)."""
    if isinstance(value, ConfigValue):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value


class ConfigValue(Mapping):
    """An immutable mapping with attribute access: ``cfg.model.layers`` or ``cfg["model"]``."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]):
        object.__setattr__(self, "_data", {k: freeze(v) for k, v in data.items()})

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(f"config has no key '{name}'") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError("a config value is immutable")

    def __setitem__(self, key: str, value: Any) -> None:
        raise TypeError("a config value is immutable")

    def __delitem__(self, key: str) -> None:
        raise TypeError("a config value is immutable")

    def to_dict(self) -> dict[str, Any]:
        return thaw(self)

    def __reduce__(self):
        return (ConfigValue, (thaw(self),))

    def __repr__(self) -> str:
        return f"ConfigValue({thaw(self)!r})"


class ConfigExpr:
    """An expression over configs, evaluated once they are resolved: ``config_expr("cfg.n")``.

    Attribute and item access defer too: ``config_expr("cfg").project.name`` and
    ``config_expr("cfg")["n"]`` are expressions evaluated with the rest.
    """

    def __init__(self, expr: str, _path: tuple[tuple[str, Any], ...] = ()):
        object.__setattr__(self, "expr", expr)
        object.__setattr__(self, "_path", _path)

    def evaluate(self, configs: Mapping[str, Any]) -> Any:
        try:
            value = eval(self.expr, {"__builtins__": {}}, dict(configs))
            for kind, key in self._path:
                value = getattr(value, key) if kind == "attr" else value[key]
            return value
        except Exception as exc:
            raise ConfigError(f"{self!r} failed: {type(exc).__name__}: {exc}") from None

    def __getattr__(self, name: str) -> ConfigExpr:
        if name.startswith("_"):
            raise AttributeError(name)
        return ConfigExpr(self.expr, (*self._path, ("attr", name)))

    def __getitem__(self, key: Any) -> ConfigExpr:
        return ConfigExpr(self.expr, (*self._path, ("item", key)))

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError("a config expression is immutable")

    def __repr__(self) -> str:
        path = "".join(f".{k}" if kind == "attr" else f"[{k!r}]" for kind, k in self._path)
        return f"config_expr({self.expr!r}){path}"


def config_expr(expr: str) -> ConfigExpr:
    """Defer ``expr`` (Python, over the flow's configs by attribute name) until configs resolve."""
    return ConfigExpr(expr)


class Config:
    """A configuration value of the flow (see the module docstring).

    :param name: the name used on the command line (``--config-value NAME JSON``).
    :param default: path of a default config file.
    :param default_value: the value if nothing else gives one (may be a callable taking no args).
    :param parser: callable turning the file's text into a dict (default: ``json.loads``).
    :param plain: the value need not be a dict, and is not wrapped.
    """

    def __init__(
        self,
        name: str,
        default: str | None = None,
        default_value: Any = None,
        help: str | None = None,
        required: bool = False,
        parser: Callable[[str], Any] | str | None = None,
        plain: bool = False,
    ):
        self.name = name
        self.default = default
        self.default_value = default_value
        self.help = help
        self.required = required
        self.parser = parser
        self.plain = plain
        self.attr = name
        self._resolved = False
        self._value: Any = None

    def __set_name__(self, owner: type, attr: str) -> None:
        import sys

        self.attr = attr
        module_file = getattr(sys.modules.get(owner.__module__), "__file__", None)
        if self.default and not os.path.isabs(self.default) and module_file:
            beside_flow = os.path.join(os.path.dirname(os.path.abspath(module_file)), self.default)
            if not os.path.exists(self.default) and os.path.exists(beside_flow):
                self.default = beside_flow

    # -- resolution ----------------------------------------------------------------------------

    @property
    def value(self) -> Any:
        """The resolved (frozen) value; resolved on first use."""
        if not self._resolved:
            self._value = self._resolve()
            self._resolved = True
        return self._value

    def _resolve(self) -> Any:
        env_values, env_files = _env_map(ENV_VALUES), _env_map(ENV_FILES)
        if self.name in _values:
            raw = _values[self.name]
        elif self.name in _files:
            raw = self._read_file(_files[self.name])
        elif self.name in env_values:
            raw = env_values[self.name]
        elif self.name in env_files:
            raw = self._read_file(env_files[self.name])
        elif self.default is not None and os.path.exists(self.default):
            raw = self._read_file(self.default)
        elif self.default_value is not None:
            dv = self.default_value
            raw = dv() if callable(dv) else dv
            if isinstance(raw, str) and not self.plain:
                raw = self._parse(raw, "default_value")
        elif self.default is not None:
            raise ConfigError(f"config '{self.name}': default file {self.default} not found")
        else:
            if self.required:
                raise ConfigError(f"config '{self.name}' is required: give --config-value "
                                  f"{self.name} JSON or --config {self.name} PATH")  # fmt: skip
            raw = None
        if not self.plain and raw is not None and not isinstance(raw, Mapping):
            raise ConfigError(
                f"config '{self.name}' must be a JSON object, got {type(raw).__name__}"
            )
        return raw if self.plain else (freeze(raw) if raw is not None else None)

    def _read_file(self, path: str) -> Any:
        try:
            with open(path) as fh:
                text = fh.read()
        except OSError as exc:
            raise ConfigError(f"config '{self.name}': cannot read {path}: {exc.strerror}") from None
        return self._parse(text, path)

    def _parse(self, text: str, where: str) -> Any:
        parser = self.parser
        if isinstance(parser, str):
            import importlib

            module, _, func = parser.rpartition(".")
            parser = getattr(importlib.import_module(module), func)
        if parser is None:
            try:
                return json.loads(text)
            except ValueError as exc:
                raise ConfigError(
                    f"config '{self.name}': {where} is not valid JSON: {exc}"
                ) from None
        try:
            return parser(text)
        except Exception as exc:
            raise ConfigError(
                f"config '{self.name}': the parser failed on {where}: {exc}"
            ) from None

    # -- use in the class body and in steps ----------------------------------------------------

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        return self if instance is None else self.value

    def __set__(self, instance: Any, value: Any) -> None:
        raise AttributeError(f"Cannot set '{self.attr}': configs are not modifiable")

    def keys(self):  # `**cfg` in a decorator call, while the class body runs
        return self.value.keys()

    def __getitem__(self, key: str) -> Any:
        return self.value[key]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.value, name)

    def __repr__(self) -> str:
        return f"Config({self.name!r})"


def flow_configs(flow_cls: type) -> dict[str, Config]:
    """Every Config of a flow class by attribute name (MRO-aware)."""
    found: dict[str, Config] = {}
    for klass in reversed(flow_cls.__mro__):
        for attr, value in vars(klass).items():
            if isinstance(value, Config):
                found[attr] = value
    return found


def config_values(flow_cls: type) -> dict[str, Any]:
    """Resolved values by attribute name (the namespace config expressions see)."""
    return {attr: cfg.value for attr, cfg in flow_configs(flow_cls).items()}


def resolve_deferred(value: Any, flow_cls: type) -> Any:
    """Evaluate ``value`` if it is a :class:`ConfigExpr`; else return it as is."""
    return value.evaluate(config_values(flow_cls)) if isinstance(value, ConfigExpr) else value
