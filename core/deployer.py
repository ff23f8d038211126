"""Library use of deployers: ``Deployer(flow_file).<deployer>(**kw).create(**kw)``.

A deployer is a plugin (``flowkernel_deployers``) whose click group becomes ``flow <name>``.
Everything here drives that group in a child process, through the subprocess layer
(:mod:`flowkernel.runner.procs`), and reads each command's result from a JSON *deployer
attribute file* (``--deployer-attribute-file``), never by parsing output. The commands a
deployer group offers (``create``, ``trigger``, ``status``, ``terminate``, ``delete``, ``list``,
``describe``) and the attributes each one writes are the contract documented in
``docs/writing-a-deployer.md``.

Everything that can be checked in this process is checked before a process starts: deployer
keywords against the group's and the command's click options, trigger parameters against the
flow's Parameters. A command that fails raises :class:`DeployerError` with its own error text.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import click

from flowkernel.deployer_commands import (  # noqa: F401  (re-exported: the plugin side)
    deployer_attribute_file,
    parameter_declarations,
    write_deployer_attributes,
)
from flowkernel.errors import DeployerError, FlowkernelError
from flowkernel.runner.procs import AttributeFile, CommandProcess, echo_line, flow_argv

if TYPE_CHECKING:
    from flowkernel.client import Run
    from flowkernel.specs import DeployerSpec

#: Deployer(**top_level) keyword -> root ``flow`` option.
TOP_LEVEL = {"datastore_root": "--datastore-root"}


def _deployers() -> dict[str, DeployerSpec]:
    """The deployer registry of the installed plugins, read now (a new install shows up)."""
    from flowkernel.kernel import Kernel

    return Kernel.discover().deployers()


def _spec(impl: str | None) -> DeployerSpec:
    deployers = _deployers()
    installed = ", ".join(deployers) or "none"
    if impl is None:
        if len(deployers) != 1:
            raise ValueError(f"say which deployer with impl=...; installed deployers: {installed}")
        return next(iter(deployers.values()))
    for name, spec in deployers.items():
        if impl in (name, name.replace("-", "_")):
            return spec
    raise ValueError(f"no deployer named '{impl}'; installed deployers: {installed}")


def option_args(command: click.Command, values: dict[str, Any], where: str) -> list[str]:
    """Turn keywords into ``command``'s command-line options, checking each one first.

    ``max_workers=4`` -> ``--max-workers 4``; a flag is given when true (``--no-x`` when false
    for an ``--x/--no-x`` pair); a list repeats a ``multiple`` option.

    :raises ValueError: an unknown keyword (the message lists the known ones) or a bad value.
    """
    options = {p.name: p for p in command.params if isinstance(p, click.Option) and not p.hidden}
    args: list[str] = []
    for key, value in values.items():
        param = options.get(key)
        if param is None:
            known = ", ".join(sorted(k for k in options if k)) or "none"
            raise ValueError(f"unknown option '{key}' for {where}; known options: {known}")
        if value is None:
            continue
        flag = param.opts[0]
        if param.is_flag and not param.secondary_opts:
            args += [flag] if value else []
            continue
        if param.is_flag:
            args.append(flag if value else param.secondary_opts[0])
            continue
        items = list(value) if param.multiple and isinstance(value, (list, tuple)) else [value]
        for item in items:
            text = json.dumps(item) if isinstance(item, (dict, list)) else str(item)
            try:
                param.type.convert(text, param, None)
            except click.BadParameter as exc:
                raise ValueError(f"option '{key}' for {where}: {exc.message}") from None
            args += [flag, text]
    return args


def _subcommand(spec: DeployerSpec, name: str) -> click.Command:
    group = spec.cli
    command = group.commands.get(name) if isinstance(group, click.Group) else None
    if command is None:
        raise DeployerError(f"the '{spec.name}' deployer has no '{name}' command")
    return command


class Deployer:
    """Deploy a flow file from Python: ``Deployer("flow.py").argo_workflows(name="x").create()``.

    It has one method per installed deployer, named after it with ``-`` -> ``_``, looked up in
    the ``flowkernel_deployers`` registry when called. Each returns that deployer's
    :class:`DeployerImpl`.

    :param flow_file: the flow's file (relative paths are made absolute).
    :param show_output: echo the deployer commands' stdout/stderr to this process's.
    :param env: variables added to this process's environment for the commands.
    :param cwd: working directory of the commands.
    :param file_read_timeout: seconds to wait for a command's attribute file.
    :param top_level: ``flow`` root options: ``datastore_root``.
    """

    def __init__(
        self,
        flow_file: str,
        show_output: bool = True,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        file_read_timeout: float = 3600,
        **top_level: Any,
    ):
        self.flow_file = os.path.abspath(flow_file)
        if not os.path.isfile(self.flow_file):
            raise FileNotFoundError(f"flow file not found: {self.flow_file}")
        self.show_output = show_output
        self.env = env
        self.cwd = os.path.abspath(cwd) if cwd else os.getcwd()
        self.file_read_timeout = file_read_timeout
        self.top_level = top_level
        _root_args(top_level, self.cwd)  # unknown or badly typed keywords fail now

    def _names(self) -> dict[str, DeployerSpec]:
        return {name.replace("-", "_"): spec for name, spec in _deployers().items()}

    def __getattr__(self, attr: str) -> Callable[..., DeployerImpl]:
        if attr.startswith("_"):
            raise AttributeError(attr)
        names = self._names()
        if attr not in names:
            installed = ", ".join(names) or "none"
            raise AttributeError(f"no deployer '{attr}' is installed; installed: {installed}")
        spec = names[attr]

        def make(**kwargs: Any) -> DeployerImpl:
            return _impl(spec, self.flow_file, self, kwargs)

        make.__name__ = attr
        make.__doc__ = spec.description
        return make

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self._names()})


def _root_args(top_level: dict[str, Any], cwd: str) -> list[str]:
    args: list[str] = []
    for key, value in top_level.items():
        if key not in TOP_LEVEL:
            raise ValueError(f"unknown option '{key}'; known options: {', '.join(TOP_LEVEL)}")
        if value is None:
            continue
        if not isinstance(value, str):
            raise TypeError(f"option '{key}' expects str, got {type(value).__name__} {value!r}")
        if key == "datastore_root" and "://" not in value:
            value = os.path.join(cwd, value)
        args += [TOP_LEVEL[key], value]
    return args


def _impl(
    spec: DeployerSpec, flow_file: str | None, deployer: Deployer | None, kwargs: dict[str, Any]
) -> DeployerImpl:
    if spec.factory is None:
        return DeployerImpl(spec, flow_file, deployer, **kwargs)
    return spec.factory(spec, flow_file, deployer, **kwargs)


def _found(spec: DeployerSpec, metadata: str | None, name: str | None) -> DeployerImpl:
    """A deployer for deployments looked up by name; ``metadata`` (``local@ROOT`` or a root)
    says which datastore root they are in."""
    impl = _impl(spec, None, None, {} if name is None else {"name": name})
    if metadata:
        root = metadata.split("@", 1)[1] if metadata.startswith("local@") else metadata
        impl.root_args = ["--datastore-root", root]
    return impl


class DeployerImpl:
    """One deployer, configured: runs ``flow <TYPE> [group options] COMMAND ...``.

    A plugin may subclass it (and :class:`DeployedFlow`, :class:`TriggeredRun`) to add methods;
    the base class already speaks the whole command contract.

    :param spec: the deployer's registry record.
    :param flow_file: the flow file (None for deployments found by name).
    :param deployer: the :class:`Deployer` it came from (its env, cwd, output settings).
    :param kwargs: options of the deployer's group (``name=`` -> ``--name``).
    """

    deployed_flow_class: type[DeployedFlow]
    triggered_run_class: type[TriggeredRun]

    def __init__(
        self,
        spec: DeployerSpec,
        flow_file: str | None,
        deployer: Deployer | None = None,
        **kwargs: Any,
    ):
        self.spec = spec
        self.TYPE = spec.name
        self.flow_file = flow_file
        self.deployer = deployer
        self.kwargs = kwargs
        self.group_args = option_args(spec.cli, kwargs, f"`flow {spec.name}`")
        if deployer is not None:
            self.root_args = _root_args(deployer.top_level, deployer.cwd)
            self.show_output, self.cwd = deployer.show_output, deployer.cwd
            self.env = {**os.environ, **(deployer.env or {})}
            self.file_read_timeout = deployer.file_read_timeout
        else:
            self.root_args, self.show_output, self.cwd = [], False, os.getcwd()
            self.env, self.file_read_timeout = dict(os.environ), 3600.0

    def with_name(self, name: str) -> DeployerImpl:
        """The same deployer, addressing the deployment ``name`` (``--name NAME``)."""
        if self.kwargs.get("name") == name:
            return self
        other = _impl(self.spec, self.flow_file, self.deployer, {**self.kwargs, "name": name})
        other.root_args = self.root_args
        return other

    def create(self, **kwargs: Any) -> DeployedFlow:
        """Deploy the flow (``flow TYPE create FILE``); raises :class:`DeployerError` on failure."""
        if self.flow_file is None:
            raise ValueError("create needs a flow file: use Deployer(flow_file)")
        where = f"`flow {self.TYPE} create`"
        args = option_args(_subcommand(self.spec, "create"), kwargs, where)
        attributes = self.call("create", [self.flow_file, *args])
        return self.deployed_flow_class(self, attributes)

    def call(self, command: str, args: list[str], allow_failure: bool = False) -> dict[str, Any]:
        """Run ``flow TYPE [group options] COMMAND ARGS`` and return what it wrote to its
        attribute file. Raises :class:`DeployerError` with the command's error text when it
        exits non-zero (unless ``allow_failure``: a command that wrote its result and then
        failed, such as a run that failed) or writes nothing."""
        attr_file = AttributeFile(prefix="flowkernel-deployer-")
        argv = flow_argv(*self.root_args, self.TYPE, *self.group_args, command, *args)
        argv += ["--deployer-attribute-file", attr_file.path]
        on_line = echo_line if self.show_output else None
        proc = CommandProcess(argv, env=self.env, cwd=self.cwd, on_line=on_line)
        try:
            with proc:
                deadline = time.monotonic() + self.file_read_timeout
                attributes = attr_file.wait(proc, self.file_read_timeout)
                code = proc.wait(max(0.0, deadline - time.monotonic()))
                finished = code == 0 or (allow_failure and code is not None)
                if finished and attributes is not None:
                    return attributes
            reason = "timed out" if code is None else f"exit code {code}"
            error = (proc.text("stderr") or proc.text("stdout")).strip() or "(no output)"
            raise DeployerError(
                f"`flow {self.TYPE} {command}` failed ({reason}):\n{error}",
                code,
                proc.text("stdout"),
                proc.text("stderr"),
            )
        finally:
            attr_file.remove()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.TYPE!r}, {self.flow_file!r})"


class DeployedFlow:
    """A deployment: ``name``, ``flow_name``, ``metadata`` (``local@<root>`` or the deployer's
    equivalent), ``additional_info`` (the deployer's own details) and ``deployer`` (the
    :class:`DeployerImpl` that made or found it)."""

    def __init__(self, deployer: DeployerImpl, attributes: dict[str, Any]):
        self.name: str = attributes["name"]
        self.deployer = deployer.with_name(self.name)
        self.flow_name: str = attributes["flow_name"]
        self.metadata: str | None = attributes.get("metadata")
        self.additional_info: dict[str, Any] = attributes.get("additional_info") or {}
        self.flow_file: str | None = attributes.get("flow_file") or deployer.flow_file
        self._parameters: list[dict[str, Any]] = attributes.get("parameters") or []
        self._stand_in_dir: str | None = None

    def trigger(self, **params: Any) -> TriggeredRun:
        """Start a run of the deployment with ``params`` (checked against the flow first)."""
        from flowkernel.runner.runner import parameter_args

        flow_file = self._trigger_file()
        args = parameter_args(flow_file, params)
        attributes = self.deployer.call("trigger", [flow_file, *args])
        return self.deployer.triggered_run_class(self, attributes)

    def delete(self, **kwargs: Any) -> bool:
        """Remove the deployment (runs already started are kept); True if it was removed."""
        args = option_args(_subcommand(self.deployer.spec, "delete"), kwargs, "delete")
        return bool(self.deployer.call("delete", args).get("deleted"))

    def _trigger_file(self) -> str:
        """The flow file to trigger with: the deployment's own, or a stand-in that declares
        the deployed flow's Parameters (a deployment found by name, its source elsewhere)."""
        if self.flow_file and os.path.isfile(self.flow_file):
            return self.flow_file
        if self._stand_in_dir is None:
            self._stand_in_dir = tempfile.mkdtemp(prefix="flowkernel-stand-in-")
        path = os.path.join(self._stand_in_dir, "stand_in_flow.py")
        with open(path, "w") as fh:
            fh.write(stand_in_source(self.flow_name, self._parameters))
        return path

    # -- deployments found by name ---------------------------------------------------------------

    @classmethod
    def from_deployment(
        cls, identifier: str, metadata: str | None = None, impl: str | None = None
    ) -> DeployedFlow:
        """The deployment named ``identifier`` of deployer ``impl`` (``flow IMPL describe``)."""
        deployer = _found(_spec(impl), metadata, identifier)
        attributes = deployer.call("describe", [])
        return deployer.deployed_flow_class(deployer, attributes)

    @classmethod
    def list_deployed_flows(
        cls, flow_name: str | None = None, impl: str | None = None, metadata: str | None = None
    ) -> Iterator[DeployedFlow]:
        """Every deployment of deployer ``impl`` (of ``flow_name`` only, if given)."""
        deployer = _found(_spec(impl), metadata, None)
        args = ["--flow-name", flow_name] if flow_name else []
        for attributes in deployer.call("list", args)["deployments"]:
            yield deployer.deployed_flow_class(deployer, attributes)

    @classmethod
    def get_triggered_run(
        cls, identifier: str, run_id: str, metadata: str | None = None, impl: str | None = None
    ) -> TriggeredRun:
        """The run ``run_id`` triggered from deployment ``identifier``."""
        deployed = cls.from_deployment(identifier, metadata, impl)
        pathspec = f"{deployed.flow_name}/{run_id}"
        attributes = {"name": deployed.name, "pathspec": pathspec, "metadata": deployed.metadata}
        return deployed.deployer.triggered_run_class(deployed, attributes)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.deployer.TYPE}: {self.name}, {self.flow_name})"


