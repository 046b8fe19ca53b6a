"""LLM: a client for OpenAI-compatible servers with dialects, retries, timeouts and usage.

The planner streams plans with :meth:`LLM.stream`; the joiner asks for structured output with
:meth:`LLM.complete`; the turn baselines (``react``, ``parallel_fc``) make native tool calls with
:meth:`LLM.stream_calls`. All put the grammar where the server's dialect wants it (see
``_dialects.py``), retry what can be retried, and add token usage and cost into ``LLM.usage`` and
into the ``usage=`` meter the caller passes.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import math
import random
import re
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import anyio
import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
)

from .._logging import get_logger
from ..exceptions import (
    ConfigError,
    LLMConnectionError,
    LLMError,
    LLMRateLimitError,
    LLMResponseError,
    LLMStatusError,
    LLMTimeout,
    LLMTruncated,
)
from ..tools import DEFAULT_RETRY, RetryPolicy  # one retry type for tools and LLM calls
from ._dialects import (
    DEFAULT_DIALECT,
    Dialect,
    GrammarForm,
    GrammarSpec,
    OutputFormat,
    RequestShape,
    grammar_form,
    shape_request,
)
from ._usage import Prices, Usage, estimate_tokens

if TYPE_CHECKING:
    import openai

__all__ = [
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUTS",
    "LLM",
    "FunctionCall",
    "Message",
    "RetryPolicy",
    "Timeouts",
]

_log = get_logger("tomasulo.llm")
_DELAY = re.compile(r"[0-9]+(?:\.[0-9]+)?")  # a Retry-After in seconds

Message = Mapping[str, Any]
"""A chat message: ``{"role": "system" | "user" | "assistant", "content": "..."}``; in a
tool-calling conversation also an assistant turn's ``tool_calls`` and ``{"role": "tool",
"tool_call_id": ..., "content": ...}`` results (see :meth:`FunctionCall.message`)."""


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """A native tool call the model made (an entry of chat ``tool_calls``).

    ``arguments`` is the JSON text as the model wrote it; :meth:`args` reads it.
    """

    id: str
    name: str
    arguments: str

    def args(self) -> dict[str, Any]:
        """The arguments as an object.

        Raises:
            LLMResponseError: they are not a JSON object (the message names the call).
        """
        try:
            value = json.loads(self.arguments or "{}")
        except (json.JSONDecodeError, RecursionError) as exc:
            raise LLMResponseError(
                f"the model's call of {self.name!r} (id {self.id!r}) has arguments that are not "
                f"JSON ({exc}): {self.arguments[:120]!r}"
            ) from None
        if not isinstance(value, dict):
            raise LLMResponseError(
                f"the model's call of {self.name!r} (id {self.id!r}) has arguments that are not a "
                f"JSON object: {self.arguments[:120]!r}"
            )
        return value

    def wire(self) -> dict[str, Any]:
        """The call as an assistant message's ``tool_calls`` entry carries it back to the model."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }

    def result_message(self, content: str) -> dict[str, Any]:
        """The ``tool`` message that answers this call with ``content``."""
        return {"role": "tool", "tool_call_id": self.id, "content": content}


