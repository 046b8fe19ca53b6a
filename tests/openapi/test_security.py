"""The security review's findings (issue #15): what crosses origins, spec bombs, bounds and injection."""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest

from tomasulo.exceptions import ConfigError, OpenAPIError, ToolArgumentError, ToolHTTPError, ToolOutputError
from tomasulo.tools import HttpLimits, OpenAPITools, Tool, http_tool
from tomasulo.tools.openapi import _refs

from .conftest import LOOPBACK

pytestmark = pytest.mark.anyio

SECRET = "SUPERSECRETKEY"


class Echo:
    """A loopback server that records every request and answers with its headers; ``redirect_to``
    sends every request but ``/final`` there with a 307."""

    def __init__(
        self,
        redirect_to: str | None = None,
        body: bytes | None = None,
        media: str = "",
        encoding: str = "",
        stall: bool = False,
        status: int = 200,
    ) -> None:
        self.log: list[dict[str, Any]] = []
        self.done = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def handle_any(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                sent = self.rfile.read(n) if n else b""
                outer.log.append({"path": self.path, "headers": dict(self.headers), "body": sent})
                if redirect_to and not self.path.startswith("/final"):
                    self.send_response(307)
                    self.send_header("Location", redirect_to + "/final")
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                out = (
                    body
                    if body is not None
                    else json.dumps({"path": self.path, "headers": dict(self.headers)}).encode()
                )
                self.send_response(status)
                self.send_header("content-type", media or "application/json")
                if encoding:
                    self.send_header("content-encoding", encoding)
                self.send_header("content-length", str(len(out) + (1000 if stall else 0)))
                self.end_headers()
                self.wfile.write(out)
                if stall:  # the body never ends: only a reader that stops at its bound returns
                    self.wfile.flush()
                    outer.done.wait(30)

            do_GET = do_POST = do_PUT = do_DELETE = handle_any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def headers_seen(self) -> list[dict[str, str]]:
        return [{k.lower(): v for k, v in e["headers"].items()} for e in self.log]


@contextlib.contextmanager
def echo(redirect_to: str | None = None, **kw: Any) -> Iterator[Echo]:
    server = Echo(redirect_to, **kw)
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.done.set()
        server.server.shutdown()
        server.server.server_close()
        thread.join(10)


async def call(t: Tool, **args: Any) -> Any:
    return await t.call(t.validate(args))


def _spec(operation: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "openapi": "3.0.0",
        "info": {"title": "t", "version": "1"},
        "paths": {"/x": {"get": {"operationId": "getx", **operation}}},
        **extra,
    }


KEY_AS_PARAMETER = _spec(
    {"parameters": [{"name": "X-API-Key", "in": "header", "schema": {"type": "string"}}]},
    components={"securitySchemes": {"k": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}},
    security=[{"k": []}],
)


# -- 1, 2: nothing secret crosses origins on a redirect ------------------------------------------


async def test_an_api_key_declared_also_as_a_header_parameter_stays_with_its_origin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("K", SECRET)
    with echo() as evil, echo(redirect_to=evil.url) as good:
        src = OpenAPITools.from_spec(
            KEY_AS_PARAMETER, base_url=good.url, auth={"k": {"key_env": "K"}}, policy=LOOPBACK
        )
        (tool,) = src.tools()
        with anyio.fail_after(10):
            await call(tool)
            await call(tool, X_API_Key="from-the-plan")
    assert all(h.get("x-api-key") == SECRET for h in good.headers_seen())
    assert evil.log and all("x-api-key" not in h for h in evil.headers_seen())


async def test_fixed_headers_are_not_forwarded_to_another_origin() -> None:
    with echo() as evil, echo(redirect_to=evil.url) as good:
        plain = http_tool(
            "h",
            good.url + "/y",
            headers={"X-Api-Key": SECRET, "Accept": "application/json"},
            policy=LOOPBACK,
        )
        src = OpenAPITools.from_spec(
            _spec({}), base_url=good.url, headers={"X-Token": SECRET + "2"}, policy=LOOPBACK
        )
        (op,) = src.tools()
        with anyio.fail_after(10):
            await call(plain)
            await call(op)
    assert good.headers_seen()[0]["x-api-key"] == SECRET
    assert good.headers_seen()[1]["x-token"] == SECRET + "2"
    seen = evil.headers_seen()
    assert len(seen) == 2
    assert all("x-api-key" not in h and "x-token" not in h for h in seen)
    assert seen[0]["accept"] == "application/json"  # harmless headers still go


# -- 3: tiny specs that expand without end ------------------------------------------------------


def _alias_bomb(levels: int) -> str:
    lines = ["openapi: 3.0.0", "info: {title: t, version: '1'}", "l0: &l0 {type: string}"]
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} {{type: object, properties: {{a: *l{i - 1}, b: *l{i - 1}}}}}")
    lines.append(
        "paths: {/x: {post: {operationId: p, requestBody: {content: {application/json: "
        "{schema: *l" + str(levels) + "}}}}}}"
    )
    return "\n".join(lines)


