"""Tools of the service tests: a tenant-only tool, and one that raises."""

from __future__ import annotations

from tomasulo import tool


@tool
def secret_vault(name: str) -> str:
    """Read a secret by name (granted only to the globex tenant)."""
    return f"secret of {name}"


@tool
def boom(reason: str = "on purpose") -> str:
    """Always fails."""
    raise RuntimeError(reason)
