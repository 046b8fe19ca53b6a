"""What the prompt layout saves on servers with a prefix cache: the replanner's and the joiner's
modelled time to first token, before and after issue 16, with and without the cache.

Run: ``.venv/bin/python benchmarks/prompt_cache_bench.py`` (``--n 10`` questions per workload).

For every question of the three workloads (``_workloads.py``) it builds the prompts a run sends
(the first plan; a replan after the first task failed; the joiner) with the library's prompt
functions, and feeds them, question after question, through the latency model of each
preset (:data:`tomasulo.testing.LATENCY_PRESETS`: base TTFT plus the uncached tokens at the
prefill rate, with the preset's :class:`~tomasulo.testing.PrefixCache`, or none for
``-nocache``). The prompt is what SimulatedLLM prefills (``RecordedRequest.prompt``: the
messages' contents joined by newlines). Three layouts:

- ``before``: the prompts before issue 16 (kept below as they were): the next task number in
  the planner's system text; the joiner with a short system text of its own;
- ``shared``: the planner's system text and the question are the start of every call (a
  replan and the joiner add the plan, the results and what is asked after them);
- ``compact joiner``: the shared replan, and the joiner with its own short system text
  (``joiner_messages`` without ``prefix``).

No run happens: the figures are the latency model's, so they are exact and repeatable.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _workloads import WORKLOADS, Item, default_datasets, load_items, make_tools, result_of  # noqa: E402

from tomasulo.grammar import parse_plan  # noqa: E402
from tomasulo.planner import (  # noqa: E402
    PlanContext,
    TaskReport,
    joiner_messages,
    planner_messages,
    render_results,
    tool_catalog,
)
from tomasulo.testing import LATENCY_PRESETS, Latency, PrefixCache, split_tokens  # noqa: E402
from tomasulo.tools import Toolset  # noqa: E402

Messages = list[dict[str, str]]
FAILED = "task 1 (search) failed: ConnectionError: search backend down"


# -- the prompts before issue 16, as they were (tomasulo/planner/_prompts.py at 43bb726) ---------

_BEFORE_RULES = """\
Write the plan in this exact format:
- One task per line: `N. tool(arg, key=value)`. Task numbers start at {start_id} and rise by one.
- Argument values are JSON literals: "double-quoted strings", numbers, true, false, null, [arrays],
  {{"objects": 1}}. Positional arguments come first, in the order the tool lists them.
- `$k` passes task k's result as a typed value; `$k.field` and `$k[0]` select a part of it.
  "${{k}}" inside a string inserts task k's result as text. Refer only to tasks with smaller numbers.
