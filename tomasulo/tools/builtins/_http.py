"""The ``http_get`` tool: GET a URL on an allowlisted host, refusing private addresses, bounded.

Where a request may go is decided by the one SSRF check, :mod:`tomasulo.tools._net`: the host
must match the allowlist, and every address it resolves to must be public (private, loopback,
link-local, reserved and cloud metadata addresses are refused in every spelling, IPv4 inside
IPv6 included) unless allowed. Each request, so each redirect hop, is checked again and sent to
the checked address itself.

Every answer is bounded, and the result says which bound was hit:

- ``max_bytes``: the body (after decompression) is cut there, ``truncated`` is true and
  ``note`` says so. A compressed body is inflated a piece at a time, never past the bound, so a
  gzip bomb costs no more memory than an honest body.
- ``timeout``: the whole call (resolution, connection, every redirect, the body) ends within
  it, however slowly the server sends.
- ``max_redirects``: more hops are refused. Redirect bodies are never read.
- ``max_json_depth``: a JSON body nested deeper is not parsed (``json`` is null, ``note`` says why).
"""

from __future__ import annotations

import codecs
import json
import re
import zlib
from collections.abc import AsyncIterator, Sequence
from itertools import accumulate
from typing import Any

import anyio
import anyio.to_thread
import httpx

from ...exceptions import ConfigError
from .._net import NetPolicy, Resolver, check_ip, guarded_client
from .._tool import Tool, ToolPolicy

__all__ = ["Resolver", "check_address", "http_get_tool"]

#: The SSRF check on one address; kept under its old name (see :func:`tomasulo.tools._net.check_ip`).
check_address = check_ip

#: JSON bodies nested deeper than this are not parsed.
DEFAULT_MAX_JSON_DEPTH = 100

# Codecs that are not plain text decoders (or decode in more than linear time) are never used
# for a body, whatever the server's charset says.
_UNSAFE_CODECS = frozenset({"punycode", "idna", "unicode_escape", "raw_unicode_escape"})


def _text(body: bytes, charset: str | None) -> str:
    name = "utf-8"
    if charset:
        try:
            info = codecs.lookup(charset)
        except LookupError:
            info = None
        if info is not None and info._is_text_encoding and info.name not in _UNSAFE_CODECS:
            name = info.name
    try:
        return body.decode(name, errors="replace")
    except (LookupError, UnicodeError, ValueError):
        return body.decode("utf-8", errors="replace")


# A string runs to its closing quote or, unterminated, to the end of the text: every quote that
# starts a string is matched at the first try, so stripping strings is linear (a pattern that
# needs the closing quote would rescan the rest of the text from each quote of an unterminated
# string, quadratic in its length).
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DELTA = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def json_depth(text: str) -> int:
    """How deeply the arrays and objects in JSON ``text`` nest (strings ignored), in linear time."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(map(_DELTA.__getitem__, brackets.encode("ascii"))), default=0)


def _parse_json(text: str, max_depth: int) -> tuple[Any, str | None]:
    """``text`` parsed, or None and a note saying why not (nested too deep, or not JSON)."""
    depth = json_depth(text)
    if depth > max_depth:
        return None, (
            f"the JSON body nests {depth} levels deep, more than max_json_depth="
            f"{max_depth}; it was not parsed (json is null, the text is kept)"
        )
    try:
        return json.loads(text), None
    except (ValueError, RecursionError) as exc:
        return None, f"the body is not valid JSON ({exc}); json is null"


class _Inflater:
    """Decodes a body's content encoding with the output bounded, whatever the input."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._zlib: Any = None
        self._tail = b""
        self._started = False
        if encoding not in ("", "identity", "gzip", "x-gzip", "deflate"):
            raise ValueError(
                f"the server sent the body with content-encoding {encoding!r}, which http_get "
                "does not decode (it asks for gzip or deflate only)"
            )

    @property
    def done(self) -> bool:
        """The compressed stream has ended (anything after it is ignored)."""
        return self._zlib is not None and self._zlib.eof

    def push(self, data: bytes) -> None:
        self._tail += data
        # a deflate body is told apart by its first two bytes, which may come in two chunks
        if not self._started and len(self._tail) >= (2 if self.encoding == "deflate" else 1):
            self._start()

    def finish(self) -> None:
        """The body has ended: decode what came even if it was too short to tell its kind."""
        if not self._started and self._tail:
            self._start()

    def _start(self) -> None:
        self._started = True
        data = self._tail
        if self.encoding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self.encoding == "deflate":
            # servers send raw deflate streams as often as zlib-wrapped ones
            zlib_header = len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)

    def pull(self, room: int) -> bytes:
        """Up to ``room`` (> 0) decoded bytes; the input they need no more of is dropped."""
        if not self._started:
            return b""  # not yet known how to decode the bytes so far
        if self._zlib is None:
            head, self._tail = self._tail[:room], self._tail[room:]
            return head
        out = bytearray()
        try:
            while self._tail and len(out) < room and not self._zlib.eof:
                before = self._tail
                out += self._zlib.decompress(before, room - len(out))
                self._tail = self._zlib.unconsumed_tail
                if self._tail == before:
                    break
        except zlib.error as exc:
            raise ValueError(f"the body is not valid {self.encoding} data: {exc}") from None
        if self._zlib.eof:
            self._tail = b""
        return bytes(out)


