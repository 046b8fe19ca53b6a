"""What an MCP tool call returns, as tomasulo values.

A ``tools/call`` result becomes one value (see :func:`result_value`):

- ``isError`` -> :class:`~tomasulo.exceptions.ToolExecutionError` with the server's text;
- ``structuredContent`` -> the JSON value itself (a dict; the SDKs' ``{"result": x}`` wrapping of a
  non-object return value is unwrapped to ``x``);
- a single content block -> its value: a string for text, and the small frozen dataclasses below
  for images, audio, embedded resources and resource links;
- several blocks -> a list of those values, in order; no content -> ``None``.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import mcp.types as mt

__all__ = [
    "MCPAudio",
    "MCPImage",
    "MCPResource",
    "MCPResourceLink",
    "content_value",
    "result_value",
    "unwrapped_output_schema",
]


@dataclass(frozen=True, slots=True)
class MCPImage:
    """An image a tool returned: the decoded bytes and their MIME type (``image/png``)."""

    data: bytes
    mime_type: str


@dataclass(frozen=True, slots=True)
class MCPAudio:
    """Audio a tool returned: the decoded bytes and their MIME type (``audio/wav``)."""

    data: bytes
    mime_type: str


@dataclass(frozen=True, slots=True)
class MCPResource:
    """A resource embedded in a result: ``text`` for text resources, ``blob`` (decoded) otherwise."""

    uri: str
    mime_type: str | None = None
    text: str | None = None
    blob: bytes | None = None


@dataclass(frozen=True, slots=True)
class MCPResourceLink:
    """A link to a resource the server can serve (``resources/read``), not its content."""

    uri: str
    name: str
    mime_type: str | None = None
    description: str | None = None


def _decode(data: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return data.encode()


def content_value(block: Any) -> Any:
    """One content block as a value: ``str`` for text, a dataclass above for the rest."""
    if isinstance(block, mt.TextContent):
        return block.text
    if isinstance(block, mt.ImageContent):
        return MCPImage(_decode(block.data), block.mime_type)
    if isinstance(block, mt.AudioContent):
        return MCPAudio(_decode(block.data), block.mime_type)
    if isinstance(block, mt.EmbeddedResource):
        res = block.resource
        if isinstance(res, mt.TextResourceContents):
            return MCPResource(str(res.uri), res.mime_type, text=res.text)
        return MCPResource(str(res.uri), res.mime_type, blob=_decode(res.blob))
    if isinstance(block, mt.ResourceLink):
        return MCPResourceLink(str(block.uri), block.name, block.mime_type, block.description)
    return block  # a block type newer than this code: kept as the SDK's model


def error_text(result: mt.CallToolResult) -> str:
    """The text an ``isError`` result carries (its text blocks, joined)."""
    texts = [b.text for b in result.content if isinstance(b, mt.TextContent)]
    return "\n".join(texts) or "the tool reported an error without a message"


def _is_wrapped(schema: Any) -> bool:
    return (
        isinstance(schema, dict)
        and schema.get("type") == "object"
        and list(schema.get("properties") or {}) == ["result"]
        and schema.get("required") == ["result"]
    )


def unwrapped_output_schema(schema: dict[str, Any] | None) -> tuple[dict[str, Any] | None, bool]:
    """The output schema plans see, and whether results are unwrapped from ``{"result": x}``."""
    if _is_wrapped(schema):
        assert schema is not None
        return schema["properties"]["result"], True
    return schema, False


def result_value(result: mt.CallToolResult, *, unwrap: bool) -> Any:
    """The value of a successful call (see the module docstring)."""
    structured = result.structured_content
    if structured is not None:
        if unwrap and isinstance(structured, dict) and list(structured) == ["result"]:
            return structured["result"]
        return structured
    blocks = result.content
    if not blocks:
        return None
    if len(blocks) == 1:
        return content_value(blocks[0])
    return [content_value(b) for b in blocks]
