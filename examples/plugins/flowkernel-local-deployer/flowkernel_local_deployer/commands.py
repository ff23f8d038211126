"""``flow local-deployer ...``: the deployer contract, implemented on this machine.

A deployment is a directory ``<datastore root>/.deployments/local-deployer/<name>/`` holding a
copy of the flow file (what was deployed runs, not later edits) and ``deployment.json``.
``trigger`` starts ``flow run`` on that copy as a detached process (its own session, output in
``runs/<run id>.log``) and returns once the run exists; ``runs/<run id>.json`` remembers the
process so ``status`` and ``terminate`` can find it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

import click
import psutil

from flowkernel.deployer import (
    deployer_attribute_file,
    parameter_declarations,
    write_deployer_attributes,
)
from flowkernel.errors import UsageError

TYPE = "local-deployer"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
START_TIMEOUT = 120.0


# -- where things are ------------------------------------------------------------------------------


def _root(ctx: click.Context) -> str:
    from flowkernel.datastore import default_root

    root = (ctx.find_root().obj or {}).get("datastore_root")
    return os.path.abspath(root) if root else default_root()


def _home(ctx: click.Context, name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise UsageError(f"invalid deployment name {name!r}: use letters, digits, '.', '_', '-'")
    return os.path.join(_root(ctx), ".deployments", TYPE, name)


def _given_name(ctx: click.Context) -> str | None:
    return ctx.find_object(_GroupState).name if ctx.find_object(_GroupState) else None


def _load(home: str, name: str) -> dict[str, Any]:
    try:
        with open(os.path.join(home, "deployment.json")) as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise UsageError(f"no {TYPE} deployment named '{name}'") from None


def _attributes(ctx: click.Context, record: dict[str, Any]) -> dict[str, Any]:
    """What create / describe / list report for a deployment."""
    return {
        "name": record["name"],
        "flow_name": record["flow_name"],
        "metadata": f"local@{_root(ctx)}",
        "additional_info": {"max_workers": record["max_workers"], "tags": record["tags"]},
        "flow_file": record["flow_file"],
        "parameters": record["parameters"],
    }


# -- the group -------------------------------------------------------------------------------------


class _GroupState:
    def __init__(self, name: str | None):
        self.name = name


@click.group(TYPE)
@click.option("--name", default=None, help="Deployment name [default: the flow's name].")
@click.pass_context
def local_deployer(ctx: click.Context, name: str | None) -> None:
    """Deploy flows as records in the datastore; trigger them as detached local runs."""
    ctx.obj = _GroupState(name)  # the root's settings stay reachable through ctx.find_root()


@local_deployer.command()
@click.argument("flow_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--max-workers", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--tag", "tags", multiple=True, help="Tag every triggered run (repeatable).")
@deployer_attribute_file
@click.pass_context
def create(
    ctx: click.Context,
    flow_file: str,
    max_workers: int,
    tags: tuple[str, ...],
    deployer_attribute_file: str | None,
) -> None:
    """Deploy FLOW_FILE: validate it and record a copy of it in the datastore."""
    from flowkernel.cli.context import get_kernel
    from flowkernel.datastore import write_json_atomic
    from flowkernel.flow.loader import load_flow

    flow_cls = load_flow(os.path.abspath(flow_file))
    get_kernel().validated_graph(flow_cls)  # a broken flow is never deployed
    name = _given_name(ctx) or flow_cls.__name__
    home = _home(ctx, name)
    os.makedirs(os.path.join(home, "runs"), exist_ok=True)
    code = os.path.join(home, os.path.basename(flow_file))
    shutil.copyfile(flow_file, code)
    record = {
        "name": name,
        "flow_name": flow_cls.__name__,
        "flow_file": code,
        "max_workers": max_workers,
        "tags": list(tags),
        "parameters": parameter_declarations(flow_cls),
        "created_at": time.time(),
    }
    write_json_atomic(os.path.join(home, "deployment.json"), record)
    click.echo(f"Deployed {flow_cls.__name__} as '{name}' ({TYPE}).", err=True)
    write_deployer_attributes(deployer_attribute_file, _attributes(ctx, record))


@local_deployer.command(context_settings={"ignore_unknown_options": True})
@click.argument("flow_file", type=click.Path(exists=True, dir_okay=False))
@click.argument("params", nargs=-1, type=click.UNPROCESSED)
@deployer_attribute_file
@click.pass_context
def trigger(
    ctx: click.Context,
    flow_file: str,
    params: tuple[str, ...],
    deployer_attribute_file: str | None,
) -> None:
    """Start a run of FLOW_FILE's deployment (--<parameter> VALUE ...); returns once it exists."""
    name = _given_name(ctx)
    if name is None:
        from flowkernel.flow.loader import load_flow

        name = load_flow(os.path.abspath(flow_file)).__name__
    home = _home(ctx, name)
    record = _load(home, name)
    started = tempfile.mkdtemp(prefix="local-deployer-")
    attr_file = os.path.join(started, "run.json")
    argv = [sys.executable, "-m", "flowkernel.cli", "--datastore-root", _root(ctx), "run"]
    argv += [record["flow_file"], "--runner-attribute-file", attr_file, "--quiet"]
    argv += ["--max-workers", str(record["max_workers"]), "--tag", f"deployment:{name}"]
    for tag in record["tags"]:
        argv += ["--tag", tag]
    log_path = os.path.join(started, "run.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*argv, *params],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # detached: it outlives this command
        )
    deadline = time.monotonic() + START_TIMEOUT
    while not os.path.exists(attr_file):
        if proc.poll() is not None or time.monotonic() > deadline:
            with open(log_path, errors="replace") as fh:
                click.echo(fh.read().rstrip(), err=True)
            raise click.ClickException(f"the run of '{name}' did not start")
        time.sleep(0.02)
    with open(attr_file) as fh:
        run_id = json.load(fh)["run_id"]
    pathspec = f"{record['flow_name']}/{run_id}"
    shutil.move(log_path, os.path.join(home, "runs", f"{run_id}.log"))
    shutil.rmtree(started, ignore_errors=True)
    created = psutil.Process(proc.pid).create_time() if proc.poll() is None else None
    _save_run(home, run_id, {"pathspec": pathspec, "pid": proc.pid, "create_time": created})
    click.echo(f"Triggered {pathspec} from '{name}'.", err=True)
    write_deployer_attributes(
        deployer_attribute_file,
        {"name": name, "pathspec": pathspec, "metadata": f"local@{_root(ctx)}"},
    )


