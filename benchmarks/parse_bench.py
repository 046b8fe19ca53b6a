"""Streaming-parse cost: microseconds per token fed and per task, for plans of 10, 100 and 1,000 tasks.

A "token" is a chunk of about four characters, the size a model streams. Plans are parsed with
validation against a toolset (literal types checked), as the planner does.

    python benchmarks/parse_bench.py [--repeat 5] [--chunk 4]

Goal (issue 2): at most 20 µs per token, so parsing never sits on the critical path of a model
streaming 100+ tokens per second.
"""

from __future__ import annotations

import argparse
import statistics
import time

from tomasulo.grammar import JsonPlanStream, PlanStream, Task
from tomasulo.tools import Tool, Toolset

GOAL_US_PER_TOKEN = 20.0


def bench_tools() -> Toolset:
    return Toolset(
        [
            Tool(
                name="search",
                input_schema={
                    "type": "object",
                    "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
                    "required": ["query"],
                },
            ),
            Tool(
                name="math",
                input_schema={
                    "type": "object",
                    "properties": {
                        "expression": {"type": "string"},
                        "context": {"type": "array", "items": {"type": "number"}},
                    },
                    "required": ["expression"],
                },
            ),
        ]
    )


def plan_text(n: int) -> str:
    """A ParallelQA-shaped plan: searches fanned out, math steps that combine earlier results."""
    lines = []
    for i in range(1, n + 1):
        if i % 3 != 0:
            lines.append(f"Thought: look up entity {i}")
            lines.append(f'{i}. search(query="population of city number {i} in 2020", limit=5)')
        else:
            expr = f"${{{i - 1}}} / ${{{i - 2}.value}} * 100"
            lines.append(f'{i}. math(expression="{expr}", context=[${i - 1}, ${i - 2}])')
    lines.append(f"{n + 1}. join()")
    return "\n".join(lines) + "\n"


def json_plan_text(tasks: list[Task]) -> str:
    import json

    from tomasulo.grammar import Ref, Template

    def enc(v: object) -> object:
        if isinstance(v, Ref):
            return {"$ref": v.task_id}
        if isinstance(v, Template):
            return v.to_text()[1:-1]
        if isinstance(v, list):
            return [enc(x) for x in v]
        return v

    items = [{"id": t.id, "tool": t.tool, "args": {k: enc(v) for k, v in t.kwargs.items()}} for t in tasks]
    return json.dumps({"tasks": items})


def run(text: str, chunk: int, tools: Toolset, json_dialect: bool = False) -> tuple[float, int, int]:
    chunks = [text[i : i + chunk] for i in range(0, len(text), chunk)]
    stream: PlanStream | JsonPlanStream = JsonPlanStream(tools) if json_dialect else PlanStream(tools)
    n = 0
    t0 = time.perf_counter()
    for c in chunks:
        n += len(stream.feed(c))
    n += len(stream.close())
    return time.perf_counter() - t0, len(chunks), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--chunk", type=int, default=4, help="characters per fed chunk (a token)")
    args = ap.parse_args()
    tools = bench_tools()
    print(
        f"streaming parse, chunks of {args.chunk} characters, validated against tools, best of {args.repeat}"
    )
    print(f"{'dialect':<8}{'tasks':>7}{'tokens':>9}{'µs/token':>11}{'µs/task':>10}{'total ms':>10}")
    worst = 0.0
    for dialect in ("text", "json"):
        for n in (10, 100, 1000):
            text = plan_text(n)
            if dialect == "json":
                from tomasulo.grammar import parse_plan

                text = json_plan_text(list(parse_plan(text).tasks))
            run(text, args.chunk, tools, dialect == "json")  # warm-up: caches, compiled validators
            times = []
            for _ in range(args.repeat):
                dt, tokens, tasks = run(text, args.chunk, tools, dialect == "json")
                assert tasks == n, (tasks, n)
                times.append(dt)
            best = min(times)
            per_token = best / tokens * 1e6
            worst = max(worst, per_token)
            print(
                f"{dialect:<8}{n:>7}{tokens:>9}{per_token:>11.2f}{best / n * 1e6:>10.1f}{best * 1e3:>10.2f}"
                f"   (median {statistics.median(times) / tokens * 1e6:.2f} µs/token)"
            )
    verdict = "meets" if worst <= GOAL_US_PER_TOKEN else "MISSES"
    print(f"worst µs/token {worst:.2f}: {verdict} the goal of {GOAL_US_PER_TOKEN:.0f} µs/token")


if __name__ == "__main__":
    main()
