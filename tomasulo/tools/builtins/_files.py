"""The ``read_file`` and ``grep`` tools, confined to one root directory.

Every path is resolved (``..`` collapsed, symlinks followed) before use and must land inside the
root, so ``../`` traversal, absolute paths elsewhere and symlinks pointing out are refused. Files
over ``max_bytes`` are refused by ``read_file`` and skipped by ``grep``.
"""

from __future__ import annotations

import fnmatch
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio.to_thread
import re2

from ...exceptions import ConfigError
from .._tool import Tool, ToolPolicy

__all__ = ["FileAccess", "file_tools", "grep_tool", "read_file_tool"]


class FileAccess:
    """Resolves user-given paths inside ``root`` and refuses every path that escapes it.

    >>> FileAccess("/srv/docs").resolve("guide/intro.md")  # doctest: +SKIP
    PosixPath('/srv/docs/guide/intro.md')
    """

    def __init__(self, root: str | os.PathLike[str], *, max_bytes: int = 1_000_000) -> None:
        base = Path(root)
        if not base.is_dir():
            raise ConfigError(f"file tools: the root {str(base)!r} is not a directory")
        if max_bytes < 1:
            raise ConfigError(f"max_bytes must be at least 1, got {max_bytes}")
        self.root = base.resolve(strict=True)
        self.max_bytes = max_bytes

    def resolve(self, path: str) -> Path:
        """The real path of ``path`` (relative to the root, or absolute inside it).

        Raises:
            PermissionError: the path leads outside the root.
            ValueError: the path is empty or holds a NUL byte.
        """
        if not isinstance(path, str) or "\x00" in path:
            raise ValueError("the path must be a string without NUL bytes")
        given = Path(path)
        candidate = given if given.is_absolute() else self.root / given
        real = candidate.resolve(strict=False)
        if real != self.root and not real.is_relative_to(self.root):
            raise PermissionError(
                f"{path!r} is outside the allowed directory; use a path relative to the root"
            )
        return real

    def relative(self, real: Path) -> str:
        """``real`` as a path relative to the root (``.`` for the root itself)."""
        return real.relative_to(self.root).as_posix() or "."


def _read(access: FileAccess, path: str, offset: int, limit: int | None) -> dict[str, Any]:
    real = access.resolve(path)
    if not real.exists():
        raise FileNotFoundError(f"no file {path!r} under the root")
    if not real.is_file():
        raise IsADirectoryError(f"{path!r} is not a regular file")
    size = real.stat().st_size
    if size > access.max_bytes:
        raise ValueError(
            f"{path!r} is {size} bytes, more than the limit of {access.max_bytes}; "
            "use grep to find the lines you need"
        )
    text = real.read_bytes().decode("utf-8", errors="replace")
    lines = text.splitlines(keepends=True)
    start = max(offset, 0)
    end = len(lines) if limit is None else start + max(limit, 0)
    return {
        "path": access.relative(real),
        "text": "".join(lines[start:end]),
        "lines": len(lines),
        "truncated": end < len(lines),
    }


#: Memory RE2 may use for one compiled pattern (its DFA cache included); more is refused.
_PATTERN_MAX_MEM = 8 << 20

_LOOKAROUND = {
    "(?=": "lookahead",
    "(?!": "negative lookahead",
    "(?<=": "lookbehind",
    "(?<!": "negative lookbehind",
}


def _unsupported_feature(message: str) -> str | None:
    """The construct RE2 refused for being unmatchable in linear time, named for the user."""
    escape = "invalid escape sequence: \\"
    if message.startswith(escape) and message[len(escape) : len(escape) + 1].isdigit():
        return f"backreferences (written {message[len(escape) - 1 :]})"
    for operator, name in _LOOKAROUND.items():
        if message == f"invalid perl operator: {operator}":
            return f"{name} (written {operator}...)"
    return None


def _compile_pattern(pattern: str, *, ignore_case: bool, fixed: bool) -> Callable[[str], object]:
    """``pattern`` compiled by RE2, whose matching time is linear in the text, so no line can make
    it backtrack. RE2 refuses what it cannot match in linear time (backreferences, lookaround) and
    patterns that would need more than ``_PATTERN_MAX_MEM`` bytes: both are a ``ValueError``.
    """
    if len(pattern) > 1000:
        raise ValueError("the pattern is longer than 1000 characters")
    options = re2.Options()
    options.log_errors = False
    options.case_sensitive = not ignore_case
    options.literal = fixed
    options.max_mem = _PATTERN_MAX_MEM
    try:
        compiled = re2.compile(pattern, options)
    except re2.error as exc:
        raw = exc.args[0] if exc.args else str(exc)
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        feature = _unsupported_feature(text)
        if feature is not None:
            raise ValueError(
                f"bad regular expression {pattern!r}: grep matches in linear time (RE2 syntax) and "
                f"does not support {feature}; rewrite the pattern without it, or pass fixed=true "
                "to search for the text as it is"
            ) from None
        raise ValueError(f"bad regular expression {pattern!r}: {text} (grep uses RE2 syntax)") from None
    return compiled.search  # type: ignore[no-any-return]


