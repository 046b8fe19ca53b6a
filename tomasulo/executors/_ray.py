"""Run tools on Ray, as tasks or on a pool of async actors (extra ``tomasulo[ray]``)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from typing import Any, Literal

import anyio
import anyio.to_thread

from ..exceptions import ConfigError, ToolCrashed, ToolExecutionError
from ..tools import Tool
from ._base import BaseExecutor, prepare_kwargs, unsendable_deps
from ._remote import Reply, ainvoke, invoke, unpack

__all__ = ["RayExecutor"]

#: Calls one actor runs at once in ``mode="actors"``, by default.
DEFAULT_ACTOR_CONCURRENCY = 64

_MODES = ("tasks", "actors")


def _failed(what: str, exc: Exception, tool: Tool, task_id: int, attempt: int) -> ToolExecutionError:
    """The error for a call Ray could not make: ``what``, then the exception's type and text."""
    return ToolExecutionError(
        f"{what}: {type(exc).__name__}: {exc}",
        tool=tool.name,
        task_id=task_id,
        attempt=attempt,
        error_type=type(exc).__name__,
    )


def _cloudpickle_dumps(value: Any) -> bytes:
    """Pickle ``value`` as Ray does (with cloudpickle)."""
    from ray import cloudpickle

    data: bytes = cloudpickle.dumps(value)  # type: ignore[no-untyped-call]
    return data


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError(
            "RayExecutor needs Ray: install the extra with `pip install 'tomasulo[ray]'`"
        ) from exc
    return ray


class _ToolActor:
    """The Ray async actor behind ``mode="actors"``: it serves many calls on one event loop."""

    def __init__(self, concurrency: int) -> None:
        self._concurrency = concurrency
        self._limiter: anyio.CapacityLimiter | None = None

    async def ready(self) -> int:
        """The actor's process id, once it is up."""
        return os.getpid()

    async def call(self, fn: Callable[..., Any], kwargs: dict[str, Any], is_async: bool) -> Reply:
        """Run one tool call; see :func:`~tomasulo.executors._remote.ainvoke`."""
        if self._limiter is None:  # made on the actor's loop, which __init__ does not run on
            self._limiter = anyio.CapacityLimiter(self._concurrency)
        return await ainvoke(fn, kwargs, is_async=is_async, limiter=self._limiter)


class _Slot:
    """One actor of the pool and the calls waiting on it."""

    __slots__ = ("handle", "inflight")

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.inflight = 0


