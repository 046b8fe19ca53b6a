"""Client and AsyncClient round trips through the runs API: real service on loopback, SimulatedLLM."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import anyio
import pytest
from service.conftest import LiveService
from service.svctools import GATES

from tomasulo.client import AsyncClient, Client, Retries, Run, ServiceError, ServiceNotFound
from tomasulo.dispatcher import Event, TaskSucceeded
from tomasulo.runtime import RunFinished, RunStarted


def client_of(live: LiveService, tenant: str = "acme", **kwargs: object) -> Client:
    return Client(live.url, api_key=live.keys[tenant], **kwargs)  # type: ignore[arg-type]


def gate() -> str:
    name = uuid.uuid4().hex[:8]
    GATES[name].clear()
    return name


def test_a_question_round_trip(runs: LiveService) -> None:
    tag = uuid.uuid4().hex[:8]
    with client_of(runs) as client:
        run = client.create_run(query="add two numbers", metadata={"tag": tag})
        assert isinstance(run, Run) and run.status in ("queued", "running", "finished")
        events = list(client.events(run.id))
        done = client.get_run(run.id)
    assert isinstance(events[0], RunStarted) and isinstance(events[-1], RunFinished)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert all(e.run_id == run.id for e in events)
    assert any(isinstance(e, TaskSucceeded) and e.outcome.value == 5 for e in events)
    assert done.status == "finished" and done.done and done.answer.startswith("add two numbers -> ")
    assert [(t.tool, t.status, t.value) for t in done.tasks] == [("math", "succeeded", 5)]
    assert done.metadata == {"tag": tag} and done.usage.llm_calls == 2 and done.last_seq == len(events)


def test_events_after_a_seq_and_of_a_finished_run(runs: LiveService) -> None:
    with client_of(runs) as client:
        run = client.create_run(query="add two numbers", wait=20)
        assert run.done
        tail = list(client.events(run.id, after=3))
        assert tail[0].seq == 4 and isinstance(tail[-1], RunFinished)
        assert list(client.events(run.id, after=run.last_seq)) == []


def test_a_fixed_plan_with_wait(runs: LiveService) -> None:
    with client_of(runs) as client:
        run = client.create_run(plan='1. math(expression="6 * 7")\n2. join()', wait=20)
    assert run.status == "finished" and run.tasks[0].value == 42


def test_idempotency_key(runs: LiveService) -> None:
    key = uuid.uuid4().hex
    with client_of(runs) as client:
        first = client.create_run(query="add two numbers", idempotency_key=key)
        again = client.create_run(query="add two numbers", idempotency_key=key)
        assert again.id == first.id
        with pytest.raises(ServiceError) as caught:
            client.create_run(query="something else", idempotency_key=key)
        assert caught.value.status == 409 and first.id in caught.value.detail


def test_list_runs_iterates_every_page_and_filters(runs: LiveService) -> None:
    tag = uuid.uuid4().hex[:8]
    with client_of(runs) as client:
        made = [
            client.create_run(query="add two numbers", metadata={"tag": tag}, wait=20).id for _ in range(3)
        ]
        listed = [r.id for r in client.list_runs(metadata={"tag": tag}, page_size=2)]
        assert listed == made[::-1]  # newest first, over two pages
        assert all(r.status == "finished" for r in client.list_runs(metadata={"tag": tag}, status="finished"))


def test_delete_then_get_is_not_found(runs: LiveService) -> None:
    with client_of(runs) as client:
        run = client.create_run(query="add two numbers", wait=20)
        client.delete_run(run.id)
        with pytest.raises(ServiceNotFound) as caught:
            client.get_run(run.id)
        assert caught.value.status == 404 and caught.value.request_id


def test_another_tenants_run_is_not_found(runs: LiveService) -> None:
    with client_of(runs) as acme, client_of(runs, "globex") as globex:
        run = acme.create_run(plan='1. echo(value="x")\n2. join()', wait=20)
        for call in (
            lambda: globex.get_run(run.id),
            lambda: list(globex.events(run.id)),
            lambda: globex.cancel(run.id),
            lambda: globex.interrupt(run.id, "hi"),
        ):
            with pytest.raises(ServiceNotFound):
                call()


def test_cancel_and_interrupt(runs: LiveService) -> None:
    held = gate()
    with client_of(runs) as client:
        run = client.create_run(query=f"hold {held}")
        cancelled = client.cancel(run.id)
        assert cancelled.id == run.id
        assert client.wait(run.id, timeout=20).status == "cancelled"
        GATES[held].set()  # (the abandoned tool call returns)
        with pytest.raises(ServiceError) as caught:
            client.interrupt(run.id, "too late")
        assert caught.value.status == 409

        talk = gate()
        run = client.create_run(query=f"hold {talk}")
        for event in client.events(run.id):
            if event.kind == "task_started":
                break
        assert client.interrupt(run.id, "the user said: use 40 + 2") is True
        GATES[talk].set()
        done = client.wait(run.id, timeout=20)
    assert done.status == "finished"
    assert 42 in [t.value for t in done.tasks]


# -- SSE resume through a proxy that cuts the first event stream -----------------------------------


@dataclass
class CuttingProxy:
    """A TCP proxy on loopback to ``upstream`` that drops the first connection to send more than
    ``cut_after`` bytes back, in the middle of what it sends."""

    upstream: tuple[str, int]
    cut_after: int = 3000
    cuts: int = 0
    connections: int = 0
    _sock: socket.socket = field(default_factory=socket.socket)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> str:
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self._sock.accept()
            except OSError:
                return
            up = socket.create_connection(self.upstream, timeout=30)
            self.connections += 1
            threading.Thread(target=self._pump, args=(down, up, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, down, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, back: bool) -> None:
        sent = 0
        try:
            while data := source.recv(1024):
                sink.sendall(data)
                sent += len(data)
                if back and sent > self.cut_after:
                    with self._lock:
                        cut = self.cuts == 0
                        self.cuts += cut
                    if cut:
                        break
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self._sock.close()


@pytest.fixture
def proxy(runs: LiveService) -> Iterator[CuttingProxy]:
    host, port = runs.url.removeprefix("http://").split(":")
    cutting = CuttingProxy((host, int(port)))
    cutting.start()
    try:
        yield cutting
    finally:
        cutting.close()


def test_a_dropped_stream_resumes_with_every_event_once(runs: LiveService, proxy: CuttingProxy) -> None:
    plan = "\n".join([*(f'{i}. math(expression="{i} * 2")' for i in range(1, 41)), "41. join()"])
    url = f"http://127.0.0.1:{proxy._sock.getsockname()[1]}"
    with Client(url, api_key=runs.keys["acme"], retries=Retries(backoff=0.01)) as client:
        run = client.create_run(plan=plan)
        events = list(client.events(run.id))
    with client_of(runs) as direct:
        everything = list(direct.events(run.id))
    assert proxy.cuts == 1  # the stream was cut once, and the client went on from where it was
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [e.to_json() for e in events] == [e.to_json() for e in everything]
    assert isinstance(events[-1], RunFinished)


# -- the async client -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_async_client_round_trip(runs: LiveService) -> None:
    with anyio.fail_after(30):
        async with AsyncClient(runs.url, api_key=runs.keys["acme"]) as client:
            run = await client.create_run(query="many tasks")
            seen: list[Event] = [e async for e in client.events(run.id)]
            done = await client.wait(run.id)
            assert [e.seq for e in seen] == list(range(1, len(seen) + 1))
            assert done.status == "finished" and len(done.tasks) == 20
            tag = uuid.uuid4().hex[:8]
            await client.create_run(query="add two numbers", metadata={"tag": tag}, wait=20)
            assert [r.metadata async for r in client.list_runs(metadata={"tag": tag})] == [{"tag": tag}]
            held = gate()
            run = await client.create_run(query=f"hold {held}")
            await client.cancel(run.id)
            assert (await client.wait(run.id)).status == "cancelled"
            GATES[held].set()
            await client.delete_run(run.id)
            with pytest.raises(ServiceNotFound):
                await client.get_run(run.id)