@dataclass(frozen=True, slots=True)
class _Tools:
    """The tool fields of a chat request."""

    tools: list[dict[str, Any]]
    choice: Any
    parallel: bool | None


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Per-request time limits, in seconds.

    Attributes:
        connect: to open a connection.
        read: the longest wait for the next piece of an answer: the first token, any later
            chunk of a stream (so a stalled stream fails), or a whole non-streamed answer.
            SSE comment lines (``: keep-alive``) are not pieces: they do not reset this wait.
        total: the longest a whole call may take, retries and the whole stream included
            (None: no limit). A server that trickles tokens, or sends chunks with empty deltas
            to look busy, is cut off here even though no single wait passes ``read``; the
            :class:`~tomasulo.exceptions.LLMTimeout` says how many chunks had arrived.
    """

    connect: float = 10.0
    read: float = 60.0
    total: float | None = 600.0

    def __post_init__(self) -> None:
        for name in ("connect", "read", "total"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"Timeouts.{name} must be a finite number > 0, got {value}")


DEFAULT_TIMEOUTS = Timeouts()


class LLM:
    """An OpenAI-compatible model behind ``base_url``, spoken to in one ``dialect``.

    Example::

        llm = LLM("http://127.0.0.1:8000/v1", model="qwen", dialect="vllm",
                  prices=Prices(prompt=0.1, completion=0.4))
        async with aclosing(llm.stream(messages, grammar=spec)) as chunks:
            async for text in chunks:
                plan_stream.feed(text)
        print(llm.usage.total_tokens, llm.usage.cost)

    Args:
        base_url: the server's OpenAI base URL (ending in ``/v1``).
        model: the model name to ask for.
        dialect: where the server takes grammars: ``vllm``, ``llamacpp``, ``sglang``,
            ``openai``, ``ollama`` or ``plain`` (no grammar; the default,
            :data:`~tomasulo.planner.DEFAULT_DIALECT`, as for workflows and the CLI).
        api_key: sent as a bearer token.
        http_client: an ``httpx.AsyncClient`` to send through (tests inject a transport);
            the LLM does not close a client it was given.
        prices: per-million-token prices for ``Usage.cost``.
        retry, timeouts: see :class:`RetryPolicy` and :class:`Timeouts`.
        custom_tools: whether an ``openai`` model takes Responses custom tools with Lark
            grammars; when False the JSON plan dialect is used.
        temperature, top_p, seed: sampling settings, sent when not None (``seed`` is not
            sent to the Responses API, which has none).
        max_tokens: a cap on every answer's length (None: only the caller's); a request
            asks for the smaller of this and the caller's ``max_tokens``. Set it below the
            server's context length on servers that refuse longer requests (vLLM).
        prefix_cache: the server keeps a prefix cache (vLLM's automatic prefix caching, SGLang's
            radix cache, OpenAI's prompt caching). The joiner's prompt then starts with the
            planner's (its system text and the question), so the server prefills only the plan
            and the results; worth it when questions are long. Off by default: without a cache
            it only adds prompt tokens and prefill time (a replan's prompt extends the first
            plan's either way). See docs/benchmarks.md, "Prompts and the prefix cache".
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        dialect: Dialect = DEFAULT_DIALECT,
        api_key: str = "EMPTY",
        http_client: httpx.AsyncClient | None = None,
        prices: Prices | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        custom_tools: bool = True,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        max_tokens: int | None = None,
        prefix_cache: bool = False,
    ) -> None:
        import openai  # imported on first use: it is slow to import

        shape_request(dialect, None)  # validates the dialect name
        _check_base_url(base_url)
        self.base_url = base_url
        self.model = model
        self.dialect: Dialect = dialect
        self.prices = prices or Prices()
        self.retry = retry
        self.timeouts = timeouts
        self.custom_tools = custom_tools
        if max_tokens is not None and max_tokens < 1:
            raise ConfigError(f"LLM max_tokens must be at least 1, got {max_tokens}")
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        self.max_tokens = max_tokens
        self.prefix_cache = prefix_cache
        self.usage = Usage()
        backstop = timeouts.read + timeouts.connect
        self._owns_client = http_client is None  # an injected client is the caller's to close
        self._client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key,
            http_client=cast(Any, http_client),
            max_retries=0,  # retries are ours (tenacity), so they can honour our policy
            timeout=backstop,
        )

    async def __aenter__(self) -> LLM:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the underlying OpenAI client (not an injected ``http_client``: the OpenAI
        client would close it too, and the caller may send more through it)."""
        if self._owns_client:
            await self._client.close()

    def grammar_form(self) -> GrammarForm | None:
        """The form of the plan grammar this LLM's dialect sends (``None``: ``plain``, none)."""
        return grammar_form(self.dialect, custom_tools=self.custom_tools)

    def output_format(self, grammar: GrammarSpec | None) -> OutputFormat:
        """Whether answers to ``grammar`` will be text plans or JSON plans on this dialect."""
        return shape_request(self.dialect, grammar, custom_tools=self.custom_tools).output

    def request_shape(self, grammar: GrammarSpec | None) -> RequestShape:
        """How a request with ``grammar`` is sent on this dialect (see ``shape_request``)."""
        return shape_request(self.dialect, grammar, custom_tools=self.custom_tools)

    # -- the two calls --------------------------------------------------------------------------

    async def stream(
        self,
        messages: str | Sequence[Message],
        *,
        grammar: GrammarSpec | None = None,
        max_tokens: int | None = None,
        stop: Sequence[str] | None = None,
        usage: Usage | None = None,
        watch: Callable[[Usage], None] | None = None,
    ) -> AsyncGenerator[str, None]:
        """Yield the model's text as it arrives.

        Failures before the first text are retried per :class:`RetryPolicy`. Once text has
        been yielded nothing is retried: a dropped connection raises
        :class:`~tomasulo.exceptions.LLMConnectionError`, a stall past ``Timeouts.read`` or a
        stream that runs past ``Timeouts.total`` raises
        :class:`~tomasulo.exceptions.LLMTimeout`, and a malformed event raises
        :class:`~tomasulo.exceptions.LLMResponseError`, each with ``partial`` holding the text
        received so far, so the caller can resume without repeating work. Close the iterator
        (``contextlib.aclosing``) when you stop early, to release the connection.

        ``watch`` is called after each piece of text has been handled by the consumer, with
        ``usage`` (or an empty meter) plus this call's usage so far, estimated until the
        server reports it (prompt: about four characters a token; completion: one token per
        text chunk, or four characters a token if that is more) and priced. Raise from it
        (say :class:`~tomasulo.exceptions.BudgetExceeded`) to cut the stream: no further chunk
        is read, and the error reaches the consumer.

        The work per chunk is constant: the text received is joined only once, at the end.

        Raises:
            LLMTruncated: after the last piece, when the server says it stopped at
                ``max_tokens`` (``finish_reason: "length"``): the text is cut off, not
                finished. ``partial`` holds all of it.
        """
        shape = self.request_shape(grammar)
        call = _Call(self, _as_messages(messages), shape, self._cap(max_tokens), stop, stream=True)
        try:
            first = await call.open()
            if first:
                yield first
                if watch is not None:
                    watch(self._live(call, usage))
            while (text := await call.next_text()) is not None:
                if text:
                    yield text
                    if watch is not None:
                        watch(self._live(call, usage))
            call.check_finish()
        finally:
            with anyio.CancelScope(shield=True):
                await call.close()
            self._account(call, call.text(), usage)

    async def complete(
        self,
        messages: str | Sequence[Message],
        *,
        grammar: GrammarSpec | None = None,
        json_schema: Mapping[str, Any] | None = None,
        max_tokens: int | None = None,
        stop: Sequence[str] | None = None,
        usage: Usage | None = None,
    ) -> str:
        """The model's whole answer (not streamed), retried per :class:`RetryPolicy`.

        ``json_schema`` is a shorthand for ``grammar=GrammarSpec(json_schema=...)``: each dialect
        sends it in its JSON-schema field (``plain`` sends nothing; parse leniently).

        Raises:
            LLMTruncated: the server stopped at ``max_tokens`` (``finish_reason: "length"``);
                ``partial`` holds the cut-off text.
        """
        if json_schema is not None:
            if grammar is not None:
                raise ConfigError("give complete() a grammar or a json_schema, not both")
            grammar = GrammarSpec(json_schema=json_schema, name="answer")
        shape = self.request_shape(grammar)
        call = _Call(self, _as_messages(messages), shape, self._cap(max_tokens), stop, stream=False)
        text = ""
        try:
            text = await call.open()
            call.check_finish(text)
        finally:
            self._account(call, text, usage)
        return text

    async def stream_calls(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[Mapping[str, Any]],
        tool_choice: Any = "auto",
        parallel_tool_calls: bool | None = None,
        max_tokens: int | None = None,
        usage: Usage | None = None,
        watch: Callable[[Usage], None] | None = None,
    ) -> AsyncGenerator[str | FunctionCall, None]:
        """One turn of native tool calling: yield the model's text as it arrives and each
        :class:`FunctionCall` as soon as it is complete.

        The request is a chat completion with ``tools`` (OpenAI's function definitions,
        ``{"type": "function", "function": {"name", "description", "parameters"}}``),
        ``tool_choice`` and, when not None, ``parallel_tool_calls``, on every dialect: the
        servers that take a plan grammar all take tools on chat completions. The streamed
        ``tool_calls`` deltas are put together by their ``index``: a call is complete when the
        next call starts or the answer ends. A turn that answers with text and no call is the
        model's answer. Retries, timeouts, ``watch``, usage and truncation are as for
        :meth:`stream` (a turn is retried until its first text or call).

        Example::

            async for item in llm.stream_calls(messages, tools=specs, parallel_tool_calls=False):
                if isinstance(item, FunctionCall):
                    print(item.name, item.args())
        """
        request = _Tools([dict(t) for t in tools], tool_choice, parallel_tool_calls)
        call = _Call(
            self,
            _as_messages(messages),
            RequestShape(),
            self._cap(max_tokens),
            None,
            stream=True,
            tools=request,
        )
        try:
            text: str | None = await call.open()
            while text is not None:
                if text:
                    yield text
                for done in call.take_calls():
                    yield done
                if watch is not None and call.chunks:
                    watch(self._live(call, usage))
                text = await call.next_text()
            for done in call.take_calls(final=True):
                yield done
            call.check_finish()
        finally:
            with anyio.CancelScope(shield=True):
                await call.close()
            self._account(call, call.text(), usage)

    def _cap(self, max_tokens: int | None) -> int | None:
        """The request's ``max_tokens``: the smaller of the caller's and the LLM's cap."""
        caps = [n for n in (max_tokens, self.max_tokens) if n is not None]
        return min(caps) if caps else None

    def _account(self, call: _Call, completion: str, usage: Usage | None) -> None:
        delta = call.usage(completion)
        delta.cost = self.prices.cost(delta.prompt_tokens, delta.completion_tokens)
        self.usage.add(delta)
        if usage is not None:
            usage.add(delta)

    def _live(self, call: _Call, usage: Usage | None) -> Usage:
        """``usage`` plus what ``call`` has used so far (see :meth:`stream`'s ``watch``)."""
        delta = call.live_usage()
        delta.cost = self.prices.cost(delta.prompt_tokens, delta.completion_tokens)
        return delta + usage if usage is not None else delta