async def _read_body(chunks: AsyncIterator[bytes], encoding: str, max_bytes: int) -> tuple[bytes, str | None]:
    """The decoded body cut at ``max_bytes``, and a note saying why when it was cut."""
    inflater = _Inflater(encoding)
    limit = max_bytes + 1  # one byte past the bound tells that the body is longer
    raw_limit = max_bytes + 65_536  # compressed data that never inflates is bounded too
    body = bytearray()
    wire = 0
    ended = True
    async for raw in chunks:
        wire += len(raw)
        inflater.push(raw)
        body += inflater.pull(limit - len(body))
        if len(body) >= limit or inflater.done or wire > raw_limit:
            ended = False
            break
    if ended:
        inflater.finish()
        body += inflater.pull(limit - len(body))
    compressed = encoding not in ("", "identity")
    note: str | None = None
    if len(body) > max_bytes:
        note = f"the body was cut at max_bytes={max_bytes} bytes"
        if compressed:
            note += f" after {encoding} decompression (inflating stopped there, {wire} bytes read)"
    elif wire > raw_limit and not inflater.done:
        note = (
            f"the {encoding} body was cut after {wire} compressed bytes that inflated to only "
            f"{len(body)} bytes (more than max_bytes={max_bytes} plus 64 KiB are never read)"
        )
    return bytes(body[:max_bytes]), note


def _build_url(url: str, params: dict[str, Any] | None) -> httpx.URL:
    if not isinstance(url, str):
        raise ValueError("the url must be a string")
    for key, value in (params or {}).items():
        values = value if isinstance(value, list) else [value]
        if not all(v is None or isinstance(v, str | int | float | bool) for v in values):
            raise ValueError(
                f"query parameter {key!r} must be a string, number, boolean or a list of them, "
                f"not {type(value).__name__}"
            )
    try:
        return httpx.URL(url, params=params or None)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValueError(f"{url!r} is not a valid URL: {exc}") from None


