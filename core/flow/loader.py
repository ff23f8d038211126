"""Load a flow file and find its FlowSpec subclass.

A flow file is imported as a module named after the file (``hello.py`` -> ``hello``), with its
directory first on ``sys.path``, as ``python hello.py`` would see it. A flow class already
loaded as ``__main__`` (``python hello.py run``) is registered with :func:`preload` and reused.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

from flowkernel.errors import FlowImportError, FlowkernelError, UsageError
from flowkernel.startup import resume_gc

_PRELOADED: dict[str, type] = {}


def preload(flow_cls: type, path: str | None = None) -> str:
    """Register a class already loaded (as ``__main__``, or in a notebook) as the flow of
    ``path`` (default: its module's file); returns the file's absolute path."""
    path = os.path.abspath(path or sys.modules[flow_cls.__module__].__file__ or "")
    _PRELOADED[path] = flow_cls
    return path


def flow_file_of(flow_cls: type) -> str | None:
    module = sys.modules.get(flow_cls.__module__)
    path = getattr(module, "__file__", None)
    return os.path.abspath(path) if path else None


def module_name_for(path: str) -> str:
    stem = os.path.splitext(os.path.basename(path))[0]
    return (
        stem
        if stem.isidentifier()
        else "flowkernel_flow_" + "".join(c if c.isalnum() else "_" for c in stem)
    )


def load_module(path: str, fresh: bool = False) -> Any:
    """Import the flow file at ``path`` (once per process, unless ``fresh``)."""
    resume_gc()  # user code runs with the collector on (see flowkernel.startup)
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise UsageError(f"flow file not found: {path}")
    name = module_name_for(path)
    existing = sys.modules.get(name)
    same_file = os.path.abspath(getattr(existing, "__file__", "") or "") == path
    if existing is not None and same_file and not fresh:
        return existing
    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[name]
        raise UsageError(f"{exc.filename}:{exc.lineno}: syntax error: {exc.msg}")
    except FlowkernelError:  # a config or parameter problem found while the class body ran
        del sys.modules[name]
        raise
    except Exception as exc:
        del sys.modules[name]
        raise FlowImportError(path, exc) from exc
    except BaseException:
        del sys.modules[name]
        raise
    return module


def load_flow(path: str, fresh: bool = False) -> type:
    """The FlowSpec subclass defined in the file at ``path``.

    :param fresh: import the file again (configs changed since it was imported).
    :raises UsageError: the file is missing, does not import, or defines no flow (or several).
    """
    resume_gc()  # user code runs with the collector on (see flowkernel.startup)
    path = os.path.abspath(path)
    if path in _PRELOADED and not fresh:
        return _PRELOADED[path]
    from flowkernel.flow.flowspec import FlowSpec

    module = load_module(path, fresh)
    flows = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, FlowSpec)
        and obj is not FlowSpec
        and obj.__module__ == module.__name__
    ]
    if not flows:
        raise UsageError(f"{path}: no FlowSpec subclass is defined in this file")
    if len(flows) > 1:
        # several classes: the one no other subclasses is the flow (a base class is not)
        leaves = [f for f in flows if not any(o is not f and issubclass(o, f) for o in flows)]
        if len(leaves) != 1:
            names = ", ".join(f.__name__ for f in flows)
            raise UsageError(f"{path}: defines several flows ({names}); keep one per file")
        flows = leaves
    return flows[0]
