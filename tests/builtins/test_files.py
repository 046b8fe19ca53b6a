"""read_file and grep stay inside their root, even while the tree changes under them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from tomasulo.exceptions import ConfigError
from tomasulo.tools import Tool
from tomasulo.tools.builtins import _files, file_tools

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


# -- confinement under attack, and the bounds of the walk ---------------------------------------


@pytest.fixture
def swap_mid_call(tree: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Swap ``docs`` for a symlink to a folder outside the root at the moment the call, having
    checked ``docs/a.md``, is about to open it.

    Deterministic: the swap runs inside the call, at the point a path-checking implementation
    has finished its check (``Path.resolve`` returned the file) and at the point a
    descriptor-walking one is about to open the file (``_files._openat``), whichever comes first.
    """
    outside = tree.parent / "outside"
    outside.mkdir()
    (outside / "a.md").write_text("stolen secret\n")
    swapped: list[str] = []

    def swap() -> None:
        if not swapped:
            os.rename(tree / "docs", tree / "docs.old")
            os.symlink(outside, tree / "docs")
            swapped.append("docs")

    real_resolve = Path.resolve

    def resolve_then_swap(self: Path, strict: bool = False) -> Path:
        out = real_resolve(self, strict=strict)
        if out.name == "a.md":
            swap()
        return out

    monkeypatch.setattr(Path, "resolve", resolve_then_swap)
    real_openat = getattr(_files, "_openat", None)
    if real_openat is not None:

        def openat_then_swap(name: str, flags: int, dir_fd: int) -> int:
            if name == "a.md":
                swap()
            assert real_openat is not None
            return real_openat(name, flags, dir_fd)

        monkeypatch.setattr(_files, "_openat", openat_then_swap)
    return swapped


async def test_read_file_stays_in_the_root_when_a_directory_is_swapped_mid_call(
    tree: Path, swap_mid_call: list[str]
) -> None:
    read_file, _ = file_tools(tree)
    try:
        out = await call(read_file, path="docs/a.md")
    except PermissionError:
        out = {"text": ""}  # refusing is as good as reading the file it checked
    assert swap_mid_call == ["docs"], "the swap happened during the call"
    assert "secret" not in out["text"]
    assert out["text"] in ("", "alpha\nBeta\ngamma beta\n")
    # after the swap, the link leads out and is refused like any other
    with pytest.raises(PermissionError, match="outside the allowed directory"):
        await call(read_file, path="docs/a.md")


async def test_grep_stays_in_the_root_when_a_directory_is_swapped_mid_call(
    tree: Path, swap_mid_call: list[str]
) -> None:
    _, grep = file_tools(tree)
    out = await call(grep, pattern="secret|alpha")
    assert swap_mid_call == ["docs"]
    assert all("secret" not in m["text"] for m in out["matches"]), out["matches"]


async def test_grep_reports_a_file_reached_through_in_root_symlinks_once(tree: Path) -> None:
    os.symlink("notes.txt", tree / "docs" / "again.txt")  # relative, and inside the root
    _, grep = file_tools(tree)
    out = await call(grep, pattern="one")
    assert out["matches"] == [{"path": "notes.txt", "line": 1, "text": "one"}]
    assert out["note"] is None and out["truncated"] is False


def _deep(base: Path, depth: int) -> None:
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        out = os.open("bottom.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(out, b"needle\n")
        os.close(out)
    finally:
        os.close(fd)


async def test_grep_bounds_its_depth_and_says_so(tmp_path: Path) -> None:
    _deep(tmp_path, 300)
    (tmp_path / "top.txt").write_text("needle at the top\n")
    _, grep = file_tools(tmp_path)
    out = await call(grep, pattern="needle")
    assert out["matches"] == [{"path": "top.txt", "line": 1, "text": "needle at the top"}]
    assert out["truncated"] is True
    assert out["note"] == "1 directory more than max_depth=32 levels below the root was not searched"
    _, deeper = file_tools(tmp_path, max_depth=400)
    found = await call(deeper, pattern="needle")
    assert [m["path"] for m in found["matches"]] == ["top.txt", "d/" * 300 + "bottom.txt"]


async def test_special_files_and_symlink_loops(tree: Path) -> None:
    os.mkfifo(tree / "pipe")
    os.symlink("loop-b", tree / "loop-a")
    os.symlink("loop-a", tree / "loop-b")
    read_file, grep = file_tools(tree)
    with pytest.raises(IsADirectoryError, match="not a regular file"):
        await call(read_file, path="pipe")  # refused at once, never waiting for a writer
    with pytest.raises(OSError, match="more than 40 symlinks"):
        await call(read_file, path="loop-a")
    out = await call(grep, pattern="one")
    assert [m["path"] for m in out["matches"]] == ["notes.txt"]


@pytest.mark.parametrize("path", ["rel-out.txt", "docs/../../root/../secret.txt", "docs/deep-out/secret.txt"])
async def test_relative_symlinks_and_dotdots_that_climb_out_are_refused(tree: Path, path: str) -> None:
    os.symlink("../secret.txt", tree / "rel-out.txt")
    os.symlink("../..", tree / "docs" / "deep-out")
    read_file, _ = file_tools(tree)
    with pytest.raises(PermissionError, match="outside the allowed directory"):
        await call(read_file, path=path)


async def test_paths_that_stay_inside_work(tree: Path) -> None:
    os.symlink("docs", tree / "docs-link")
    read_file, grep = file_tools(tree)
    assert (await call(read_file, path="docs/../notes.txt"))["path"] == "notes.txt"
    assert (await call(read_file, path="docs-link/a.md"))["path"] == "docs/a.md"
    out = await call(grep, pattern="gamma", path="docs-link")
    assert out["matches"] == [{"path": "docs/a.md", "line": 3, "text": "gamma beta"}]
    with pytest.raises(FileNotFoundError, match=r"no file 'nope\.txt' under the root"):
        await call(read_file, path="nope.txt")
    with pytest.raises(IsADirectoryError):
        await call(read_file, path="docs")


async def test_grep_checks_its_timeout_while_it_walks_directories(tmp_path: Path) -> None:
    # no file to search, only directories to walk: the timeout is still checked; a timeout that
    # has passed at the first directory stands in for a tree of a million empty ones
    for i in range(200):
        (tmp_path / f"d{i:03}" / "e").mkdir(parents=True)
    grep = _files.grep_tool(_files.FileAccess(tmp_path), timeout=1e-6)
    out = await call(grep, pattern="needle")
    assert out == {"matches": [], "truncated": True, "note": "the search stopped at its timeout of 1e-06 s"}
    assert (await call(_files.grep_tool(_files.FileAccess(tmp_path)), pattern="needle"))["note"] is None


async def test_grep_refuses_a_glob_over_1000_characters(tree: Path) -> None:
    _, grep = file_tools(tree)
    with pytest.raises(ValueError, match="the glob is 1001 characters long, more than 1000"):
        await call(grep, pattern="beta", glob="*" * 1001)
    assert len((await call(grep, pattern="beta", glob="*" * 1000))["matches"]) == 1
