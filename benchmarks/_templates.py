"""Answer-template plans for the benchmark workloads (``_workloads.py``), and their oracle.

The scripted planner writes each question's DAG as usual and ends it with an answer template
instead of ``join()``, so a run answers without a joiner call:

- ``parallelqa``: the final math step holds the answer: ``join("The answer is ${5}.")``;
- ``movie`` and ``hotpotqa``: the answer lists what the searches found,
  ``join("Found: ${1}; ${2}; ...")``, so it waits for every task, as the joiner does.

The movie template stands for the shape only: choosing the most similar film needs judgement a
template cannot give, so a real planner would end such a plan with ``join()``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from _workloads import Item, classify, emitted_at, item_finder


def answer_template(item: Item) -> str:
    """The ``join(...)`` argument (a quoted plan string) for ``item``'s plan."""
    if item.workload == "parallelqa":
        return f'"The answer is ${{{item.steps[-1].id}}}."'
    found = "; ".join(f"${{{s.id}}}" for s in item.steps)
    return f'"Found: {found}"'


def template_plan_text(item: Item) -> str:
    """``item``'s whole plan, ending with its answer template instead of ``join()``."""
    plain = item.plan_text()
    join_line = f"{item.join_id}. join()"
    return plain.replace(join_line, f"{item.join_id}. join({answer_template(item)})")


def make_template_replier(
    items: Sequence[Item], *, templates: bool
) -> Callable[[Mapping[str, Any]], tuple[Item, str, str]]:
    """As ``_workloads.make_replier`` for the streaming mode: plans end with their answer
    template when ``templates``, else with ``join()``; the joiner finishes with the answer."""
    find = item_finder(items)

    def reply(body: Mapping[str, Any]) -> tuple[Item, str, str]:
        kind, user, _start = classify(body)
        item = find(user)
        if kind == "join":
            return item, kind, item.joiner_reply()
        if kind != "plan":
            raise LookupError(f"the template benchmark runs the streaming mode only, not {kind}")
        return item, kind, template_plan_text(item) if templates else item.plan_text()

    return reply


def template_oracle(item: Item, durations: Mapping[int, float], *, ttft: float, tps: float) -> float:
    """The makespan lower bound of a template plan: each task at ``max(line emitted, inputs
    done)``, and the answer once the plan's last line is out and every task is done (no joiner)."""
    text = template_plan_text(item)
    ends = []
    for step in item.steps:
        line = step.line()
        ends.append(text.index(line) + len(line))
    last_line = text.rstrip("\n").rsplit("\n", 1)[-1]
    ends.append(text.index(last_line) + len(last_line))
    times = emitted_at(text, ends, ttft=ttft, tps=tps)
    finish: dict[int, float] = {}
    for step, emitted in zip(item.steps, times, strict=False):
        start = max([emitted, *(finish[d] for d in step.deps)])
        finish[step.id] = start + durations[step.id]
    return max([times[-1], *finish.values()])
