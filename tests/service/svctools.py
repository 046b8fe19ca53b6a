"""Tools of the service tests: a tenant-only tool, one that raises, and one that waits for the test."""

from __future__ import annotations

import threading
from collections import defaultdict

from tomasulo import tool


@tool
def secret_vault(name: str) -> str:
    """Read a secret by name (granted only to the globex tenant)."""
    return f"secret of {name}"


@tool
def boom(reason: str = "on purpose") -> str:
    """Always fails."""
    raise RuntimeError(reason)


#: Gates the ``hold`` tool waits on, by name; a test opens one with ``GATES[name].set()``.
GATES: dict[str, threading.Event] = defaultdict(threading.Event)


@tool
def hold(name: str) -> str:
    """Wait until the test opens the gate ``name`` (at most 30 s), then return the name."""
    if not GATES[name].wait(30):
        raise TimeoutError(f"gate {name!r} was never opened")
    return name