def _is_binary(head: bytes) -> bool:
    return b"\x00" in head


def _grep(
    access: FileAccess,
    pattern: str,
    path: str,
    glob: str | None,
    ignore_case: bool,
    fixed: bool,
    max_matches: int,
    timeout: float,
) -> dict[str, Any]:
    search = _compile_pattern(pattern, ignore_case=ignore_case, fixed=fixed)
    start = access.resolve(path)
    if not start.exists():
        raise FileNotFoundError(f"no file or directory {path!r} under the root")
    deadline = time.monotonic() + timeout
    matches: list[dict[str, Any]] = []
    truncated = False
    files = [start] if start.is_file() else _walk(access, start)
    for file in files:
        if time.monotonic() > deadline:
            truncated = True
            break
        rel = access.relative(file)
        if glob and not (fnmatch.fnmatch(rel, glob) or fnmatch.fnmatch(file.name, glob)):
            continue
        try:
            if file.stat().st_size > access.max_bytes:
                continue
            data = file.read_bytes()
        except OSError:
            continue
        if _is_binary(data[:8192]):
            continue
        for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            if search(line[:4096]):
                if len(matches) >= max_matches:
                    truncated = True
                    break
                matches.append({"path": rel, "line": number, "text": line[:500]})
        if truncated:
            break
    return {"matches": matches, "truncated": truncated}


def _walk(access: FileAccess, top: Path) -> list[Path]:
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            candidate = Path(dirpath) / name
            real = candidate.resolve()
            # a symlink that points out of the root is skipped, never followed
            if real.is_relative_to(access.root) and real.is_file():
                out.append(real)
            if len(out) >= 20_000:
                return out
    return out


def read_file_tool(access: FileAccess, *, name: str = "read_file") -> Tool:
    """``read_file(path, offset?, limit?)``: a text file under the root, by lines."""

    async def read_file(path: str, offset: int = 0, limit: int | None = None) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(_read, access, path, offset, limit, abandon_on_cancel=True)

    return Tool(
        name=name,
        description=(
            "Read a text file under the allowed directory. `offset` and `limit` pick lines. "
            "Returns path, text, the file's line count and whether the text was cut."
        ),
        input_schema={
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "relative to the allowed directory"},
                "offset": {"type": "integer", "minimum": 0, "description": "first line (0-based)"},
                "limit": {"type": "integer", "minimum": 0, "description": "number of lines"},
            },
            "required": ["path"],
            "additionalProperties": False,
        },
        output_schema={
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "text": {"type": "string"},
                "lines": {"type": "integer"},
                "truncated": {"type": "boolean"},
            },
        },
        policy=ToolPolicy(timeout=10.0, idempotent=True),
        fn=read_file,
    )


def grep_tool(
    access: FileAccess, *, max_matches: int = 200, timeout: float = 5.0, name: str = "grep"
) -> Tool:
    """``grep(pattern, path?, glob?, ignore_case?, fixed?)``: matching lines under the root."""

    async def grep(
        pattern: str,
        path: str = ".",
        glob: str | None = None,
        ignore_case: bool = False,
        fixed: bool = False,
    ) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(
            _grep,
            access,
            pattern,
            path,
            glob,
            ignore_case,
            fixed,
            max_matches,
            timeout,
            abandon_on_cancel=True,
        )

    return Tool(
        name=name,
        description=(
            "Search text files under the allowed directory for a regular expression (RE2 "
            "syntax: no backreferences or lookaround) or a fixed string. Returns matches as "
            "{path, line, text}."
        ),
        input_schema={
            "type": "object",
            "properties": {
                "pattern": {"type": "string"},
                "path": {"type": "string", "description": "file or folder, default the root"},
                "glob": {"type": "string", "description": "only files matching, e.g. *.md"},
                "ignore_case": {"type": "boolean"},
                "fixed": {"type": "boolean", "description": "pattern is a plain string"},
            },
            "required": ["pattern"],
            "additionalProperties": False,
        },
        output_schema={
            "type": "object",
            "properties": {
                "matches": {"type": "array", "items": {"type": "object"}},
                "truncated": {"type": "boolean"},
            },
        },
        policy=ToolPolicy(timeout=timeout + 5.0, idempotent=True),
        fn=grep,
    )


def file_tools(
    root: str | os.PathLike[str], *, max_bytes: int = 1_000_000, max_matches: int = 200
) -> list[Tool]:
    """``read_file`` and ``grep``, both confined to ``root``.

    >>> read_file, grep = file_tools("docs")  # doctest: +SKIP
    """
    access = FileAccess(root, max_bytes=max_bytes)
    return [read_file_tool(access), grep_tool(access, max_matches=max_matches)]