def _as_messages(messages: str | Sequence[Message]) -> list[dict[str, Any]]:
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    return [dict(m) for m in messages]


class _Call:
    """One logical call: its attempts, its open stream, and what the server said it used."""

    def __init__(
        self,
        llm: LLM,
        messages: list[dict[str, Any]],
        shape: RequestShape,
        max_tokens: int | None,
        stop: Sequence[str] | None,
        *,
        stream: bool,
        tools: _Tools | None = None,
    ) -> None:
        self.llm = llm
        self.messages = messages
        self.shape = shape
        self.max_tokens = max_tokens
        self.stop = list(stop) if stop else None
        self.streaming = stream
        self.started = anyio.current_time()
        self.requests = 0
        self.reported: tuple[int, int] | None = None
        self.chunks = 0  # events of the open stream, empty ones included
        self._pieces: list[str] = []  # text received from the open stream
        self._chars = 0
        self._prompt_tokens: int | None = None
        self._stream: Any = None
        self.finish_reason: str | None = None  # as the server said; "length" means cut off
        self.tools = tools
        self._calls: list[list[str]] = []  # tool calls of the open stream: [id, name, arguments]
        self._taken = 0  # how many of them were handed out

    def take_calls(self, *, final: bool = False) -> list[FunctionCall]:
        """The tool calls completed since the last take: all but the one still streaming, or
        (``final``) all of them."""
        end = len(self._calls) if final else len(self._calls) - 1
        out = [FunctionCall(*c) for c in self._calls[self._taken : end]]
        self._taken = max(self._taken, end)
        return out

    def _add_call_deltas(self, deltas: Any) -> None:
        """Put streamed ``tool_calls`` deltas together by their ``index`` (OpenAI sends the id
        and name once, then the arguments in pieces; some servers send each call whole)."""
        for entry in deltas:
            index = getattr(entry, "index", None)
            function = getattr(entry, "function", None)
            name = getattr(function, "name", None) or ""
            piece = getattr(function, "arguments", None) or ""
            call_id = getattr(entry, "id", None) or ""
            if index is None or index == len(self._calls):  # a new call (whole, if no index)
                self._calls.append([call_id or f"call_{len(self._calls)}", name, piece])
            elif not 0 <= index < len(self._calls):
                what = f"sent tool call index {index} after {len(self._calls)} calls"
                raise LLMResponseError(self._where(what), partial=self.text())
            elif index < self._taken:
                what = f"sent more of tool call {index} after a later call had started"
                raise LLMResponseError(self._where(what), partial=self.text())
            else:
                current = self._calls[index]
                current[1] = current[1] or name
                current[2] += piece
            self._chars += len(name) + len(piece)

    def text(self) -> str:
        """The text the stream has produced so far (joined here, not once per chunk)."""
        return "".join(self._pieces)

    # -- deadlines ------------------------------------------------------------------------------

    def _budget(self) -> tuple[float, bool]:
        """Seconds the next wait may take, and whether ``total`` (not ``read``) sets them."""
        read = self.llm.timeouts.read
        total = self.llm.timeouts.total
        if total is not None:
            left = total - (anyio.current_time() - self.started)
            if left < read:
                return max(left, 0.0), True
        return read, False

    def _timed_out(self, by_total: bool, what: str) -> LLMTimeout:
        if by_total:
            total = self.llm.timeouts.total
            what = (
                f"exceeded the call's {total:g} s total timeout (Timeouts.total) after "
                f"{self.chunks} chunks and {self._chars} characters of text"
            )
        return LLMTimeout(self._where(what), partial=self.text())

    # -- opening, with retries ------------------------------------------------------------------

    async def open(self) -> str:
        """Send the request (retrying) and return the first text (the whole text if not streamed)."""
        policy = self.llm.retry
        total = policy.total
        if self.llm.timeouts.total is not None:
            total = min(total, self.llm.timeouts.total)
        retrying = AsyncRetrying(
            sleep=anyio.sleep,
            stop=stop_after_attempt(policy.attempts) | stop_before_delay(total),
            wait=self._wait,
            retry=retry_if_exception(_retryable),
            before_sleep=self._log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._attempt()
        raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover

    async def _attempt(self) -> str:
        import openai  # imported on first use: it is slow to import

        self.requests += 1
        self.chunks, self._pieces, self._chars = 0, [], 0
        self._calls, self._taken = [], 0
        self.finish_reason = None
        budget, by_total = self._budget()
        try:
            with anyio.fail_after(budget):
                if not self.streaming:
                    return self._text_of(await self._create())
                self._stream = await self._create()
                await self._check_content_type()
            while (first := await self.next_text()) is not None:
                if first or self._calls:  # skip role-only and bookkeeping chunks: retry until output
                    return first
            return ""
        except LLMError:
            await self.close()
            raise
        except TimeoutError:
            await self.close()
            raise self._timed_out(by_total, "gave no answer within the read timeout") from None
        except openai.OpenAIError as exc:
            await self.close()
            raise _map_error(exc, self._where, base_url=self.llm.base_url) from exc
        except RecursionError:
            await self.close()
            raise LLMResponseError(self._where("answered with JSON nested too deeply to read")) from None
        except ValueError as exc:  # the client could not decode the body (JSON, validation)
            await self.close()
            raise LLMResponseError(
                self._where(f"answered 200 with a body that is not a usable JSON answer ({exc})")
            ) from exc
        except Exception as exc:  # the OpenAI client's own HTTP stack (it may not be ours)
            await self.close()
            raise _unexpected(exc, self._where) from exc

    async def _check_content_type(self) -> None:
        """A 200 to a streamed request must be server-sent events, not (say) a proxy's HTML page."""
        response: Any = getattr(self._stream, "response", None)  # the HTTP response (duck-typed)
        headers = getattr(response, "headers", None)
        if headers is None or not hasattr(response, "aiter_bytes"):
            return
        kind = str(headers.get("content-type", ""))
        if not kind or "event-stream" in kind:
            return
        head = b""
        async for data in response.aiter_bytes():
            head += data
            if len(head) >= 200:
                break
        raise LLMResponseError(
            self._where(
                f"answered a streamed request with {kind!r}, not server-sent events "
                f"(text/event-stream); the body starts {head[:200].decode(errors='replace')!r}. "
                "Check that the base URL points at the model server and not a proxy or web page"
                + ("" if _ends_in_version(self.llm.base_url) else f"; {_v1_hint(self.llm.base_url)}")
            )
        )

    async def _create(self) -> Any:
        client = self.llm._client
        shape = self.shape
        common: dict[str, Any] = {"model": self.llm.model, "stream": self.streaming}
        if self.llm.temperature is not None:
            common["temperature"] = self.llm.temperature
        if self.llm.top_p is not None:
            common["top_p"] = self.llm.top_p
        if shape.api == "responses":
            if self.max_tokens is not None:
                common["max_output_tokens"] = self.max_tokens
            tool = cast(Any, shape.tool)
            return await client.responses.create(
                input=cast(Any, self.messages),
                tools=[tool],
                tool_choice=cast(Any, {"type": "custom", "name": tool["name"]}),
                **common,
            )
        if self.max_tokens is not None:
            common["max_tokens"] = self.max_tokens
        if self.llm.seed is not None:
            common["seed"] = self.llm.seed
        if self.stop:
            common["stop"] = self.stop
        if self.streaming:
            common["stream_options"] = {"include_usage": True}
        if self.tools is not None:
            common["tools"] = self.tools.tools
            common["tool_choice"] = self.tools.choice
            if self.tools.parallel is not None:
                common["parallel_tool_calls"] = self.tools.parallel
        if shape.response_format is not None:
            common["response_format"] = shape.response_format
        if shape.extra_body:
            common["extra_body"] = shape.extra_body
        return await client.chat.completions.create(messages=cast(Any, self.messages), **common)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = _retry_after(exc)
        rand = random.random()
        return self.llm.retry.backoff(state.attempt_number, retry_after, rand)

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        _log.warning(
            "llm.retry",
            attempt=state.attempt_number,
            wait_s=round(wait, 3),
            error=str(exc),
            model=self.llm.model,
        )

    # -- reading --------------------------------------------------------------------------------

    async def next_text(self) -> str | None:
        """The next text piece of the open stream ('' for a chunk without text), None at the end.

        Errors carry the text received so far as ``partial``.
        """
        import openai  # imported on first use: it is slow to import

        budget, by_total = self._budget()
        try:
            with anyio.fail_after(budget):
                event = await self._stream.__anext__()
        except StopAsyncIteration:
            return None
        except TimeoutError:
            what = f"stopped sending for {self.llm.timeouts.read:g} s (read timeout)"
            raise self._timed_out(by_total, what) from None
        except openai.OpenAIError as exc:
            raise _map_error(exc, self._where, partial=self.text(), base_url=self.llm.base_url) from exc
        except httpx.TransportError as exc:
            raise LLMConnectionError(self._where(f"dropped: {exc}"), partial=self.text()) from exc
        except RecursionError:
            what = f"sent event {self.chunks + 1} nested too deeply to read"
            raise LLMResponseError(self._where(what), partial=self.text()) from None
        except ValueError as exc:  # the event's data is not JSON
            what = f"sent a malformed event (number {self.chunks + 1}, not JSON: {exc})"
            raise LLMResponseError(self._where(what), partial=self.text()) from exc
        except Exception as exc:  # the OpenAI client's own HTTP stack (it may not be ours)
            raise _unexpected(exc, self._where, partial=self.text()) from exc
        self.chunks += 1
        try:
            text = self._piece(event)
        except LLMError:
            raise
        except Exception as exc:  # a JSON event that is not a chunk of this API
            what = f"sent event {self.chunks} of an unexpected shape ({type(exc).__name__}: {exc})"
            raise LLMResponseError(self._where(what), partial=self.text()) from exc
        if not isinstance(text, str):
            what = f"sent event {self.chunks} whose text is not a string ({type(text).__name__})"
            raise LLMResponseError(self._where(what), partial=self.text())
        if text:
            self._pieces.append(text)
            self._chars += len(text)
        return text

    def _piece(self, event: Any) -> str:
        kind = getattr(event, "type", None)
        if kind is None:  # a chat or completions chunk
            if getattr(event, "usage", None) is not None:
                self.reported = (event.usage.prompt_tokens, event.usage.completion_tokens)
            if not event.choices:
                return ""
            choice = event.choices[0]
            if getattr(choice, "finish_reason", None):
                self.finish_reason = str(choice.finish_reason)
            delta = getattr(choice, "delta", None)
            if delta is not None and self.tools is not None and getattr(delta, "tool_calls", None):
                self._add_call_deltas(delta.tool_calls)
            text = getattr(delta, "content", None) if delta is not None else choice.text
            return text or ""
        if kind in ("response.custom_tool_call_input.delta", "response.output_text.delta"):
            return str(event.delta)
        if kind in ("response.completed", "response.incomplete"):
            self.finish_reason = _responses_finish(event.response)
            usage = getattr(event.response, "usage", None)
            if usage is not None:
                self.reported = (usage.input_tokens, usage.output_tokens)
        if kind in ("response.failed", "error"):
            raise LLMResponseError(self._where(f"reported an error: {str(event)[:500]}"), partial=self.text())
        return ""

    def _text_of(self, response: Any) -> str:
        if isinstance(response, str | bytes):  # the client hands back a body it could not decode
            text = response if isinstance(response, str) else response.decode(errors="replace")
            raise LLMResponseError(
                self._where(
                    f"answered 200 with a body that is not JSON, starting {text[:200]!r}; check "
                    "that the base URL points at the model server and not a proxy or web page"
                )
            )
        usage = getattr(response, "usage", None)
        if self.shape.api == "responses":
            self.finish_reason = _responses_finish(response)
            if usage is not None:
                self.reported = (usage.input_tokens, usage.output_tokens)
            for item in response.output or ():
                if getattr(item, "type", None) == "custom_tool_call":
                    return str(item.input)
            return str(response.output_text or "")
        if usage is not None:
            self.reported = (usage.prompt_tokens, usage.completion_tokens)
        if not response.choices:
            raise LLMResponseError(self._where("answered with no choices"))
        finish = getattr(response.choices[0], "finish_reason", None)
        self.finish_reason = str(finish) if finish else None
        return str(response.choices[0].message.content or "")

    def check_finish(self, text: str | None = None) -> None:
        """Raise :class:`LLMTruncated` when the server stopped at the token limit."""
        if self.finish_reason != "length":
            return
        text = self.text() if text is None else text
        limit = f"max_tokens={self.max_tokens}" if self.max_tokens is not None else "its token limit"
        raise LLMTruncated(
            self._where(
                f"stopped at {limit} (finish_reason 'length') after {len(text)} characters: "
                "the answer is cut off"
            ),
            partial=text,
            max_tokens=self.max_tokens,
        )

    async def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.close()

    # -- accounting -----------------------------------------------------------------------------

    def usage(self, completion: str) -> Usage:
        retries = max(self.requests - 1, 0)
        if self.reported is not None:
            prompt, done = self.reported
            return Usage(prompt, done, requests=self.requests, retries=retries)
        return Usage(
            self._prompt_estimate() if self.requests else 0,
            self._completion_estimate(completion),
            requests=self.requests,
            retries=retries,
            estimated=1 if self.requests else 0,
        )

    def live_usage(self) -> Usage:
        """What the call has used so far: the server's report when it sent one, else estimates."""
        if self.reported is not None:
            prompt, done = self.reported
            return Usage(prompt, max(done, len(self._pieces)), requests=self.requests)
        return Usage(self._prompt_estimate(), self._completion_estimate(None), requests=self.requests)

    def _prompt_estimate(self) -> int:
        if self._prompt_tokens is None:
            text = "\n".join(str(m.get("content") or "") for m in self.messages)
            self._prompt_tokens = estimate_tokens(text)
        return self._prompt_tokens

    def _completion_estimate(self, completion: str | None) -> int:
        """A stream's servers send about one token per chunk; count characters when that is more."""
        chars = self._chars if completion is None else len(completion)
        by_chars = math.ceil(chars / 4)
        return max(len(self._pieces), by_chars) if self.streaming else by_chars

    def _where(self, what: str) -> str:
        return f"LLM server {_shown_url(self.llm.base_url)} (model {self.llm.model!r}) {what}"


def _responses_finish(response: Any) -> str | None:
    """A Responses API answer's end as a chat ``finish_reason`` ("length" when cut off)."""
    status = getattr(response, "status", None)
    if status == "incomplete":
        details = getattr(response, "incomplete_details", None)
        reason = getattr(details, "reason", None)
        return "length" if reason in (None, "max_output_tokens") else str(reason)
    return "stop" if status == "completed" else None


# -- errors -------------------------------------------------------------------------------------


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, LLMStatusError):
        return exc.status_code >= 500
    return isinstance(exc, LLMRateLimitError | LLMConnectionError | LLMTimeout)


