"""``AsyncClient``: the service's API from async code (anyio: asyncio or trio).

>>> async with AsyncClient("http://127.0.0.1:8080", api_key=key) as client:   # doctest: +SKIP
...     run = await client.create_run(query="What is 6 * 7?")
...     async for event in client.events(run.id):
...         print(event.kind)
...     print((await client.get_run(run.id)).answer)
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from ..dispatcher import Event
from ..exceptions import ServiceConnectionError
from ..runtime import RunFinished
from ._base import (
    DEFAULT_TIMEOUT,
    Call,
    Mode,
    Retries,
    base_url,
    batch_body,
    client_headers,
    decode_event,
    error_for,
    list_params,
    new_idempotency_key,
    run_body,
    stream_timeout,
    transport_error,
    validate_body,
    wait_timeout,
)
from ._models import Batch, PlanValidation, Run, ToolCallResult, ToolInfo
from ._sse import SSEParser

__all__ = ["AsyncClient"]


class AsyncClient:
    """A client of the tomasulo service, for async code.

    Args:
        url: the service's URL (default ``TOMASULO_URL``, else ``http://127.0.0.1:8080``).
        api_key: the API key (default ``TOMASULO_API_KEY``).
        timeout: seconds per request (an ``httpx.Timeout`` or a number).
        retries: how requests and event streams are retried (:class:`Retries`).
        http_client: an ``httpx.AsyncClient`` to use (its base URL is set here; it stays open
            when this client closes).

    Errors are :class:`~tomasulo.exceptions.ServiceError` (with the problem's status, type,
    title, detail and request id), :class:`~tomasulo.exceptions.ServiceNotFound` for a 404, and
    :class:`~tomasulo.exceptions.ServiceConnectionError` when the service cannot be reached.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retries: Retries | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = base_url(url)
        self.retries = retries or Retries()
        self._owned = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=timeout)
        self._http.base_url = httpx.URL(self.url)
        self._http.headers.update(client_headers(api_key))

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections (not those of an ``http_client`` passed in)."""
        if self._owned:
            await self._http.aclose()

    # -- sending ---------------------------------------------------------------------------------

    async def _send_once(self, call: Call) -> httpx.Response:
        what = f"{call.method} {call.path}"
        try:
            response = await self._http.send(call.request(self._http))
        except httpx.TransportError as exc:
            raise transport_error(exc, what) from exc
        if response.status_code >= 400:
            raise error_for(response, what)
        return response

    async def _send(self, call: Call) -> httpx.Response:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retries.attempts),
            wait=self.retries.wait,
            retry=retry_if_exception(lambda exc: self.retries.should_retry(exc, call.safe)),
            reraise=True,
        )
        response: httpx.Response | None = None
        async for attempt in retrying:
            with attempt:
                response = await self._send_once(call)
        assert response is not None
        return response

    async def _json(self, call: Call) -> Any:
        response = await self._send(call)
        return response.json() if response.content else None

    # -- runs ------------------------------------------------------------------------------------

    async def create_run(
        self,
        *,
        query: str | None = None,
        plan: str | None = None,
        workflow: str | os.PathLike[str] | None = None,
        dialect: Literal["text", "json"] = "text",
        inputs: Mapping[str, Any] | None = None,
        mode: Mode = "stream",
        model: str | None = None,
        tools: Sequence[str] | None = None,
        limits: Mapping[str, Any] | None = None,
        budget: Mapping[str, Any] | None = None,
        metadata: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        wait: float | None = None,
    ) -> Run:
        """Start a run: a question (``query``), a fixed ``plan``, or a ``workflow`` (YAML text
        or a path) with its ``inputs``.

        Args:
            mode: how a question is answered (``stream``: the planner; or a baseline).
            model: a model the tenant was granted (``GET /v1/models``); default the server's.
            tools: only these of the tenant's tools.
            limits: ``{max_tasks, max_replans, deadline_s}``; budget: ``{max_tokens, max_cost}``.
            metadata: up to 16 short strings, to find the run again (:meth:`list_runs`).
            idempotency_key: the same key (and body) gives back the same run; a fresh key is
                sent when none is given, so the client's own retries never start a second run.
            wait: wait up to this many seconds on the server for the run to end (the run
                comes back as it is then).

        Returns:
            the run: ``queued`` or ``running``, or ended when it did within ``wait``.
        """
        body = run_body(
            query=query, plan=plan, workflow=workflow, dialect=dialect, inputs=inputs, mode=mode,
            model=model, tools=tools, limits=limits, budget=budget, metadata=metadata,
        )  # fmt: skip
        headers = {"Idempotency-Key": idempotency_key or new_idempotency_key()}
        if wait:
            headers["Prefer"] = f"wait={int(wait) if float(wait).is_integer() else wait}"
        call = Call("POST", "/v1/runs", body=body, headers=headers, timeout=wait_timeout(wait), safe=True)
        return Run.model_validate(await self._json(call))

    async def get_run(self, run_id: str) -> Run:
        """The run: status, answer, tasks with outcomes and timings, plans, usage."""
        return Run.model_validate(await self._json(Call("GET", f"/v1/runs/{run_id}", safe=True)))

    async def list_runs(
        self,
        *,
        status: str | None = None,
        created_after: dt.datetime | str | None = None,
        created_before: dt.datetime | str | None = None,
        metadata: Mapping[str, str] | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[Run]:
        """Every run of the tenant that matches, newest first (summaries: no tasks or plans);
        pages are fetched as the iteration reaches them."""
        params = list_params(
            status=status, created_after=created_after, created_before=created_before,
            metadata=metadata, limit=page_size,
        )  # fmt: skip
        cursor: str | None = None
        while True:
            page = await self._json(
                Call(
                    "GET", "/v1/runs", params=[*params, *([("cursor", cursor)] if cursor else [])], safe=True
                )
            )
            for item in page.get("data", []):
                yield Run.model_validate(item)
            cursor = page.get("next_cursor")
            if not cursor:
                return

    async def delete_run(self, run_id: str) -> None:
        """Delete the run (a running one is cancelled first); a later :meth:`get_run` is a 404."""
        await self._send(Call("DELETE", f"/v1/runs/{run_id}", safe=True))

    async def cancel(self, run_id: str) -> Run:
        """Cancel the run; it comes back as it is (it may still be ``running`` until it ends)."""
        return Run.model_validate(await self._json(Call("POST", f"/v1/runs/{run_id}/cancel", safe=True)))

    async def interrupt(self, run_id: str, message: str) -> bool:
        """Send the run a user's message, which makes it replan; True when it was accepted
        (a run that has ended answers 409: :class:`~tomasulo.exceptions.ServiceError`)."""
        call = Call("POST", f"/v1/runs/{run_id}/interrupt", body={"message": message})
        return bool((await self._json(call) or {}).get("accepted", False))

    async def events(self, run_id: str, *, after: int | None = None) -> AsyncIterator[Event]:
        """The run's events with ``seq`` past ``after``, live, up to and including its
        ``RunFinished``: each once, in order, even across dropped connections (it reconnects
        with ``Last-Event-ID``, at most ``retries.stream_reconnects`` times in a row without
        an event in between).
        """
        last = after
        drops = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if last is not None:
                headers["Last-Event-ID"] = str(last)
            call = Call(
                "GET", f"/v1/runs/{run_id}/events", headers=headers,
                timeout=stream_timeout(self.retries), safe=True,
            )  # fmt: skip
            response = await self._open(call)
            try:
                parser = SSEParser()
                async for line in response.aiter_lines():
                    sse = parser.feed(line)
                    if sse is None:
                        continue
                    event = decode_event(sse, run_id)
                    if last is not None and event.seq <= last:
                        continue  # never twice, whatever the server sends
                    last, drops = event.seq, 0
                    yield event
                    if event.kind == RunFinished.kind:
                        return
            except httpx.TransportError as exc:
                drops += 1
                if drops > self.retries.stream_reconnects:
                    raise transport_error(exc, f"events of run {run_id!r}") from exc
                continue
            finally:
                await response.aclose()
            # the stream ended without the run's end: a finished run past `after`, or a drop
            run = await self.get_run(run_id)
            if run.done and (last or 0) >= run.last_seq:
                return
            drops += 1
            if drops > self.retries.stream_reconnects:
                raise ServiceConnectionError(
                    f"events of run {run_id!r}: the stream ended {drops} times without the run's end"
                )

    async def _open(self, call: Call) -> httpx.Response:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retries.attempts),
            wait=self.retries.wait,
            retry=retry_if_exception(lambda exc: self.retries.should_retry(exc, True)),
            reraise=True,
        )
        response: httpx.Response | None = None
        async for attempt in retrying:
            with attempt:
                what = f"events: {call.path}"
                try:
                    response = await self._http.send(call.request(self._http), stream=True)
                except httpx.TransportError as exc:
                    raise transport_error(exc, what) from exc
                if response.status_code >= 400:
                    await response.aread()
                    await response.aclose()
                    raise error_for(response, what)
        assert response is not None
        return response

    async def wait(self, run_id: str) -> Run:
        """The run once it has ended (following its events); bound the wait with
        ``anyio.fail_after``."""
        run = await self.get_run(run_id)
        if not run.done:
            async for _ in self.events(run_id, after=run.last_seq):
                pass
            run = await self.get_run(run_id)
        return run

    # -- batches ---------------------------------------------------------------------------------

    async def create_batch(
        self,
        workflow: str | os.PathLike[str],
        inputs: Sequence[Mapping[str, Any]],
        *,
        model: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Batch:
        """Run a workflow (YAML text or a path) once per input, in the background."""
        body = batch_body(workflow, inputs, model, metadata)
        return Batch.model_validate(await self._json(Call("POST", "/v1/batches", body=body)))

    async def get_batch(self, batch_id: str) -> Batch:
        """The batch: progress and each input's run and result."""
        return Batch.model_validate(await self._json(Call("GET", f"/v1/batches/{batch_id}", safe=True)))

    async def cancel_batch(self, batch_id: str) -> Batch:
        """Cancel the batch's runs and start no more."""
        call = Call("POST", f"/v1/batches/{batch_id}/cancel", safe=True)
        return Batch.model_validate(await self._json(call))

    # -- tools and plans -------------------------------------------------------------------------

    async def list_tools(self) -> list[ToolInfo]:
        """The tools the tenant may use, with their schemas and policies."""
        data = await self._json(Call("GET", "/v1/tools", safe=True))
        return [ToolInfo.model_validate(t) for t in data["tools"]]

    async def call_tool(
        self, name: str, args: Mapping[str, Any] | None = None, *, call_timeout: float | None = None
    ) -> ToolCallResult:
        """Call one tool directly (its policy and the server's limits apply; ``call_timeout``
        lowers the server's bound on the call, in seconds)."""
        body: dict[str, Any] = {"args": dict(args or {})}
        if call_timeout is not None:
            body["timeout"] = call_timeout
        return ToolCallResult.model_validate(
            await self._json(Call("POST", f"/v1/tools/{name}:call", body=body))
        )

    async def validate_plan(
        self,
        plan: str,
        *,
        dialect: Literal["text", "json"] = "text",
        compat: bool = False,
        tools: Sequence[str] | None = None,
        max_tasks: int | None = None,
    ) -> PlanValidation:
        """Check a plan against the tenant's tools: errors with line, column and hint."""
        body = validate_body(plan, dialect, compat, tools, max_tasks)
        return PlanValidation.model_validate(
            await self._json(Call("POST", "/v1/plans:validate", body=body, safe=True))
        )
