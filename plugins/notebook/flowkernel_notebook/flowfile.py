"""The flow file behind an NBRunner / NBDeployer (written from the notebook, removed on cleanup),
and what the two share: :class:`NotebookFlow`."""

from __future__ import annotations

import os
import secrets
from typing import Any

from flowkernel_notebook.source import (
    NotebookSourceError,
    defining_cell,
    file_of,
    find_cell,
    flow_module,
    foreign_names,
)

#: Set by ipykernel for its own display; a flow's process writing to a pipe must not see them.
KERNEL_ONLY_ENV = ("FORCE_COLOR", "CLICOLOR_FORCE", "CLICOLOR", "PAGER", "GIT_PAGER", "TERM")


def notebook_state() -> tuple[list[str], dict[str, Any]]:
    """``(input history, user namespace)`` of the running IPython, or empty ones outside it."""
    try:
        from IPython import get_ipython
    except ImportError:
        return [], {}
    shell = get_ipython()
    if shell is None:
        return [], {}
    return list(shell.user_ns.get("_ih") or []), shell.user_ns


class FlowFile:
    """The flow file for ``flow_cls``: the class's own module file, or one written from the
    notebook into ``base_dir`` (default: the working directory, so that modules next to the
    notebook import in the flow's process too).

    :raises TypeError: ``flow_cls`` is not a FlowSpec subclass.
    :raises NotebookSourceError: the class's source cannot be found, or its steps use names
        defined in other cells (names and cells are in the message).
    """

    def __init__(self, flow_cls: Any, base_dir: str | None = None):
        from flowkernel.flow.flowspec import FlowSpec
        from flowkernel.flow.loader import preload

        if not (isinstance(flow_cls, type) and issubclass(flow_cls, FlowSpec)):
            raise TypeError(f"expected a FlowSpec subclass, got {flow_cls!r}")
        self.flow_cls = flow_cls
        self.written = False
        self.text: str | None = None
        path = file_of(flow_cls)
        if path is None:
            self.text = _notebook_text(flow_cls)
            folder = os.path.abspath(base_dir or os.getcwd())
            path = os.path.join(folder, f"{flow_cls.__name__}_nb_{secrets.token_hex(4)}.py")
        self.path = path
        preload(flow_cls, path)  # this process validates parameters with the class it has
        self.ensure()

    def ensure(self) -> str:
        """Write the file if it is ours and missing (again after :meth:`remove`); its path."""
        if self.text is not None and not os.path.exists(self.path):
            with open(self.path, "w", encoding="utf-8") as fh:
                fh.write(self.text)
            self.written = True
        return self.path

    def remove(self) -> None:
        """Remove the file if this object wrote it."""
        if self.written:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.written = False


class NotebookFlow:
    """The set-up NBRunner and NBDeployer share: ``flow_cls``, its :class:`FlowFile` (checked
    and written before anything starts), ``env`` for the flow's processes (:func:`child_env`),
    the graph as Markdown or SVG when the object is displayed, and its repr.

    :param flow_cls: a FlowSpec subclass, defined in a notebook cell or in a module.
    :param env: variables added to the flow processes' environment.
    :param base_dir: where the flow file is written (default: the working directory).
    """

    def __init__(self, flow_cls: type, env: dict[str, str] | None, base_dir: str | None):
        self.flow_cls = flow_cls
        self.flow_file = FlowFile(flow_cls, base_dir)
        self.env = child_env(env)

    def _repr_markdown_(self) -> str:
        from flowkernel_notebook.display import graph_markdown

        title = f"{type(self).__name__}({self.flow_cls.__name__})"
        return graph_markdown(self.flow_cls, title=title)

    def _repr_svg_(self) -> str:
        from flowkernel_notebook.display import graph_svg_of

        return graph_svg_of(self.flow_cls)

    def __repr__(self) -> str:
        name = f"{type(self).__name__}({self.flow_cls.__name__}"
        return f"{name}, flow_file={self.flow_file.path!r})"


def child_env(env: dict[str, str] | None) -> dict[str, str]:
    """The flow process's environment: this one, less ipykernel's display settings, plus ``env``.

    ipykernel also points MPLBACKEND at its inline backend, which works only inside a kernel.
    """
    base = {k: v for k, v in os.environ.items() if k not in KERNEL_ONLY_ENV}
    if base.get("MPLBACKEND", "").startswith("module://matplotlib_inline"):
        del base["MPLBACKEND"]
    return {**base, **(env or {})}


def _notebook_text(flow_cls: type) -> str:
    history, user_ns = notebook_state()
    cell = find_cell(flow_cls, history)
    text = flow_module(flow_cls, cell, history, user_ns)
    names = foreign_names(text, flow_cls.__name__, user_ns)
    if names:
        where = ", ".join(f"{n} ({_where(n, history)})" for n in names)
        raise NotebookSourceError(
            f"{flow_cls.__name__} (cell {cell.label}) uses names defined in other cells, which "
            f"the flow's process will not have: {where}. Move them into the cell that defines "
            f"{flow_cls.__name__}, above the class, or into a module the notebook imports "
            "(imports from every cell are carried over)."
        )
    return text


def _where(name: str, history: list[str]) -> str:
    found = defining_cell(name, history)
    return found or "set by no plain statement of any cell: by a magic line or exec()"
