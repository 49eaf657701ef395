"""Every code example of the README and docs/ runs, and prints what the page says it prints.

* A ```python block is run as a program of its own (a fresh namespace, in this process). When a
  ```text block follows it (only blank lines between), that is its output: stdout must equal it.
* A ```sh block's ``amsgrad ...`` lines are run as commands (slow: CI runs them); install and
  development commands (pip, pytest, ruff, benchmarks/run.py) are what CI itself runs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "benchmarks" / "README.md",
]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)


def blocks(page: Path) -> list[tuple[str, str, int]]:
    """(language, code, line) of each fenced block of the page."""
    text = page.read_text(encoding="utf-8")
    return [
        (m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1) for m in FENCE.finditer(text)
    ]


def python_examples() -> list[tuple[str, str, str | None]]:
    """(id, code, expected stdout or None) for each python block of every page."""
    examples = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        matches = list(FENCE.finditer(text))
        for index, match in enumerate(matches):
            if match.group(1) != "python":
                continue
            expected = None
            following = matches[index + 1] if index + 1 < len(matches) else None
            if (
                following is not None
                and following.group(1) == "text"
                and text[match.end() : following.start()].strip() == ""
            ):
                expected = following.group(2)
            line = text.count("\n", 0, match.start()) + 1
            examples.append((f"{page.relative_to(ROOT)}:{line}", match.group(2), expected))
    return examples


def needs(code: str) -> list[str]:
    """Optional packages a block imports (its test is skipped when one is missing)."""
    wanted = set(re.findall(r"^\s*(?:import|from)\s+(torch|jax|optax|matplotlib)\b", code, re.M))
    return sorted(name for name in wanted if importlib.util.find_spec(name) is None)


EXAMPLES = python_examples()


def test_the_pages_have_python_examples():
    assert len(EXAMPLES) >= 6
    assert any(expected is not None for _, _, expected in EXAMPLES)


@pytest.mark.parametrize(("where", "code", "expected"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_python_example_runs_and_prints_what_the_page_says(
    where, code, expected, tmp_path, monkeypatch
):
    missing = needs(code)
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, where, "exec"), {"__name__": "__example__"})
    if expected is not None:
        assert out.getvalue() == expected


def shell_commands() -> list[tuple[str, str]]:
    commands = []
    for page in PAGES:
        for language, code, line in blocks(page):
            if language != "sh":
                continue
            for offset, raw in enumerate(code.splitlines()):
                command = raw.split("#", 1)[0].strip()
                if command.startswith(("amsgrad ", "python -m amsgrad")):
                    commands.append((f"{page.relative_to(ROOT)}:{line + 1 + offset}", command))
    return commands


COMMANDS = shell_commands()


@pytest.mark.slow
@pytest.mark.parametrize(("where", "command"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_shell_example_runs(where, command, tmp_path):
    argv = shlex.split(command)
    if argv[0] == "amsgrad":
        argv = [sys.executable, "-m", "amsgrad", *argv[1:]]
    else:
        argv = [sys.executable, *argv[1:]]
    done = subprocess.run(
        argv, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, f"{where}: {command}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