def _map_error(exc: openai.OpenAIError, where: Any, *, partial: str = "", base_url: str = "") -> LLMError:
    import openai  # imported on first use: it is slow to import

    if isinstance(exc, openai.APIStatusError):
        detail = _server_message(exc)
        status = exc.status_code
        if status == 429:
            return LLMRateLimitError(
                where(f"is rate limiting (429): {detail}; slow down or raise RetryPolicy"),
                partial=partial,
            )
        hint = "; check the request (grammar, model name)" if status < 500 else ""
        if status in (404, 405) and base_url and not _ends_in_version(base_url):
            hint = "; " + _v1_hint(base_url)
        return LLMStatusError(
            where(f"answered {status}: {detail}{hint}"), status_code=status, partial=partial
        )
    if isinstance(exc, openai.APITimeoutError):
        return LLMTimeout(where("timed out"), partial=partial)
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        return LLMConnectionError(where(f"connection failed or dropped: {_said(cause)}"), partial=partial)
    return LLMResponseError(where(f"gave an unusable answer: {exc}"), partial=partial)


def _unexpected(exc: Exception, where: Any, *, partial: str = "") -> LLMError:
    """An error from below the OpenAI client that it did not wrap: a transport error of its HTTP
    library (connection-like, so retried before any text) or anything else (unusable answer)."""
    module = type(exc).__module__.split(".")[0]
    if module in ("httpx", "httpx2", "httpcore", "h11", "h2") or isinstance(exc, OSError):
        return LLMConnectionError(where(f"connection failed or dropped: {_said(exc)}"), partial=partial)
    return LLMResponseError(where(f"gave an answer the client could not read: {_said(exc)}"), partial=partial)


