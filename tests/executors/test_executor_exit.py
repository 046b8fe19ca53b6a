"""A sync tool that outlives its timeout does not keep a script or the CLI from exiting.

Each test runs a real Python process whose tool sleeps 60 s under a 0.5 s timeout: the process
must return and exit within seconds (anyio's worker threads are not daemon threads, so before
the fix the interpreter waited the whole minute at exit).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import tomasulo

ROOT = Path(tomasulo.__file__).resolve().parents[1]

SLOW_TOOLS = '''
import time

from tomasulo.tools import tool


@tool(timeout=0.5)
def slow(x: int = 0) -> int:
    """Sleeps a minute."""
    time.sleep(60)
    return x


@tool
def quick(x: int = 0) -> int:
    """Returns at once."""
    return x + 1
'''


def run_python(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOMASULO_")}
    env["PYTHONPATH"] = os.pathsep.join([str(cwd), str(ROOT)])
    t0 = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=40, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the process did not exit: an abandoned tool thread kept it alive")
    return done, time.monotonic() - t0


def test_a_library_script_returns_and_exits_while_an_abandoned_sync_call_runs(tmp_path: Path) -> None:
    (tmp_path / "slowtools.py").write_text(SLOW_TOOLS)
    script = textwrap.dedent(
        """
        import anyio

        from slowtools import quick, slow
        from tomasulo.dispatcher import Dispatcher
        from tomasulo.grammar import Task
        from tomasulo.tools import Toolset


        async def main() -> None:
            tasks = [Task(1, "slow"), Task(2, "quick", (1,))]
            out = await Dispatcher.run_plan(Toolset([slow, quick]), tasks)
            print(out[1].status, out[1].error_type, out[2].value)


        anyio.run(main)
        print("returned")
        """
    )
    (tmp_path / "script.py").write_text(script)
    done, elapsed = run_python(["script.py"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["failed ToolTimeout 2", "returned"]
    assert elapsed < 30
    # the abandoned call is named, when it is abandoned and again at exit
    assert "task 1 (slow) was cancelled while its sync function ran" in done.stderr
    assert "exiting with 1 abandoned sync tool call(s) still running" in done.stderr


def test_the_cli_exits_on_time_while_an_abandoned_sync_call_runs(tmp_path: Path) -> None:
    (tmp_path / "slowtools.py").write_text(SLOW_TOOLS)
    (tmp_path / "wf.yaml").write_text(
        textwrap.dedent(
            """
            name: slow
            tools:
              - import: slowtools:slow
            steps:
              - id: only
                output: $1
                plan: |
                  1. slow(1)
                  2. join()
            outputs:
              result: only
            """
        )
    )
    done, elapsed = run_python(["-m", "tomasulo.cli", "run", "wf.yaml"], tmp_path)
    assert done.returncode == 1, done.stderr  # the run failed: its only task timed out
    assert "timed out after 0.5 s" in done.stderr
    assert elapsed < 30
