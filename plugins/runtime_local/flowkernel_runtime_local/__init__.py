"""flowkernel plugin: the native local runtime (``--runtime=local``)."""
