"""Turn a flow class defined in a notebook into a flow file a child process can run.

The class is found by the cell that compiled it: a step method's ``co_filename`` names the cell,
and IPython keeps the cell's (transformed) text in :mod:`linecache`. If that entry is gone, the
newest cell in the input history (``_ih``) that defines a class of that name is used. The file
holds the imports of every cell (those that worked), then the defining cell's statements up to
the class (lines that call IPython, such as magics and ``!`` commands, are left out), then a
``__main__`` guard. A step that uses a name bound in another cell (not by an import) would fail
in the child with a ``NameError``; :func:`foreign_names` finds those names first.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import linecache
import os
import symtable
import sys
from typing import Any

import attrs

from flowkernel.errors import FlowkernelError


class NotebookSourceError(FlowkernelError):
    """The flow class cannot be turned into a flow file (source not found, names from other
    cells); nothing was started."""

    headline = "Cannot run this flow from the notebook"


@attrs.frozen
class Cell:
    """The cell that defined a flow class.

    :ivar text: the cell's text as Python (IPython syntax already transformed).
    :ivar label: how to name the cell to a person: ``In [3]``.
    :ivar node: the class's statement in the parsed cell.
    :ivar tree: the parsed cell.
    """

    text: str
    label: str
    node: ast.ClassDef
    tree: ast.Module


def find_cell(flow_cls: type, history: list[str]) -> Cell:
    """The cell that defined ``flow_cls`` (this exact class object where linecache allows).

    :param history: the kernel's input history, ``_ih`` (index = execution count).
    :raises NotebookSourceError: no cell holds the class's source (``%%time``, ``exec``).
    """
    name = flow_cls.__name__
    for code in _class_code_objects(flow_cls):
        text = "".join(linecache.getlines(code.co_filename))
        tree = _parse(text)
        node = tree and _class_at(tree, name, code.co_firstlineno)
        if node is not None:
            return Cell(text, _label(text, history), node, tree)
    for number in range(len(history) - 1, 0, -1):  # history fallback: the newest definition
        tree = _parse(history[number])
        nodes = [n for n in (tree.body if tree else ()) if _is_class(n, name)]
        if nodes:
            return Cell(history[number], f"In [{number}]", nodes[-1], tree)
    raise NotebookSourceError(
        f"cannot find the source of flow class {name}: it was not defined by a plain notebook "
        "cell (a cell magic such as %%time, or exec(), hides it). Define the class in a cell "
        "without cell magics, run that cell, and create the NBRunner again."
    )


def flow_module(flow_cls: type, cell: Cell, history: list[str], user_ns: dict[str, Any]) -> str:
    """The text of a flow file for ``flow_cls``.

    Imports of every history cell that bound their names come first (``__future__`` ones at
    the very top), then the defining cell's statements up to the class end, except statements
    that call IPython and other flow classes of that cell.
    """
    future: list[str] = []
    imports: list[str] = []
    for text in history:
        tree = _parse(text)
        for stmt in tree.body if tree else ():
            if isinstance(stmt, (ast.Import, ast.ImportFrom)) and _bound(stmt, user_ns):
                line = ast.unparse(stmt)
                target = future if getattr(stmt, "module", None) == "__future__" else imports
                if line not in future and line not in imports:
                    target.append(line)
    lines = cell.text.splitlines()
    body: list[str] = []
    for stmt in cell.tree.body:
        if stmt.lineno > cell.node.end_lineno:
            break
        if isinstance(stmt, (ast.Import, ast.ImportFrom)) and ast.unparse(stmt) in imports:
            continue
        if stmt is not cell.node and _other_flow(stmt, flow_cls, user_ns):
            continue
        if _calls_ipython(stmt):
            continue
        first = min([stmt.lineno] + [d.lineno for d in getattr(stmt, "decorator_list", ())])
        body.append("\n".join(lines[first - 1 : stmt.end_lineno]))
    header = f"# Written by flowkernel's NBRunner from notebook cell {cell.label}; edits are lost."
    guard = f'if __name__ == "__main__":\n    {flow_cls.__name__}()'
    return "\n".join([*future, header, *imports, "", *body, "", guard, ""])


def foreign_names(module_text: str, class_name: str, user_ns: dict[str, Any]) -> list[str]:
    """Names the class uses that the flow file does not bind but the notebook does (sorted)."""
    try:
        table = symtable.symtable(module_text, "<flow>", "exec")
    except (SyntaxError, ValueError):
        return []  # the child reports what is wrong with the file
    bound = {s.get_name() for s in table.get_symbols() if s.is_assigned() or s.is_imported()}
    bound |= _star_imported(ast.parse(module_text))
    classes = [t for t in table.get_children() if t.get_name() == class_name]
    if not classes:
        return []
    used: set[str] = set()
    pending = [classes[-1]]
    while pending:
        scope = pending.pop()
        pending.extend(scope.get_children())
        used |= {s.get_name() for s in scope.get_symbols() if s.is_global() and s.is_referenced()}
    missing = used - bound - set(dir(builtins))
    return sorted(n for n in missing if n in user_ns and not n.startswith("__"))


def defining_cell(name: str, history: list[str]) -> str | None:
    """``In [n]`` of the newest cell that binds ``name`` at its top level, if any."""
    for number in range(len(history) - 1, 0, -1):
        try:
            symbol = symtable.symtable(history[number], "<cell>", "exec").lookup(name)
        except (SyntaxError, ValueError, KeyError):
            continue
        if symbol.is_assigned() or symbol.is_imported():
            return f"In [{number}]"
    return None


def file_of(flow_cls: type) -> str | None:
    """The real source file of a class defined in a module (not in a notebook cell)."""
    path = getattr(sys.modules.get(flow_cls.__module__), "__file__", None)
    return os.path.abspath(path) if path and os.path.isfile(path) else None


# -- helpers -----------------------------------------------------------------------------------


def _class_code_objects(flow_cls: type) -> list[Any]:
    """Code objects of the functions written in the class body (decorators unwrapped)."""
    found = []
    for value in vars(flow_cls).values():
        func = getattr(value, "__func__", value)  # classmethod / staticmethod
        if isinstance(value, property):
            func = value.fget
        if not callable(func):
            continue
        try:
            func = inspect.unwrap(func)
        except ValueError:
            continue
        code = getattr(func, "__code__", None)
        if code is not None:
            found.append(code)
    return found


def _parse(text: str) -> ast.Module | None:
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError):
        return None


def _is_class(node: ast.stmt, name: str) -> bool:
    return isinstance(node, ast.ClassDef) and node.name == name


def _class_at(tree: ast.Module, name: str, lineno: int) -> ast.ClassDef | None:
    for node in tree.body:
        if _is_class(node, name) and node.lineno <= lineno <= (node.end_lineno or 0):
            return node  # type: ignore[return-value]
    return None


def _label(text: str, history: list[str]) -> str:
    for number in range(len(history) - 1, 0, -1):
        if history[number].rstrip() == text.rstrip():
            return f"In [{number}]"
    return "(cell not in the history)"


def _bound(stmt: ast.Import | ast.ImportFrom, user_ns: dict[str, Any]) -> bool:
    """True when every name the import binds exists in the notebook (the import worked)."""
    if isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__":
        return True
    names = [alias.asname or alias.name.split(".")[0] for alias in stmt.names if alias.name != "*"]
    return all(n in user_ns for n in names)


def _calls_ipython(stmt: ast.stmt) -> bool:
    return any(isinstance(n, ast.Name) and n.id == "get_ipython" for n in ast.walk(stmt))


def _other_flow(stmt: ast.stmt, flow_cls: type, user_ns: dict[str, Any]) -> bool:
    """Another flow class of the defining cell (kept if ``flow_cls`` derives from it)."""
    from flowkernel.flow.flowspec import FlowSpec

    if not isinstance(stmt, ast.ClassDef):
        return False
    other = user_ns.get(stmt.name)
    return (
        isinstance(other, type)
        and issubclass(other, FlowSpec)
        and other not in flow_cls.__mro__
        and stmt.name != flow_cls.__name__
    )


def _star_imported(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for stmt in tree.body:
        if isinstance(stmt, ast.ImportFrom) and any(a.name == "*" for a in stmt.names):
            module = sys.modules.get(stmt.module or "")
            public = getattr(module, "__all__", None)
            if public is None:
                public = [n for n in vars(module) if not n.startswith("_")] if module else []
            names.update(public)
    return names
