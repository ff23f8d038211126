"""``self.input`` without loading the whole foreach variable in every child task.

A foreach step's task stores the variable it splits over like any artifact; each of its N
child tasks used to load that whole value to take one item (``self.input``), and, having
loaded it, to pickle it again when persisting (O(N) per task, O(N^2) for the foreach). So a
foreach over a list, tuple or range of more than :data:`CHUNK` plain values is also stored in
chunks of consecutive items: each chunk is a content-addressed artifact blob (a pickled list),
and the foreach task's record names them (``foreach_chunks``: the variable, the hash of the
value they were cut from, items per chunk, the chunk hashes). A child task's ``self.input``
then loads, and verifies against its hash like every artifact read, the one chunk holding its
item (:meth:`FlowSpec._fk_chunk_item`); the whole variable is still there under its name for
code that reads it, and is loaded only then.

Plain values only (None, bool, int, float, complex, short str and bytes, and small tuples of
them): such an item is equal however it was unpickled, and no task can observe that it is not
the same object as ``self.<var>[i]`` (an item a task could mutate through ``self.input`` would
be). A child task uses the chunks only while the variable in it is the one they were cut from
(neither reassigned nor loaded by the task); otherwise ``self.input`` indexes the variable.
Only the foreach step's direct children use them (a later step of the same foreach level
reads ``self.input`` from the variable, as before).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowkernel.flow.flowspec import ForeachChunks

if TYPE_CHECKING:
    from flowkernel.datastore import FlowStore

#: Items per chunk (more for a foreach wider than CHUNK * MAX_CHUNKS), and the smallest foreach
#: that is chunked: a variable of at most this many items is cheap to load whole.
CHUNK = 64
#: At most this many chunks, so that the foreach task's record stays small.
MAX_CHUNKS = 256
#: Longest str or bytes item (a pickle memoizes one string referenced by many items; a chunk
#: holds it again, so long repeated strings could multiply the storage).
MAX_TEXT = 1024
_ATOMS = (type(None), bool, int, float, complex)


def _plain(item: Any) -> bool:
    kind = type(item)
    if kind in _ATOMS:
        return True
    if kind is str or kind is bytes:
        return len(item) <= MAX_TEXT
    if kind is tuple and len(item) <= 16:
        return all(type(x) in _ATOMS or (type(x) in (str, bytes) and len(x) <= MAX_TEXT)
                   for x in item)  # fmt: skip
    return False


def store_chunks(store: FlowStore, var: str, value: Any, source: str) -> ForeachChunks | None:
    """Store ``value`` (the foreach variable ``var``, whose blob is ``source``) in chunks, if
    it is a list, tuple or range of more than :data:`CHUNK` plain values; else None."""
    if type(value) not in (list, tuple, range) or len(value) <= CHUNK:
        return None
    if type(value) is not range and not all(_plain(item) for item in value):
        return None
    size = max(CHUNK, -(-len(value) // MAX_CHUNKS))
    shas = tuple(store.save(var, list(value[i : i + size]))[0] for i in range(0, len(value), size))
    return ForeachChunks(var, source, size, shas)


def chunks_for(flow: Any, store: FlowStore, artifacts: dict[str, str]) -> ForeachChunks | None:
    """The chunks of the variable a successful foreach task splits over, stored now; None if
    the task did not split (or an unbounded foreach) or the variable is not chunked."""
    from flowkernel.errors import StorageError, UnpicklableArtifactError

    state = flow.__dict__
    var = state.get("_foreach_var")
    if not var or not state.get("_foreach_num_splits") or var not in artifacts:
        return None
    try:
        return store_chunks(store, var, getattr(flow, var), artifacts[var])
    except (StorageError, UnpicklableArtifactError):  # optional: children read the variable
        return None
