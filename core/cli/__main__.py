"""``python -m flowkernel.cli``: the ``flow`` command (used by spawned task processes)."""

from flowkernel.cli.main import main

main()
