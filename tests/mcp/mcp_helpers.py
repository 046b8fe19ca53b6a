"""Paths of the test servers (tests/mcp has no __init__.py: a package named ``mcp`` would hide the SDK)."""

from __future__ import annotations

from pathlib import Path

SERVERS = Path(__file__).parent / "servers"


def server(name: str) -> list[str]:
    """The argument list that runs tests/mcp/servers/NAME.py."""
    return [str(SERVERS / f"{name}.py")]
