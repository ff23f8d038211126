"""The ``flow`` command line (click). Plugins add commands through ``flowkernel_cli``."""
