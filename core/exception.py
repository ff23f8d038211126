"""Metaflow's exception names, for code that catches them: ``from flowkernel.exception import ...``.

Each name is the flowkernel class that plays the same part, not a copy, so ``except
MetaflowNotFound`` and ``except NotFoundError`` catch the same errors. ``MetaflowException`` is
the base of every error flowkernel raises on purpose (:class:`~flowkernel.errors.FlowkernelError`).
Names whose Metaflow meaning has no counterpart here are left out on purpose:
docs/compatibility.md lists them.
"""

from __future__ import annotations

from flowkernel.errors import (
    DecoratorError,
    ExceptionWrapper,
    FailureHandledByCatch,
    FlowkernelError,
    InternalError,
    InvalidNextError,
    InvalidPathspecError,
    MissingInMergeArtifactsError,
    NamespaceMismatchError,
    NotFoundError,
    ParameterError,
    TaggingError,
    TimeoutException,
    UnhandledInMergeArtifactsError,
)

MetaflowException = FlowkernelError
MetaflowInternalError = InternalError
MetaflowNotFound = NotFoundError
MetaflowInvalidPathspec = InvalidPathspecError
MetaflowNamespaceMismatch = NamespaceMismatchError
MetaflowTaggingError = TaggingError
MetaflowExceptionWrapper = ExceptionWrapper
InvalidNextException = InvalidNextError
UnhandledInMergeArtifactsException = UnhandledInMergeArtifactsError
MissingInMergeArtifactsException = MissingInMergeArtifactsError
#: Metaflow raises these three for decorator misuse; here one class covers all of them.
BadStepDecoratorException = DecoratorError
UnknownStepDecoratorException = DecoratorError
InvalidDecoratorAttribute = DecoratorError
#: A Parameter declared or given the wrong way.
ParameterFieldFailed = ParameterError
ParameterFieldTypeMismatch = ParameterError

__all__ = [
    "BadStepDecoratorException",
    "FailureHandledByCatch",
    "InvalidDecoratorAttribute",
    "InvalidNextException",
    "MetaflowException",
    "MetaflowExceptionWrapper",
    "MetaflowInternalError",
    "MetaflowInvalidPathspec",
    "MetaflowNamespaceMismatch",
    "MetaflowNotFound",
    "MetaflowTaggingError",
    "MissingInMergeArtifactsException",
    "ParameterFieldFailed",
    "ParameterFieldTypeMismatch",
    "TimeoutException",
    "UnhandledInMergeArtifactsException",
    "UnknownStepDecoratorException",
]
#: Every Metaflow exception name this module provides (``flowkernel`` re-exports them).
METAFLOW_NAMES = tuple(__all__)
