"""The offline demo: parse a streamed plan, validate it against tools, show its shape.

Run with ``make demo``. No LLM server and no network are needed.
"""

from __future__ import annotations

from typing import Literal

from rich.console import Console
from rich.table import Table

from tomasulo.grammar import PlanStream, value_to_text
from tomasulo.tools import Toolset, tool


@tool(timeout=5, retries=2, idempotent=True)
async def search(query: str, limit: int = 3) -> list[str]:
    """Search an encyclopedia.

    Args:
        query: what to look for.
        limit: how many passages to return.
    """
    return [f"passage about {query}"] * limit


@tool
def math(expression: str, context: list[float] | None = None) -> float:
    """Evaluate an arithmetic expression.

    Args:
        expression: the expression, e.g. "2 * 3".
        context: numbers the expression may use.
    """
    raise NotImplementedError  # the demo only plans


@tool(name="get-weather")
def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> dict[str, float]:
    """Current weather for a city.

    Args:
        city: the city's name.
        unit: temperature unit.
    """
    raise NotImplementedError


PLAN = """Thought: The two heights are independent, so look both up at once.
1. search(query="Mount Everest height in meters")
2. search(query="Mount Kilimanjaro height in meters")
3. get-weather(city="Kathmandu", unit="celsius")
Thought: Compare the heights once both are known.
4. math(expression="${1} / ${2}", context=[$1[0], $2[0]])
5. math(expression="${4} * 100")
6. join()
"""

DURATIONS = {"search": 0.5, "get-weather": 0.3, "math": 0.1}


def main() -> None:
    console = Console()
    tools = Toolset([search, math, get_weather])
    console.rule("[bold]tomasulo demo: a plan streamed in 4-character chunks")
    stream = PlanStream(tools)
    for i in range(0, len(PLAN), 4):
        chunk = PLAN[i : i + 4]
        for task in stream.feed(chunk):
            console.print(
                f"  chars {i + len(chunk):>4}: task {task.id} [cyan]{task.tool}[/] ready to dispatch"
            )
    stream.close()
    plan = stream.plan

    table = Table(title="Parsed and validated plan")
    for col in ("id", "tool", "arguments", "needs", "thought"):
        table.add_column(col)
    for task in plan:
        args = task.bind(tools[task.tool].param_names)
        shown = ", ".join(f"{k}={value_to_text(v)}" for k, v in args.items())
        needs = ", ".join(f"${d}" for d in sorted(task.deps)) or "-"
        table.add_row(str(task.id), task.tool, shown, needs, task.thought or "")
    console.print(table)
    console.print(f"join: task {plan.join_id}")
    console.print(f"waves (tasks that can run together): {plan.generations()}")
    path, length = plan.critical_path(lambda t: DURATIONS[t.tool])
    total = sum(DURATIONS[t.tool] for t in plan)
    console.print(
        f"critical path {' -> '.join(map(str, path))}: {length:.1f} s "
        f"(run one after another: {total:.1f} s, {total / length:.1f}x longer)"
    )
    console.print("[dim]tools, as the planner sees them:[/]")
    for t in tools:
        console.print(f"  {t.signature()}  [dim]{t.description.splitlines()[0] if t.description else ''}[/]")


if __name__ == "__main__":
    main()