def _said(exc: BaseException) -> str:
    """An exception as people read it, ``ConnectError: All connection attempts failed``, not
    its Python repr."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, Mapping):
        error = body.get("error", body)
        if isinstance(error, Mapping) and error.get("message"):
            return str(error["message"])
        if body.get("message"):
            return str(body["message"])
    return str(exc.message)


def _retry_after(exc: BaseException | None) -> float | None:
    """Seconds from ``retry-after-ms`` / ``Retry-After`` on the HTTP answer behind ``exc``.

    A value that is not a finite number of seconds or an HTTP date (``soon``, ``nan``, a
    garbled date) counts as absent: the policy's own backoff applies.
    """
    import openai  # imported on first use: it is slow to import

    cause = exc.__cause__ if exc is not None else None
    if not isinstance(cause, openai.APIStatusError):
        return None
    headers = cause.response.headers
    millis = _seconds(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000
    value = headers.get("retry-after")
    seconds = _seconds(value)
    if seconds is not None or value is None:
        return seconds
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:  # an HTTP date is in GMT even when it does not say so
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return max(parsed.timestamp() - time.time(), 0.0)


def _seconds(value: str | None) -> float | None:
    """A header's value as a finite number >= 0 written in digits (``5``, ``0.25``), else None.

    Only digits and one decimal point count (RFC 9110's ``delay-seconds``, with the fractions
    some servers send): ``float`` alone would also take ``1_0``, ``inf`` or `` 1e3``.
    """
    if value is None or _DELAY.fullmatch(value.strip()) is None:
        return None
    seconds = float(value.strip())
    return seconds if math.isfinite(seconds) else None


# -- configuration ------------------------------------------------------------------------------


def _shown_url(url: str) -> str:
    """``url`` as it may appear in a message or a log: userinfo and query values become ``***``.

    Keys ride in base URLs (``https://user:sk-...@host/v1?api-key=...``); every message that
    names the server shows it through here. Works on text that is not a valid URL too.

    >>> _shown_url("https://u:sk-1@llm.example/v1?key=sk-2&v=1#frag")
    'https://***@llm.example/v1?key=***&v=***#***'
    """
    text = url if isinstance(url, str) else repr(url)
    rest, hash_, fragment = text.partition("#")
    rest, qmark, query = rest.partition("?")
    scheme, slashes, after = rest.partition("//")
    if not slashes:  # no `//`: the authority (if any) starts the text, as in `user:key@host/v1`
        scheme, after = "", rest
    authority, slash, path = after.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rsplit("@", 1)[1]
    if qmark:
        query = "&".join(
            f"{item.partition('=')[0]}=***" if "=" in item else ("***" if item else "")
            for item in query.split("&")
        )
    return f"{scheme}{slashes}{authority}{slash}{path}{qmark}{query}{hash_}{'***' if fragment else ''}"


def _check_base_url(base_url: str) -> None:
    """Refuse, at once, a base URL the client could never reach a server with."""
    example = "e.g. http://127.0.0.1:8000/v1"
    if not isinstance(base_url, str) or not base_url.strip():
        raise ConfigError(f"the LLM base_url must be a URL ({example}), got {base_url!r}")
    shown = _shown_url(base_url)
    try:
        url = httpx.URL(base_url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        detail = str(exc)
        secrets = [p for p in _secret_parts(base_url) if p]
        why = f" ({detail})" if detail and not any(p in detail for p in secrets) else ""
        # `from None`: the parser's own error may quote the URL, keys and all
        raise ConfigError(f"the LLM base_url {shown!r} is not a valid URL{why}; {example}") from None
    if url.scheme not in ("http", "https"):
        if "://" not in base_url:
            guess = f" (did you mean 'http://{shown}'?)" if base_url[:1].isalnum() else ""
            raise ConfigError(
                f"the LLM base_url {shown!r} has no scheme; write it with http:// or https://{guess}"
            )
        raise ConfigError(
            f"the LLM base_url {shown!r} uses the {url.scheme!r} scheme; only http:// and "
            f"https:// are supported ({example})"
        )
    if not url.host:
        raise ConfigError(f"the LLM base_url {shown!r} names no host; {example}")


def _secret_parts(url: str) -> list[str]:
    """The pieces of ``url`` that :func:`_shown_url` hides: its userinfo and query."""
    rest = url.partition("#")[0]
    rest, _, query = rest.partition("?")
    authority = rest.partition("//")[2] if "//" in rest else rest
    authority = authority.partition("/")[0]
    return [authority.rsplit("@", 1)[0] if "@" in authority else "", query]


def _with_v1(base_url: str) -> str:
    """``base_url`` with ``/v1`` added to its path (the query, if any, kept after it)."""
    url = httpx.URL(base_url)
    return str(url.copy_with(path=url.path.rstrip("/") + "/v1"))


def _v1_hint(base_url: str) -> str:
    """What to try when ``base_url`` has no ``/v1``: the same URL with it."""
    return (
        f"the base URL {_shown_url(base_url)!r} has no version path: OpenAI-compatible servers "
        f"usually serve under /v1 (try {_shown_url(_with_v1(base_url))})"
    )


def _ends_in_version(base_url: str) -> bool:
    """Whether the URL's path ends in a version segment such as ``/v1`` or ``/v1beta``."""
    last = httpx.URL(base_url).path.rstrip("/").rsplit("/", 1)[-1]
    return len(last) >= 2 and last[0] == "v" and last[1].isdigit()
