"""Moving a large value between memory and a file while it is hashed on the other core.

SHA-1 runs at about 2 GB/s here and so does copying to or from the page cache: done one after
the other, a 200 MB artifact costs both. ``hashlib`` and file I/O release the GIL, so a second
thread hashes while this one moves the bytes. On the read side the value's buffer is filled
chunk by chunk and a hashing thread follows one chunk behind: it hashes exactly the bytes the
reader received, and is at most one chunk from done when the read ends.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

#: Buffers at least this large are hashed on a second thread; the read side fills them in
#: chunks of this size (bench/README.md: 4, 16 and 32 MB measured alike).
PARALLEL_HASH = 8 << 20
#: A large value goes to its file in writes of this size. The write size is how large a page
#: cache folio the file system allocates: one 200 MB ``write()`` gets the largest, and on the
#: VM we measure on, filling those costs 4-8 times more than 256 KB ones (bench/README.md).
WRITE_SLICE = 256 << 10


#: A value at least this large that a task process saved or loaded is kept until the process
#: exits, once :func:`hold_until_exit` was called (see :mod:`flowkernel.engine.forkchild`).
HOLD_MIN = PARALLEL_HASH
_held: list[Any] | None = None
_held_bytes = 0


def hold_until_exit() -> None:
    """From now on keep the large values this process saves or loads (:func:`hold`) until it
    exits, so that it can leave freeing them to the kernel after its exit instead of freeing
    them itself before it (``forkchild.finish``). Only for a process that runs one task and
    exits: the values live as long as the task's flow object anyway."""
    global _held, _held_bytes
    _held, _held_bytes = [], 0


def hold(value: Any, nbytes: int) -> None:
    """Keep ``value`` (``nbytes`` large) until the process exits, if :func:`hold_until_exit`
    was called and it is at least :data:`HOLD_MIN` bytes; otherwise do nothing."""
    global _held_bytes
    if _held is not None and nbytes >= HOLD_MIN:
        _held.append(value)
        _held_bytes += nbytes


def held_bytes() -> int:
    """How many bytes of values :func:`hold` keeps."""
    return _held_bytes


def hash_while(sha: Any, data: Any, move: Callable[[Any], Any]) -> None:
    """``sha.update(data)`` on a second thread while ``move(data)`` runs on this one."""
    hashing = threading.Thread(target=sha.update, args=(data,))
    hashing.start()
    try:
        move(data)
    finally:
        hashing.join()


def write_sliced(write: Callable[[Any], Any], data: Any) -> None:
    """``write(data)`` as :data:`WRITE_SLICE`-byte ``write`` calls (no copy: memoryview
    slices). A buffer that is not C-contiguous is written in one call, as it is."""
    view = memoryview(data)
    if not view.c_contiguous:
        write(data)
        return
    view = view.cast("B")
    for start in range(0, view.nbytes, WRITE_SLICE):
        write(view[start : start + WRITE_SLICE])


def readinto_hashing(readinto: Callable[[Any], int], view: memoryview, sha: Any) -> int:
    """Fill ``view`` (bytes, writable) with ``readinto`` calls of :data:`PARALLEL_HASH`
    bytes until it is full or the source ends; ``sha`` is updated with every byte read, on a
    second thread that follows the reads. Returns the number of bytes read.

    The chunks go to the hashing thread through a queue, so the reader never waits for it;
    only the end does (a thread started and joined per chunk would make each read wait for
    the previous chunk's hash).
    """
    chunks: queue.SimpleQueue[memoryview | None] = queue.SimpleQueue()

    def hash_chunks() -> None:
        while (chunk := chunks.get()) is not None:
            sha.update(chunk)

    hashing = threading.Thread(target=hash_chunks, name="flowkernel-hash")
    hashing.start()
    total = 0
    try:
        while total < view.nbytes:
            n = readinto(view[total : total + PARALLEL_HASH])
            if not n:
                break
            chunks.put(view[total : total + n])
            total += n
    finally:
        chunks.put(None)
        hashing.join()
    return total
