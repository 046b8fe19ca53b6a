"""The Ray section of dispatch_bench: Ray's overhead per call against local execution."""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

from tomasulo.dispatcher import Dispatcher
from tomasulo.executors import LocalExecutor, RayExecutor
from tomasulo.grammar import Ref, Task
from tomasulo.tools import Tool, Toolset

__all__ = ["section_ray"]


def square(x: int) -> int:
    return x * x


async def section_ray(calls: int) -> None:
    tools = Toolset([Tool(name="sq", input_schema={"type": "object"}, fn=square)])
    flat = [Task(i, "sq", (), {"x": i}) for i in range(1, calls + 1)]
    chain_n = min(200, calls)

    async def timed(executor: Any, tasks: list[Task]) -> float:
        t0 = time.perf_counter()
        out = await Dispatcher.run_plan(tools, tasks, executor=executor)
        assert all(o.ok for o in out.values()), [o.message for o in out.values() if not o.ok][:3]
        return time.perf_counter() - t0

    def chain(n: int) -> list[Task]:
        return [Task(1, "sq", (), {"x": 1})] + [
            Task(i, "sq", (), {"x": 1, "_": Ref(i - 1)}) for i in range(2, n + 1)
        ]

    loose = Toolset([Tool(name="sq", input_schema={"type": "object"}, fn=lambda x, _=None: x)])
    async with LocalExecutor() as local:
        local_flat = await timed(local, flat)
        t0 = time.perf_counter()
        await Dispatcher.run_plan(loose, chain(chain_n), executor=local)
        local_chain = time.perf_counter() - t0
    temp = tempfile.mkdtemp(prefix="tmray-", dir="/tmp")
    os.environ["HOME"] = tempfile.mkdtemp(prefix="tmhome-", dir="/tmp")  # keep Ray out of ~
    t0 = time.perf_counter()
    async with RayExecutor(num_cpus=min(4, os.cpu_count() or 2), temp_dir=temp) as ray_ex:
        start = time.perf_counter() - t0
        await timed(ray_ex, flat[:20])  # warm the workers
        ray_flat = await timed(ray_ex, flat)
        t0 = time.perf_counter()
        loose_ray = Toolset([Tool(name="sq", input_schema={"type": "object"}, fn=_square_any)])
        await Dispatcher.run_plan(loose_ray, chain(chain_n), executor=ray_ex)
        ray_chain = time.perf_counter() - t0
    print(f"\n## Ray against local execution ({calls} calls of a trivial sync tool)")
    print(f"Ray start-up                 {start:8.2f} s")
    print(
        f"{calls} independent calls     local {local_flat * 1e3:8.1f} ms | Ray {ray_flat * 1e3:8.1f} ms"
        f" | overhead {(ray_flat - local_flat) / calls * 1e6:8.1f} us per call (amortized)"
    )
    print(
        f"{chain_n} dependent calls       local {local_chain * 1e3:8.1f} ms | Ray {ray_chain * 1e3:8.1f} ms"
        f" | overhead {(ray_chain - local_chain) / chain_n * 1e6:8.1f} us per call (round trip)"
    )


def _square_any(x: int, _: Any = None) -> int:
    return x * x
