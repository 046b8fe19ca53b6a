"""Turning a workflow's ``tools`` entries into tools, and the ``input`` tool that binds values."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import importlib
import inspect
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from ..exceptions import TomasuloError, UserError
from ..tools import Tool, ToolPolicy, Toolset, tool
from ..tools.builtins import BUILTINS, builtin_options, builtin_tools
from ..tools.builtins._registry import PATH_OPTIONS
from ._model import HttpToolSpec, PolicySpec, ToolSpec

__all__ = ["INPUT_TOOL", "ToolLoadError", "build_tools", "input_tool"]

#: The name of the tool that gives a plan its inputs and earlier steps' outputs.
INPUT_TOOL = "input"


class ToolLoadError(Exception):
    """A tool entry that cannot be made; ``key`` names the entry's key at fault."""

    def __init__(self, message: str, key: str | None = None) -> None:
        self.key = key
        super().__init__(message)


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


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


def _import(target: str, folder: Path | None) -> list[Tool]:
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


def _http_tool(spec: HttpToolSpec) -> Tool:
    async def call_endpoint(**args: Any) -> Any:
        async with httpx.AsyncClient(timeout=spec.timeout, trust_env=False) as client:
            if spec.method == "GET":
                response = await client.get(spec.url, params=args, headers=spec.headers)
            else:
                response = await client.post(spec.url, json=args, headers=spec.headers)
        response.raise_for_status()
        if "json" in response.headers.get("content-type", ""):
            return response.json()
        return response.text

    return Tool(
        name=spec.name,
        description=spec.description or f"{spec.method} {spec.url}",
        input_schema=spec.input_schema,
        output_schema=spec.output_schema,
        policy=ToolPolicy(timeout=spec.timeout),
        fn=call_endpoint,
    )


def _builtin(spec: ToolSpec, folder: Path | None) -> list[Tool]:
    name = spec.builtin or ""
    if name not in BUILTINS:
        raise ToolLoadError(
            f"unknown built-in tool {name!r}{did_you_mean(name, list(BUILTINS))}; "
            f"built-ins: {', '.join(BUILTINS)}",
            "builtin",
        )
    known = builtin_options(name)
    options = spec.options
    for key in options:
        if key not in known:
            raise ToolLoadError(
                f"built-in {name!r} has no option {key!r}{did_you_mean(key, list(known))}; "
                f"options: {', '.join(known) or 'none'}",
                key,
            )
    for key, required in known.items():
        if required and key not in options:
            raise ToolLoadError(f"built-in {name!r} needs the option {key!r}", "builtin")
    for key in PATH_OPTIONS & set(options):
        path = Path(str(options[key])).expanduser()
        if folder is not None and not path.is_absolute():
            path = folder / path
        options[key] = path
    try:
        return builtin_tools(name, **options)
    except UserError as exc:
        raise ToolLoadError(str(exc), "builtin") from None


def _with_policy(tools: list[Tool], policy: PolicySpec | None) -> list[Tool]:
    if policy is None:
        return tools
    changes = policy.model_dump(exclude_none=True)
    return [dataclasses.replace(t, policy=dataclasses.replace(t.policy, **changes)) for t in tools]


def build_tools(spec: ToolSpec, folder: Path | None) -> list[Tool]:
    """The tools one entry of ``tools`` stands for.

    Import paths are looked up with the workflow file's folder on ``sys.path`` as well; relative
    ``db`` and ``root`` options are relative to that folder.

    Raises:
        ToolLoadError: the entry cannot be made (``key`` says which key is at fault).
    """
    if spec.builtin is not None:
        tools = _builtin(spec, folder)
    elif spec.import_ is not None:
        tools = _import(spec.import_, folder)
    else:
        assert spec.http is not None
        tools = [_http_tool(spec.http)]
    return _with_policy(tools, spec.policy)


def input_tool(names: Sequence[str], values: Mapping[str, Any] | None = None) -> Tool:
    """``input(name)``: the value of a workflow input or of an earlier step's output.

    ``names`` are the names a plan may ask for (the schema enumerates them, so the parser rejects
    any other); ``values`` are the bound values (``None`` for a tool used only to check plans).
    The value is returned as it is, typed: it never passes through the plan's text.
    """
    bound = dict(values or {})

    def read_input(name: str) -> Any:
        if name not in bound:
            raise KeyError(f"no value for input {name!r}")
        return bound[name]

    return Tool(
        name=INPUT_TOOL,
        description="The value of a workflow input or an earlier step's output, by name.",
        input_schema={
            "type": "object",
            "properties": {"name": {"type": "string", "enum": list(names)}},
            "required": ["name"],
            "additionalProperties": False,
        },
        policy=ToolPolicy(idempotent=True),
        fn=read_input if values is not None else None,
    )
