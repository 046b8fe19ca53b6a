"""Tools for the end-to-end tests: they count their calls and can be told to fail or wait."""

from __future__ import annotations

from collections import Counter

import anyio

from tomasulo import Interrupt
from tomasulo.tools import Toolset, tool

HEIGHTS = {"everest": 8849.0, "kilimanjaro": 5895.0, "denali": 6190.0}


class Lab:
    """A toolset whose tools record their calls; ``broken`` queries raise, ``gate`` holds calls."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: Counter[str] = Counter()
        self.broken: set[str] = set()
        self.delay = delay
        self.gate: anyio.Event | None = None
        lab = self

        @tool
        async def search(query: str) -> float:
            """Look up a mountain's height in metres.

            Args:
                query: the mountain's name in lower case.
            """
            lab.calls[f"search:{query}"] += 1
            if lab.gate is not None:
                await lab.gate.wait()
            if lab.delay:
                await anyio.sleep(lab.delay)
            if query in lab.broken:
                raise ConnectionError(f"search backend down for {query!r}")
            return HEIGHTS[query]

        @tool
        def math(expression: str) -> float:
            """Divide two numbers written as "a / b"."""
            lab.calls["math"] += 1
            a, _, b = expression.split()
            return round(float(a) / float(b), 4)

        @tool
        def ask_human(question: str) -> str:
            """Stop and ask the user."""
            lab.calls["ask_human"] += 1
            raise Interrupt(f"need the user: {question}")

        self.tools = Toolset([search, math, ask_human])
