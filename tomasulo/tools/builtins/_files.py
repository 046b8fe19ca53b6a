"""The ``read_file`` and ``grep`` tools, confined to one root directory.

Paths are walked one component at a time from a descriptor held on the root, each component
opened relative to its parent's descriptor with ``O_NOFOLLOW`` (the way ``openat2``'s
``RESOLVE_BENEATH`` does it). A symlink is read and its target walked the same way, and a
``..`` above the root or a target outside it is refused. So ``../`` traversal, absolute paths
elsewhere and symlinks pointing out are refused, and swapping a directory for a symlink while a
call runs cannot lead it out: what is opened is always reached through descriptors inside the
root. Symlinks that stay inside the root work.

Files over ``max_bytes`` are refused by ``read_file`` and skipped by ``grep``. ``grep`` reads
FIFOs and devices never, does not follow symlinks to directories, reports a file reached through
several in-root symlinks once (under its real path), searches at most ``max_depth`` directory
levels below the root and at most ``MAX_FILES`` files, and says in ``note`` when it stopped.
Its timeout is checked at every line searched and every directory entry walked; patterns that
compile to more than ``MAX_PATTERN_PROGRAM`` RE2 instructions and globs longer than
``MAX_GLOB_LENGTH`` characters are refused.

A hard link is a file like any other: one inside the root to a file outside it is read (only the
deployment can prevent such links, see docs/security.md).
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import anyio.to_thread
import re2

from ...exceptions import ConfigError
from .._tool import Tool, ToolPolicy

__all__ = ["FileAccess", "file_tools", "grep_tool", "read_file_tool"]


#: Directory levels below the root that ``grep`` searches by default.
DEFAULT_MAX_DEPTH = 32

#: Files one ``grep`` call looks at, at most.
MAX_FILES = 20_000

#: Symlinks one path may go through (as Linux allows).
_MAX_LINKS = 40

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused once opened)
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _openat(name: str, flags: int, dir_fd: int) -> int:
    """Open the single component ``name`` inside the directory ``dir_fd`` (a final symlink fails)."""
    return os.open(name, flags, dir_fd=dir_fd)


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _components(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def _read_fd(fd: int, limit: int) -> bytes:
    """Up to ``limit`` bytes from ``fd`` (a file may grow after it was measured)."""
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class FileAccess:
    """Opens user-given paths inside ``root`` and refuses every path that escapes it.

    Args:
        root: the directory the tools may read; it and the path to it are trusted.
        max_bytes: the largest file ``read_file`` returns and ``grep`` searches.
        max_depth: directory levels below the root that ``grep`` searches.

    >>> FileAccess("/srv/docs").resolve("guide/intro.md")  # doctest: +SKIP
    PosixPath('/srv/docs/guide/intro.md')
    """

    def __init__(
        self, root: str | os.PathLike[str], *, max_bytes: int = 1_000_000, max_depth: int = DEFAULT_MAX_DEPTH
    ) -> None:
        base = Path(root)
        if not base.is_dir():
            raise ConfigError(f"file tools: the root {str(base)!r} is not a directory")
        if max_bytes < 1:
            raise ConfigError(f"max_bytes must be at least 1, got {max_bytes}")
        if max_depth < 0:
            raise ConfigError(f"max_depth must be at least 0, got {max_depth}")
        self.root = base.resolve(strict=True)
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        # absolute paths may name the root as resolved or as given
        self._spellings = [_components(str(self.root)), _components(os.path.abspath(base))]

    def _outside(self, path: str) -> PermissionError:
        return PermissionError(f"{path!r} is outside the allowed directory; use a path relative to the root")

    def _within(self, absolute: str) -> list[str] | None:
        parts = _components(absolute)
        for root in self._spellings:
            if parts[: len(root)] == root:
                return parts[len(root) :]
        return None

    def _lookup(self, path: str) -> tuple[int | None, list[str], list[str]]:
        """Walk ``path`` from the root: ``(fd, real parts, missing parts)``.

        ``fd`` is open on what the path names (the caller closes it), or None when a component
        does not exist; the real parts lead to it from the root with every symlink resolved.
        """
        if not isinstance(path, str) or "\x00" in path:
            raise ValueError("the path must be a string without NUL bytes")
        if len(path) > 4096:
            raise ValueError(f"the path is {len(path)} characters long, more than 4096")
        if path.startswith("/"):
            inside = self._within(path)
            if inside is None:
                raise self._outside(path)
            pending = deque(inside)
        else:
            pending = deque(_components(path))
        dirs = [os.open(self.root, _DIR_FLAGS)]
        real: list[str] = []
        links = 0
        try:
            while pending:
                name = pending.popleft()
                if name == "..":
                    if not real:
                        raise self._outside(path)
                    os.close(dirs.pop())
                    real.pop()
                    continue
                last = not pending
                try:
                    fd = _openat(name, _FILE_FLAGS if last else _DIR_FLAGS, dirs[-1])
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.EMLINK, errno.ENOTDIR) and _is_link(name, dirs[-1]):
                        links += 1
                        if links > _MAX_LINKS:
                            raise OSError(
                                errno.ELOOP, f"{path!r} goes through more than {_MAX_LINKS} symlinks"
                            ) from None
                        target = os.readlink(name, dir_fd=dirs[-1])
                        if target.startswith("/"):
                            inside = self._within(target)
                            if inside is None:
                                raise self._outside(path) from None
                            while len(dirs) > 1:
                                os.close(dirs.pop())
                            real.clear()
                            pending.extendleft(reversed(inside))
                        else:
                            pending.extendleft(reversed(_components(target)))
                        continue
                    if exc.errno == errno.ENOENT:
                        return None, real, [name, *pending]
                    if exc.errno == errno.ENOTDIR:
                        shown = "/".join([*real, name])
                        raise NotADirectoryError(f"{path!r}: {shown!r} is not a directory") from None
                    raise
                if last:
                    return fd, [*real, name], []
                dirs.append(fd)
                real.append(name)
            return os.dup(dirs[-1]), real, []
        finally:
            for fd in dirs:
                os.close(fd)

    def resolve(self, path: str) -> Path:
        """The real path of ``path`` (relative to the root, or absolute inside it).

        The path is walked as :meth:`open_file` walks it; a path that does not exist yet is
        returned as it would be.

        Raises:
            PermissionError: the path leads outside the root.
            ValueError: the path holds a NUL byte or is too long.
        """
        fd, real, missing = self._lookup(path)
        if fd is not None:
            os.close(fd)
        depth = len(real)
        for part in missing:
            depth += -1 if part == ".." else 1
            if depth < 0:
                raise self._outside(path)
        return Path(os.path.normpath(self.root.joinpath(*real, *missing)))

    def open_file(self, path: str) -> tuple[int, str]:
        """Open the regular file ``path`` under the root: ``(fd, path relative to the root)``.

        Raises:
            PermissionError: the path leads outside the root.
            FileNotFoundError: there is no such file.
            IsADirectoryError: the path names a directory, a FIFO or a device.
        """
        fd, real, _ = self._lookup(path)
        if fd is None:
            raise FileNotFoundError(f"no file {path!r} under the root")
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise IsADirectoryError(f"{path!r} is not a regular file")
        return fd, "/".join(real) or "."


def _read(access: FileAccess, path: str, offset: int, limit: int | None) -> dict[str, Any]:
    fd, rel = access.open_file(path)
    try:
        size = os.fstat(fd).st_size
        data = b"" if size > access.max_bytes else _read_fd(fd, access.max_bytes + 1)
    finally:
        os.close(fd)
    if size > access.max_bytes or len(data) > access.max_bytes:
        raise ValueError(
            f"{path!r} is {max(size, len(data))} bytes, more than the limit of {access.max_bytes}; "
            "use grep to find the lines you need"
        )
    text = data.decode("utf-8", errors="replace")
    lines = text.splitlines(keepends=True)
    start = max(offset, 0)
    end = len(lines) if limit is None else start + max(limit, 0)
    return {
        "path": rel,
        "text": "".join(lines[start:end]),
        "lines": len(lines),
        "truncated": end < len(lines),
    }


#: Memory RE2 may use for one compiled pattern (its DFA cache included); more is refused.
#: (Less does not help: a smaller DFA cache only makes RE2 fall back to its slower NFA sooner.)
_PATTERN_MAX_MEM = 8 << 20

#: The largest compiled pattern (RE2 instructions) grep runs. Matching is linear in the line,
#: but when RE2's DFA runs out of cache its NFA costs (line length) x (program size): at this
#: bound a 4,096-character line costs well under a second, at ten times it seconds.
MAX_PATTERN_PROGRAM = 2000

#: The longest ``glob`` grep takes, in characters.
MAX_GLOB_LENGTH = 1000

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
    size = max(compiled.programsize, compiled.reverseprogramsize)
    if size > MAX_PATTERN_PROGRAM:
        raise ValueError(
            f"the regular expression {pattern!r} is too complex: it compiles to {size} RE2 "
            f"instructions, more than {MAX_PATTERN_PROGRAM}; use smaller counts in repetitions "
            "such as {1,1000}, fewer nested groups, or fixed=true for literal text"
        )
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
    if glob is not None and len(glob) > MAX_GLOB_LENGTH:
        raise ValueError(f"the glob is {len(glob)} characters long, more than {MAX_GLOB_LENGTH}")
    search = _compile_pattern(pattern, ignore_case=ignore_case, fixed=fixed)
    start = access.resolve(path)
    if not start.exists():
        raise FileNotFoundError(f"no file or directory {path!r} under the root")
    deadline = time.monotonic() + timeout
    matches: list[dict[str, Any]] = []
    truncated = False
    timed_out = False
    walk = _Walk(access, path, deadline)
    for rel, fd in walk:
        if time.monotonic() > deadline:
            truncated = timed_out = True
            break
        if glob and not (fnmatch.fnmatch(rel, glob) or fnmatch.fnmatch(rel.rsplit("/", 1)[-1], glob)):
            continue
        try:
            if os.fstat(fd).st_size > access.max_bytes:
                continue
            data = _read_fd(fd, access.max_bytes)
        except OSError:
            continue
        if _is_binary(data[:8192]):
            continue
        for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            if time.monotonic() > deadline:  # one line can take a good part of a second
                truncated = timed_out = True
                break
            if search(line[:4096]):
                if len(matches) >= max_matches:
                    truncated = True
                    break
                matches.append({"path": rel, "line": number, "text": line[:500]})
        if truncated:
            break
    walk.close()
    notes = walk.notes
    if walk.timed_out:
        truncated = timed_out = True
    if timed_out:
        notes.insert(0, f"the search stopped at its timeout of {timeout} s")
    elif truncated:
        notes.insert(0, f"more than max_matches={max_matches} matches; the first {max_matches} are shown")
    return {"matches": matches, "truncated": truncated or bool(notes), "note": "; ".join(notes) or None}


class _Walk:
    """The regular files under ``path`` (one file, or a directory searched depth first in name
    order), each opened through descriptors inside the root: ``(path relative to the root, fd)``.

    A file is yielded once however many in-root symlinks lead to it; symlinks to directories,
    hidden directories, FIFOs, sockets and devices are passed over, and so are directories more
    than ``access.max_depth`` levels below the root (counted in ``notes``).
    """

    def __init__(self, access: FileAccess, path: str, deadline: float = float("inf")) -> None:
        self.access = access
        self.deadline = deadline
        #: the walk stopped at ``deadline`` (checked at every directory entry)
        self.timed_out = False
        self._seen: set[tuple[int, int]] = set()
        self._deep = 0
        self._capped = False
        self._files = self._walk(path)

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return self._files

    def close(self) -> None:
        self._files.close()

    @property
    def notes(self) -> list[str]:
        """What the walk passed over because of its bounds, for the user."""
        out = []
        if self._deep:
            what = "1 directory" if self._deep == 1 else f"{self._deep} directories"
            verb = "was" if self._deep == 1 else "were"
            out.append(
                f"{what} more than max_depth={self.access.max_depth} levels below the root "
                f"{verb} not searched"
            )
        if self._capped:
            out.append(f"only the first {MAX_FILES} files were searched")
        return out

    def _late(self) -> bool:
        if not self.timed_out and time.monotonic() > self.deadline:
            self.timed_out = True
        return self.timed_out

    def _keep(self, fd: int) -> bool:
        info = os.fstat(fd)
        key = (info.st_dev, info.st_ino)
        if not stat.S_ISREG(info.st_mode) or key in self._seen:
            return False
        if len(self._seen) >= MAX_FILES:
            self._capped = True
            return False
        self._seen.add(key)
        return True

    def _walk(self, path: str) -> Generator[tuple[str, int], None, None]:
        fd, real, _ = self.access._lookup(path)
        if fd is None:
            raise FileNotFoundError(f"no file or directory {path!r} under the root")
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            try:
                if self._keep(fd):
                    yield "/".join(real), fd
            finally:
                os.close(fd)
            return
        # each frame: a directory's fd, its parts, and the subdirectories still to enter; one fd
        # per level is open, so at most max_depth + 1
        frames: list[tuple[int, list[str], Iterator[str]]] = []
        try:
            current: tuple[int, list[str]] | None = (fd, real)
            while current is not None:
                dir_fd, parts = current
                frames.append((dir_fd, parts, iter([])))
                subdirs = yield from self._scan(dir_fd, parts)
                if self._capped or self._late():
                    return
                frames[-1] = (dir_fd, parts, iter(subdirs))
                current = None
                while frames and current is None:
                    top_fd, top_parts, rest = frames[-1]
                    name = next(rest, None)
                    if name is None:
                        os.close(top_fd)
                        frames.pop()
                        continue
                    try:
                        current = (_openat(name, _DIR_FLAGS, top_fd), [*top_parts, name])
                    except OSError:
                        continue  # gone, or swapped for a symlink: not followed
        finally:
            for frame in frames:
                os.close(frame[0])

    def _scan(self, dir_fd: int, parts: list[str]) -> Generator[tuple[str, int], None, list[str]]:
        """Yield the files in one directory; return the subdirectories to enter, in name order."""
        try:
            with os.scandir(dir_fd) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError:
            return []
        subdirs: list[str] = []
        for entry in entries:
            if self._late():
                return []
            rel = "/".join([*parts, entry.name])
            try:
                if entry.is_symlink():
                    # walked again from the root: a target outside it is refused
                    fd, real, _ = self.access._lookup(rel)
                    if fd is None:
                        continue
                    rel = "/".join(real)
                elif entry.is_dir(follow_symlinks=False):
                    if entry.name.startswith("."):
                        continue
                    if len(parts) + 1 > self.access.max_depth:
                        self._deep += 1
                    else:
                        subdirs.append(entry.name)
                    continue
                elif entry.is_file(follow_symlinks=False):
                    fd = _openat(entry.name, _FILE_FLAGS, dir_fd)
                else:
                    continue  # FIFOs, sockets, devices
            except (OSError, ValueError):
                continue
            try:
                if self._keep(fd):
                    yield rel, fd
            finally:
                os.close(fd)
            if self._capped:
                return []
        return subdirs


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
            "{path, line, text}, and a note when the search stopped short (too many matches, "
            "too deep, too long)."
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
                "note": {"type": ["string", "null"]},
            },
        },
        policy=ToolPolicy(timeout=timeout + 5.0, idempotent=True),
        fn=grep,
    )


def file_tools(
    root: str | os.PathLike[str],
    *,
    max_bytes: int = 1_000_000,
    max_matches: int = 200,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> list[Tool]:
    """``read_file`` and ``grep``, both confined to ``root``.

    ``grep`` searches at most ``max_depth`` directory levels below the root.

    >>> read_file, grep = file_tools("docs")  # doctest: +SKIP
    """
    access = FileAccess(root, max_bytes=max_bytes, max_depth=max_depth)
    return [read_file_tool(access), grep_tool(access, max_matches=max_matches)]
