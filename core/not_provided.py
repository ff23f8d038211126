"""Metaflow names flowkernel does not provide, and the ImportError that says so.

``from flowkernel import conda`` should not fail as a bare "cannot import name": it says that
the name is Metaflow's, that flowkernel does not have it (or not yet), what to use instead, and
where the compatibility table is. A name that a module or plugin provides later (``_LAZY`` in
the package ``__init__``) takes precedence over this table.
"""

from __future__ import annotations

DOC = "docs/compatibility.md"

#: Metaflow name -> what it is in Metaflow, and what to do on flowkernel instead.
NOT_PROVIDED: dict[str, str] = {
    "conda": "per-step Conda environments; install the packages in the environment that runs "
    "the flow (one venv or image), or use @environment for variables",
    "conda_base": "a flow-wide Conda environment; install the packages in the run's environment",
    "pypi": "per-step PyPI environments; install the packages in the environment that runs "
    "the flow",
    "pypi_base": "a flow-wide PyPI environment; install the packages in the run's environment",
    "card": "Metaflow cards; `flow report RUN` writes an HTML report of a run (graph, timeline, "
    "artifacts, logs)",
    "trigger": "event triggering of deployed flows (not yet)",
    "trigger_on_finish": "flow-to-flow triggering of deployed flows (not yet)",
    "kubernetes": "@kubernetes: run a step in a pod; not provided (deployers run whole flows)",
    "batch": "@batch: run a step on AWS Batch; not provided",
    "S3": "Metaflow's S3 client; use boto3 or obstore directly (an s3:// datastore root is a "
    "storage plugin, not this client)",
    "secrets": "@secrets: fetch secrets into the environment; not provided (use @environment "
    "or your platform's secret injection)",
    "profile": "the profile() timing context manager; not provided (use time.perf_counter)",
    "FlowMutator": "flow mutators; not provided (use --with SPEC or Config values)",
    "StepMutator": "step mutators; not provided (use --with SPEC)",
    "user_step_decorator": "user-defined step decorators; not provided",
}


def not_provided_error(name: str) -> ImportError | None:
    """The ImportError for Metaflow name ``name``, or None if it is not one we list."""
    what = NOT_PROVIDED.get(name)
    if what is None:
        return None
    return ImportError(
        f"flowkernel does not provide Metaflow's '{name}': {what}. "
        f"Every Metaflow feature and its status: {DOC} in the flowkernel repository.",
        name="flowkernel",
    )
