"""Run tools as Ray tasks, on a local Ray instance or an existing cluster (extra ``tomasulo[ray]``)."""

from __future__ import annotations

import tempfile
from typing import Any

import anyio
import anyio.to_thread

from ..exceptions import ConfigError, ToolCrashed, ToolExecutionError
from ..tools import Tool
from ._base import BaseExecutor, prepare_kwargs
from ._remote import invoke, unpack

__all__ = ["RayExecutor"]


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError(
            "RayExecutor needs Ray: install the extra with `pip install 'tomasulo[ray]'`"
        ) from exc
    return ray


class RayExecutor(BaseExecutor):
    """Each call is a Ray task; outcomes and errors are the same as with the other executors.

    ``address`` joins an existing cluster (``"auto"``, ``"ray://host:10001"``); without it, a
    local instance is started with its own temp dir (and stopped again when the executor stops).
    If Ray is already initialized in this process, that instance is used and left running.

    >>> executor = RayExecutor(num_cpus=2)

    Args:
        address: the cluster to join; ``None`` starts a local one.
        num_cpus: CPUs for a local instance.
        temp_dir: Ray's temp dir for a local instance (a fresh short path by default).
        task_options: passed to ``.options()`` of every call (``num_cpus``, ``resources``...).
        init_kwargs: more arguments for ``ray.init``.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        temp_dir: str | None = None,
        task_options: dict[str, Any] | None = None,
        init_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.temp_dir = temp_dir
        self.task_options = dict(task_options or {})
        self.init_kwargs = dict(init_kwargs or {})
        self._owns_ray = False
        self._remote: Any = None

    async def start(self) -> None:
        """Connect to (or start) Ray; blocking set-up runs on a worker thread."""
        ray = _import_ray()
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            kwargs.update(self.init_kwargs)
            if self.address is not None:
                kwargs["address"] = self.address
            else:
                kwargs.setdefault("num_cpus", self.num_cpus)
                kwargs.setdefault("_temp_dir", self.temp_dir or tempfile.mkdtemp(prefix="tmray-", dir="/tmp"))
            await anyio.to_thread.run_sync(lambda: ray.init(**kwargs))
            self._owns_ray = True
        remote = ray.remote(max_retries=0)(invoke)
        self._remote = remote.options(**self.task_options) if self.task_options else remote

    async def stop(self) -> None:
        """Shut Ray down if this executor started it."""
        self._remote = None
        if self._owns_ray:
            self._owns_ray = False
            ray = _import_ray()
            await anyio.to_thread.run_sync(ray.shutdown)

    async def call(self, tool: Tool, args: dict[str, Any], *, task_id: int, attempt: int) -> Any:
        """Call the tool as a Ray task; see :class:`~tomasulo.executors.Executor`."""
        ray = _import_ray()
        if self._remote is None:
            raise ConfigError("RayExecutor is not started; use `async with RayExecutor() as ex:`")
        kwargs = prepare_kwargs(tool, args)
        try:
            ref = self._remote.remote(tool.fn, kwargs)
        except Exception as exc:
            raise ToolExecutionError(
                f"the tool or its arguments cannot be sent to Ray ({type(exc).__name__}: {exc})",
                tool=tool.name,
                task_id=task_id,
                attempt=attempt,
                error_type=type(exc).__name__,
            ) from exc
        try:
            reply = await ref
        except anyio.get_cancelled_exc_class():
            ray.cancel(ref, force=True)
            raise
        except (
            ray.exceptions.WorkerCrashedError,
            ray.exceptions.NodeDiedError,
            ray.exceptions.ObjectLostError,
            ray.exceptions.LocalRayletDiedError,
        ) as exc:
            raise ToolCrashed(
                f"the Ray worker running the tool died ({type(exc).__name__})",
                tool=tool.name,
                task_id=task_id,
                attempt=attempt,
            ) from exc
        except ray.exceptions.RayError as exc:
            raise ToolExecutionError(
                f"Ray could not run the tool: {type(exc).__name__}: {exc}",
                tool=tool.name,
                task_id=task_id,
                attempt=attempt,
                error_type=type(exc).__name__,
            ) from exc
        return unpack(reply, tool=tool.name, task_id=task_id, attempt=attempt)
