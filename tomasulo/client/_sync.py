"""``Client``: the service's API from synchronous code (the same methods as ``AsyncClient``).

>>> with Client("http://127.0.0.1:8080", api_key=key) as client:   # doctest: +SKIP
...     run = client.create_run(query="What is 6 * 7?")
...     for event in client.events(run.id):
...         print(event.kind)
...     print(client.get_run(run.id).answer)
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal

import httpx
from tenacity import Retrying, retry_if_exception, stop_after_attempt

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

__all__ = ["Client"]


class Client:
    """A client of the tomasulo service, for synchronous code (``AsyncClient`` for async code).

    Args:
        url: the service's URL (default ``TOMASULO_URL``, else ``http://127.0.0.1:8080``).
        api_key: the API key (default ``TOMASULO_API_KEY``).
        timeout: seconds per request (an ``httpx.Timeout`` or a number).
        retries: how requests and event streams are retried (:class:`Retries`).
        http_client: an ``httpx.Client`` to use (its base URL is set here; it stays open
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
        http_client: httpx.Client | None = None,
    ) -> None:
        self.url = base_url(url)
        self.retries = retries or Retries()
        self._owned = http_client is None
        self._http = http_client or httpx.Client(timeout=timeout)
        self._http.base_url = httpx.URL(self.url)
        self._http.headers.update(client_headers(api_key))

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections (not those of an ``http_client`` passed in)."""
        if self._owned:
            self._http.close()

    # -- sending ---------------------------------------------------------------------------------

    def _send_once(self, call: Call) -> httpx.Response:
        what = f"{call.method} {call.path}"
        try:
            response = self._http.send(call.request(self._http))
        except httpx.TransportError as exc:
            raise transport_error(exc, what) from exc
        if response.status_code >= 400:
            raise error_for(response, what)
        return response

    def _send(self, call: Call) -> httpx.Response:
        retrying = Retrying(
            stop=stop_after_attempt(self.retries.attempts),
            wait=self.retries.wait,
            retry=retry_if_exception(lambda exc: self.retries.should_retry(exc, call.safe)),
            reraise=True,
        )
        response: httpx.Response | None = None
        for attempt in retrying:
            with attempt:
                response = self._send_once(call)
        assert response is not None
        return response

    def _json(self, call: Call) -> Any:
        response = self._send(call)
        return response.json() if response.content else None

    # -- runs ------------------------------------------------------------------------------------

    def create_run(
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
        return Run.model_validate(self._json(call))

    def get_run(self, run_id: str) -> Run:
        """The run: status, answer, tasks with outcomes and timings, plans, usage."""
        return Run.model_validate(self._json(Call("GET", f"/v1/runs/{run_id}", safe=True)))

    def list_runs(
        self,
        *,
        status: str | None = None,
        created_after: dt.datetime | str | None = None,
        created_before: dt.datetime | str | None = None,
        metadata: Mapping[str, str] | None = None,
        page_size: int | None = None,
    ) -> Iterator[Run]:
        """Every run of the tenant that matches, newest first (summaries: no tasks or plans);
        pages are fetched as the iteration reaches them."""
        params = list_params(
            status=status, created_after=created_after, created_before=created_before,
            metadata=metadata, limit=page_size,
        )  # fmt: skip
        cursor: str | None = None
        while True:
            page = self._json(
                Call(
                    "GET", "/v1/runs", params=[*params, *([("cursor", cursor)] if cursor else [])], safe=True
                )
            )
            for item in page.get("data", []):
                yield Run.model_validate(item)
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def delete_run(self, run_id: str) -> None:
        """Delete the run (a running one is cancelled first); a later :meth:`get_run` is a 404."""
        self._send(Call("DELETE", f"/v1/runs/{run_id}", safe=True))

    def cancel(self, run_id: str) -> Run:
        """Cancel the run; it comes back as it is (it may still be ``running`` until it ends)."""
        return Run.model_validate(self._json(Call("POST", f"/v1/runs/{run_id}/cancel", safe=True)))

    def interrupt(self, run_id: str, message: str) -> bool:
        """Send the run a user's message, which makes it replan; True when it was accepted
        (a run that has ended answers 409: :class:`~tomasulo.exceptions.ServiceError`)."""
        call = Call("POST", f"/v1/runs/{run_id}/interrupt", body={"message": message})
        return bool((self._json(call) or {}).get("accepted", False))

    def events(self, run_id: str, *, after: int | None = None) -> Iterator[Event]:
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
            response = self._open(call)
            try:
                parser = SSEParser()
                for line in response.iter_lines():
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
                response.close()
            # the stream ended without the run's end: a finished run past `after`, or a drop
            run = self.get_run(run_id)
            if run.done and (last or 0) >= run.last_seq:
                return
            drops += 1
            if drops > self.retries.stream_reconnects:
                raise ServiceConnectionError(
                    f"events of run {run_id!r}: the stream ended {drops} times without the run's end"
                )

    def _open(self, call: Call) -> httpx.Response:
        retrying = Retrying(
            stop=stop_after_attempt(self.retries.attempts),
            wait=self.retries.wait,
            retry=retry_if_exception(lambda exc: self.retries.should_retry(exc, True)),
            reraise=True,
        )
        response: httpx.Response | None = None
        for attempt in retrying:
            with attempt:
                what = f"events: {call.path}"
                try:
                    response = self._http.send(call.request(self._http), stream=True)
                except httpx.TransportError as exc:
                    raise transport_error(exc, what) from exc
                if response.status_code >= 400:
                    response.read()
                    response.close()
                    raise error_for(response, what)
        assert response is not None
        return response

    def wait(self, run_id: str, *, timeout: float | None = None) -> Run:
        """The run once it has ended (following its events); ``timeout`` bounds the wait
        (``TimeoutError`` past it, checked as events arrive)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        run = self.get_run(run_id)
        if not run.done:
            for _ in self.events(run_id, after=run.last_seq):
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"run {run_id!r} did not end within {timeout} s")
            run = self.get_run(run_id)
        return run

    # -- batches ---------------------------------------------------------------------------------

    def create_batch(
        self,
        workflow: str | os.PathLike[str],
        inputs: Sequence[Mapping[str, Any]],
        *,
        model: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Batch:
        """Run a workflow (YAML text or a path) once per input, in the background."""
        body = batch_body(workflow, inputs, model, metadata)
        return Batch.model_validate(self._json(Call("POST", "/v1/batches", body=body)))

    def get_batch(self, batch_id: str) -> Batch:
        """The batch: progress and each input's run and result."""
        return Batch.model_validate(self._json(Call("GET", f"/v1/batches/{batch_id}", safe=True)))

    def cancel_batch(self, batch_id: str) -> Batch:
        """Cancel the batch's runs and start no more."""
        call = Call("POST", f"/v1/batches/{batch_id}/cancel", safe=True)
        return Batch.model_validate(self._json(call))

    # -- tools and plans -------------------------------------------------------------------------

    def list_tools(self) -> list[ToolInfo]:
        """The tools the tenant may use, with their schemas and policies."""
        data = self._json(Call("GET", "/v1/tools", safe=True))
        return [ToolInfo.model_validate(t) for t in data["tools"]]

    def call_tool(
        self, name: str, args: Mapping[str, Any] | None = None, *, call_timeout: float | None = None
    ) -> ToolCallResult:
        """Call one tool directly (its policy and the server's limits apply; ``call_timeout``
        lowers the server's bound on the call, in seconds)."""
        body: dict[str, Any] = {"args": dict(args or {})}
        if call_timeout is not None:
            body["timeout"] = call_timeout
        return ToolCallResult.model_validate(self._json(Call("POST", f"/v1/tools/{name}:call", body=body)))

    def validate_plan(
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
            self._json(Call("POST", "/v1/plans:validate", body=body, safe=True))
        )
