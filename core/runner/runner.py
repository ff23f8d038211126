"""Library use: ``Runner`` starts ``flow run`` / ``flow resume`` in a child process and returns an
:class:`ExecutingRun` to watch it and read its results through the client.

The run id comes back through a runner-attribute file that the child writes once the run
exists, never by parsing output. A run that fails after starting is a *failed* ExecutingRun,
not an exception; a flow that cannot start (graph error, usage error) raises
:class:`FlowStartError` carrying the child's own error text. Parameters are checked against the
flow's Parameters before any process starts.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from flowkernel.errors import FlowStartError
from flowkernel.runner.procs import AttributeFile, CommandProcess, echo_line, flow_argv

#: Options of ``flow run`` / ``flow resume`` by keyword -> (option, expected type); lists become
#: repeated options. Given to ``Runner(...)`` they apply to every run; given to ``run(...)`` /
#: ``resume(...)`` beside the flow's parameters, to that run.
RUN_OPTIONS = {
    "runtime": ("--runtime", str),
    "max_workers": ("--max-workers", int),
    "max_num_splits": ("--max-num-splits", int),
    "tags": ("--tag", list),
    "quiet": ("--quiet", bool),
    "run_id_file": ("--run-id-file", str),
    "isolation": ("--isolation", str),
    "dask_scheduler": ("--dask-scheduler", str),
    "dask_scheduler_file": ("--dask-scheduler-file", str),
    "decospecs": ("--with", list),
    "branch": ("--branch", str),  # @project flows
    "production": ("--production", bool),
    "max_log_size": ("--max-log-size", int),
    "user_namespace": ("--namespace", str),
}
#: ``spin(pathspec, **options)`` keywords -> options of ``flow spin`` (``persist=False``:
#: ``--no-persist``).
SPIN_OPTIONS = {
    "skip_decorators": ("--skip-decorators", bool),
    "artifacts_module": ("--artifacts-module", str),
    "spin_root": ("--spin-root", str),
}
#: Runner(**top_level) keywords: the run options plus the root group's own.
TOP_LEVEL = {"datastore_root": ("--datastore-root", str), **RUN_OPTIONS}
#: Metaflow's top-level options: the values that mean what flowkernel does anyway are accepted
#: (``metadata="local"``...), options with no effect here are accepted and ignored.
METAFLOW_LOCAL_ONLY = {"metadata": "local", "datastore": "local", "environment": "local"}
METAFLOW_IGNORED = ("pylint", "event_logger", "monitor", "package_suffixes")


def _check_type(kind: str, name: str, value: Any, expected: Any) -> None:
    ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
    if expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok:
        raise TypeError(
            f"{kind} '{name}' expects {expected.__name__}, got {type(value).__name__} {value!r}"
        )


def parameter_args(flow_file: str, params: dict[str, Any]) -> list[str]:
    """Validate ``params`` against the flow's Parameters; return them as ``--name value`` args.

    :raises ValueError: an unknown parameter (the message lists the flow's parameters).
    :raises TypeError: a value of the wrong type (the message names the parameter).
    """
    from flowkernel.flow.loader import load_flow
    from flowkernel.flow.parameters import JSONType, flow_parameters

    declared = flow_parameters(load_flow(flow_file))
    by_name = {**{p.name.replace("-", "_"): (a, p) for a, p in declared.items()}}
    by_name.update({a: (a, p) for a, p in declared.items()})
    args: list[str] = []
    for key, value in params.items():
        if key not in by_name:
            names = ", ".join(sorted(p.name.replace("-", "_") for p in declared.values()))
            names = names or "none"
            raise ValueError(f"unknown parameter '{key}'; the flow's parameters are: {names}")
        _, param = by_name[key]
        if value is None:
            continue
        if param.type is JSONType:
            try:
                text = json.dumps(value)
            except TypeError as exc:
                raise TypeError(f"parameter '{key}' must be JSON-serialisable: {exc}") from None
        elif param.separator is not None and isinstance(value, (list, tuple)):
            text = param.separator.join(str(v) for v in value)
        else:
            expected = param.type if param.type in (int, float, bool, str) else str
            _check_type("parameter", key, value, expected)
            text = str(value).lower() if expected is bool else str(value)
        args += [f"--{param.name}", text]
    return args


def top_level_args(options: dict[str, Any]) -> tuple[list[str], list[str]]:
    """``(root-group args, run args)`` for Runner's top-level keywords.

    :raises ValueError: an unknown keyword, or a Metaflow option value flowkernel cannot honour
        (``environment="conda"``...).
    """
    root: list[str] = []
    run: list[str] = []
    for key, value in options.items():
        if key in METAFLOW_IGNORED or value is None:
            continue
        if key in METAFLOW_LOCAL_ONLY:
            local = METAFLOW_LOCAL_ONLY[key]
            if value == local or (key == "datastore" and options.get("datastore_root")):
                continue  # the datastore root's URL scheme picks the storage backend
            raise ValueError(
                f"{key}={value!r} is not supported: flowkernel's {key} is {local!r}"
                + (" (give datastore_root= to store elsewhere)" if key == "datastore" else "")
            )
        if key in ("config_value", "config"):
            root += _config_args(key, value)
            continue
        if key not in TOP_LEVEL:
            known = [*TOP_LEVEL, "config", "config_value", *METAFLOW_LOCAL_ONLY, *METAFLOW_IGNORED]
            raise ValueError(f"unknown option '{key}'; known options: {', '.join(known)}")
        args = option_args({key: value}, TOP_LEVEL)
        (root if key == "datastore_root" else run).extend(args)
    return root, run


def option_args(options: dict[str, Any], known: dict[str, tuple[str, Any]]) -> list[str]:
    """Command-line arguments for ``options`` (each must be in ``known``; None is left out)."""
    args: list[str] = []
    for key, value in options.items():
        option, expected = known[key]
        if value is None:
            continue
        _check_type("option", key, value, (list, tuple) if expected is list else expected)
        if expected is list:
            for item in value:
                args += [option, str(item)]
        elif expected is bool:
            args += [option] if value else []
        else:
            args += [option, str(value)]
    return args


def _config_args(key: str, pairs: Any) -> list[str]:
    """``config_value=[(name, dict)]`` / ``config=[(name, path)]`` as root options."""
    from flowkernel.flow.config import thaw

    if isinstance(pairs, dict):
        pairs = list(pairs.items())
    args: list[str] = []
    for pair in pairs:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise TypeError(f"{key} takes (name, value) pairs, got {pair!r}")
        name, value = pair
        if key == "config":
            args += ["--config", str(name), str(value)]
        else:
            text = value if isinstance(value, str) else json.dumps(thaw(value))
            args += ["--config-value", str(name), text]
    return args


def call_args(flow_file: str, kwargs: dict[str, Any], resume: bool = False) -> list[str]:
    """``run(**kwargs)`` / ``resume(**kwargs)``: run options and flow parameters, together.

    A keyword is a parameter when the flow declares it, else a run option (``max_workers``,
    ``tags``, ``run_id_file``...). ``resume`` takes no parameters (the origin run's are reused).

    :raises ValueError: an unknown keyword (the message lists options and parameters).
    :raises TypeError: a value of the wrong type.
    """
    from flowkernel.flow.loader import load_flow
    from flowkernel.flow.parameters import flow_parameters

    declared = flow_parameters(load_flow(flow_file))
    names = set(declared) | {p.name.replace("-", "_") for p in declared.values()}
    params = {k: v for k, v in kwargs.items() if k in names or k not in RUN_OPTIONS}
    options = {k: v for k, v in kwargs.items() if k not in params}
    if resume and params:
        raise ValueError(
            f"resume reuses the parameters of the origin run; {', '.join(sorted(params))} "
            f"cannot be given (run options: {', '.join(RUN_OPTIONS)})"
        )
    try:
        param_args = parameter_args(flow_file, params)
    except ValueError as exc:
        raise ValueError(f"{exc}; run options: {', '.join(RUN_OPTIONS)}") from None
    return option_args(options, RUN_OPTIONS) + param_args


class ExecutingRun:
    """A run started by :class:`Runner`; ``.run`` reads its results through the client."""

    def __init__(self, runner: Runner, proc: CommandProcess, attributes: dict[str, Any]):
        self.runner = runner
        self.proc = proc
        self.run_id: str = attributes["run_id"]
        self.flow_name: str = attributes["flow_name"]
        self.datastore_root: str = attributes["datastore_root"]
        self.timed_out = False

    @property
    def run(self) -> Any:
        """The client :class:`~flowkernel.client.Run` (no namespace check)."""
        from flowkernel.client import Run

        pathspec = f"{self.flow_name}/{self.run_id}"
        return Run(pathspec, _namespace_check=False, _root=self.datastore_root)

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    @property
    def command_obj(self) -> CommandProcess:
        """The process running the flow (``.command``, ``.process``, ``.pid``, ``.log_files``)."""
        return self.proc

    @property
    def status(self) -> str:
        """``running``, ``successful``, ``failed`` or ``timeout``."""
        code = self.proc.returncode
        if code is None:
            return "running"
        if self.timed_out:
            return "timeout"
        return "successful" if code == 0 else "failed"

    @property
    def stdout(self) -> str:
        return self.proc.text("stdout")

    @property
    def stderr(self) -> str:
        return self.proc.text("stderr")

    def wait(self, timeout: float | None = None) -> Any:
        """Wait for the run to end; on ``timeout`` stop it (status ``timeout``).

        Called inside a running event loop it returns a coroutine (``await run.wait()``);
        otherwise it blocks and returns self.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self._wait_blocking(timeout)
        return self._wait_async(timeout)

    def _wait_blocking(self, timeout: float | None) -> ExecutingRun:
        if self.proc.wait(timeout) is None:
            self.timed_out = True
            self.proc.stop()
        return self

    async def _wait_async(self, timeout: float | None) -> ExecutingRun:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.proc.returncode is None:
            if deadline is not None and time.monotonic() > deadline:
                self.timed_out = True
                await asyncio.get_running_loop().run_in_executor(None, self.proc.stop)
                break
            await asyncio.sleep(0.02)
        await asyncio.get_running_loop().run_in_executor(None, self.proc.wait, 5)
        return self

    async def stream_log(
        self, stream: str = "stdout", position: int | None = None
    ) -> AsyncIterator[tuple[int, str]]:
        """Yield ``(position, line)`` of the run's stdout/stderr as lines are produced."""
        pos = position or 0
        async for line in self.proc.stream(stream, pos):
            yield pos, line
            pos += 1

    def terminate(self) -> None:
        """Stop the run and every process of it (SIGINT, SIGTERM, SIGKILL)."""
        self.proc.stop()

    def cleanup(self) -> None:
        self.runner.cleanup()

    def __enter__(self) -> ExecutingRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        return f"ExecutingRun({self.flow_name}/{self.run_id}, status={self.status})"


class ExecutingTask(ExecutingRun):
    """A task :meth:`Runner.spin` ran again; ``.task`` reads the spun attempt in the spin
    datastore (None with ``persist=False``)."""

    def __init__(self, runner: Runner, proc: CommandProcess, attributes: dict[str, Any]):
        root = attributes.get("datastore_root")
        super().__init__(runner, proc, {**attributes, "datastore_root": root or ""})
        self.persisted = root is not None
        self.step: str = attributes["step"]
        self.task_id: str = attributes["task_id"]
        self.attempt: int = attributes["attempt"]

    @property
    def task(self) -> Any:
        """The client :class:`~flowkernel.client.Task` of the spun attempt (no namespace check)."""
        if not self.persisted:
            return None
        from flowkernel.client import Task

        pathspec = f"{self.flow_name}/{self.run_id}/{self.step}/{self.task_id}"
        return Task(pathspec, self.attempt, _namespace_check=False, _root=self.datastore_root)

    def __repr__(self) -> str:
        return f"ExecutingTask({self.flow_name}/{self.run_id}/{self.step}/{self.task_id})"


class Runner:
    """Run a flow file from Python: ``Runner("flow.py", max_workers=4).run(alpha=3)``.

    :param flow_file: the flow's file (relative paths are made absolute).
    :param show_output: echo the child's stdout/stderr to this process's (blocking calls only).
    :param env: variables added to this process's environment for the child.
    :param cwd: working directory of the child (and where ``./.flowkernel`` is, by default).
    :param file_read_timeout: seconds to wait for the run to start (its id to come back).
    :param profile: Metaflow's configuration profile: accepted for compatibility, no effect.
    :param top_level: ``flow`` options: runtime, max_workers, max_num_splits, datastore_root,
        tags, quiet, run_id_file, isolation, dask_scheduler, dask_scheduler_file, decospecs,
        branch, production, config_value, config; and Metaflow's ``metadata="local"``,
        ``datastore="local"``, ``environment="local"``, ``pylint``, ``event_logger``,
        ``monitor`` (no effect here).
    """

    def __init__(
        self,
        flow_file: str,
        show_output: bool = True,
        profile: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        file_read_timeout: float = 3600,
        **top_level: Any,
    ):
        self.flow_file = os.path.abspath(flow_file)
        if not os.path.isfile(self.flow_file):
            raise FileNotFoundError(f"flow file not found: {self.flow_file}")
        self.show_output = show_output
        self.profile = profile
        self.env = {**os.environ, **(env or {})}
        self.cwd = os.path.abspath(cwd) if cwd else os.getcwd()
        self.file_read_timeout = file_read_timeout
        root = top_level.get("datastore_root")
        if root is not None:
            from flowkernel.storage import normalize_root

            top_level["datastore_root"] = normalize_root(root, self.cwd)
        self.root_args, self.run_args = top_level_args(top_level)
        self.datastore_root = top_level.get("datastore_root")
        self._attr_files: list[AttributeFile] = []
        self._procs: list[CommandProcess] = []

    # -- public API ----------------------------------------------------------------------------

    def run(self, **kwargs: Any) -> ExecutingRun:
        """Run the flow to completion; returns a successful or failed ExecutingRun.

        :param kwargs: the flow's parameters and run options together
            (``run(alpha=3, max_workers=4, tags=["x"])``; see :data:`RUN_OPTIONS`).
        """
        return self._blocking("run", call_args(self.flow_file, kwargs))

    def resume(
        self,
        step_to_rerun: str | None = None,
        origin_run_id: str | None = None,
        *,
        step: str | None = None,
        **options: Any,
    ) -> ExecutingRun:
        """Resume the latest (or given) run from its failure (or from ``step_to_rerun``: that
        step and everything after it run again). ``options`` are run options (``tags=``...).
        """
        args = self._resume_args(step_to_rerun or step, origin_run_id, options)
        return self._blocking("resume", args)

    async def async_run(self, **kwargs: Any) -> ExecutingRun:
        """Start the flow; returns as soon as the run exists (its id is known)."""
        return await self._async("run", call_args(self.flow_file, kwargs))

    async def async_resume(
        self,
        step_to_rerun: str | None = None,
        origin_run_id: str | None = None,
        *,
        step: str | None = None,
        **options: Any,
    ) -> ExecutingRun:
        args = self._resume_args(step_to_rerun or step, origin_run_id, options)
        return await self._async("resume", args)

    def spin(self, pathspec: str, **options: Any) -> ExecutingTask:
        """Run the task at ``pathspec`` (``[FLOW/]RUN/STEP/TASK``) of a past run again, with its
        inputs and the flow file as it is now, into the spin datastore (``flow spin``).

        :param options: ``skip_decorators=``, ``artifacts_module=``, ``persist=``,
            ``spin_root=``.
        """
        return self._blocking("spin", self._spin_args(pathspec, options), ExecutingTask)

    async def async_spin(self, pathspec: str, **options: Any) -> ExecutingTask:
        """:meth:`spin`, returning once the spun task has finished (it runs in one process):
        its status, return code and output are final."""
        spun = await self._async("spin", self._spin_args(pathspec, options), ExecutingTask)
        # `flow spin` writes its attribute file as the task ends, just before it exits
        await spun.wait()
        return spun

    def cleanup(self) -> None:
        """Stop anything still running and remove temporary files."""
        for proc in self._procs:
            proc.close()
        for attr_file in self._attr_files:
            attr_file.remove()
        self._attr_files.clear()

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    async def __aenter__(self) -> Runner:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cleanup()

    # -- machinery -----------------------------------------------------------------------------

    def _resume_args(self, step: str | None, origin: str | None, options: dict) -> list[str]:
        args = [step] if step else []
        args += ["--origin-run-id", origin] if origin else []
        return args + call_args(self.flow_file, options, resume=True)

    def _spin_args(self, pathspec: str, options: dict[str, Any]) -> list[str]:
        persist = options.pop("persist", True)
        unknown = sorted(set(options) - set(SPIN_OPTIONS))
        if unknown:
            known = ", ".join([*SPIN_OPTIONS, "persist"])
            raise ValueError(f"unknown spin option(s) {', '.join(unknown)}; known: {known}")
        _check_type("option", "persist", persist, bool)
        args = [pathspec, *option_args(options, SPIN_OPTIONS)]
        return args if persist else [*args, "--no-persist"]

    def _start(self, command: str, extra: list[str]) -> tuple[CommandProcess, AttributeFile]:
        attr_file = AttributeFile(prefix="flowkernel-runner-")
        self._attr_files.append(attr_file)
        argv = flow_argv(*self.root_args, command, self.flow_file)
        run_args = self.run_args if command != "spin" else []  # run options are not spin's
        argv += ["--runner-attribute-file", attr_file.path, *run_args, *extra]
        proc = CommandProcess(argv, env=self.env, cwd=self.cwd, log_dir=attr_file.directory)
        self._procs.append(proc)
        proc.start()
        return proc, attr_file

    def _attributes(
        self, proc: CommandProcess, attr_file: AttributeFile, timeout: float | None = None
    ) -> dict[str, Any]:
        timeout = self.file_read_timeout if timeout is None else timeout
        attributes = attr_file.wait(proc, timeout)
        if attributes is None:
            if proc.returncode is None:
                proc.stop()
            proc.wait(5)
            raise FlowStartError(
                f"the flow did not start (exit code {proc.returncode}):\n"
                + (proc.text("stderr") or proc.text("stdout")).strip()
                + f"\ncommand: {' '.join(proc.argv)}",
                proc.returncode,
                proc.text("stdout"),
                proc.text("stderr"),
            )
        return attributes

    def _blocking(
        self, command: str, extra: list[str], kind: type[ExecutingRun] = ExecutingRun
    ) -> Any:
        proc, attr_file = self._start(command, extra)
        deadline = time.monotonic() + self.file_read_timeout
        relayed: dict[str, int] = {}
        try:
            if self.show_output:  # relayed in this thread (a notebook shows it in this cell)
                proc.follow(
                    echo_line,
                    until=lambda: time.monotonic() > deadline and not attr_file.written(),
                    seen=relayed,
                )
            attributes = self._attributes(proc, attr_file, max(0.0, deadline - time.monotonic()))
            proc.wait()
        except BaseException:  # KeyboardInterrupt included: leave nothing running
            proc.stop()
            if self.show_output:  # what the flow said while it stopped
                proc.follow(echo_line, seen=relayed)
            raise
        return kind(self, proc, attributes)

    async def _async(
        self, command: str, extra: list[str], kind: type[ExecutingRun] = ExecutingRun
    ) -> Any:
        proc, attr_file = self._start(command, extra)
        loop = asyncio.get_running_loop()
        try:
            attributes = await loop.run_in_executor(None, self._attributes, proc, attr_file)
        except BaseException:
            proc.stop()
            raise
        return kind(self, proc, attributes)
