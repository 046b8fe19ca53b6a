"""Tools named by import path: ``module:name`` (a tool, a toolset or a function of one's own)."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._text import did_you_mean
from ..exceptions import TomasuloError
from ._decorator import tool
from ._tool import Tool
from ._toolset import Toolset

__all__ = ["ToolLoadError", "load_tools"]


class ToolLoadError(Exception):
    """A tool entry that cannot be made; ``key`` names the entry's key at fault."""

    def __init__(self, message: str, key: str | None = None) -> None:
        self.key = key
        super().__init__(message)


@contextlib.contextmanager
def _on_path(folder: Path | None) -> Iterator[None]:
    if folder is None:
        yield
        return
    entry = str(folder)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def load_tools(target: str, folder: Path | None = None) -> list[Tool]:
    """The tools ``module:name`` names: a :class:`Tool`, a :class:`Toolset`, a list of tools, or
    a plain function of the user's own (which becomes a tool, as ``@tool`` would make it).

    ``folder`` (a workflow file's folder, the current directory for the CLI) is put on
    ``sys.path`` while the module is imported. Functions of the standard library, built-ins,
    classes and modules are refused: they were never meant to be called by a model.

    Raises:
        ToolLoadError: the path is malformed, the module does not import, the name is missing
            (with the closest name), or the object cannot become a tool.
    """
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ToolLoadError(f"import path {target!r} must look like module:name", "import")
    with _on_path(folder):
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ToolLoadError(f"cannot import module {module_name!r}: {exc}", "import") from None
        except (Exception, SystemExit) as exc:  # the module's own code failed while importing
            raise ToolLoadError(
                f"importing module {module_name!r} failed: {type(exc).__name__}: {exc}", "import"
            ) from None
    value: Any = module
    for part in attr.split("."):
        if not hasattr(value, part):
            names = [n for n in dir(value) if not n.startswith("_")]
            raise ToolLoadError(
                f"{module_name!r} has no attribute {part!r}{did_you_mean(part, names)}", "import"
            )
        value = getattr(value, part)
    if isinstance(value, Tool):
        return [value]
    if isinstance(value, Toolset):
        return list(value)
    if isinstance(value, list | tuple) and value and all(isinstance(v, Tool) for v in value):
        return list(value)
    refusal = _not_a_tool(target, value)
    if refusal is not None:
        raise ToolLoadError(refusal, "import")
    try:
        return [tool(value)]
    except TomasuloError as exc:
        raise ToolLoadError(f"{target!r} cannot become a tool: {exc}", "import") from None


_TOOL_HELP = "name a @tool, a Toolset, or a function of your own (module:name)"


def _not_a_tool(target: str, value: Any) -> str | None:
    """Why ``value`` may not become a tool, or ``None`` for a Python function of the user's own.

    Only functions written in Python outside the standard library become tools: a built-in
    (``os:system``), a class, a module or any other object is refused, and so is a standard
    library function (``shutil:rmtree``), which was never meant to be called by a model.
    """
    if inspect.ismodule(value):
        return f"{target!r} is a module, not a tool, toolset or function; {_TOOL_HELP}"
    if inspect.isclass(value):
        return f"{target!r} is a class, not a tool; {_TOOL_HELP}"
    if not callable(value):
        return f"{target!r} is a {type(value).__name__}, not a tool, toolset or function; {_TOOL_HELP}"
    name = f"{getattr(value, '__module__', None) or '?'}.{getattr(value, '__qualname__', target)}"
    if inspect.isbuiltin(value) or inspect.ismethoddescriptor(value) or inspect.ismethodwrapper(value):
        return f"{target!r} is a built-in function ({name}), not a tool; {_TOOL_HELP}"
    home = value if inspect.isfunction(value) or inspect.ismethod(value) else type(value)
    module = getattr(home, "__module__", None) or ""
    if module.partition(".")[0] in sys.stdlib_module_names:
        return f"{target!r} is a function of the standard library ({name}), not a tool; {_TOOL_HELP}"
    return None
