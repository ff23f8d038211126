"""``python -m flowkernel.cli``: the ``flow`` command (used by spawned task processes)."""

from flowkernel.cli.launch import main

main()
