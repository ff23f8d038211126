"""flowkernel plugin: build a flow's graph from its source with :mod:`ast`."""
