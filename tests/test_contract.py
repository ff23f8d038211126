"""Contract meta-tests: first-party plugins load cleanly, and docs/hooks.md matches hookspecs.py.

The plugin checks need every plugin installed (``python3 dev.py test`` installs all of them
editable). The docs check fails when a hook is added, renamed or changes signature or kind
without docs/hooks.md following.
"""

from __future__ import annotations

import inspect
import re
from importlib import metadata
from pathlib import Path

import pytest

from flowkernel import hookspecs
from flowkernel.kernel import ENTRY_POINT_GROUP, Kernel

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_NAMES = sorted(p.parent.name for p in (ROOT / "plugins").glob("*/pyproject.toml"))
HOOKS_DOC = ROOT / "docs" / "hooks.md"


def hook_specs() -> dict[str, object]:
    return {
        name: obj
        for name, obj in vars(hookspecs).items()
        if name.startswith("flowkernel_") and hasattr(obj, f"{hookspecs.PROJECT}_spec")
    }


def signature_text(func) -> str:
    """``def name(arg: Type, ...) -> Return`` exactly as written in hookspecs.py."""

    def text(annotation) -> str:
        return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)

    sig = inspect.signature(func)
    params = ", ".join(
        p.name if p.annotation is p.empty else f"{p.name}: {text(p.annotation)}"
        for p in sig.parameters.values()
    )
    ret = "" if sig.return_annotation is sig.empty else f" -> {text(sig.return_annotation)}"
    return f"def {func.__name__}({params}){ret}"


def decorator_text(func) -> str:
    """``@hookspec`` with the options the spec sets, e.g. ``@hookspec(firstresult=True)``."""
    opts = getattr(func, f"{hookspecs.PROJECT}_spec")
    on = [f"{key}=True" for key in ("firstresult", "historic") if opts.get(key)]
    return f"@hookspec({', '.join(on)})" if on else "@hookspec"


def doc_sections() -> dict[str, str]:
    """docs/hooks.md split into ``### `flowkernel_x` `` sections: hook name -> section text."""
    text = HOOKS_DOC.read_text(encoding="utf-8")
    parts = re.split(r"^### `(flowkernel_\w+)`\s*$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


# -- first-party plugins -------------------------------------------------------------------------


def _entry_point(name: str) -> metadata.EntryPoint:
    eps = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not eps:
        pytest.fail(
            f"plugin {name} is not installed (no entry point {name!r} in {ENTRY_POINT_GROUP}); "
            "run `python3 dev.py test`, which reinstalls .venv when a pyproject.toml changes"
        )
    return eps[0]


@pytest.mark.parametrize("name", PLUGIN_NAMES)
def test_first_party_plugin_is_discoverable(name):
    ep = _entry_point(name)
    assert ep.dist is not None
    assert ep.dist.metadata["Name"] == f"flowkernel-{name.replace('_', '-')}"
    assert ep.value == f"flowkernel_{name}.hooks"


@pytest.mark.parametrize("name", PLUGIN_NAMES)
def test_first_party_plugin_imports_and_registers_cleanly(name, clean_plugin_env):
    _entry_point(name).load()
    # strict: any load or registration problem raises; discover() runs pm.check_pending()
    kernel = Kernel.discover(only=[name], strict=True)
    (record,) = [r for r in kernel.records if r.name == name]
    assert record.status == "loaded"
    assert record.hooks, f"plugin {name} implements no hook"
    assert all(h in hook_specs() or h.startswith(f"flowkernel_{name}") for h in record.hooks)


def test_all_first_party_plugins_load_together(clean_plugin_env):
    kernel = Kernel.discover(only=PLUGIN_NAMES, strict=True)
    assert set(PLUGIN_NAMES) <= set(kernel.plugin_names())
    kernel.runtimes()  # no duplicate names across plugins
    kernel.deployers()


# -- docs ----------------------------------------------------------------------------------------


def test_every_hook_is_documented_with_its_exact_signature():
    sections = doc_sections()
    problems = []
    for name, func in hook_specs().items():
        section = sections.get(name)
        if section is None:
            problems.append(f"{name}: no '### `{name}`' section in docs/hooks.md")
            continue
        expected = f"{decorator_text(func)}\n{signature_text(func)}"
        if expected not in section:
            problems.append(f"{name}: docs/hooks.md should show exactly:\n{expected}")
    assert not problems, "\n".join(problems)


def test_docs_describe_no_hook_that_does_not_exist():
    stale = sorted(set(doc_sections()) - set(hook_specs()))
    assert not stale, f"docs/hooks.md documents hooks hookspecs.py does not have: {stale}"


def test_docs_name_a_kind_for_every_hook():
    sections = doc_sections()
    for name, func in hook_specs().items():
        opts = getattr(func, f"{hookspecs.PROJECT}_spec")
        match = re.search(r"^\*\*Kind:\*\* (.+)$", sections.get(name, ""), re.MULTILINE)
        assert match, f"{name}: add a '**Kind:** ...' line"
        kind = match.group(1)
        assert ("firstresult" in kind) == bool(opts["firstresult"]), name
        assert ("historic" in kind) == bool(opts["historic"]), name


def test_hookspec_docstrings_say_when_and_version():
    for name, func in hook_specs().items():
        doc = inspect.getdoc(func) or ""
        assert ".. versionadded::" in doc, f"{name}: add a versionadded line"
        assert "Called" in doc or "called" in doc, f"{name}: say when it is called"
        opts = getattr(func, f"{hookspecs.PROJECT}_spec")
        if opts["firstresult"]:
            assert "Stops at first non-None result." in doc, name
        if opts["historic"]:
            assert "This hook is historic." in doc, name


# -- start-up ------------------------------------------------------------------------------------

#: What no `flow` start may import before a command needs it: every plugin's entry point is
#: imported at start-up (design: heavy imports stay inside the functions that use them).
HEAVY = ("asyncio", "flowkernel.runner", "flowkernel_notebook.runner", "IPython", "nbclient",
         "nbformat", "dask", "distributed", "kubernetes", "obstore", "rich")  # fmt: skip
_REPORT_MODULES = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('MODULES', *sorted(sys.modules), file=sys.stderr))\n"
    "from flowkernel.cli.main import main\n"
    "main()\n"
)


@pytest.mark.parametrize(
    ("command", "heavy"),
    [
        (["--help"], (*HEAVY, "psutil", "pickle")),
        (["plugins"], (*HEAVY, "psutil", "pickle")),
        # psutil: only stopping a task's process tree needs it (and `flow runs`)
        (["run", str(ROOT / "examples" / "hello.py")], (*HEAVY, "psutil")),
    ],
)
def test_flow_starts_without_importing_what_the_command_does_not_use(command, heavy, tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", _REPORT_MODULES, *command],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("MODULES ")]
    loaded = set(line.split()[1:])
    assert [m for m in heavy if m in loaded] == []
    assert "flowkernel_notebook" in loaded  # every plugin was imported: the check means it
