"""``flow spin FILE RUN/STEP/TASK``: run one task of a past run again, into a spin datastore."""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import sys
import tempfile
import types
from typing import Any

import click

from flowkernel.errors import UsageError


@click.command()
@click.argument("flow_file", metavar="FILE")
@click.argument("pathspec", metavar="[FLOW/]RUN/STEP/TASK")
@click.option("--skip-decorators", is_flag=True, help="Run the step without its decorators.")
@click.option(
    "--artifacts-module",
    default=None,
    metavar="MODULE",
    help="A module (file or dotted name) whose top-level values replace the artifacts of the "
    "same names the task reads.",
)
@click.option(
    "--persist/--no-persist",
    default=True,
    show_default=True,
    help="Keep the spun attempt in the spin datastore (--no-persist: a temporary one).",
)
@click.option(
    "--spin-root",
    default=None,
    metavar="ROOT",
    help="The spin datastore [default: <datastore root>/.spin].",
)
@click.option("--runner-attribute-file", default=None, hidden=True)
@click.pass_context
def spin(
    ctx: click.Context,
    flow_file: str,
    pathspec: str,
    skip_decorators: bool,
    artifacts_module: str | None,
    persist: bool,
    spin_root: str | None,
    runner_attribute_file: str | None,
) -> None:
    """Run the step of one task of a past run again, with that task's inputs and the flow
    file as it is now; the new attempt goes to a separate spin datastore (the run is not
    touched). Exit 0 if it succeeded."""
    from flowkernel.cli.context import get_kernel
    from flowkernel.cli.run_cmds import _abspath, _datastore_root
    from flowkernel.datastore import FlowStore, write_json_atomic
    from flowkernel.engine.runs import current_user
    from flowkernel.engine.spin import spin_task
    from flowkernel.flow.loader import load_flow

    flow_cls = load_flow(flow_file)
    graph = get_kernel().validated_graph(flow_cls)
    store = FlowStore(_datastore_root(ctx), flow_cls.__name__, _abspath(flow_file))
    artifacts = _artifacts(artifacts_module) if artifacts_module else None
    scratch = None if persist else tempfile.mkdtemp(prefix="flowkernel-spin-")
    try:
        result = spin_task(
            flow_cls, graph, store, pathspec,
            spin_root=scratch or spin_root, artifacts=artifacts,
            skip_decorators=skip_decorators, user=current_user(),
        )  # fmt: skip
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    ok = result.returncode == 0
    where = f"in {result.datastore_root}" if persist else "(not kept: --no-persist)"
    click.echo(f"Spin of {result.pathspec} {'succeeded' if ok else 'failed'} {where}", err=True)
    if runner_attribute_file:
        write_json_atomic(runner_attribute_file, {
            "flow_name": result.flow_name, "run_id": result.run_id, "step": result.step,
            "task_id": result.task_id, "attempt": result.attempt,
            "datastore_root": result.datastore_root if persist else None,
        })  # fmt: skip
    sys.exit(result.returncode)


def _artifacts(spec: str) -> dict[str, Any]:
    """The public top-level values of the module ``spec`` (a ``.py`` file or a dotted name),
    leaving out modules, functions and classes."""
    try:
        if spec.endswith(".py") or os.path.sep in spec:
            loader_spec = importlib.util.spec_from_file_location("_flowkernel_spin_artifacts", spec)
            if loader_spec is None or loader_spec.loader is None:
                raise ImportError(f"not a Python file: {spec}")
            module = importlib.util.module_from_spec(loader_spec)
            loader_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(spec)
    except (ImportError, OSError, SyntaxError) as exc:
        raise UsageError(f"--artifacts-module {spec}: {exc}") from None
    skip = (types.ModuleType, types.FunctionType, type)
    return {
        name: value
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, skip)
    }
