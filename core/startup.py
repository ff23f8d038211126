"""The start of a ``flow`` process: the cyclic garbage collector paused until user code runs.

Before it imports the user's flow file, ``flow run`` imports ~300 modules, builds ~40 attrs
classes and loads the plugins: ~50 collections meanwhile (~8-10 ms of CPU per start, measured),
each traversing objects that live as long as the process (modules, classes, functions). The
``flow`` console script (:mod:`flowkernel.cli.launch`) pauses the collector first thing;
:func:`resume_gc` freezes what exists by then (:func:`gc.freeze`: never traversed again, as the
local runtime's fork server freezes it anyway before its first fork) and turns the collector
back on. It is called before the user's flow file is imported
(:func:`flowkernel.flow.loader.load_module`) and, for the commands that do not run a flow,
before the command does its work: user code and long commands always run with the collector on.
Nothing else pauses it: a process that imports flowkernel as a library is never affected.
"""

from __future__ import annotations

import gc

_paused = False


def pause_gc() -> None:
    """Turn the collector off until :func:`resume_gc` (if it is on)."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume_gc() -> None:
    """If :func:`pause_gc` turned the collector off: freeze every object that exists now and
    turn it back on. Otherwise nothing."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()
