"""Which ready task starts next: the ready queue, tool slots and lanes, and ranking.

:class:`ReadyQueue` holds the tasks whose inputs exist. It hands them out ranked tasks first
(the highest rank first, then by id), then unranked ones in the order they became ready; a task
of a tool with a ``max_concurrency`` is handed out only with one of its tool's slots, and a
``sequential`` tool's calls become ready one at a time, in plan order (its lane).
:func:`plan_order` gives the order a whole plan is submitted in, and each task's rank: the
critical path first.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Container, Iterable, Mapping

from anyio import CapacityLimiter, WouldBlock

from ..grammar import JOIN, Task
from ._journal import READY, RunJournal
from ._node import TaskNode

__all__ = ["ReadyQueue", "plan_order"]


class ReadyQueue:
    """The run's ready tasks, with the tool slots and lanes that hold some of them back.

    >>> # queue.lane(node) at submit; queue.offer(node, now) once its inputs exist;
    >>> # node = queue.take() for a worker; queue.release(node) when its call ends;
    >>> # queue.lane_done(node) when a sequential task ends.
    """

    __slots__ = ("_journal", "_lanes", "_limiters", "_ranked", "_ready", "_tool_waiting", "size")

    def __init__(self, journal: RunJournal) -> None:
        self._journal = journal  # where a task's TaskReady event goes
        self._ready: deque[TaskNode] = deque()  # ready tasks without a rank, in order
        self._ranked: list[tuple[int, int, TaskNode]] = []  # ranked ones: a heap, highest first
        self._limiters: dict[str, CapacityLimiter] = {}
        self._tool_waiting: dict[str, deque[TaskNode]] = {}  # ready, but their tool is full
        self._lanes: dict[str, deque[TaskNode]] = {}  # a sequential tool's unfinished calls
        #: Tasks in the queue (some may have ended while they waited: :meth:`take` drops them).
        self.size = 0

    def lane(self, node: TaskNode) -> None:
        """Put a task of a ``sequential`` tool in its tool's lane (at submit, in plan order)."""
        self._lanes.setdefault(node.name, deque()).append(node)

    def offer(self, node: TaskNode, now: float) -> None:
        """The task's inputs exist (since ``now``): queue it, unless an earlier call of its
        sequential tool has not ended (then :meth:`lane_done` says when to offer it again)."""
        node.data_ready = True
        if node.info.sequential and self._lanes[node.name][0] is not node:
            return
        node.queued = True
        node.ready_at = now
        self._journal.task(READY, node)
        self.size += 1
        if node.rank:
            heapq.heappush(self._ranked, (-node.rank, node.tid, node))
        else:
            self._ready.append(node)

    def lane_done(self, node: TaskNode) -> TaskNode | None:
        """A sequential task ended: the lane's next task, if its inputs exist and it can be
        offered now (the caller offers it)."""
        lane = self._lanes[node.name]
        was_head = bool(lane) and lane[0] is node
        lane.remove(node)
        if was_head and lane:
            head = lane[0]
            if head.data_ready and not head.queued and head.outcome is None:
                return head
        return None

    def take(self) -> TaskNode | None:
        """The next ready task that may start now (taking its tool slot), or ``None``."""
        ready = self._ready
        ranked = self._ranked
        while ranked or ready:
            node = heapq.heappop(ranked)[2] if ranked else ready.popleft()
            self.size -= 1
            if node.outcome is not None:
                continue  # cancelled or skipped while it waited
            if node.info.limited:
                limiter = self._limiters.get(node.name)
                if limiter is None:
                    limit = node.info.policy.max_concurrency
                    assert limit is not None
                    limiter = self._limiters[node.name] = CapacityLimiter(limit)
                try:
                    limiter.acquire_on_behalf_of_nowait(node)
                except WouldBlock:
                    self._tool_waiting.setdefault(node.name, deque()).append(node)
                    continue
            return node
        return None

    def release(self, node: TaskNode) -> None:
        """A call of a limited tool ended: free its slot; the next task waiting for one goes
        back to the front of the queue."""
        limiter = self._limiters.get(node.name)
        if limiter is None:
            return
        limiter.release_on_behalf_of(node)
        waiting = self._tool_waiting.get(node.name)
        while waiting:
            nxt = waiting.popleft()
            if nxt.outcome is None:
                self.size += 1
                if nxt.rank:
                    heapq.heappush(self._ranked, (-nxt.rank, nxt.tid, nxt))
                else:
                    self._ready.appendleft(nxt)
                break