def test_a_yaml_alias_bomb_is_refused_naming_the_bound(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb(14))
    assert path.stat().st_size < 1000
    with pytest.raises(OpenAPIError, match="MAX_SCHEMA_NODES"):
        OpenAPITools.from_spec(path, base_url="http://127.0.0.1:1")


def test_references_that_fan_out_give_a_bounded_schema() -> None:
    schemas: dict[str, Any] = {"l0": {"type": "string"}}
    for i in range(1, 15):
        ref = {"$ref": f"#/components/schemas/l{i - 1}"}
        schemas[f"l{i}"] = {"type": "object", "properties": {"a": ref, "b": ref}}
    spec = {
        "openapi": "3.0.0",
        "info": {"title": "t", "version": "1"},
        "components": {"schemas": schemas},
        "paths": {
            "/x": {
                "post": {
                    "operationId": "p",
                    "requestBody": {
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/l14"}}}
                    },
                }
            }
        },
    }
    assert len(json.dumps(spec)) < 4096
    (tool,) = OpenAPITools.from_spec(spec, base_url="http://127.0.0.1:1").tools()
    shown = json.dumps(tool.input_schema)
    assert len(shown) < 30_000 and "too large to expand" in shown


def test_one_budget_counts_every_schema_of_the_document(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_refs, "MAX_DOCUMENT_NODES", 40)
    body = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(5)}}
    content = {"content": {"application/json": {"schema": body}}}
    paths = {f"/x{n}": {"post": {"operationId": f"p{n}", "requestBody": content}} for n in range(10)}
    spec = {"openapi": "3.0.0", "info": {"title": "t", "version": "1"}, "paths": paths}
    with pytest.raises(OpenAPIError, match="MAX_DOCUMENT_NODES"):
        OpenAPITools.from_spec(spec, base_url="http://127.0.0.1:1")


