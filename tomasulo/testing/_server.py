"""SimulatedLLM: an OpenAI-compatible server with scripted output, a latency model and faults."""

from __future__ import annotations

import inspect
import json
import logging
import random
import socket
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ._constraint import SERVER_FIELDS, GrammarConstraint, InvalidGrammar, find_constraint
from ._latency import PrefixCache
from ._protocol import Encoder, Usage, encoder_for, sse
from ._script import (
    BadEvent,
    Disconnect,
    HTTPFault,
    KeepAlive,
    Latency,
    RawBody,
    RecordedRequest,
    Reply,
    Stall,
    split_tokens,
)
from ._toolcalls import CallPlan, ToolCallMismatch, ToolEncoder, plan_tool_calls, tool_encoder

__all__ = ["ReplySource", "SimulatedLLM", "serve"]

ReplySource = Callable[[RecordedRequest], "Reply | str | Awaitable[Reply | str]"]
"""A function of the request that decides the reply (it may be async)."""

_WORDS = "the a plan task result search value answer tool model simulated reply".split()


class _DroppedConnection(Exception):
    """Raised inside the app to make the server drop the connection mid-response."""


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, _DroppedConnection)


class SimulatedLLM:
    """An OpenAI-compatible LLM server for tests and benchmarks.

    It answers ``POST /v1/chat/completions``, ``/v1/completions`` and ``/v1/responses`` (streamed
    and not) and ``GET /v1/models``. Each answer comes from ``script``: a queue of
    :class:`Reply` items (plain strings become ``Reply(text)``) and/or a function of the
    :class:`RecordedRequest`; when both are given the queue goes first. When neither has an answer
    ``default`` is used, and without one the server answers 500 ("script exhausted").

    Whatever grammar the request carries (in any dialect's field) is compiled with llguidance, and
    a scripted text it does not accept is refused with a 400 whose message names the first
    offending position, so a test proves that the grammar we send admits the text we expect.
    ``server=`` (``"vllm"``, ``"llama-server"``, ``"llama-cpp-python"``, ``"sglang"``,
    ``"ollama"``, ``"openai"``) reads only the fields that server reads, as it does: a
    constraint sent elsewhere is ignored (the reply is unconstrained), and a form the server
    refuses is answered 400.

    A request that declares function ``tools`` (chat completions or Responses) can be answered
    with native tool calls, ``Reply.calls(ToolCall("search", {"query": "x"}), ...)``, streamed as
    OpenAI streams them. Each call's arguments are checked against its tool's JSON schema, and
    ``tool_choice`` and ``parallel_tool_calls`` are honoured; a call that breaks them is refused
    with a 400 (``tool_call_mismatch``) naming the call and the rule. ``Reply.sampled()`` calls
    one of the tools with arguments sampled from its schema (unless ``tool_choice`` is "none").

    Example (the reply is a plan that the grammar for a ``search(query: str)`` tool accepts, so
    the server passes it whichever dialect sends that grammar)::

        sim = SimulatedLLM(['1. search(query="x")\\n2. join()'], latency=Latency(ttft=0.3))
        async with sim.serve() as base_url:          # real uvicorn on 127.0.0.1
            ...  # LLM(base_url, model="m", dialect="vllm"), or openai.AsyncOpenAI(base_url=...)
        client = httpx.AsyncClient(transport=sim.transport())  # or in-process

    Attributes:
        app: the ASGI application.
        requests: every request received, in arrival order.
        latency: the default latency model.
        prompt_tokens, completion_tokens: totals reported in usage so far.
        cached_tokens: prompt tokens served from the prefix cache so far (see
            :class:`Latency`; each request's count is on its :class:`RecordedRequest`).
    """

    def __init__(
        self,
        script: Iterable[Reply | str] | ReplySource | None = None,
        *,
        default: Reply | str | None = None,
        latency: Latency | None = None,
        model: str = "simulated-llm",
        seed: int = 0,
        enforce_grammar: bool = True,
        server: str | None = None,
    ) -> None:
        self._queue: deque[Reply] = deque()
        self._source: ReplySource | None = None
        if callable(script):
            self._source = script
        elif script is not None:
            self.push(*script)
        self.default = _as_reply(default) if default is not None else None
        self.latency = latency or Latency()
        self.model = model
        self.seed = seed
        self.enforce_grammar = enforce_grammar
        if server is not None and server not in SERVER_FIELDS:
            raise ValueError(f"unknown server {server!r}; choose one of {', '.join(SERVER_FIELDS)}")
        self.server = server
        self.requests: list[RecordedRequest] = []
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cached_tokens = 0
        self._caches: dict[tuple[int, int, int], PrefixCache] = {}
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._generate, methods=["POST"]),
                Route("/v1/completions", self._generate, methods=["POST"]),
                Route("/v1/responses", self._generate, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    # -- scripting ------------------------------------------------------------------------------

    def push(self, *replies: Reply | str) -> None:
        """Queue more replies; strings become ``Reply(text)``."""
        self._queue.extend(_as_reply(r) for r in replies)

    @property
    def pending(self) -> int:
        """How many queued replies are left."""
        return len(self._queue)

    async def _next_reply(self, record: RecordedRequest) -> Reply | None:
        if self._queue:
            return self._queue.popleft()
        if self._source is not None:
            result = self._source(record)
            if inspect.isawaitable(result):
                result = await result
            return _as_reply(result)
        return self.default

    # -- transports -----------------------------------------------------------------------------

    def transport(self) -> httpx.ASGITransport:
        """An in-process transport for ``httpx.AsyncClient(transport=...)``.

        httpx's ASGI transport hands the body over only once the app has finished, so timing
        and mid-stream faults are only realistic over :meth:`serve`.
        """
        return httpx.ASGITransport(app=self.app)

    @asynccontextmanager
    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Run the server with uvicorn while the block runs; yields the base URL (``.../v1``).

        ``port=0`` picks a free port.
        """
        import uvicorn

        # IPPROTO_TCP (not 0) so that asyncio also sets TCP_NODELAY on each accepted connection;
        # set on the listening socket too, which Linux copies to accepted ones. Without it a
        # non-streamed answer's last write waits for the client's delayed ACK (about 40 ms).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        started = anyio.Event()

        class _Server(uvicorn.Server):
            async def startup(self, sockets: list[socket.socket] | None = None) -> None:
                await super().startup(sockets)
                started.set()

            def install_signal_handlers(self) -> None:  # the host program owns signals
                pass

        config = uvicorn.Config(
            self.app,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=1,
            timeout_keep_alive=5,
        )
        server = _Server(config)
        quiet = _QuietDrops()
        logging.getLogger("uvicorn.error").addFilter(quiet)
        body_error: Exception | None = None
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(server.serve, [sock])
                await started.wait()
                bound = sock.getsockname()
                try:
                    yield f"http://{bound[0]}:{bound[1]}/v1"
                except Exception as exc:  # re-raised below, not wrapped in an ExceptionGroup
                    body_error = exc
                finally:
                    server.should_exit = True
                    server.force_exit = True
        finally:
            logging.getLogger("uvicorn.error").removeFilter(quiet)
            sock.close()
        if body_error is not None:
            raise body_error

    def run(self, host: str = "127.0.0.1", port: int = 8000) -> None:
        """Serve until interrupted (blocking); what ``tomasulo simulate-llm`` runs."""
        import uvicorn

        logging.getLogger("uvicorn.error").addFilter(_QuietDrops())
        uvicorn.run(self.app, host=host, port=port, log_level="info", lifespan="off")

    # -- endpoints ------------------------------------------------------------------------------

    async def _models(self, request: Request) -> Response:
        self._record(request, {})
        model = {"id": self.model, "object": "model", "created": 0, "owned_by": "tomasulo"}
        return JSONResponse({"object": "list", "data": [model]})

    def _record(self, request: Request, body: Mapping[str, Any]) -> RecordedRequest:
        record = RecordedRequest(
            method=request.method,
            path=request.url.path,
            body=body,
            headers={k.lower(): v for k, v in request.headers.items()},
            index=len(self.requests),
            time=anyio.current_time(),
        )
        self.requests.append(record)
        return record

    async def _generate(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"{}")
        except json.JSONDecodeError as exc:
            return _error(400, f"the request body is not JSON: {exc}")
        if not isinstance(body, dict):
            return _error(400, "the request body must be a JSON object")
        record = self._record(request, body)
        response = await self._answer(record)
        record.status = response.status_code
        return response

    async def _answer(self, record: RecordedRequest) -> Response:
        try:
            constraint = find_constraint(record.path, record.body, server=self.server)
        except (InvalidGrammar, ValueError) as exc:
            return _error(400, str(exc), param=getattr(exc, "field", None), code="invalid_grammar")
        record.grammar_field = constraint.field if constraint else None
        reply = await self._next_reply(record)
        if reply is None:
            return _error(500, "SimulatedLLM: the script is exhausted (no reply for this request)")
        if isinstance(reply.fault, HTTPFault):
            return _fault_response(reply.fault)
        if isinstance(reply.fault, RawBody):
            raw = reply.fault
            return Response(raw.body, status_code=raw.status, media_type=raw.content_type)
        rng = random.Random(f"{self.seed}:{record.index}")
        calls = self._plan_calls(record, reply, rng, constraint)
        if isinstance(calls, Response):
            return calls
        if calls is not None:
            return await self._answer_calls(record, reply, calls, rng)
        text = reply.text
        if text is None:
            text = _sample(constraint, rng, reply.max_sample_bytes)
        elif constraint is not None and self.enforce_grammar and reply.check_grammar:
            mismatch = constraint.check(text, prefix=reply.finish == "length")
            if mismatch is not None:
                return _error(400, str(mismatch), param=constraint.field, code="grammar_mismatch")
        record.extra["text"] = text
        encoder = encoder_for(record.path, record.body, self.model)
        tokens, finish = _limit(split_tokens(text), encoder)
        finish = reply.finish or finish
        latency = reply.latency or self.latency
        usage = self._prompt_usage(record, latency, len(tokens))
        schedule = self._schedule(record, latency, len(tokens), usage, rng)
        if record.stream:
            return StreamingResponse(
                self._events(encoder, tokens, finish, usage, schedule, reply, record.time),
                media_type="text/event-stream",
            )
        return await self._whole(encoder, tokens, finish, usage, schedule, reply, record.time)

    async def _events(
        self,
        encoder: Encoder,
        tokens: list[str],
        finish: str,
        usage: Usage,
        schedule: list[float],
        reply: Reply,
        start: float,
    ) -> AsyncIterator[bytes]:
        for event in encoder.head():
            yield sse(event)
        for index, piece in enumerate(tokens):
            _maybe_drop(reply, index)
            async for extra in _interlude(encoder, reply, index):
                yield extra
            await _sleep_until(start + schedule[index] + _stalled(reply, index))
            self.completion_tokens += 1
            yield sse(encoder.delta(piece))
        _maybe_drop(reply, len(tokens))
        async for extra in _interlude(encoder, reply, len(tokens)):
            yield extra
        for event in encoder.tail("".join(tokens), finish, usage):
            yield sse(event)

    async def _whole(
        self,
        encoder: Encoder,
        tokens: list[str],
        finish: str,
        usage: Usage,
        schedule: list[float],
        reply: Reply,
        start: float,
    ) -> Response:
        await _sleep_until(start + schedule[-1] + _stalled(reply, len(tokens)))
        body = encoder.whole("".join(tokens), finish, usage)
        if isinstance(reply.fault, Disconnect):
            return _PartialResponse(body)
        self.completion_tokens += usage.completion_tokens
        return JSONResponse(body)

    # -- prefill and the prefix cache ------------------------------------------------------------

    def _prompt_usage(self, record: RecordedRequest, latency: Latency, completion_tokens: int) -> Usage:
        """Count the prompt, look its prefix up in the cache, and record both."""
        prompt = split_tokens(record.prompt)
        cached = self._cache_for(latency).lookup(prompt) if latency.prefix_cache_tokens else 0
        record.cached_tokens = cached
        self.prompt_tokens += len(prompt)
        self.cached_tokens += cached
        return Usage(len(prompt), completion_tokens, cached, report_cached=latency.prefix_cache_tokens > 0)

    def _cache_for(self, latency: Latency) -> PrefixCache:
        key = (latency.prefix_cache_tokens, latency.cache_block_tokens, latency.cache_min_tokens)
        cache = self._caches.get(key)
        if cache is None:
            cache = self._caches[key] = PrefixCache(*key)
        return cache

    @property
    def prefix_cache(self) -> PrefixCache | None:
        """The prefix cache of the default latency model (None when it has none)."""
        return self._cache_for(self.latency) if self.latency.prefix_cache_tokens else None

    def _schedule(
        self, record: RecordedRequest, latency: Latency, n_tokens: int, usage: Usage, rng: random.Random
    ) -> list[float]:
        prefill = usage.prompt_tokens - usage.cached_tokens
        schedule = latency.schedule(n_tokens, rng, prefill_tokens=prefill)
        if not n_tokens:
            schedule = [latency.schedule(1, rng, prefill_tokens=prefill)[0]]
        record.ttft = schedule[0]
        return schedule

    # -- native tool calls -----------------------------------------------------------------------

    def _plan_calls(
        self, record: RecordedRequest, reply: Reply, rng: random.Random, constraint: GrammarConstraint | None
    ) -> CallPlan | Response | None:
        """The tool calls to answer with, None for a text answer, or the 400 that refuses them."""
        check = self.enforce_grammar and reply.check_grammar
        try:
            return plan_tool_calls(
                record.path, record.body, reply, rng, check=check, can_sample=constraint is None
            )
        except ToolCallMismatch as exc:
            return _error(400, str(exc), param=exc.param, code=exc.code)
        except InvalidGrammar as exc:
            return _error(400, str(exc), param=exc.field, code="invalid_grammar")

    async def _answer_calls(
        self, record: RecordedRequest, reply: Reply, plan: CallPlan, rng: random.Random
    ) -> Response:
        encoder = tool_encoder(record.path, record.body, self.model, plan)
        n_tokens = sum(step.tokens for step in encoder.steps)
        record.extra["text"] = encoder.sent.text
        record.extra["tool_calls"] = [
            {"id": c.id, "name": c.name, "arguments": c.arguments} for c in encoder.sent.calls
        ]
        latency = reply.latency or self.latency
        usage = self._prompt_usage(record, latency, n_tokens)
        schedule = self._schedule(record, latency, n_tokens, usage, rng)
        if record.stream:
            return StreamingResponse(
                self._call_events(encoder, usage, schedule, reply, record.time),
                media_type="text/event-stream",
            )
        pieces = [""] * n_tokens  # the encoder knows what it says; _whole only counts
        return await self._whole(encoder, pieces, encoder.finish, usage, schedule, reply, record.time)

    async def _call_events(
        self, encoder: ToolEncoder, usage: Usage, schedule: list[float], reply: Reply, start: float
    ) -> AsyncIterator[bytes]:
        for event in encoder.head():
            yield sse(event)
        sent = 0
        for step in encoder.steps:
            _maybe_drop(reply, sent)
            sent += step.tokens
            await _sleep_until(start + schedule[sent - 1] + _stalled(reply, sent - 1))
            self.completion_tokens += step.tokens
            for event in encoder.step(step):
                yield sse(event)
        _maybe_drop(reply, sent)
        for event in encoder.tail("", encoder.finish, usage):
            yield sse(event)


# -- helpers ------------------------------------------------------------------------------------


def _as_reply(value: Reply | str) -> Reply:
    return value if isinstance(value, Reply) else Reply(str(value))


def _error(status: int, message: str, *, param: str | None = None, code: str | None = None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    error = {"message": message, "type": kind, "param": param, "code": code}
    return JSONResponse({"error": error}, status_code=status)


def _fault_response(fault: HTTPFault) -> JSONResponse:
    response = _error(fault.status, fault.message, code="simulated_fault")
    if isinstance(fault.retry_after, str):
        response.headers["retry-after"] = fault.retry_after
    elif fault.retry_after is not None:
        response.headers["retry-after"] = f"{fault.retry_after:g}"
        response.headers["retry-after-ms"] = str(round(fault.retry_after * 1000))
    return response


def _sample(constraint: GrammarConstraint | None, rng: random.Random, max_bytes: int) -> str:
    if constraint is None:
        return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 12))).capitalize() + "."
    return constraint.sample(rng, max_bytes=max_bytes)


def _limit(tokens: list[str], encoder: Encoder) -> tuple[list[str], str]:
    finish = "stop"
    text = "".join(tokens)
    stops = [s for s in encoder.stop() if s and s in text]
    if stops:
        cut = min(text.index(s) for s in stops)
        tokens = split_tokens(text[:cut])
    limit = encoder.max_tokens()
    if limit is not None and len(tokens) > limit:
        tokens, finish = tokens[:limit], "length"
    return tokens, finish


def _stalled(reply: Reply, index: int) -> float:
    fault = reply.fault
    return fault.seconds if isinstance(fault, Stall) and index >= fault.after_tokens else 0.0


async def _interlude(encoder: Encoder, reply: Reply, index: int) -> AsyncIterator[bytes]:
    """What a :class:`BadEvent` or :class:`KeepAlive` fault sends before token ``index``."""
    fault = reply.fault
    if isinstance(fault, BadEvent) and index == fault.after_tokens:
        yield f"data: {fault.data}\n\n".encode()
    if isinstance(fault, KeepAlive) and index == fault.after_tokens:
        while True:  # until the client hangs up (the response is then cancelled)
            await anyio.sleep(fault.interval)
            yield b": keep-alive\n\n" if fault.kind == "comment" else sse(encoder.delta(""))


def _maybe_drop(reply: Reply, index: int) -> None:
    if isinstance(reply.fault, Disconnect) and index >= reply.fault.after_tokens:
        raise _DroppedConnection("simulated disconnect")


async def _sleep_until(deadline: float) -> None:
    delay = deadline - anyio.current_time()
    if delay > 0:
        await anyio.sleep(delay)


class _PartialResponse(Response):
    """Announce the whole JSON body, send half of it, then drop the connection."""

    def __init__(self, body: Mapping[str, Any]) -> None:
        super().__init__(json.dumps(body).encode(), media_type="application/json")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        half = self.body[: len(self.body) // 2]
        await send({"type": "http.response.body", "body": half, "more_body": True})
        raise _DroppedConnection("simulated disconnect")


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    script: Iterable[Reply | str] | ReplySource | None = None,
    latency: Latency | None = None,
    seed: int = 0,
    model: str = "simulated-llm",
) -> None:
    """Run a SimulatedLLM until interrupted (blocking); ``tomasulo simulate-llm`` calls this.

    With no script, every request gets a random text its grammar accepts (or a short sentence
    when it carries none).
    """
    sim = SimulatedLLM(script, default=Reply.sampled(), latency=latency, seed=seed, model=model)
    sim.run(host, port)