def _in_plan_order(batch: list[Task]) -> list[tuple[Task, int]]:
    """The batch as it is, every task ranked 1: for a batch too small to order, or one that
    ``submit`` would reject somewhere (so the error comes at the same task)."""
    return [(t, 1) for t in batch]


def plan_order(
    tasks: Iterable[Task],
    submitted: Container[int],
    is_sequential: Callable[[str], bool | None],
    chains: Mapping[int, int] | None = None,
) -> list[tuple[Task, int]]:
    """The batch in submit order, each task with its rank (at least 1).

    Order: the tasks that are ready at once first, those on the longest chains first; then the
    rest level by level (each after its inputs), or in plan order when a ``sequential`` tool is
    in the batch. A task of a ``sequential`` tool moves ahead only if it is its tool's first call
    in the batch, so each lane still fills in plan order. ``is_sequential(name)`` is ``None``
    for a tool the dispatcher would refuse.

    A task's rank is the number of tasks on the longest chain of the batch through it, so the
    tasks of the critical path (counting tasks: durations are not known in advance) have the
    highest. ``chains`` gives, for some tasks already submitted, the number of tasks on the
    longest chain ending at each (a plan's first task, started before the rest was ordered), so
    the chains through them are counted whole.

    Returns plan order unchanged, every rank 1, when some task would be rejected (a repeated id,
    a reference to a later or unknown task, a tool that cannot run), so the error comes at the
    same task as in plan order.
    """
    batch = [t for t in tasks if t.tool != JOIN]
    if len(batch) < 2:
        return _in_plan_order(batch)
    index: dict[int, int] = {}  # position in the batch, by id
    depth: list[int] = []  # tasks on the longest chain of the batch ending just before each
    first: list[int] = []  # ready at once, so they may move ahead
    sequential: dict[str, bool] = {}
    seen_lanes: set[str] = set()
    for i, task in enumerate(batch):
        tid = task.id
        if tid in index or tid in submitted:
            return _in_plan_order(batch)
        d = 0
        deps = task.deps
        for dep in deps:
            if dep >= tid:
                return _in_plan_order(batch)
            j = index.get(dep)
            if j is not None:
                if depth[j] >= d:
                    d = depth[j] + 1
            elif dep not in submitted:
                return _in_plan_order(batch)
            elif chains and chains.get(dep, 0) > d:
                d = chains[dep]
        index[tid] = i
        depth.append(d)
        name = task.tool
        seq = sequential.get(name)
        if seq is None:
            known = is_sequential(name)
            if known is None:
                return _in_plan_order(batch)
            seq = sequential[name] = known
        if seq:
            if name in seen_lanes:
                continue
            seen_lanes.add(name)
        if not deps:
            first.append(i)
    n = len(batch)
    height = [1] * n  # tasks on the longest chain starting at each
    for i in range(n - 1, -1, -1):
        deps = batch[i].deps
        if deps:
            up = height[i] + 1
            for dep in deps:
                j = index.get(dep)  # None: submitted before this batch
                if j is not None and height[j] < up:
                    height[j] = up
    # One stable sort: the tasks ready at once first, those heading the longest chains first;
    # then the rest level by level (each after its inputs: inputs sit on an earlier level), or
    # in plan order when a sequential tool's lane must fill in plan order.
    key = [0] * n if seen_lanes else depth[:]
    for i in first:
        key[i] = -height[i]
    order = sorted(range(n), key=key.__getitem__) if first else range(n)
    return [(batch[i], depth[i] + height[i]) for i in order]
