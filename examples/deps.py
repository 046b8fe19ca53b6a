"""Tools that take a RunContext: deps per Orchestrator and per run (docs/tools.md)."""

from dataclasses import dataclass

import anyio

from tomasulo import Orchestrator, RunContext, tool


@dataclass
class Deps:
    greeting: str
    calls: int = 0


@tool
async def greet(ctx: RunContext[Deps], name: str) -> str:
    """Greet someone by name."""
    ctx.deps.calls += 1
    ctx.logger.info("greeting", name=name)
    return f"{ctx.deps.greeting}, {name} (task {ctx.task_id})"


@tool
def shout(text: str, ctx: RunContext[Deps]) -> str:
    """Shout a text."""
    ctx.deps.calls += 1
    return text.upper() + "!"


async def main() -> None:
    deps = Deps(greeting="Hello")
    orch = Orchestrator([greet, shout], deps=deps)
    print(greet.signature())  # greet(name: string): no ctx
    result = await orch.execute_plan('1. greet("Ada")\n2. shout($1)\n3. join()')
    print(result.answer)  # HELLO, ADA (TASK 1)!
    assert deps.calls == 2
    other = await orch.execute_plan('1. greet("Bo")\n2. join()', deps=Deps(greeting="Hi"))
    print(other.answer)  # Hi, Bo (task 1)


if __name__ == "__main__":
    anyio.run(main)
