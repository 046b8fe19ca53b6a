"""The order a whole plan is submitted in: the heads of the longest chains first."""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable

from ..grammar import JOIN, Task
from ._resolve import task_deps

__all__ = ["plan_order"]


def plan_order(
    tasks: Iterable[Task], submitted: Container[int], is_sequential: Callable[[str], bool]
) -> list[Task]:
    """The batch in submit order: ready tasks by chain length first, then plan order.

    A task of a ``sequential`` tool moves ahead only if it is its tool's first call in the
    batch, so each lane still fills in plan order. Returns plan order unchanged when some
    task would be rejected (a repeated id, a reference to a later or unknown task).
    """
    batch = [t for t in tasks if t.tool != JOIN]
    if len(batch) < 2:
        return batch
    index: dict[int, int] = {}
    inputs: list[list[int]] = []  # for each task: the positions in the batch of its inputs
    first: list[int] = []  # ready at once, so they may move ahead
    sequential: dict[str, bool] = {}
    seen_lanes: set[str] = set()
    for i, task in enumerate(batch):
        tid = task.id
        if tid in index or tid in submitted:
            return batch
        here: list[int] = []
        has_deps = False
        for dep in task_deps(task):
            has_deps = True
            if dep >= tid:
                return batch
            j = index.get(dep)
            if j is not None:
                here.append(j)
            elif dep not in submitted:
                return batch
        index[tid] = i
        inputs.append(here)
        name = task.tool
        seq = sequential.get(name)
        if seq is None:
            seq = sequential[name] = is_sequential(name)
        if seq:
            if name in seen_lanes:
                continue
            seen_lanes.add(name)
        if not has_deps:
            first.append(i)
    if not first:
        return batch
    height = [1] * len(batch)
    for i in range(len(batch) - 1, -1, -1):
        here = inputs[i]
        if here:
            up = height[i] + 1
            for j in here:
                if height[j] < up:
                    height[j] = up
    first.sort(key=lambda i: -height[i])  # stable: plan order among equals
    moved = set(first)
    return [batch[i] for i in first] + [t for i, t in enumerate(batch) if i not in moved]
