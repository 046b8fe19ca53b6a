"""``mcp:`` entries in workflow files (runs once h-mcp's MCPTools and its test servers are merged)."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest

import tomasulo.tools
from tomasulo.workflows import OrchestratorRunner, load_workflow, run_workflow

pytestmark = pytest.mark.anyio
SERVER = Path(__file__).resolve().parents[1] / "mcp" / "servers" / "basic.py"

needs_mcp = pytest.mark.skipif(
    not hasattr(tomasulo.tools, "MCPTools") or not SERVER.exists(),
    reason="tomasulo.tools.MCPTools and tests/mcp/servers/basic.py are not in this tree yet",
)


@needs_mcp
async def test_an_mcp_entry_over_stdio_runs_a_plan(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(
        f"tools:\n  - mcp: {{command: {sys.executable}, args: [{SERVER}], prefix: srv_}}\n"
        'steps:\n  - plan: |\n      1. srv_echo(text="hi")\n      2. join()\n'
    )
    wf = load_workflow(path)
    assert "srv_echo" in wf.toolset
    with anyio.fail_after(60):
        result = await run_workflow(wf, {}, OrchestratorRunner())
    assert result.ok, result.error
    assert result.steps == {"step1": "hi"}