- Tasks that do not need each other's results must not refer to each other: they run in parallel.
- A line `Thought: ...` before a task may say why it is needed.
- End the plan with `N. join()` and write nothing after it.
- Use at most {max_tasks} tasks."""
_BEFORE_EXAMPLE = """\
Example (with tools search(query) and math(expression)):
Question: How many times taller is Mount Everest than Mount Kilimanjaro?
Thought: The two heights are independent.
1. search(query="Mount Everest height in meters")
2. search(query="Mount Kilimanjaro height in meters")
Thought: Divide once both are known.
3. math(expression="${1} / ${2}")
4. join()"""


def before_planner(tools: Toolset, ctx: PlanContext) -> Messages:
    rules = _BEFORE_RULES.format(start_id=ctx.start_id, max_tasks=ctx.max_tasks)
    system = (
        "You are the planner of a parallel tool-calling system. Given a question, write a plan of "
        "tool calls that answers it with as much parallelism as possible.\n\n"
        f"Tools:\n{tool_catalog(tools)}\n\n{rules}\n\n{_BEFORE_EXAMPLE}"
    )
    user = [f"Question: {ctx.question}"]
    if ctx.plans:
        user.append("Plan so far:\n" + "\n".join(p.rstrip() for p in ctx.plans))
    if ctx.reports:
        user.append("Results so far:\n" + render_results(ctx.reports))
    if ctx.interrupts:
        user.append("Interrupted: " + "; ".join(ctx.interrupts))
    if ctx.plans or ctx.reports:
        user.append(
            f"Continue the plan from task {ctx.start_id}. Earlier results stay available as $k; "
            "do not repeat tasks that succeeded."
        )
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n\n".join(user)}]


# -- the prompts of one question -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Prompts:
    plan: Messages
    replan: Messages
    join: Messages


def prompts(item: Item, tools: Toolset, layout: str) -> Prompts:
    plan = parse_plan(item.plan_text(), tools)
    results: dict[int, Any] = {}
    reports = []
    for step, task in zip(item.steps, plan.tasks, strict=True):
        results[step.id] = result_of(step, results)
        reports.append(TaskReport(task, "succeeded", results[step.id]))
    failed = [TaskReport(reports[0].task, "failed", message=FAILED), *reports[1:]]
    first = PlanContext(item.question)
    again = PlanContext(
        item.question, start_id=item.join_id + 1, plans=[plan.to_text()], reports=failed, interrupts=[FAILED]
    )
    if layout == "before":
        return Prompts(
            before_planner(tools, first),
            before_planner(tools, again),
            joiner_messages(item.question, plan, reports),
        )
    planned = planner_messages(tools, first, output="text")
    prefix = planned if layout == "shared" else None
    return Prompts(
        planned,
        planner_messages(tools, again, output="text"),
        joiner_messages(item.question, plan, reports, prefix=prefix),
    )


def ttft(latency: Latency, cache: PrefixCache | None, messages: Messages) -> tuple[float, int, int]:
    """The modelled time to first token of ``messages``, their tokens and the cached ones."""
    tokens = split_tokens("\n".join(m["content"] for m in messages))
    cached = cache.lookup(tokens) if cache is not None else 0
    return latency.ttft + latency.prefill_seconds(len(tokens) - cached), len(tokens), cached


def measure(
    items: Sequence[Item], tools: Toolset, latency: Latency, layout: str
) -> dict[str, dict[str, float]]:
    cache = (
        PrefixCache(latency.prefix_cache_tokens, latency.cache_block_tokens, latency.cache_min_tokens)
        if latency.prefix_cache_tokens
        else None
    )
    got: dict[str, list[tuple[float, int, int]]] = {"plan": [], "replan": [], "join": []}
    for item in items:  # a server answering the questions one after another
        p = prompts(item, tools, layout)
        for kind, messages in (("plan", p.plan), ("replan", p.replan), ("join", p.join)):
            got[kind].append(ttft(latency, cache, messages))
    return {
        kind: {
            "ttft": statistics.fmean(x[0] for x in rows),
            "tokens": statistics.fmean(x[1] for x in rows),
            "cached": statistics.fmean(x[2] for x in rows),
        }
        for kind, rows in got.items()
    }


def show(r: dict[str, float]) -> str:
    return f"{r['ttft'] * 1000:7.1f} ms {r['tokens']:5.0f}/{r['cached']:5.0f}"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10, help="questions per workload (default 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--datasets", type=Path, default=default_datasets(ROOT))
    args = p.parse_args(argv)
    tools = make_tools(median=1.0, sigma=0.0, seed=args.seed)
    layouts = ("before", "shared", "compact joiner")
    presets: dict[str, Latency] = {}
    for name, lat in LATENCY_PRESETS.items():
        presets[name] = lat
        presets[f"{name}-nocache"] = dataclasses.replace(lat, prefix_cache_tokens=0)
    print("mean time to first token, ms; prompt tokens / cached tokens, per call")
    cut_goal: list[tuple[float, str]] = []
    for workload in WORKLOADS:
        items = load_items(workload, args.n, datasets=args.datasets, seed=args.seed)
        print(f"\n{workload} ({len(items)} questions)")
        print(f"{'preset':<26}{'layout':<16}{'replanner':>24}{'joiner':>24}")
        for name, lat in presets.items():
            figures = {layout: measure(items, tools, lat, layout) for layout in layouts}
            for layout in layouts:
                f = figures[layout]
                print(f"{name:<26}{layout:<16}{show(f['replan']):>24}{show(f['join']):>24}")
            if lat.prefix_cache_tokens:
                for kind in ("replan", "join"):
                    cut = 1 - figures["shared"][kind]["ttft"] / figures["before"][kind]["ttft"]
                    cut_goal.append(
                        (cut, f"{workload}/{name}/{'replanner' if kind == 'replan' else 'joiner'}")
                    )
    print("\ncut in time to first token, shared layout against the layout before, with the cache:")
    for cut, where in cut_goal:
        print(f"  {where}: {cut:+.0%}")
    reached = [c for c in cut_goal if "hosted" not in c[1]]  # the hosted cache starts at 1,024 tokens
    worst = min(reached)
    verdict = "met   " if worst[0] >= 0.5 else "MISSED"
    print(f"\ngoal:\n  {verdict}  the replanner's and joiner's TTFT cut >= 50% under a caching preset: "
          f"worst {worst[0]:+.0%} ({worst[1]}), best {max(reached)[0]:+.0%} ({max(reached)[1]})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
