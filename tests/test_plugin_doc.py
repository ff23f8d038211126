"""docs/writing-a-plugin.md works when pasted: every code block is either a whole file of the
example plugin, verbatim, or a test file that passes against the installed example plugin."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "writing-a-plugin.md"
BLOCK = re.compile(
    r"(?:<!-- doc-test: (?P<kind>[^>]*?) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```\n", re.S
)


def blocks() -> list[tuple[str, str, str]]:
    """(marker, language, text) of every fenced block of the page."""
    return [(m["kind"] or "", m["lang"], m["body"]) for m in BLOCK.finditer(DOC.read_text())]


def test_every_code_block_is_tested():
    found = blocks()
    assert len(found) >= 6
    for kind, lang, body in found:
        if lang in ("python", "toml"):
            assert kind.startswith(("file ", "pytest")), f"an untested {lang} block:\n{body}"
        assert "..." not in body or lang == "console", f"a block with a '...' body:\n{body}"


def test_file_blocks_are_the_example_plugins_files():
    files = [(kind.split(" ", 1)[1], body) for kind, _, body in blocks() if kind.startswith("file")]
    assert len(files) == 3
    for path, body in files:
        assert body == (ROOT / path).read_text(), f"{path} and its block in {DOC.name} differ"


@pytest.mark.slow
def test_test_blocks_pass_against_the_installed_example_plugin(
    tmp_path, install_distributions, clean_env
):
    site = install_distributions(ROOT / "examples" / "plugins" / "flowkernel-run-timer")
    tests = [body for kind, _, body in blocks() if kind == "pytest"]
    assert len(tests) == 2
    for i, body in enumerate(tests):
        (tmp_path / f"test_doc_block_{i}.py").write_text(body)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean_env(PYTHONPATH=str(site)),
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout, result.stdout
