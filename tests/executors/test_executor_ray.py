"""RayExecutor, in both modes, against a real local Ray instance with its own temp dir and HOME."""

from __future__ import annotations

import collections
import os
import tempfile
import threading
import time
from collections.abc import Iterator

import anyio
import procfns
import pytest

from tomasulo.dispatcher import Dispatcher
from tomasulo.exceptions import (
    ConfigError,
    ToolCrashed,
    ToolExecutionError,
    ToolOutputError,
    ToolTimeout,
)
from tomasulo.executors import RayExecutor
from tomasulo.grammar import Ref, Task
from tomasulo.tools import Toolset

ray = pytest.importorskip("ray")

pytestmark = [pytest.mark.anyio, pytest.mark.ray]

MODES = ["tasks", "actors"]


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[None]:
    home = tempfile.mkdtemp(prefix="tmhome-", dir="/tmp")
    temp = tempfile.mkdtemp(prefix="tmray-", dir="/tmp")
    old_home = os.environ.get("HOME")
    os.environ["HOME"] = home
    ray.cloudpickle.register_pickle_by_value(procfns)
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
        ray.cloudpickle.unregister_pickle_by_value(procfns)
        if old_home is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = old_home


@pytest.mark.parametrize("mode", MODES)
async def test_ray_gives_the_same_outcomes_as_local(ray_instance: None, mode: str) -> None:
    tasks = [
        Task(1, "square", (6,)),
        Task(2, "square", (Ref(1),)),
        Task(3, "fail", (2,)),
        Task(4, "garbage"),
        Task(5, "pid"),
        Task(6, "nap"),
    ]
    with anyio.fail_after(60):
        async with RayExecutor(mode=mode) as ex:  # type: ignore[arg-type]
            out = await Dispatcher.run_plan(procfns.toolset(), tasks, executor=ex)
    assert out[2].value == 36 * 36
    assert out[3].error_type == "ValueError"
    assert isinstance(out[3].error, ToolExecutionError)
    assert isinstance(out[4].error, ToolOutputError)
    assert out[5].value != os.getpid()
    assert out[6].value != os.getpid()
    if mode == "actors":  # one actor serves every call, sync and async
        assert out[5].value == out[6].value
    assert ray.is_initialized()  # an instance it did not start is left running


async def test_ray_task_crash_and_timeout(ray_instance: None) -> None:
    tasks = [Task(1, "crash"), Task(2, "hang"), Task(3, "square", (4,))]
    with anyio.fail_after(60):
        async with RayExecutor() as ex:
            t0 = time.monotonic()
            out = await Dispatcher.run_plan(procfns.toolset(timeout=2.0), tasks, executor=ex)
            elapsed = time.monotonic() - t0
    assert isinstance(out[1].error, ToolCrashed)
    assert isinstance(out[2].error, ToolTimeout)
    assert out[3].value == 16
    assert elapsed < 30


@pytest.mark.parametrize("mode", MODES)
async def test_a_dying_tool_fails_alone_and_later_calls_succeed(ray_instance: None, mode: str) -> None:
    tools = procfns.toolset()
    with anyio.fail_after(60):
        async with RayExecutor(mode=mode, num_actors=1) as ex:  # type: ignore[arg-type]
            pids = []
            for killer in ("exit_worker", "crash"):
                first = await Dispatcher.run_plan(tools, [Task(1, "pid")], executor=ex)
                pids.append(first[1].value)
                dead = await Dispatcher.run_plan(tools, [Task(1, killer)], executor=ex)
                assert isinstance(dead[1].error, ToolCrashed), dead[1].message
            last = await Dispatcher.run_plan(tools, [Task(1, "pid")], executor=ex)
            pids.append(last[1].value)
    assert all(isinstance(p, int) for p in pids)
    if mode == "actors":  # the one actor was replaced after each death
        assert len(set(pids)) == 3


