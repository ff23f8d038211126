"""The ``dask`` runtime: flowkernel tasks as ``flow step`` processes on a Dask cluster."""
