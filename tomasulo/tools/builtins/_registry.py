"""Built-in tools by name, with their options, and :func:`builtin_toolset`."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ...exceptions import ConfigError
from .._tool import Tool
from .._toolset import Toolset
from ._files import FileAccess, grep_tool, read_file_tool
from ._http import http_get_tool
from ._math import math_tool
from ._misc import echo_tool, sleep_tool
from ._sql import sql_tool

__all__ = ["BUILTINS", "builtin_options", "builtin_tools", "builtin_toolset"]

PathLike = str | os.PathLike[str]


def _math() -> list[Tool]:
    return [math_tool()]


def _echo() -> list[Tool]:
    return [echo_tool()]


def _sleep(*, max_seconds: float = 60.0) -> list[Tool]:
    return [sleep_tool(max_seconds=max_seconds)]


def _sql(*, db: PathLike, max_rows: int = 1000, timeout: float = 5.0) -> list[Tool]:
    return [sql_tool(db, max_rows=max_rows, timeout=timeout)]


def _read_file(*, root: PathLike, max_bytes: int = 1_000_000) -> list[Tool]:
    return [read_file_tool(FileAccess(root, max_bytes=max_bytes))]


def _grep(*, root: PathLike, max_bytes: int = 1_000_000, max_matches: int = 200) -> list[Tool]:
    return [grep_tool(FileAccess(root, max_bytes=max_bytes), max_matches=max_matches)]


def _files(*, root: PathLike, max_bytes: int = 1_000_000, max_matches: int = 200) -> list[Tool]:
    access = FileAccess(root, max_bytes=max_bytes)
    return [read_file_tool(access), grep_tool(access, max_matches=max_matches)]


def _http_get(
    *,
    allow_hosts: Sequence[str],
    allow_private: bool = False,
    max_bytes: int = 1_000_000,
    timeout: float = 10.0,
) -> list[Tool]:
    return [
        http_get_tool(
            allow_hosts=list(allow_hosts),
            allow_private=allow_private,
            max_bytes=max_bytes,
            timeout=timeout,
        )
    ]


#: Built-in tool names and the factories that make them (keyword options only).
BUILTINS: dict[str, Callable[..., list[Tool]]] = {
    "math": _math,
    "echo": _echo,
    "sleep": _sleep,
    "sql": _sql,
    "read_file": _read_file,
    "grep": _grep,
    "files": _files,
    "http_get": _http_get,
}

#: Options whose values are paths (resolved against a workflow file's folder by the loader).
PATH_OPTIONS = frozenset({"db", "root"})


def builtin_options(name: str) -> dict[str, bool]:
    """The options of built-in ``name``: option name -> whether it is required."""
    factory = BUILTINS[name]
    return {
        p.name: p.default is inspect.Parameter.empty for p in inspect.signature(factory).parameters.values()
    }


def builtin_tools(name: str, **options: Any) -> list[Tool]:
    """The tools of built-in ``name`` made with ``options`` (``files`` gives read_file and grep).

    >>> [t.name for t in builtin_tools("files", root=".")]
    ['read_file', 'grep']

    Raises:
        ConfigError: an unknown built-in, an unknown option or a missing one.
    """
    if name not in BUILTINS:
        raise ConfigError(f"no built-in tool {name!r} (built-ins: {', '.join(BUILTINS)})")
    known = builtin_options(name)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(
            f"built-in {name!r} has no option {unknown[0]!r} (options: {', '.join(known) or 'none'})"
        )
    missing = [k for k, required in known.items() if required and k not in options]
    if missing:
        raise ConfigError(f"built-in {name!r} needs the option {missing[0]!r}")
    return BUILTINS[name](**options)


def builtin_toolset(
    *,
    root: PathLike | None = None,
    db: PathLike | None = None,
    allow_hosts: Sequence[str] | None = None,
    allow_private: bool = False,
    include: Iterable[str] | None = None,
) -> Toolset:
    """The built-in tools that the given options make possible.

    ``math``, ``echo`` and ``sleep`` are always there; ``read_file`` and ``grep`` when ``root`` is
    given, ``sql`` with ``db``, ``http_get`` with ``allow_hosts``. ``include`` keeps only the named
    tools.

    >>> builtin_toolset().names
    ('math', 'echo', 'sleep')
    """
    tools: list[Tool] = [*_math(), *_echo(), *_sleep()]
    if db is not None:
        tools += _sql(db=db)
    if root is not None:
        tools += _files(root=root)
    if allow_hosts is not None:
        tools += _http_get(allow_hosts=allow_hosts, allow_private=allow_private)
    toolset = Toolset(tools)
    if include is not None:
        return toolset.subset(include)
    return toolset
