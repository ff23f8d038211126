"""``UnboundedForeachInput``: a foreach input whose width is decided when the foreach runs.

``self.next(self.work, foreach="shards")`` where ``self.shards`` is an
:class:`UnboundedForeachInput` does not iterate the value: the split records
``_unbounded_foreach`` and no width (``_foreach_num_splits`` is None). The runtime then runs,
as in Metaflow, one **control task** of ``work`` (``ubf_context`` :data:`UBF_CONTROL`, task id
``<id>``) that decides the width: it asks the object, in the control task's own process on
whatever runtime runs it (:func:`foreach_width`: ``len(obj)``, else ``obj[i]`` until
``IndexError``), and records the **mapper tasks** it fans out into (``_control_mapper_tasks``,
their pathspecs; ``_control_task_is_mapper_zero`` False). The mapper tasks (:data:`UBF_TASK`,
ids ``<id>_node_0`` ... ``<id>_node_<N-1>``) run the step's code, one per element
(``self.index`` = i, ``self.input`` = ``obj[i]``, the foreach frame's ``num_splits`` None);
the join that follows sees the mapper tasks only, in index order. ``Step.control_tasks()``
yields the control tasks. So a plugin decides the width by what its input subclass answers.

The foreach body must be a single step followed by its join (checked when ``self.next`` runs).
"""

from __future__ import annotations

from typing import Any

#: The ``ubf_context`` of the task that decides the width (Metaflow's name).
UBF_CONTROL = "ubf_control"
#: The ``ubf_context`` of a mapper task: one per element, runs the step's code.
UBF_TASK = "ubf_task"
#: The value of a control task's ``internal_task_type`` metadata (Metaflow's name).
CONTROL_TASK_TAG = "control_task"
#: Most elements :func:`foreach_width` counts by indexing (``--max-num-splits`` applies after).
MAX_COUNTED = 1_000_000


class UnboundedForeachInput:
    """Subclass this for a foreach input whose width is decided when the foreach runs.

    Implement ``__getitem__`` (raise ``IndexError`` past the last element), and ``__len__`` if
    the width is cheap to know. Both are asked in the control task, where the runtime runs it
    (``current`` is set there), never when ``self.next`` is called.
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
