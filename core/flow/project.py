"""``@project(name=...)``: runs (and deployments) of a flow grouped under a project and a branch.

The branch of a run is ``user.<user>`` by default, ``test.<branch>`` with ``--branch BRANCH``,
``prod`` with ``--production`` and ``prod.<branch>`` with both (also from the environment:
``FLOWKERNEL_BRANCH``, ``FLOWKERNEL_PRODUCTION``). A run of a project flow carries the system
tags ``project:<name>`` and ``project_branch:<branch>``, and its tasks see ``current.project_name``,
``current.branch_name``, ``current.is_user_branch``, ``current.is_production`` and
``current.project_flow_name`` (``<project>.<branch>.<FlowName>``: the name deployers give it).
"""

from __future__ import annotations

import os
import re
from typing import Any

import attrs

from flowkernel.errors import DecoratorError, UsageError

ENV_BRANCH = "FLOWKERNEL_BRANCH"
ENV_PRODUCTION = "FLOWKERNEL_PRODUCTION"
_NAME = re.compile(r"^[a-z0-9_]+$")
_BRANCH = re.compile(r"^[A-Za-z0-9_.\-]+$")
_MAX_NAME = 128


@attrs.frozen
class ProjectInfo:
    """Where a run of a project flow belongs."""

    name: str  #: the project's name (``@project(name=...)``)
    branch: str  #: ``user.<user>``, ``test.<branch>``, ``prod`` or ``prod.<branch>``
    is_production: bool
    is_user_branch: bool
    flow_name: str  #: ``<project>.<branch>.<FlowName>``

    @property
    def system_tags(self) -> tuple[str, str]:
        return (f"project:{self.name}", f"project_branch:{self.branch}")

    def to_current(self) -> dict[str, Any]:
        """The ``current`` fields a task of this run sees."""
        return {
            "project_name": self.name,
            "branch_name": self.branch,
            "is_user_branch": self.is_user_branch,
            "is_production": self.is_production,
            "project_flow_name": self.flow_name,
        }

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProjectInfo:
        return cls(**data)


@attrs.frozen
class ProjectDecorator:
    """What ``@project`` records on the flow class (``flow_cls._fk_project``)."""

    name: Any  #: a string, or a ``config_expr`` resolved with the flow's configs


def project(cls: type | None = None, *, name: Any = None, **unknown: Any) -> Any:
    """Flow decorator: ``@project(name="my_project")`` (lower-case letters, digits, ``_``)."""
    if unknown:
        raise DecoratorError(
            f"Unknown decorator attribute {', '.join(repr(k) for k in sorted(unknown))} for "
            "@project; supported: name"
        )
    if cls is not None:
        raise DecoratorError("@project needs a name: @project(name='my_project')")
    if name is None:
        raise DecoratorError("@project needs a name: @project(name='my_project')")
    from flowkernel.flow.config import ConfigExpr

    if not isinstance(name, ConfigExpr):
        _check_name(name)

    def mark(flow_cls: type) -> type:
        if "_fk_project" in flow_cls.__dict__:
            raise DecoratorError(f"flow {flow_cls.__name__} has @project twice")
        flow_cls._fk_project = ProjectDecorator(name)
        return flow_cls

    return mark


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or len(name) > _MAX_NAME:
        raise DecoratorError(
            f"@project(name={name!r}): a project name is lower-case letters, digits and "
            f"underscores (at most {_MAX_NAME} characters)"
        )
    return name


def project_name(flow_cls: type) -> str | None:
    """The project of ``flow_cls`` (configs resolved), or None if it has no ``@project``."""
    deco = getattr(flow_cls, "_fk_project", None)
    if deco is None:
        return None
    from flowkernel.flow.config import resolve_deferred

    return _check_name(resolve_deferred(deco.name, flow_cls))


def resolve_project(
    flow_cls: type,
    user: str,
    branch: str | None = None,
    production: bool | None = None,
) -> ProjectInfo | None:
    """Where a run of ``flow_cls`` belongs; None for a flow without ``@project``.

    :param branch: ``--branch`` (None: ``FLOWKERNEL_BRANCH``, else the user's own branch).
    :param production: ``--production`` (None: ``FLOWKERNEL_PRODUCTION`` is set and not 0/false).
    :raises UsageError: a malformed branch name.
    """
    name = project_name(flow_cls)
    if name is None:
        return None
    if branch is None:
        branch = os.environ.get(ENV_BRANCH) or None
    if production is None:
        production = os.environ.get(ENV_PRODUCTION, "").lower() not in ("", "0", "false", "no")
    if branch is not None and not _BRANCH.match(branch):
        raise UsageError(f"--branch {branch!r}: a branch name is letters, digits, '_', '-' and '.'")
    if production:
        full = f"prod.{branch}" if branch else "prod"
    elif branch:
        full = f"test.{branch}"
    else:
        full = f"user.{user}"
    return ProjectInfo(
        name=name,
        branch=full,
        is_production=bool(production),
        is_user_branch=not production and not branch,
        flow_name=f"{name}.{full}.{flow_cls.__name__}",
    )