def http_get_tool(
    *,
    allow_hosts: Sequence[str],
    allow_private: bool = False,
    allow_private_hosts: Sequence[str] = (),
    max_bytes: int = 1_000_000,
    timeout: float = 10.0,
    max_redirects: int = 5,
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH,
    transport: httpx.AsyncBaseTransport | None = None,
    resolver: Resolver | None = None,
    name: str = "http_get",
) -> Tool:
    """The ``http_get`` tool: ``http_get(url, params?)``.

    Args:
        allow_hosts: host names that may be fetched; ``"*.example.com"`` allows subdomains,
            ``"*"`` any host (private addresses are still refused).
        allow_private: allow private, loopback and link-local addresses (for local services).
            Cloud metadata addresses stay refused.
        allow_private_hosts: hosts that may resolve to private (or metadata) addresses though
            other hosts may not.
        max_bytes: bodies are cut at this size after decompression (``truncated`` is then true).
        timeout: seconds for the whole call, redirects and the body included.
        max_redirects: redirects followed; each hop is checked again.
        max_json_depth: JSON bodies nested deeper are not parsed.
        transport: the transport that sends the checked, pinned requests (tests pass one).
        resolver: resolves a host to addresses; the system resolver by default.

    Returns ``{"url", "status", "content_type", "text", "json", "truncated", "note"}``; ``json``
    is the parsed body when the server says it is JSON and the body was not cut; ``note`` says
    which bound was hit, or why ``json`` is null, or is null.

    >>> tool = http_get_tool(allow_hosts=["*.wikipedia.org"], timeout=5.0)  # doctest: +SKIP
    """
    if isinstance(allow_hosts, str) or not isinstance(allow_hosts, Sequence):
        raise ConfigError("allow_hosts must be a list of host names (use ['*'] for any host)")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise ConfigError(f"max_bytes must be a positive integer, got {max_bytes!r}")
    if not isinstance(timeout, int | float) or not timeout > 0 or timeout != timeout:
        raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if isinstance(max_json_depth, bool) or not isinstance(max_json_depth, int) or max_json_depth < 1:
        raise ConfigError(f"max_json_depth must be a positive integer, got {max_json_depth!r}")
    policy = NetPolicy(
        allow_hosts=tuple(allow_hosts),
        allow_private=allow_private,
        allow_private_hosts=tuple(allow_private_hosts),
        max_redirects=max_redirects,
    )
    hosts = policy.allow_hosts

    async def fetch(http: httpx.AsyncClient, url: str, target: httpx.URL) -> dict[str, Any]:
        for _ in range(max_redirects + 1):
            request = http.build_request("GET", target, headers={"Accept-Encoding": "gzip, deflate"})
            response = await http.send(request, stream=True, follow_redirects=False)
            try:
                if response.next_request is not None:
                    target = response.next_request.url
                    continue  # the redirect's body is never read
                encoding = response.headers.get("content-encoding", "").strip().lower()
                body, note = await _read_body(response.aiter_raw(), encoding, max_bytes)
            finally:
                await response.aclose()
            truncated = note is not None
            text = _text(body, response.charset_encoding)
            content_type = response.headers.get("content-type", "")
            parsed: Any = None
            if "json" in content_type.lower() and not truncated:
                # linear, but a megabyte takes a moment: off the event loop
                parsed, note = await anyio.to_thread.run_sync(
                    _parse_json, text, max_json_depth, abandon_on_cancel=True
                )
            return {
                "url": str(target),
                "status": response.status_code,
                "content_type": content_type,
                "text": text,
                "json": parsed,
                "truncated": truncated,
                "note": note,
            }
        raise OSError(
            f"http_get: {url!r} redirected more than max_redirects={max_redirects} times; "
            "the last hop was not followed"
        )

    async def http_get(url: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        target = _build_url(url, params)
        try:
            with anyio.fail_after(timeout):
                async with guarded_client(
                    policy, timeout=timeout, resolve=resolver, inner=transport, follow_redirects=False
                ) as http:
                    return await fetch(http, url, target)
        except (TimeoutError, httpx.TimeoutException):
            raise TimeoutError(
                f"http_get: {url!r} did not give a whole answer within the total timeout of "
                f"{timeout} s (the timeout option bounds the whole call: lookup, connection, "
                "redirects and body)"
            ) from None
        except httpx.TransportError as exc:
            raise OSError(f"http_get: {url!r} failed: {type(exc).__name__}: {exc}") from None

    return Tool(
        name=name,
        description=(
            "Fetch a URL with HTTP GET from an allowed host ("
            + ", ".join(hosts)
            + "). Returns status, content type, the body as text, and the parsed JSON if any."
        ),
        input_schema={
            "type": "object",
            "properties": {
                "url": {"type": "string", "description": "an http or https URL"},
                "params": {"type": "object", "description": "query parameters"},
            },
            "required": ["url"],
            "additionalProperties": False,
        },
        output_schema={
            "type": "object",
            "properties": {
                "url": {"type": "string"},
                "status": {"type": "integer"},
                "content_type": {"type": "string"},
                "text": {"type": "string"},
                "json": {},
                "truncated": {"type": "boolean"},
                "note": {"type": ["string", "null"]},
            },
        },
        policy=ToolPolicy(timeout=timeout + 1.0, retries=1, idempotent=True),
        fn=http_get,
    )
