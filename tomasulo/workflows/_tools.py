"""Turning a workflow's ``tools`` entries into tools, and the ``input`` tool that binds values."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .._text import did_you_mean
from ..exceptions import TomasuloError, UserError
from ..tools import (
    HttpLimits,
    NetPolicy,
    OpenAPITools,
    StaticTools,
    Tool,
    ToolLoadError,
    ToolPolicy,
    ToolSource,
    http_tool,
    load_tools,
)
from ..tools.builtins import BUILTINS, PATH_OPTIONS, builtin_options, builtin_tools
from ._model import HttpToolSpec, MCPSourceSpec, NetSpec, OpenAPISourceSpec, PolicySpec, ToolSpec

__all__ = ["INPUT_TOOL", "ToolLoadError", "build_tools", "input_tool", "tool_source"]

#: The name of the tool that gives a plan its inputs and earlier steps' outputs.
INPUT_TOOL = "input"


def _net(spec: NetSpec) -> NetPolicy:
    return NetPolicy(
        allow_hosts=tuple(spec.allow_hosts),
        allow_private=spec.allow_private,
        allow_private_hosts=tuple(spec.allow_private_hosts),
        max_redirects=spec.max_redirects,
    )


def _http_tool(spec: HttpToolSpec) -> Tool:
    try:
        return http_tool(
            spec.prefix + spec.name,
            spec.url,
            spec.method,
            schema=spec.input_schema,
            headers=spec.headers,
            policy=_net(spec.net),
            description=spec.description,
            body=spec.body,
            limits=HttpLimits(timeout=spec.timeout),
            tool_policy=ToolPolicy(timeout=spec.timeout * 4),  # the whole call, retries included
            output_schema=spec.output_schema,
            idempotent=spec.idempotent,
        )
    except UserError as exc:
        raise ToolLoadError(str(exc), "http") from None


def _openapi_source(spec: OpenAPISourceSpec, folder: Path | None) -> OpenAPITools:
    where = spec.spec
    if not where.startswith(("http://", "https://")):
        path = Path(where).expanduser()
        where = str(folder / path if folder is not None and not path.is_absolute() else path)
    try:
        return OpenAPITools.from_spec(
            where,
            base_url=spec.base_url,
            auth=spec.auth,
            include=spec.include,
            exclude=spec.exclude,
            prefix=spec.prefix,
            policy=_net(spec.net),
            limits=HttpLimits(
                timeout=spec.timeout, max_response_bytes=spec.max_response_bytes, retries=spec.retries
            ),
            idempotent=spec.idempotent,
            headers=spec.headers,
        )
    except TomasuloError as exc:
        raise ToolLoadError(str(exc), "openapi") from None


def _mcp_source(spec: MCPSourceSpec, folder: Path | None) -> ToolSource:
    try:  # h-mcp's MCPTools, looked up by name so this module loads without it
        mcp_tools: Any = importlib.import_module("tomasulo.tools").MCPTools
    except AttributeError:
        raise ToolLoadError(
            "mcp entries need tomasulo.tools.MCPTools, which this build lacks", "mcp"
        ) from None
    try:
        if spec.command is not None:
            cwd = spec.cwd
            if cwd is not None and folder is not None and not Path(cwd).is_absolute():
                cwd = str(folder / cwd)
            source = mcp_tools.stdio(
                spec.command, spec.args, spec.env or None, cwd, prefix=spec.prefix, timeout=spec.timeout
            )
        else:
            source = mcp_tools.http(
                spec.url,
                spec.headers or None,
                transport=spec.transport,
                prefix=spec.prefix,
                timeout=spec.timeout,
                net_policy=_net(spec.net),
            )
    except UserError as exc:
        raise ToolLoadError(str(exc), "mcp") from None
    assert isinstance(source, ToolSource)
    return source


def tool_source(spec: ToolSpec, folder: Path | None) -> ToolSource:
    """The entry as a :class:`~tomasulo.tools.ToolSource` (to be opened by whoever runs the tools).

    Built-ins, imports and HTTP tools are :class:`~tomasulo.tools.StaticTools`; ``openapi``
    entries are :class:`~tomasulo.tools.OpenAPITools` and ``mcp`` entries ``MCPTools``, each
    with its ``prefix``. The entry's ``policy`` applies to sources that take one at build time;
    for the others, :func:`build_tools` applies it.

    Raises:
        ToolLoadError: the entry cannot be made (``key`` says which key is at fault).
    """
    if spec.openapi is not None:
        return _openapi_source(spec.openapi, folder)
    if spec.mcp is not None:
        return _mcp_source(spec.mcp, folder)
    return StaticTools(build_tools(spec, folder), label=_label(spec))


def _label(spec: ToolSpec) -> str:
    if spec.builtin is not None:
        return f"builtin:{spec.builtin}"
    if spec.import_ is not None:
        return f"import:{spec.import_}"
    return f"http:{spec.http.name if spec.http is not None else ''}"


def _in_thread(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` (which runs its own event loop) in a helper thread, so a loader called from
    inside an event loop can still open a source."""
    out: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # handed back to the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=run, name="tool-source-load")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return out[0]


def _mcp_tools(spec: MCPSourceSpec, folder: Path | None) -> list[Tool]:
    """An MCP server's tools for a workflow loaded without an event loop of its own.

    The server is started once to list its tools (so plans can be checked when the file loads);
    each call then opens its own session. A runner that opens :func:`tool_source` for the run
    shares one session between calls instead.
    """
    import anyio

    async def listed() -> list[Tool]:
        async with _mcp_source(spec, folder) as source:
            return await source.list_tools()

    tools: list[Tool] = _in_thread(lambda: anyio.run(listed))

    def caller(name: str) -> Callable[..., Any]:
        async def call(**args: Any) -> Any:
            async with _mcp_source(spec, folder) as source:
                fresh = {t.name: t for t in await source.list_tools()}[name]
                result = fresh.call(args)
                return await result if inspect.isawaitable(result) else result

        return call

    return [dataclasses.replace(t, fn=caller(t.name), convert=None) for t in tools]


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
        tools = load_tools(spec.import_, folder)
    elif spec.openapi is not None:
        try:
            tools = _openapi_source(spec.openapi, folder).tools()
        except TomasuloError as exc:
            raise ToolLoadError(str(exc), "openapi") from None
    elif spec.mcp is not None:
        tools = _mcp_tools(spec.mcp, folder)
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