def test_a_deeply_nested_json_spec_is_an_openapi_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text('{"openapi": "3.0.0", "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(OpenAPIError, match="nested too deeply"):
        OpenAPITools.from_spec(path, base_url="http://127.0.0.1:1")


# -- 4: fetched specs and tokens are read with a bound --------------------------------------------

ZIP_BOMB = gzip.compress(b" " * 5_000_000, 9)  # 5 MB of spaces in a few kilobytes
# (the servers below send it and never end the body: the bound, not the end, must stop reading)


async def test_a_fetched_spec_is_bounded_after_decompression() -> None:
    with echo(body=ZIP_BOMB, encoding="gzip", stall=True) as spec_server:
        src = OpenAPITools.from_spec(
            spec_server.url + "/spec.json", policy=LOOPBACK, limits=HttpLimits(max_response_bytes=4096)
        )
        with anyio.fail_after(20), pytest.raises(OpenAPIError, match="max_response_bytes"):
            await src.list_tools()


async def test_a_token_answer_is_bounded_after_decompression() -> None:
    with echo(body=ZIP_BOMB, encoding="gzip", stall=True) as token_server, echo() as api:
        spec = _spec(
            {},
            components={
                "securitySchemes": {
                    "o": {
                        "type": "oauth2",
                        "flows": {"clientCredentials": {"tokenUrl": token_server.url + "/t", "scopes": {}}},
                    }
                }
            },
            security=[{"o": []}],
        )
        src = OpenAPITools.from_spec(
            spec,
            base_url=api.url,
            policy=LOOPBACK,
            limits=HttpLimits(max_response_bytes=4096, retries=0),
            auth={"o": {"client_id": "id", "client_secret": SECRET}},
        )
        (tool,) = src.tools()
        with anyio.fail_after(20), pytest.raises(ToolHTTPError, match="max_response_bytes"):
            await call(tool)
    assert api.log == []


async def test_a_spec_url_that_redirects_is_followed() -> None:
    spec = json.dumps(_spec({})).encode()
    with echo(body=spec) as final, echo(redirect_to=final.url) as first:
        src = OpenAPITools.from_spec(first.url + "/spec.json", base_url=final.url, policy=LOOPBACK)
        with anyio.fail_after(10):
            tools = await src.list_tools()
    assert [t.name for t in tools] == ["getx"]
    assert [e["path"] for e in final.log] == ["/final"]


# -- 5: $ref reads only regular files under the spec's directory ----------------------------------


def _body_ref(ref: str) -> dict[str, Any]:
    schema = {"type": "object", "properties": {"a": {"$ref": ref}}}
    body = {"content": {"application/json": {"schema": schema}}}
    return {
        "openapi": "3.0.0",
        "info": {"title": "t", "version": "1"},
        "paths": {"/x": {"post": {"operationId": "p", "requestBody": body}}},
    }


def _load_file_spec(tmp_path: Path, ref: str) -> OpenAPITools:
    spec_dir = tmp_path / "spec"
    spec_dir.mkdir(exist_ok=True)
    (spec_dir / "s.json").write_text(json.dumps(_body_ref(ref)))
    return OpenAPITools.from_spec(spec_dir / "s.json", base_url="http://127.0.0.1:1")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    secret = tmp_path / "outside" / "secret.yaml"
    secret.parent.mkdir()
    secret.write_text(f"type: string\ndescription: {SECRET}\n")
    return secret


def test_file_references_stay_under_the_spec_directory(tmp_path: Path, outside: Path) -> None:
    (tmp_path / "spec").mkdir()
    (tmp_path / "spec" / "ok.yaml").write_text("type: integer\n")
    src = _load_file_spec(tmp_path, "ok.yaml")
    assert src.tools()[0].input_schema["properties"]["a"]["type"] == "integer"  # a sibling is read
    for ref in ("../outside/secret.yaml", outside.as_uri(), "/dev/zero"):
        with pytest.raises(OpenAPIError, match="refused") as info:
            _load_file_spec(tmp_path, ref)
        assert SECRET not in str(info.value)


def test_symlinks_out_and_fifos_are_refused(tmp_path: Path, outside: Path) -> None:
    (tmp_path / "spec").mkdir()
    (tmp_path / "spec" / "link.yaml").symlink_to(outside)
    os.mkfifo(tmp_path / "spec" / "pipe.yaml")
    with pytest.raises(OpenAPIError, match="only files under the spec's directory"):
        _load_file_spec(tmp_path, "link.yaml")
    with pytest.raises(OpenAPIError, match="not a regular file"):
        _load_file_spec(tmp_path, "pipe.yaml")


def test_a_mapping_spec_reads_no_file(outside: Path) -> None:
    with pytest.raises(OpenAPIError, match="may not refer to files"):
        OpenAPITools.from_spec(_body_ref(outside.as_uri()), base_url="http://127.0.0.1:1")


# -- 6, 7, 10: arguments cannot change the request's shape ---------------------------------------

PARAMETERS = [
    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
    {"name": "h", "in": "header", "schema": {"type": "string"}},
    {"name": "c", "in": "cookie", "schema": {"type": "string"}},
]
SHAPES = {
    "openapi": "3.0.0",
    "info": {"title": "t", "version": "1"},
    "paths": {
        "/v1/pets/{id}": {
            "get": {"operationId": "g", "parameters": PARAMETERS},
            "post": {"operationId": "p", "parameters": PARAMETERS},
        }
    },
}


async def test_dot_segments_in_a_path_parameter_are_refused() -> None:
    with echo() as api:
        src = OpenAPITools.from_spec(SHAPES, base_url=api.url + "/api", policy=LOOPBACK)
        get = src.tools()[0]
        plain = http_tool("plain", api.url + "/api/v1/pets/{id}", policy=LOOPBACK)
        with anyio.fail_after(10):
            assert (await call(get, id="a.b"))["path"] == "/api/v1/pets/a.b"
            for value in ("..", ".", "%2e%2e", "%2E.", "../..", "a/../../x"):
                for tool in (get, plain):
                    with pytest.raises(ToolArgumentError, match="id"):
                        await call(tool, id=value)
    assert [e["path"] for e in api.log] == ["/api/v1/pets/a.b"]


async def test_a_cookie_argument_cannot_add_cookies() -> None:
    with echo() as api:
        get = OpenAPITools.from_spec(SHAPES, base_url=api.url, policy=LOOPBACK).tools()[0]
        with anyio.fail_after(10):
            assert (await call(get, id="1", c="plain-value"))["headers"]["Cookie"] == "c=plain-value"
            for value in ("x; session=attacker", "a,b", "a b", "a\\tb", 'a"b'):
                with pytest.raises(ToolArgumentError, match="cookie"):
                    await call(get, id="1", c=value)
    assert len(api.log) == 1


async def test_a_line_break_in_a_header_argument_is_an_argument_error() -> None:
    with echo() as api:
        tools = OpenAPITools.from_spec(SHAPES, base_url=api.url, policy=LOOPBACK).tools()
        with anyio.fail_after(10):
            for tool in tools:
                with pytest.raises(ToolArgumentError, match="header"):
                    await call(tool, id="1", h="a\r\nX-Injected: 1")
    assert api.log == []


def test_header_parameters_openapi_ignores_are_not_arguments_and_host_is_refused() -> None:
    spec = _spec(
        {
            "parameters": [
                {"name": name, "in": "header", "schema": {"type": "string"}}
                for name in ("Authorization", "Accept", "Content-Type", "X-Trace")
            ]
        }
    )
    (tool,) = OpenAPITools.from_spec(spec, base_url="http://127.0.0.1:1").tools()
    assert list(tool.input_schema["properties"]) == ["X_Trace"]
    host = _spec({"parameters": [{"name": "Host", "in": "header", "schema": {"type": "string"}}]})
    with pytest.raises(OpenAPIError, match="Host"):
        OpenAPITools.from_spec(host, base_url="http://127.0.0.1:1")


# -- 8: URLs in messages show no user, password or query ---------------------------------------


async def test_messages_and_labels_show_no_userinfo_or_query() -> None:
    with echo(body=b"[1]") as spec_server:
        url = spec_server.url.replace("http://", f"http://ada:{SECRET}@") + f"/spec.json?token={SECRET}2"
        src = OpenAPITools.from_spec(url, policy=LOOPBACK)
        with anyio.fail_after(10), pytest.raises(OpenAPIError, match="not an OpenAPI document") as info:
            await src.list_tools()
    assert SECRET not in str(info.value) and SECRET not in src.label and "ada" not in src.label
    with echo(body=b"{not json") as api:
        base = api.url.replace("http://", f"http://ada:{SECRET}@")
        (tool,) = OpenAPITools.from_spec(_spec({}), base_url=base, policy=LOOPBACK).tools()
        with anyio.fail_after(10), pytest.raises(ToolOutputError, match="is not") as bad:
            await call(tool)
    assert SECRET not in str(bad.value) and "ada" not in str(bad.value)


# -- 9: a remote spec does not choose where secrets go -------------------------------------------


async def test_a_remote_spec_cannot_send_requests_or_tokens_to_another_origin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("K", SECRET)
    with echo() as evil:
        keyed = {
            **KEY_AS_PARAMETER,
            "servers": [{"url": evil.url + "/api"}],
        }
        oauth = _spec(
            {},
            components={
                "securitySchemes": {
                    "o": {
                        "type": "oauth2",
                        "flows": {"clientCredentials": {"tokenUrl": evil.url + "/token", "scopes": {}}},
                    }
                }
            },
            security=[{"o": []}],
        )
        keyed_body, oauth_body = json.dumps(keyed).encode(), json.dumps(oauth).encode()
        with echo(body=keyed_body) as keyed_server, echo(body=oauth_body) as oauth_server:
            src = OpenAPITools.from_spec(
                keyed_server.url + "/spec.json", policy=LOOPBACK, auth={"k": {"key_env": "K"}}
            )
            with anyio.fail_after(10):
                (tool,) = await src.list_tools()
                with pytest.raises(ConfigError, match="base_url"):
                    await call(tool)
            with pytest.raises(ConfigError, match="token_url"):
                OpenAPITools.from_spec(
                    oauth_server.url + "/spec.json",
                    base_url=oauth_server.url,
                    policy=LOOPBACK,
                    auth={"o": {"client_id": "id", "client_secret": SECRET}},
                ).tools()
            confirmed = OpenAPITools.from_spec(  # the user names the token URL: it is used
                oauth_server.url + "/spec.json",
                base_url=oauth_server.url,
                policy=LOOPBACK,
                auth={"o": {"client_id": "id", "client_secret": SECRET, "token_url": evil.url + "/token"}},
            )
            assert len(confirmed.tools()) == 1
    assert evil.log == []


# -- 10: the basic-auth pair and fixed header values are scrubbed ---------------------------------


async def test_a_basic_auth_pair_and_fixed_header_values_are_scrubbed_from_errors() -> None:
    pair = base64.b64encode(f"ada:{SECRET}".encode()).decode()
    spec = _spec(
        {},
        components={"securitySchemes": {"b": {"type": "http", "scheme": "basic"}}},
        security=[{"b": []}],
    )
    with echo(body=f"bad pair {pair}; bad header {SECRET}2".encode(), media="text/plain", status=400) as api:
        (tool,) = OpenAPITools.from_spec(
            spec,
            base_url=api.url,
            policy=LOOPBACK,
            auth={"b": {"username": "ada", "password": SECRET}},
            headers={"X-Token": SECRET + "2"},
        ).tools()
        with anyio.fail_after(10), pytest.raises(ToolHTTPError) as info:
            await call(tool)
    assert info.value.status_code == 400
    assert pair not in str(info.value) and SECRET not in str(info.value)
