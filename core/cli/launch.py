"""The ``flow`` console script and ``python -m flowkernel.cli``: the command line with the
collector paused while it starts (see :mod:`flowkernel.startup`)."""

from __future__ import annotations

from flowkernel.startup import pause_gc


def main() -> None:
    """Entry point of the ``flow`` console script."""
    pause_gc()
    from flowkernel.cli.main import main as flow

    flow()
