"""RayExecutor against a real local Ray instance with its own temp dir and HOME."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator

import anyio
import procfns
import pytest

from tomasulo.dispatcher import Dispatcher
from tomasulo.exceptions import ToolCrashed, ToolExecutionError, ToolOutputError, ToolTimeout
from tomasulo.executors import RayExecutor
from tomasulo.grammar import Ref, Task

ray = pytest.importorskip("ray")

pytestmark = [pytest.mark.anyio, pytest.mark.ray]


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


async def test_ray_gives_the_same_outcomes_as_local(ray_instance: None) -> None:
    tasks = [
        Task(1, "square", (6,)),
        Task(2, "square", (Ref(1),)),
        Task(3, "fail", (2,)),
        Task(4, "garbage"),
        Task(5, "pid"),
    ]
    with anyio.fail_after(60):
        async with RayExecutor() as ex:
            out = await Dispatcher.run_plan(procfns.toolset(), tasks, executor=ex)
    assert out[2].value == 36 * 36
    assert out[3].error_type == "ValueError"
    assert isinstance(out[3].error, ToolExecutionError)
    assert isinstance(out[4].error, ToolOutputError)
    assert out[5].value != os.getpid()
    assert ray.is_initialized()  # an instance it did not start is left running


async def test_ray_crash_and_timeout(ray_instance: None) -> None:
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
