"""read_file and grep stay inside their root."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from tomasulo.exceptions import ConfigError
from tomasulo.tools import Tool
from tomasulo.tools.builtins import file_tools

pytestmark = pytest.mark.anyio


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "a.md").write_text("alpha\nBeta\ngamma beta\n")
    (root / "notes.txt").write_text("one\ntwo\nthree\n")
    (root / "big.txt").write_text("x" * 5000)
    (root / "blob.bin").write_bytes(b"beta\x00\x01")
    (tmp_path / "secret.txt").write_text("beta secret\n")
    os.symlink(tmp_path / "secret.txt", root / "escape.txt")
    os.symlink(tmp_path, root / "up")
    os.symlink(root / "notes.txt", root / "inside-link.txt")
    return root


async def call(tool: Tool, **args: Any) -> Any:
    assert tool.fn is not None
    with anyio.fail_after(10):
        return await tool.fn(**tool.validate(args))


async def test_read_file_by_lines(tree: Path) -> None:
    read_file, _ = file_tools(tree)
    out = await call(read_file, path="notes.txt", offset=1, limit=1)
    assert out == {"path": "notes.txt", "text": "two\n", "lines": 3, "truncated": True}
    whole = await call(read_file, path=str(tree / "docs" / "a.md"))
    assert whole["text"].startswith("alpha") and whole["path"] == "docs/a.md"


async def test_symlink_inside_the_root_is_fine(tree: Path) -> None:
    read_file, _ = file_tools(tree)
    out = await call(read_file, path="inside-link.txt")
    assert out["text"] == "one\ntwo\nthree\n"


@pytest.mark.parametrize(
    "path",
    ["../secret.txt", "docs/../../secret.txt", "escape.txt", "up/secret.txt", "/etc/passwd"],
)
async def test_paths_out_of_the_root_are_refused(tree: Path, path: str) -> None:
    read_file, grep = file_tools(tree)
    with pytest.raises(PermissionError, match="outside the allowed directory"):
        await call(read_file, path=path)
    with pytest.raises(PermissionError, match="outside the allowed directory"):
        await call(grep, pattern="secret", path=path)


async def test_absolute_path_outside_via_tmp_is_refused(tree: Path) -> None:
    read_file, _ = file_tools(tree)
    with pytest.raises(PermissionError):
        await call(read_file, path=str(tree.parent / "secret.txt"))


async def test_huge_file_is_refused(tree: Path) -> None:
    read_file, _ = file_tools(tree, max_bytes=1000)
    with pytest.raises(ValueError, match="5000 bytes, more than the limit of 1000"):
        await call(read_file, path="big.txt")


async def test_grep_finds_lines_and_skips_escapes_and_binaries(tree: Path) -> None:
    _, grep = file_tools(tree)
    out = await call(grep, pattern="beta", ignore_case=True)
    assert out["matches"] == [
        {"path": "docs/a.md", "line": 2, "text": "Beta"},
        {"path": "docs/a.md", "line": 3, "text": "gamma beta"},
    ]
    assert out["truncated"] is False


async def test_grep_glob_fixed_and_limit(tree: Path) -> None:
    _, grep = file_tools(tree, max_matches=1)
    out = await call(grep, pattern="e", glob="*.txt", fixed=True)
    assert out["matches"] == [{"path": "notes.txt", "line": 1, "text": "one"}]
    assert out["truncated"] is True


async def test_grep_bad_regex(tree: Path) -> None:
    _, grep = file_tools(tree)
    with pytest.raises(ValueError, match="bad regular expression"):
        await call(grep, pattern="(unclosed")


def test_root_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a directory"):
        file_tools(tmp_path / "missing")