class RayExecutor(BaseExecutor):
    """Runs each call on Ray; outcomes and errors are the same as with the other executors.

    Two modes:

    - ``mode="tasks"`` (default): each call is a Ray task. Ray schedules it anywhere in the
      cluster, one call per worker at a time; an async tool gets its own ``asyncio.run``.
    - ``mode="actors"``: :meth:`start` creates ``num_actors`` Ray async actors, each running up
      to ``actor_concurrency`` calls at once. A call goes to the actor with the fewest calls in
      flight (round robin among ties). On the actor, async tools are awaited on its event loop,
      so many run side by side in one process; sync tools run on its threads. This suits I/O
      bound tools (HTTP, databases): no process or event loop per call. An actor that dies (a
      tool exited or crashed the process) fails the calls it held with
      :class:`~tomasulo.exceptions.ToolCrashed` and is replaced for later calls.

    In both modes a tool that raises fails with its own exception, a value that cannot be sent
    back with :class:`~tomasulo.exceptions.ToolOutputError`, a dead worker with
    :class:`~tomasulo.exceptions.ToolCrashed`; a cancelled or timed-out call stops waiting at
    once and cancels the Ray task (a task's worker is killed; on an actor the call's coroutine is
    cancelled and a sync tool's thread is abandoned).

    ``address`` joins an existing cluster (``"auto"``, ``"ray://host:10001"``); without it, a
    local instance is started with its own temp dir (and stopped again when the executor stops).
    If Ray is already initialized in this process, that instance is used and left running.

    >>> executor = RayExecutor(num_cpus=2)
    >>> io_executor = RayExecutor(mode="actors", num_actors=2, actor_concurrency=100)

    Args:
        address: the cluster to join; ``None`` starts a local one.
        mode: ``"tasks"`` or ``"actors"``, as above.
        num_cpus: CPUs for a local instance.
        temp_dir: Ray's temp dir for a local instance (a fresh short path by default).
        task_options: passed to ``.options()`` of every task (``num_cpus``, ``resources``...);
            ``mode="tasks"`` only.
        num_actors: actors in the pool; ``mode="actors"`` only.
        actor_concurrency: calls one actor runs at once (its ``max_concurrency``, and its
            thread limit for sync tools); ``mode="actors"`` only.
        actor_options: passed to ``.options()`` of every actor (``num_cpus``, ``resources``,
            ``runtime_env``...); ``mode="actors"`` only.
        init_kwargs: more arguments for ``ray.init``.
        start_timeout: seconds :meth:`start` waits for the actors to come up (a cluster that
            cannot place them would otherwise keep it waiting); ``mode="actors"`` only.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        mode: Literal["tasks", "actors"] = "tasks",
        num_cpus: int | None = None,
        temp_dir: str | None = None,
        task_options: dict[str, Any] | None = None,
        num_actors: int = 1,
        actor_concurrency: int = DEFAULT_ACTOR_CONCURRENCY,
        actor_options: dict[str, Any] | None = None,
        init_kwargs: dict[str, Any] | None = None,
        start_timeout: float = 120.0,
    ) -> None:
        if mode not in _MODES:
            raise ConfigError(f"RayExecutor mode must be 'tasks' or 'actors', got {mode!r}")
        if num_actors < 1:
            raise ConfigError(f"num_actors must be at least 1, got {num_actors!r}")
        if actor_concurrency < 1:
            raise ConfigError(f"actor_concurrency must be at least 1, got {actor_concurrency!r}")
        if mode == "tasks" and actor_options:
            raise ConfigError("actor_options apply to mode='actors' only; pass mode='actors'")
        if mode == "actors" and task_options:
            raise ConfigError("task_options apply to mode='tasks' only; in mode='actors' use actor_options")
        self.address = address
        self.mode = mode
        self.num_cpus = num_cpus
        self.temp_dir = temp_dir
        self.task_options = dict(task_options or {})
        self.num_actors = num_actors
        self.actor_concurrency = actor_concurrency
        self.actor_options = dict(actor_options or {})
        self.init_kwargs = dict(init_kwargs or {})
        if start_timeout <= 0:
            raise ConfigError(f"start_timeout must be positive, got {start_timeout!r}")
        self.start_timeout = start_timeout
        self._owns_ray = False
        self._remote: Any = None
        self._actor_class: Any = None
        self._slots: list[_Slot] | None = None
        self._next = 0

    async def start(self) -> None:
        """Connect to (or start) Ray and, in ``mode="actors"``, start the actors and wait for them.

        Blocking set-up runs on a worker thread.
        """
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
        if self.mode == "tasks":
            remote = ray.remote(max_retries=0)(invoke)
            self._remote = remote.options(**self.task_options) if self.task_options else remote
            return
        self._actor_class = ray.remote(_ToolActor).options(
            max_concurrency=self.actor_concurrency,
            max_restarts=0,
            max_task_retries=0,
            **self.actor_options,
        )
        try:
            self._slots = [self._new_slot() for _ in range(self.num_actors)]
            with anyio.move_on_after(self.start_timeout) as waiting:
                for slot in list(self._slots):
                    await slot.handle.ready.remote()
            if waiting.cancelled_caught:
                raise ConfigError(
                    f"RayExecutor: {self.num_actors} actor(s) did not start within {self.start_timeout:g} s "
                    f"(start_timeout); can the cluster place them with actor_options={self.actor_options!r}?"
                )
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Kill the actors, and shut Ray down if this executor started it."""
        self._remote = None
        slots, self._slots = self._slots, None
        if slots:
            ray = _import_ray()
            for slot in slots:
                with contextlib.suppress(Exception):  # already dead, or Ray is gone
                    ray.kill(slot.handle, no_restart=True)
        if self._owns_ray:
            self._owns_ray = False
            ray = _import_ray()
            await anyio.to_thread.run_sync(ray.shutdown)

    async def call(self, tool: Tool, args: dict[str, Any], *, task_id: int, attempt: int) -> Any:
        """Call the tool as a Ray task or on an actor; see :class:`~tomasulo.executors.Executor`."""
        ray = _import_ray()
        if self._remote is None and self._slots is None:
            raise ConfigError("RayExecutor is not started; use `async with RayExecutor() as ex:`")
        kwargs = prepare_kwargs(tool, args)
        slot: _Slot | None = None
        try:
            if self._slots is None:
                ref = self._remote.remote(tool.fn, kwargs)
            else:
                slot = self._pick(self._slots)
                ref = slot.handle.call.remote(tool.fn, kwargs, tool.is_async)
        except Exception as exc:
            why = unsendable_deps(kwargs, _cloudpickle_dumps, "Ray")
            if why is not None:
                raise ToolExecutionError(
                    why, tool=tool.name, task_id=task_id, attempt=attempt, error_type=type(exc).__name__
                ) from exc
            raise _failed(
                "the tool or its arguments cannot be sent to Ray", exc, tool, task_id, attempt
            ) from exc
        if slot is not None:
            slot.inflight += 1
        try:
            reply = await ref
        except anyio.get_cancelled_exc_class():
            # A task's worker can be killed; an actor's cannot (it serves other calls), so its
            # call's coroutine is cancelled instead.
            ray.cancel(ref, force=slot is None)
            raise
        except (
            ray.exceptions.RayActorError,  # ActorDiedError, ActorUnavailableError
            ray.exceptions.WorkerCrashedError,
            ray.exceptions.NodeDiedError,
            ray.exceptions.ObjectLostError,
            ray.exceptions.LocalRayletDiedError,
        ) as exc:
            if slot is not None:
                self._replace(slot)
            where = "actor" if slot is not None else "worker"
            raise ToolCrashed(
                f"the Ray {where} running the tool died ({type(exc).__name__}); a tool that "
                "exits or crashes its process, or runs out of memory, does this",
                tool=tool.name,
                task_id=task_id,
                attempt=attempt,
            ) from exc
        except ray.exceptions.RayError as exc:
            raise _failed("Ray could not run the tool", exc, tool, task_id, attempt) from exc
        finally:
            if slot is not None:
                slot.inflight -= 1
        return unpack(reply, tool=tool.name, task_id=task_id, attempt=attempt)

    def _new_slot(self) -> _Slot:
        return _Slot(self._actor_class.remote(self.actor_concurrency))

    def _pick(self, slots: list[_Slot]) -> _Slot:
        """The actor with the fewest calls in flight; ties go round robin."""
        n = len(slots)
        start = self._next % n
        best = start
        for k in range(1, n):
            i = (start + k) % n
            if slots[i].inflight < slots[best].inflight:
                best = i
        self._next = best + 1
        return slots[best]

    def _replace(self, dead: _Slot) -> None:
        """Put a fresh actor where ``dead`` was, unless that was done already."""
        slots = self._slots
        if slots is None:
            return
        for i, slot in enumerate(slots):
            if slot is dead:
                slots[i] = self._new_slot()
                with contextlib.suppress(Exception):
                    _import_ray().kill(dead.handle, no_restart=True)
                return
