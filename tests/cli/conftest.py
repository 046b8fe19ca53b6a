"""Running the `tomasulo` command the way a user does: a subprocess, with a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any TOMASULO_* settings of the machine running the tests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOMASULO_")}
    env.update(extra)
    return env


def tomasulo(
    *args: str, stdin: str | None = None, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tomasulo.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=False,
        env=env if env is not None else clean_env(),
    )


@pytest.fixture
def simulated_llm(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Start `tomasulo simulate-llm --script FILE` on a free port; returns its base URL."""
    servers: list[subprocess.Popen[str]] = []

    def start(script: str) -> str:
        path = tmp_path / f"script{len(servers)}.txt"
        path.write_text(script)
        server = subprocess.Popen(
            [sys.executable, "-m", "tomasulo.cli", "simulate-llm", "--port", "0", "--script", str(path)],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        servers.append(server)
        assert server.stderr is not None
        for line in server.stderr:  # the first line names the URL once the socket listens
            if "serving on" in line:
                return line.split("serving on", 1)[1].strip()
        raise AssertionError(f"simulate-llm did not start (exit code {server.wait()})")

    yield start
    for server in servers:
        server.terminate()
        server.wait(timeout=10)
        if server.stderr is not None:
            server.stderr.close()


def tomasulo_many(*calls: tuple[str, ...], cwd: Path = ROOT) -> list[subprocess.CompletedProcess[str]]:
    """Run several commands at once (each a tuple of arguments); results in the same order."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tomasulo.cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=cwd,
            env=clean_env(),
        )
        for args in calls
    ]
    done = []
    for args, proc in zip(calls, procs, strict=True):
        out, err = proc.communicate(timeout=90)
        done.append(subprocess.CompletedProcess(list(args), proc.returncode, out, err))
    return done


def result_of(stdout: str) -> str:
    """The result at the end of a human-mode run's standard output, after its progress lines and
    report (a JSON value printed with indent=2 starts with a line that is only ``{`` or ``[``)."""
    lines = stdout.rstrip("\n").splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i] in ("{", "["):
            return "\n".join(lines[i:])
    return lines[-1] if lines else ""
