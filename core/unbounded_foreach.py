"""``UnboundedForeachInput``: a foreach input whose width is not known when the flow is written.

``self.next(self.work, foreach="shards")`` where ``self.shards`` is an
:class:`UnboundedForeachInput` does not iterate the value when ``self.next`` is called: the
width is asked of the object when the split task ends (:func:`foreach_width`), which is where a
runtime fans out. The protocol is the one a sequence has: ``obj[i]`` is the i-th element, and
either ``len(obj)`` gives the width or ``obj[i]`` raises ``IndexError`` past the end.

The names Metaflow uses for the roles of the tasks around such a foreach are here too, for code
that refers to them; flowkernel's runtimes run the width as ordinary foreach tasks (no separate
control task: docs/compatibility.md).
"""

from __future__ import annotations

from typing import Any

#: The task of a foreach that decides the width and starts the others (Metaflow's name).
UBF_CONTROL = "ubf_control"
#: One of the tasks doing the work (one per element).
UBF_TASK = "ubf_task"
#: The tag Metaflow gives a control task.
CONTROL_TASK_TAG = "control_task"
#: Most elements :func:`foreach_width` counts by indexing (``--max-num-splits`` applies after).
MAX_COUNTED = 1_000_000


class UnboundedForeachInput:
    """Subclass this for a foreach input whose width is decided when the foreach runs.

    Implement ``__getitem__`` (raise ``IndexError`` past the last element), and ``__len__`` if
    the width is cheap to know.
    """

    def __getitem__(self, index: int) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__} must implement __getitem__ (IndexError past the end)"
        )


def foreach_width(value: UnboundedForeachInput, limit: int | None = None) -> int:
    """How many tasks the foreach over ``value`` runs: ``len(value)``, else the first index
    at which ``value[i]`` raises ``IndexError`` (counting stops past ``limit``, if given)."""
    try:
        return len(value)  # type: ignore[arg-type]
    except TypeError:
        pass
    stop = MAX_COUNTED if limit is None else min(MAX_COUNTED, limit + 1)
    for index in range(stop):
        try:
            value[index]
        except IndexError:
            return index
    return stop
