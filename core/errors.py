"""Every error flowkernel raises on purpose.

Errors a user can fix carry a plain message and, where one helps, a hint. The CLI turns
:class:`UsageError` into exit code 2 and :class:`GraphValidationError` into exit code 1.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from flowkernel.graph.model import GraphProblem


class FlowkernelError(Exception):
    """Base class: a problem the user can understand and act on (no traceback needed)."""

    headline = "Error"


class UsageError(FlowkernelError):
    """Bad command-line or API input (exit code 2): unknown option, bad parameter value, ..."""

    headline = "Usage error"


class FlowImportError(FlowkernelError):
    """The flow file raised while it was imported; shows the traceback of the file's own frames."""

    headline = "Could not import the flow file"

    def __init__(self, path: str, exc: BaseException):
        import traceback

        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != path:
            tb = tb.tb_next  # skip the import machinery's frames
        trace = "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))
        super().__init__(f"{path}\n{trace.rstrip()}")
        self.path = path


class ConfigError(UsageError):
    """A config that cannot be read or parsed (a usage error: exit code 2)."""


class FlowStartError(FlowkernelError, RuntimeError):
    """A ``Runner`` flow did not start (validation or usage error); the message is the child
    process's own error, its exit code and output are kept."""

    def __init__(self, message: str, returncode: int | None, stdout: str, stderr: str):
        super().__init__(message)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


class DeployerError(FlowkernelError, RuntimeError):
    """A deployer command failed; the message is the command's own error text."""

    headline = "Deployer error"

    def __init__(
        self, message: str, returncode: int | None = None, stdout: str = "", stderr: str = ""
    ):
        super().__init__(message)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


class PluginError(FlowkernelError):
    """A plugin could not be loaded, is missing, failed in a hook, or two plugins claim the
    same name. ``plugin`` and ``hook`` name the culprit when one is known."""

    headline = "Plugin error"
    plugin: str | None = None
    hook: str | None = None

    @classmethod
    def in_hook(cls, plugin: str, hook: str, exc: BaseException) -> PluginError:
        """Plugin ``plugin`` raised ``exc`` in its implementation of ``hook``."""
        error = cls(
            f"plugin {plugin} failed in {hook}: {type(exc).__name__}: {exc}; update or fix the "
            f"plugin, or run without it (FLOWKERNEL_DISABLE_PLUGINS={plugin})"
        )
        error.plugin, error.hook = plugin, hook
        return error


class MissingPluginError(PluginError):
    """Something was asked for that no installed plugin provides."""


class StorageBackendMissingError(MissingPluginError, UsageError):
    """The datastore root's URL scheme has no installed backend (exit 2, names the plugin)."""


class GraphValidationError(FlowkernelError):
    """The flow failed validation; nothing ran. Holds every problem that was found."""

    headline = "Validity checker found an issue"

    def __init__(self, problems: Sequence[GraphProblem]):
        self.problems = tuple(problems)
        super().__init__("\n\n".join(p.format() for p in self.problems))


class InvalidNextError(FlowkernelError):
    """A ``self.next()`` call that does not match what the flow's graph allows.

    ``step``, ``file`` and ``line`` say where (the message starts with them when known).
    """

    headline = "Invalid self.next() transition detected"

    def __init__(
        self,
        msg: str,
        *,
        step: str | None = None,
        file: str | None = None,
        line: int | None = None,
    ):
        self.step, self.file, self.line = step, file, line
        where = []
        if step is not None:
            where.append(f"step '{step}'")
        if line is not None:
            where.append(f"{os.path.basename(file)}, line {line}" if file else f"line {line}")
        super().__init__(f"{' '.join(where[:1])} ({where[1]}): {msg}" if len(where) == 2 else
                         f"{where[0]}: {msg}" if where else msg)  # fmt: skip


class MergeArtifactsError(FlowkernelError):
    """``merge_artifacts`` misuse (called outside a join, include and exclude together)."""


