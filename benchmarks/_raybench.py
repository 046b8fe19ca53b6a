"""The Ray section of dispatch_bench: Ray's overhead per call against local execution, for
RayExecutor's two modes (a Ray task per call; a pool of async actors), with a sync and an async
tool."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

from tomasulo.dispatcher import Dispatcher
from tomasulo.executors import LocalExecutor, RayExecutor
from tomasulo.grammar import Ref, Task
from tomasulo.tools import Tool, Toolset

__all__ = ["section_ray"]


def square(x: int, _: Any = None) -> int:
    return x * x


async def asquare(x: int, _: Any = None) -> int:
    return x * x


KINDS: dict[str, Callable[..., Any]] = {"sync": square, "async": asquare}


async def section_ray(calls: int) -> None:
    flat = [Task(i, "sq", (), {"x": i}) for i in range(1, calls + 1)]
    chain_n = min(200, calls)
    chain = [Task(1, "sq", (), {"x": 1})] + [
        Task(i, "sq", (), {"x": 1, "_": Ref(i - 1)}) for i in range(2, chain_n + 1)
    ]

    async def timed(executor: Any, tools: Toolset, tasks: list[Task]) -> float:
        t0 = time.perf_counter()
        out = await Dispatcher.run_plan(tools, tasks, executor=executor)
        assert all(o.ok for o in out.values()), [o.message for o in out.values() if not o.ok][:3]
        return time.perf_counter() - t0

    async def measure(executor: Any) -> dict[str, tuple[float, float]]:
        """Seconds for the independent calls and for the chain, per kind of tool."""
        times = {}
        for kind, fn in KINDS.items():
            tools = Toolset([Tool(name="sq", input_schema={"type": "object"}, fn=fn)])
            await timed(executor, tools, flat[:20])  # warm the workers
            times[kind] = (await timed(executor, tools, flat), await timed(executor, tools, chain))
        return times

    async with LocalExecutor() as local:
        base = await measure(local)
    temp = tempfile.mkdtemp(prefix="tmray-", dir="/tmp")
    os.environ["HOME"] = tempfile.mkdtemp(prefix="tmhome-", dir="/tmp")  # keep Ray out of ~
    cpus = min(4, os.cpu_count() or 2)
    t0 = time.perf_counter()
    async with RayExecutor(num_cpus=cpus, temp_dir=temp) as tasks_ex:
        start = time.perf_counter() - t0
        results = {"tasks": await measure(tasks_ex)}
        t0 = time.perf_counter()
        async with RayExecutor(mode="actors", num_actors=cpus) as actors_ex:  # joins the instance
            actors_start = time.perf_counter() - t0
            results[f"actors x{cpus}"] = await measure(actors_ex)
    print("\n## Ray against local execution (a trivial tool; overhead per call over local)")
    print(f"Ray start-up {start:.2f} s; {cpus} actors start-up {actors_start:.2f} s")
    print(f"{'mode':10} {'tool':5}  {calls} independent (amortized)  {chain_n} dependent (round trip)")
    for mode, times in results.items():
        for kind, (ray_flat, ray_chain) in times.items():
            local_flat, local_chain = base[kind]
            print(
                f"{mode:10} {kind:5}  {(ray_flat - local_flat) / calls * 1e6:8.0f} us"
                f" ({ray_flat * 1e3:6.0f} ms total)"
                f"   {(ray_chain - local_chain) / chain_n * 1e6:8.0f} us ({ray_chain * 1e3:6.0f} ms total)"
            )
