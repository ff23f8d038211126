"""flowkernel plugin: a kqueue-based process poller for macOS (and the BSDs)."""