class UnhandledInMergeArtifactsError(MergeArtifactsError):
    """Inputs disagree on artifacts that merge_artifacts was asked to merge."""

    def __init__(self, msg: str, unhandled: Sequence[str]):
        super().__init__(msg)
        self.artifact_names = list(unhandled)


class MissingInMergeArtifactsError(MergeArtifactsError):
    """``include=`` names artifacts that no input has."""

    def __init__(self, msg: str, missing: Sequence[str]):
        super().__init__(msg)
        self.artifact_names = list(missing)


class DecoratorError(FlowkernelError):
    """A step decorator used the wrong way (unknown attribute, not on a step, ...)."""


class ParameterError(FlowkernelError):
    """A Parameter declared the wrong way (reserved name, bad type, duplicate, ...)."""


class TooManySplitsError(FlowkernelError):
    """A foreach yields more splits than ``--max-num-splits`` allows."""

    headline = "Too many splits"


class UnpicklableArtifactError(FlowkernelError):
    """An artifact could not be pickled; names the artifact."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"Cannot pickle artifact '{name}': {reason}")
        self.artifact_name = name


class StorageError(FlowkernelError):
    """The datastore could not be written or read: disk full, read-only, damaged files, an
    object store's endpoint down, credentials refused, bucket missing.

    The message is one line naming the path (or endpoint, bucket, credential) and what is wrong.
    """

    headline = "Storage error"


class CorruptArtifactError(StorageError):
    """An artifact's stored bytes are damaged or gone; names the artifact, task and file."""

    def __init__(self, message: str, artifact: str | None = None, path: str | None = None):
        super().__init__(message)
        self.artifact_name = artifact
        self.path = path


class CorruptRecordError(StorageError):
    """A task or run record that exists but cannot be read (empty, truncated, not JSON)."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"corrupt record {path}: {reason}")
        self.path = path


class NotFoundError(FlowkernelError):
    """A client object (flow, run, step, task, artifact) does not exist."""

    headline = "Object not found"


class InvalidPathspecError(FlowkernelError):
    """A pathspec with the wrong number of components, or a component that is not a valid name
    (one that could lead outside the datastore: `..`, a path separator, an absolute path)."""


class NamespaceMismatchError(FlowkernelError):
    """The object exists but is not in the current namespace."""


class InternalError(FlowkernelError):
    """The engine found a state that should not happen (a task's transition that does not match
    the graph, a join with the wrong number of inputs, ...)."""

    headline = "Internal error"


class TransitionMismatchError(InvalidNextError, InternalError):
    """A finished task's transition does not match the graph (no ``self.next()``, a target the
    graph does not have): an :class:`InvalidNextError` naming the step and line, and an
    :class:`InternalError` as Metaflow reports it."""


class TaggingError(FlowkernelError):
    """A tag change that is not allowed (a system tag removed, an empty or too long tag, ...);
    nothing was changed."""

    headline = "Tagging error"


class TimeoutException(FlowkernelError):
    """Raised inside a task when its ``@timeout`` expires."""


class FailureHandledByCatch(FlowkernelError):
    """Raised by the @catch fallback attempt after the task process died without an exception."""


class ExceptionWrapper:
    """A picklable summary of an exception: what ``task.exception`` and ``@catch`` hold.

    ``exception`` is ``str(exc)``, ``type`` is ``"module.ClassName"``.
    """

    def __init__(self, exc: BaseException | None = None, stacktrace: str = ""):
        self.exception = str(exc) if exc is not None else ""
        klass = type(exc) if exc is not None else type(None)
        self.type = f"{klass.__module__}.{klass.__qualname__}"
        self.stacktrace = stacktrace

    def __repr__(self) -> str:
        return f"ExceptionWrapper(type={self.type!r}, exception={self.exception!r})"

    def __str__(self) -> str:
        return f"{self.type}: {self.exception}"
