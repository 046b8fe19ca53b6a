"""The order a whole plan is submitted in, and the rank of each task: critical path first."""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Mapping

from ..grammar import JOIN, Task

__all__ = ["plan_order"]


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
