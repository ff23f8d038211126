"""The retry and ``@catch`` policy every runtime applies to failed task attempts.

A step's attempts are numbered from 0. ``@retry(times=N)`` allows N more attempts that run the
step's code again; ``@catch`` adds up to 3 attempts after those, for failures that left no
Python exception (the process died): such an attempt does not run the step's code and records
the failure as caught (:class:`~flowkernel.errors.FailureHandledByCatch`). At most
:data:`~flowkernel.flow.decorators.MAX_ATTEMPTS` attempts in all. An attempt whose process
exits with :data:`NO_RETRY_EXIT_CODE`, was stopped by the runtime, or fails while the run is
already failing is never retried.
"""

from __future__ import annotations

import signal
from typing import final

import attrs

from flowkernel.flow.decorators import MAX_ATTEMPTS, step_decorators, timeout_seconds

#: A task that exits with this code is never retried (Metaflow's convention).
NO_RETRY_EXIT_CODE = 202
#: Attempts ``@catch`` adds after the ``@retry`` ones, for processes that died.
CATCH_EXTRA_ATTEMPTS = 3


@final
@attrs.frozen
class RetryPolicy:
    """How often a step's task may be attempted, from the step's ``@retry`` and ``@catch``."""

    #: ``@retry(times=N)``: attempts after the first that run the step's code again
    user_retries: int = 0
    #: the step has ``@catch``
    catch: bool = False
    #: ``@timeout`` in seconds (0: none); the task enforces it itself, a runtime may add a grace
    timeout: float = 0.0

    @classmethod
    def of_step(cls, flow_cls: type, step: str) -> RetryPolicy:
        """The policy of ``step`` (its own decorators plus those ``--with`` attached)."""
        decos = step_decorators(getattr(flow_cls, step))
        return cls(
            user_retries=int(decos["retry"]["times"]) if "retry" in decos else 0,
            catch="catch" in decos,
            timeout=timeout_seconds(decos["timeout"].attributes) if "timeout" in decos else 0.0,
        )

    @property
    def max_attempts(self) -> int:
        extra = CATCH_EXTRA_ATTEMPTS if self.catch else 0
        return min(MAX_ATTEMPTS, 1 + self.user_retries + extra)

    def retries(
        self,
        attempt: int,
        returncode: int | None,
        *,
        stopped: bool,
        run_failing: bool,
        lost: bool = False,
    ) -> bool:
        """Whether failed attempt ``attempt`` is followed by another.

        :param returncode: the attempt's exit code (``None`` if unknown).
        :param stopped: the runtime stopped the attempt (fail-fast, interrupt).
        :param run_failing: the run has already failed for another reason.
        :param lost: the runtime lost the attempt with the machine running it (a Dask worker
            died): it runs again whatever ``@retry`` says, up to ``MAX_ATTEMPTS`` in all.
        """
        return (
            not stopped
            and not run_failing
            and returncode != NO_RETRY_EXIT_CODE
            and attempt + 1 < (MAX_ATTEMPTS if lost else self.max_attempts)
        )


def describe_exit(returncode: int | None) -> str:
    """How a task process ended, for messages: ``exited with status 1``, ``killed by SIGKILL``."""
    if returncode is None:
        return "ended without an exit status"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        extra = " (segmentation fault)" if returncode == -signal.SIGSEGV else ""
        return f"killed by {name}{extra}"
    return f"exited with status {returncode}"
