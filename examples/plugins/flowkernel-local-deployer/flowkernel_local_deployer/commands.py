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

from flowkernel.deployer_commands import (
    datastore_root,
    deployer_command,
    deployer_group,
    describe_command,
    group_option,
    list_command,
    parameter_declarations,
    required_name,
)
from flowkernel.errors import UsageError

TYPE = "local-deployer"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
START_TIMEOUT = 120.0


# -- where things are ------------------------------------------------------------------------------


def _home(ctx: click.Context, name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise UsageError(f"invalid deployment name {name!r}: use letters, digits, '.', '_', '-'")
    return os.path.join(datastore_root(ctx), ".deployments", TYPE, name)


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
        "metadata": f"local@{datastore_root(ctx)}",
        "additional_info": {"max_workers": record["max_workers"], "tags": record["tags"]},
        "flow_file": record["flow_file"],
        "parameters": record["parameters"],
    }


# -- the group -------------------------------------------------------------------------------------


@deployer_group(TYPE)
def local_deployer() -> None:
    """Deploy flows as records in the datastore; trigger them as detached local runs."""


@deployer_command(local_deployer)
@click.argument("flow_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--max-workers", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--tag", "tags", multiple=True, help="Tag every triggered run (repeatable).")
def create(
    ctx: click.Context, flow_file: str, max_workers: int, tags: tuple[str, ...]
) -> dict[str, Any]:
    """Deploy FLOW_FILE: validate it and record a copy of it in the datastore."""
    from flowkernel.cli.context import get_kernel
    from flowkernel.datastore import write_json_atomic
    from flowkernel.flow.loader import load_flow

    flow_cls = load_flow(os.path.abspath(flow_file))
    get_kernel().validated_graph(flow_cls)  # a broken flow is never deployed
    name = group_option(ctx, "name") or flow_cls.__name__
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
    return _attributes(ctx, record)


@deployer_command(local_deployer, context_settings={"ignore_unknown_options": True})
@click.argument("flow_file", type=click.Path(exists=True, dir_okay=False))
@click.argument("params", nargs=-1, type=click.UNPROCESSED)
def trigger(ctx: click.Context, flow_file: str, params: tuple[str, ...]) -> dict[str, Any]:
    """Start a run of FLOW_FILE's deployment (--<parameter> VALUE ...); returns once it exists."""
    name = group_option(ctx, "name")
    if name is None:
        from flowkernel.flow.loader import load_flow

        name = load_flow(os.path.abspath(flow_file)).__name__
    home = _home(ctx, name)
    record = _load(home, name)
    started = tempfile.mkdtemp(prefix="local-deployer-")
    attr_file = os.path.join(started, "run.json")
    argv = [sys.executable, "-m", "flowkernel.cli", "--datastore-root", datastore_root(ctx), "run"]
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
    return {"name": name, "pathspec": pathspec, "metadata": f"local@{datastore_root(ctx)}"}


# -- triggered runs --------------------------------------------------------------------------------


def _save_run(home: str, run_id: str, record: dict[str, Any]) -> None:
    from flowkernel.datastore import write_json_atomic

    write_json_atomic(os.path.join(home, "runs", f"{run_id}.json"), record)


def _find_run(ctx: click.Context, pathspec: str) -> tuple[str, dict[str, Any]]:
    """The deployment directory and run record of a triggered run."""
    run_id = pathspec.split("/")[-1]
    base = os.path.join(datastore_root(ctx), ".deployments", TYPE)
    given = group_option(ctx, "name")
    names = [given] if given else sorted(os.listdir(base) or [])
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


@deployer_command(local_deployer)
@click.argument("pathspec")
def status(ctx: click.Context, pathspec: str) -> dict[str, Any]:
    """Print the state of a triggered run: running, successful, failed or terminated."""
    from flowkernel.client import Run

    _, record = _find_run(ctx, pathspec)
    run = Run(pathspec, _namespace_check=False, _root=datastore_root(ctx))
    if run.successful:
        state = "successful"
    elif _process(record) is not None:
        state = "running"
    else:
        state = "terminated" if record.get("terminated") else "failed"
    click.echo(state)
    return {"status": state}


@deployer_command(local_deployer)
@click.argument("pathspec")
def terminate(ctx: click.Context, pathspec: str) -> dict[str, Any]:
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
    return {"terminated": proc is not None}


# -- deployments -----------------------------------------------------------------------------------


def _deployments(ctx: click.Context) -> list[dict[str, Any]]:
    base = os.path.join(datastore_root(ctx), ".deployments", TYPE)
    found = []
    for name in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        try:
            found.append(_attributes(ctx, _load(os.path.join(base, name), name)))
        except UsageError:
            continue  # a deployment being deleted
    return found


describe_command(local_deployer, lambda ctx, name: _attributes(ctx, _load(_home(ctx, name), name)))
list_command(local_deployer, _deployments)


@deployer_command(local_deployer)
def delete(ctx: click.Context) -> dict[str, Any]:
    """Delete the deployment given with --name (the runs it started are kept)."""
    name = required_name(ctx)
    home = _home(ctx, name)
    _load(home, name)
    shutil.rmtree(home)
    click.echo(f"Deleted '{name}'.", err=True)
    return {"deleted": True}