@pytest.mark.parametrize("mode", MODES)
async def test_timeouts_return_promptly_and_free_the_worker(ray_instance: None, mode: str) -> None:
    # One actor that runs one call at a time: if cancelling a timed-out call did not reach the
    # actor, the calls after it would queue behind it forever.
    tools = procfns.toolset(timeout=1.0)
    with anyio.fail_after(60):
        async with RayExecutor(mode=mode, num_actors=1, actor_concurrency=1) as ex:  # type: ignore[arg-type]
            for hang in ("hang", "ahang"):
                t0 = time.monotonic()
                out = await Dispatcher.run_plan(tools, [Task(1, hang)], executor=ex)
                assert isinstance(out[1].error, ToolTimeout)
                assert time.monotonic() - t0 < 5
            with anyio.fail_after(20):
                again = await Dispatcher.run_plan(tools, [Task(1, "square", (4,))], executor=ex)
    assert again[1].value == 16


async def test_actors_run_many_calls_at_once_and_share_the_load(ray_instance: None) -> None:
    tasks = [Task(i, "nap") for i in range(1, 17)] + [Task(i, "sync_nap") for i in range(17, 33)]
    with anyio.fail_after(60):
        async with RayExecutor(mode="actors", num_actors=2) as ex:
            await Dispatcher.run_plan(procfns.toolset(), [Task(1, "square", (1,))], executor=ex)
            t0 = time.monotonic()
            out = await Dispatcher.run_plan(procfns.toolset(), tasks, executor=ex)
            elapsed = time.monotonic() - t0
    assert all(o.ok for o in out.values()), [o.message for o in out.values() if not o.ok]
    # 32 calls of 0.3 s on 2 actors: one after another that is 9.6 s, and if the 16 sync calls
    # held the actors' loops, at least 2.4 s; side by side, about 0.4 s
    assert elapsed < 1.5
    per_actor = collections.Counter(o.value for o in out.values())
    assert sorted(per_actor.values()) == [16, 16]
    assert os.getpid() not in per_actor


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"mode": "threads"}, "'threads'"),
        ({"mode": "actors", "num_actors": 0}, "num_actors must be at least 1, got 0"),
        ({"mode": "actors", "actor_concurrency": -1}, "actor_concurrency must be at least 1, got -1"),
        ({"actor_options": {"num_cpus": 1}}, "mode='actors'"),
        ({"mode": "actors", "task_options": {"num_cpus": 1}}, "actor_options"),
        ({"mode": "actors", "start_timeout": 0}, "start_timeout must be positive, got 0"),
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        RayExecutor(**kwargs)  # type: ignore[arg-type]


async def test_actors_the_cluster_cannot_place_fail_start_within_its_timeout(ray_instance: None) -> None:
    executor = RayExecutor(
        mode="actors", actor_options={"resources": {"no-such-resource": 1}}, start_timeout=1.5
    )
    t0 = time.perf_counter()
    with anyio.fail_after(30), pytest.raises(ConfigError, match=r"did not start within 1.5 s"):
        async with executor:
            pass
    assert time.perf_counter() - t0 < 10
    assert executor._slots is None  # the pending actors were killed


class _Locked:
    """Deps holding a lock, which cannot be pickled (a client or a pool is like this)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()


async def test_run_context_deps_travel_to_ray_or_are_named(ray_instance: None) -> None:
    tools = Toolset([procfns.hello, procfns.ahello])
    tasks = [Task(1, "hello", ("Ada",)), Task(2, "ahello", ("Bo",))]
    with anyio.fail_after(120):
        async with RayExecutor() as ex:
            good = await Dispatcher.run_plan(tools, tasks, executor=ex, deps=procfns.Settings("hey"))
            bad = await Dispatcher.run_plan(tools, tasks[:1], executor=ex, deps=_Locked())
    assert good[1].value["text"] == "hey Ada"
    assert good[2].value == "hey Bo"
    assert bad[1].status == "failed"
    assert "the run's deps (a _Locked) cannot be pickled to send to Ray" in (bad[1].message or "")
