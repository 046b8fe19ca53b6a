"""The live view, seen the way a user sees it: the command under a pseudo-terminal (`script`)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, clean_env

EXAMPLES = ROOT / "examples"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")

pytestmark = pytest.mark.skipif(shutil.which("script") is None, reason="needs `script` (util-linux)")


def on_a_terminal(*args: str) -> tuple[int, str, str]:
    """Run `tomasulo ARGS` on a pty; returns the exit code, the raw bytes as text, and plain text."""
    command = shlex.join([sys.executable, "-m", "tomasulo.cli", *args])
    done = subprocess.run(
        ["script", "-qfec", command, "/dev/null"],
        capture_output=True,
        cwd=ROOT,
        timeout=90,
        check=False,
        env=clean_env(TERM="xterm-256color", COLUMNS="120", LINES="40"),
    )
    raw = done.stdout.decode("utf-8", "replace")
    return done.returncode, raw, ANSI.sub("", raw)


def test_run_shows_a_live_table_with_every_task_and_its_final_state(tmp_path: Path) -> None:
    code, raw, text = on_a_terminal("run", str(EXAMPLES / "flaky.yaml"), "--gantt", str(tmp_path / "g.png"))
    assert code == 0, text[-2000:]
    assert "\x1b[?25l" in raw  # the live display hid the cursor and redrew in place
    assert "[sales] task" not in text  # no plain lines on a terminal
    final = text[text.rindex("flaky-tools") :]  # the last frame of the table
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\s*(\d)\s+\w+\s+\w+.*$", final, re.M)}
    assert set(rows) == {"1", "2", "3", "4", "5"}
    assert "fetch_report" in rows["1"] and "done" in rows["1"] and "succeeded on attempt 3" in rows["1"]
    assert "legacy_lookup" in rows["3"] and "failed" in rows["3"] and "legacy system is down" in rows["3"]
    assert "echo" in rows["5"] and "skipped" in rows["5"]
    assert re.search(r"━+ 5/5 tasks", final)  # the progress bar, full
    assert '"total_sales": 2100' in text
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"


def test_batch_shows_one_row_per_line_and_a_progress_bar(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    code, _, text = on_a_terminal(
        "run",
        str(EXAMPLES / "batch.yaml"),
        "--inputs",
        str(EXAMPLES / "batch_inputs.jsonl"),
        "--out",
        str(out),
    )
    assert code == 0, text[-2000:]
    final = text[[m.start() for m in re.finditer(r"line\s+state\s+elapsed", text)][-1] :]
    for key in ("np", "pk", "tz", "ar", "us", "fr", "jp", "eg"):
        assert re.search(rf"^\s*{key}\s+done\s+\d+\.\d\ds", final, re.M), key
    assert "8/8 lines" in final
    assert len(out.read_text().splitlines()) == 8


def test_a_failing_run_exits_1_on_a_terminal_too() -> None:
    code, _, text = on_a_terminal("run", str(EXAMPLES / "research.yaml"), "-i", "first=Atlantis")
    assert code == 1
    assert "failed" in text and "error: step 'compare' gave no output" in text