# -- triggered runs --------------------------------------------------------------------------------


def _save_run(home: str, run_id: str, record: dict[str, Any]) -> None:
    from flowkernel.datastore import write_json_atomic

    write_json_atomic(os.path.join(home, "runs", f"{run_id}.json"), record)


def _find_run(ctx: click.Context, pathspec: str) -> tuple[str, dict[str, Any]]:
    """The deployment directory and run record of a triggered run."""
    run_id = pathspec.split("/")[-1]
    base = os.path.join(_root(ctx), ".deployments", TYPE)
    names = [_given_name(ctx)] if _given_name(ctx) else sorted(os.listdir(base) or [])
    for name in names if os.path.isdir(base) else []:
        path = os.path.join(base, name, "runs", f"{run_id}.json")
        if os.path.exists(path):
            with open(path) as fh:
                record = json.load(fh)
            if record["pathspec"] == pathspec:
                return os.path.join(base, name), record
    raise UsageError(f"no run {pathspec} was triggered by a {TYPE} deployment")


def _process(record: dict[str, Any]) -> psutil.Process | None:
    """The run's controller if it still runs (the same process, not a reused pid)."""
    try:
        proc = psutil.Process(record["pid"])
        alive = proc.status() != psutil.STATUS_ZOMBIE
        return proc if alive and proc.create_time() == record["create_time"] else None
    except psutil.NoSuchProcess:
        return None


@local_deployer.command()
@click.argument("pathspec")
@deployer_attribute_file
@click.pass_context
def status(ctx: click.Context, pathspec: str, deployer_attribute_file: str | None) -> None:
    """Print the state of a triggered run: running, successful, failed or terminated."""
    from flowkernel.client import Run

    _, record = _find_run(ctx, pathspec)
    run = Run(pathspec, _namespace_check=False, _root=_root(ctx))
    if run.successful:
        state = "successful"
    elif _process(record) is not None:
        state = "running"
    else:
        state = "terminated" if record.get("terminated") else "failed"
    click.echo(state)
    write_deployer_attributes(deployer_attribute_file, {"status": state})


@local_deployer.command()
@click.argument("pathspec")
@deployer_attribute_file
@click.pass_context
def terminate(ctx: click.Context, pathspec: str, deployer_attribute_file: str | None) -> None:
    """Stop a triggered run and every process of it."""
    home, record = _find_run(ctx, pathspec)
    proc = _process(record)
    if proc is not None:
        tree = [proc, *proc.children(recursive=True)]
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        _, alive = psutil.wait_procs(tree, timeout=10)
        for survivor in alive:
            survivor.kill()
        _save_run(home, pathspec.split("/")[-1], {**record, "terminated": True})
    click.echo(f"{pathspec}: {'terminated' if proc else 'not running'}")
    write_deployer_attributes(deployer_attribute_file, {"terminated": proc is not None})


# -- deployments -----------------------------------------------------------------------------------


@local_deployer.command()
@deployer_attribute_file
@click.pass_context
def describe(ctx: click.Context, deployer_attribute_file: str | None) -> None:
    """Print the deployment given with --name as JSON."""
    name = _required_name(ctx)
    attributes = _attributes(ctx, _load(_home(ctx, name), name))
    click.echo(json.dumps(attributes, indent=2))
    write_deployer_attributes(deployer_attribute_file, attributes)


@local_deployer.command("list")
@click.option("--flow-name", default=None, help="Only deployments of this flow.")
@deployer_attribute_file
@click.pass_context
def list_(ctx: click.Context, flow_name: str | None, deployer_attribute_file: str | None) -> None:
    """List deployments (NAME FLOW)."""
    base = os.path.join(_root(ctx), ".deployments", TYPE)
    found = []
    for name in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        try:
            record = _load(os.path.join(base, name), name)
        except UsageError:
            continue  # a deployment being deleted
        if flow_name in (None, record["flow_name"]):
            found.append(_attributes(ctx, record))
            click.echo(f"{name}  {record['flow_name']}")
    write_deployer_attributes(deployer_attribute_file, {"deployments": found})


@local_deployer.command()
@deployer_attribute_file
@click.pass_context
def delete(ctx: click.Context, deployer_attribute_file: str | None) -> None:
    """Delete the deployment given with --name (the runs it started are kept)."""
    name = _required_name(ctx)
    home = _home(ctx, name)
    _load(home, name)
    shutil.rmtree(home)
    click.echo(f"Deleted '{name}'.", err=True)
    write_deployer_attributes(deployer_attribute_file, {"deleted": True})


def _required_name(ctx: click.Context) -> str:
    name = _given_name(ctx)
    if name is None:
        raise UsageError(f"say which deployment: flow {TYPE} --name NAME ...")
    return name
