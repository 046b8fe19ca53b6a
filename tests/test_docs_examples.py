"""The ```python examples in README.md and docs/*.md run.

Each block runs on its own, in a fresh namespace, in a temporary folder that holds a link to
``examples/``; top-level ``await`` is allowed (the block then runs under anyio). A block that
cannot run here says why in a marker on the line before it::

    <!-- not-run: needs an LLM server -->

The marker needs a reason; a marked block must still compile.
"""

from __future__ import annotations

import ast
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"<!--\s*not-run:\s*(?P<why>.*?)\s*-->")
FENCE = re.compile(r"^```python\s*$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence
    code: str
    not_run: str | None  # the reason, for a marked block

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        if FENCE.match(lines[i]):
            start = i
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            before = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
            marker = MARKER.search(before)
            code = "\n".join(lines[start + 1 : j]) + "\n"
            found.append(Block(path, start + 1, code, marker["why"] if marker else None))
            i = j
        i += 1
    return found


BLOCKS = [b for path in DOCS for b in blocks(path)]


def _compile(block: Block) -> Any:
    return compile(block.code, block.id, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)


def test_the_docs_have_examples() -> None:
    assert len(BLOCKS) >= 15
    assert any(b.not_run is None for b in BLOCKS)


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.id)
def test_marked_blocks_give_a_reason_and_compile(block: Block) -> None:
    _compile(block)
    if block.not_run is not None:
        assert len(block.not_run) > 10, f"{block.id}: say why the block cannot run"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.not_run is None], ids=lambda b: b.id)
def test_examples_run(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    code = _compile(block)
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    if code.co_flags & inspect.CO_COROUTINE:

        async def run() -> None:
            with anyio.fail_after(60):
                await eval(code, namespace)

        anyio.run(run)
    else:
        exec(code, namespace)
