"""Every Python example of the documentation runs: the fenced blocks of docs/**/*.md and README.md.

The convention, for whoever writes a page:

- A block fenced as ```` ```python ```` (or ```` ```py ````) **runs**. The blocks of one page run
  in order in one namespace, like the statements of one module, in a test of their own
  (``test_page_examples_run[docs/tasks.md]``). That test has a database (emptied afterwards), an
  isolated task registry (the page's tasks are forgotten after it, so pages may reuse task ids,
  but one page may not define the same id twice) and an in-process :class:`Executor` running,
  so ``handle.wait(timeout=...)`` works. Keep the waits, timeouts and backoffs of examples short.
  A failure points at the page and line (``docs/tasks.md:42``).
- An HTML comment (invisible in MkDocs and on GitHub) on the line before the fence changes that:

  ``<!-- docs-test: settings -->``
      A settings fragment (``settings.py``). It runs in a namespace of its own that has
      ``BASE_DIR`` (as in a Django project), and the ``DURABLE`` dict it defines, if any, must
      pass django-durable's settings validation (the ``django_durable.E001`` check).
  ``<!-- docs-test: compile -->``
      Only compiled: code that needs a project around it (``urls.py``, a view module, a
      Celery app). Prefer a runnable block where one is possible.

- Blocks fenced as anything else (``sh``, ``json``, ``text``, ``yaml``, ``ini``) are not run.
- ``ruff format`` formats the Python blocks of Markdown files like the code: run it on the page.

A page added under ``docs/`` is picked up without any change here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from django_durable import Executor
from django_durable.conf import validate_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS = REPO_ROOT / "docs"
PYTHON_LANGUAGES = {"python", "py"}
MODES = {"run", "settings", "compile"}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")
_MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<mode>[\w-]+)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced Python block of a page."""

    path: Path
    line: int  # 1-based line of the block's first code line
    code: str
    mode: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO_ROOT)}:{self.line}"

    def compiled(self) -> Any:
        # Padded so that tracebacks and syntax errors name the line in the Markdown file.
        source = "\n" * (self.line - 1) + self.code
        return compile(source, str(self.path.relative_to(REPO_ROOT)), "exec")


def python_blocks(path: Path) -> list[Block]:
    """The fenced Python blocks of a Markdown file, with their mode (see the module docstring)."""
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        language = (opening["info"].split() or [""])[0].strip("{}.").lower()
        end = index + 1
        while end < len(lines) and not (
            lines[end].strip().startswith(fence) and not lines[end].strip().strip(fence[0])
        ):
            end += 1
        if language in PYTHON_LANGUAGES:
            previous = lines[index - 1] if index > 0 else ""
            marker = _MARKER.match(previous)
            mode = marker["mode"] if marker else "run"
            if mode not in MODES:
                raise ValueError(
                    f"{path}:{index}: unknown docs-test mode {mode!r} (one of {sorted(MODES)})"
                )
            body = [
                line[len(indent) :] if line.startswith(indent) else line
                for line in lines[index + 1 : end]
            ]
            blocks.append(Block(path, index + 2, "\n".join(body) + "\n", mode))
        index = end + 1
    return blocks


def documentation_pages() -> list[Path]:
    return [*sorted(DOCS.rglob("*.md")), REPO_ROOT / "README.md"]


def page_id(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT))


PAGES = [page for page in documentation_pages() if python_blocks(page)]


@pytest.fixture
def page_executor(transactional_db: None) -> Iterator[Executor]:
    with Executor(poll_interval=0.05) as executor:
        yield executor


def run_settings_fragment(block: Block) -> None:
    namespace: dict[str, Any] = {"__name__": "settings", "BASE_DIR": REPO_ROOT}
    exec(block.compiled(), namespace)
    if "DURABLE" in namespace:
        validate_settings(namespace["DURABLE"])


@pytest.mark.parametrize("path", PAGES, ids=page_id)
def test_page_examples_run(path: Path, page_executor: Executor) -> None:
    module_name = "docs_" + re.sub(r"\W", "_", path.stem.lower())
    namespace: dict[str, Any] = {"__name__": module_name}
    for block in python_blocks(path):
        code = block.compiled()
        if block.mode == "compile":
            continue
        try:
            if block.mode == "settings":
                run_settings_fragment(block)
            else:
                exec(code, namespace)
        except Exception as error:
            raise AssertionError(f"The example at {block.where} failed: {error!r}") from error


def test_every_page_with_code_is_collected() -> None:
    """The parser finds the blocks that a plain search finds (no fence style slips through)."""
    for path in documentation_pages():
        text = path.read_text()
        expected = len(re.findall(r"^[ \t]*(?:```|~~~)[ \t]*(?:python|py)\b", text, re.M))
        assert len(python_blocks(path)) == expected, page_id(path)


def test_markers_need_a_python_block_after_them() -> None:
    """A ``docs-test`` marker that is not right above a Python fence is a mistake."""
    for path in documentation_pages():
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            if _MARKER.match(line):
                following = lines[number + 1] if number + 1 < len(lines) else ""
                fence = _FENCE.match(following)
                assert fence and fence["info"].split()[0] in PYTHON_LANGUAGES, (
                    f"{page_id(path)}:{number + 1}: the docs-test marker must be the line just "
                    "before a ```python fence"
                )
