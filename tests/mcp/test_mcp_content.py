"""How tools/call results become values: every content shape, and the error a source raises."""

from __future__ import annotations

import base64
import pickle

import mcp.types as mt

from tomasulo.exceptions import ToolSourceError
from tomasulo.tools import MCPAudio, MCPImage, MCPResource, MCPResourceLink
from tomasulo.tools._mcp_content import result_value, unwrapped_output_schema


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_content_blocks_become_typed_values() -> None:
    blocks: list[mt.ContentBlock] = [
        mt.TextContent(type="text", text="hello"),
        mt.ImageContent(type="image", data=b64(b"img"), mime_type="image/png"),
        mt.AudioContent(type="audio", data=b64(b"wav"), mime_type="audio/wav"),
        mt.EmbeddedResource(
            type="resource",
            resource=mt.TextResourceContents(uri="file:///a.txt", mime_type="text/plain", text="A"),
        ),
        mt.EmbeddedResource(
            type="resource", resource=mt.BlobResourceContents(uri="file:///b", blob=b64(b"B"))
        ),
        mt.ResourceLink(type="resource_link", uri="file:///c", name="c", mime_type="text/csv"),
    ]
    value = result_value(mt.CallToolResult(content=blocks), unwrap=True)
    assert value == [
        "hello",
        MCPImage(b"img", "image/png"),
        MCPAudio(b"wav", "audio/wav"),
        MCPResource("file:///a.txt", "text/plain", text="A"),
        MCPResource("file:///b", None, blob=b"B"),
        MCPResourceLink("file:///c", "c", "text/csv"),
    ]
    one = mt.CallToolResult(content=[blocks[1]])
    assert result_value(one, unwrap=True) == MCPImage(b"img", "image/png"), "one block: the value itself"
    assert result_value(mt.CallToolResult(content=[]), unwrap=True) is None


def test_structured_content_wins_and_the_sdk_wrapping_is_undone() -> None:
    wrapped = {"type": "object", "properties": {"result": {"type": "integer"}}, "required": ["result"]}
    assert unwrapped_output_schema(wrapped) == ({"type": "integer"}, True)
    own = {"type": "object", "properties": {"result": {"type": "integer"}, "n": {"type": "integer"}}}
    assert unwrapped_output_schema(own) == (own, False)
    text = [mt.TextContent(type="text", text="7")]
    result = mt.CallToolResult(content=text, structured_content={"result": 7})
    assert result_value(result, unwrap=True) == 7
    assert result_value(result, unwrap=False) == {"result": 7}


def test_tool_source_error_names_its_source_and_pickles() -> None:
    err = ToolSourceError("could not start the server: FileNotFoundError", source="mcp:weather")
    assert str(err) == "mcp:weather: could not start the server: FileNotFoundError"
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is ToolSourceError and str(back) == str(err) and back.source == "mcp:weather"