class TriggeredRun:
    """A run started by :meth:`DeployedFlow.trigger`: ``pathspec``, ``name``, ``metadata``."""

    def __init__(self, deployed_flow: DeployedFlow, attributes: dict[str, Any]):
        self.deployed_flow = deployed_flow
        self.deployer = deployed_flow.deployer
        self.pathspec: str = attributes["pathspec"]
        self.name: str = attributes.get("name", deployed_flow.name)
        self.metadata: str | None = attributes.get("metadata") or deployed_flow.metadata
        self.run_id = self.pathspec.split("/", 1)[1]

    @property
    def run(self) -> Run | None:
        """The client Run, or None while it does not exist yet."""
        from flowkernel.client import Run

        root = self.metadata
        if root and root.startswith("local@"):
            root = root.split("@", 1)[1]
        try:
            run = Run(self.pathspec, _namespace_check=False, _root=root)
            run["start"]  # the run becomes visible once its start task exists
        except (FlowkernelError, KeyError):
            return None
        return run

    def wait_for_run(self, check_interval: float = 1.0, timeout: float | None = None) -> Run:
        """Wait until :attr:`run` exists; raises TimeoutError after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            run = self.run
            if run is not None:
                return run
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"run {self.pathspec} did not appear within {timeout} s")
            time.sleep(check_interval)

    @property
    def status(self) -> str:
        """What the deployer reports: ``pending``, ``running``, ``successful`` or ``failed``
        (a deployer may report its own finer states)."""
        return str(self.deployer.call("status", [self.pathspec])["status"])

    def terminate(self) -> bool:
        """Stop the run; True if it was running and is now stopped."""
        return bool(self.deployer.call("terminate", [self.pathspec]).get("terminated"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.deployer.TYPE}: {self.pathspec})"


DeployerImpl.deployed_flow_class = DeployedFlow
DeployerImpl.triggered_run_class = TriggeredRun


# -- deployments found by name: a stand-in flow file to trigger them with -------------------------


def stand_in_source(flow_name: str, parameters: list[dict[str, Any]]) -> str:
    """Source of a flow named ``flow_name`` that declares ``parameters`` and nothing else: what a
    deployment found by name is triggered with when its own file is not at hand."""
    if not flow_name.isidentifier():
        raise ValueError(f"not a flow name: {flow_name!r}")
    lines = ["from flowkernel import FlowSpec, JSONType, Parameter, step", ""]
    lines += [f"class {flow_name}(FlowSpec):"]
    for i, param in enumerate(parameters):  # names and types are all a trigger checks
        kind = {"int": "int", "float": "float", "bool": "bool", "JSON": "JSONType"}
        lines.append(
            f"    p{i} = Parameter({param['name']!r}, type={kind.get(param['type'], 'str')})"
        )
    lines += ["", "    @step", "    def start(self):", "        self.next(self.end)", ""]
    lines += ["    @step", "    def end(self):", "        pass", ""]
    return "\n".join(lines)
