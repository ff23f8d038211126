"""flowkernel-run-timer: an example plugin that times every run (see docs/writing-a-plugin.md)."""
