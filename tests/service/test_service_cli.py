"""``tomasulo serve``, ``tomasulo db upgrade`` and ``tomasulo keys`` run the way a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def clean_env() -> dict[str, str]:
    """The environment without the machine's TOMASULO_* settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TOMASULO_")}


def tomasulo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tomasulo.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
        env=clean_env(),
    )


class Served:
    """A ``tomasulo serve`` process and what it printed when it started listening."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tomasulo.cli", "serve", "--port", "0", *args],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        assert self.process.stderr is not None
        self.lines: list[str] = []
        for line in self.process.stderr:  # the banner is printed once the socket listens
            self.lines.append(line.rstrip("\n"))
            if line.strip().startswith("admin key:") and "tmsk_" not in line:
                break
            if line.strip().startswith("(shown this once"):
                break
        else:
            raise AssertionError(f"serve did not start (exit {self.process.wait()}): {self.lines}")
        self.url = self.lines[0].split(" on ", 1)[1]
        keys = [ln.split("admin key:", 1)[1].strip() for ln in self.lines if "admin key: tmsk_" in ln]
        self.admin_key = keys[0] if keys else None

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(20)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            assert self.process.stderr is not None
            self.process.stderr.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "data"


def test_serve_prints_url_docs_and_an_admin_key_once(data_dir: Path) -> None:
    first = Served("--data-dir", str(data_dir))
    try:
        assert first.url.startswith("http://127.0.0.1:")
        assert f"API docs:  {first.url}/docs" in "\n".join(first.lines)
        assert first.admin_key is not None
        headers = {"Authorization": f"Bearer {first.admin_key}"}
        tools = httpx.get(f"{first.url}/v1/tools", headers=headers).json()["tools"]
        assert [t["name"] for t in tools] == ["math", "echo", "sleep"]  # the built-ins
        assert httpx.get(f"{first.url}/docs").status_code == 200
    finally:
        assert first.stop() == 0
    assert (data_dir / "tomasulo.db").exists()
    second = Served("--data-dir", str(data_dir))
    try:
        assert second.admin_key is None
        assert "created on an earlier start" in "\n".join(second.lines)
        headers = {"Authorization": f"Bearer {first.admin_key}"}
        assert httpx.get(f"{second.url}/v1/me", headers=headers).json()["role"] == "admin"
    finally:
        second.stop()


def test_serve_with_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "service.yaml"
    config.write_text(
        "data_dir: state\n"
        "tools: [math, 'tests.service.svctools:secret_vault']\n"
        "tenants:\n  acme: {tools: [math]}\n"
    )
    made = tomasulo("keys", "create", "--tenant", "acme", "--config", str(config), "--json")
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)["key"]
    served = Served("--config", str(config))
    try:
        headers = {"Authorization": f"Bearer {key}"}
        names = [t["name"] for t in httpx.get(f"{served.url}/v1/tools", headers=headers).json()["tools"]]
        assert names == ["math"]
    finally:
        served.stop()
    assert (tmp_path / "state" / "tomasulo.db").exists()  # data_dir is relative to the file


def test_a_bad_config_exits_2_with_the_line(tmp_path: Path) -> None:
    config = tmp_path / "service.yaml"
    config.write_text("limits:\n  max_body_bytez: 1\n")
    done = tomasulo("serve", "--config", str(config))
    assert done.returncode == 2
    assert "service.yaml:2:3" in done.stderr and "max_body_bytes" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_bad_database_url_exits_2(tmp_path: Path) -> None:
    done = tomasulo("db", "upgrade", "--database-url", "nonsense")
    assert done.returncode == 2
    assert "not a database URL" in done.stderr


def test_keys_create_list_revoke_and_db_upgrade(data_dir: Path) -> None:
    where = ("--data-dir", str(data_dir))
    upgraded = tomasulo("db", "upgrade", *where)
    assert upgraded.returncode == 0 and "revision 0002" in upgraded.stdout
    made = tomasulo("keys", "create", "--role", "admin", "--name", "ops", *where)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("tmsk_")
    key_id = key.split("_")[1]
    missing = tomasulo("keys", "create", "--tenant", "nobody", *where)
    assert missing.returncode == 2 and "no tenant 'nobody'" in missing.stderr
    revoked = tomasulo("keys", "revoke", key_id, *where)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    listed = tomasulo("keys", "list", *where)
    assert key_id in listed.stdout and "admin" in listed.stdout and "ops" in listed.stdout
    assert "revoked 20" in listed.stdout and key not in listed.stdout
    assert tomasulo("keys", "revoke", "0000000000000000", *where).returncode == 2


def test_a_tool_source_that_cannot_open_exits_1_before_listening(tmp_path: Path) -> None:
    config = tmp_path / "service.yaml"
    config.write_text(f"data_dir: state\ntools:\n  - mcp: {{command: {tmp_path / 'no-such-server'}}}\n")
    done = tomasulo("serve", "--config", str(config), "--port", "0")
    assert done.returncode == 1, done.stderr
    assert "cannot start" in done.stderr
    assert "tomasulo service on" not in done.stderr
    assert "Traceback" not in done.stderr


def test_sigint_ends_running_runs_and_their_streams_then_exits(tmp_path: Path) -> None:
    config = tmp_path / "service.yaml"
    config.write_text(
        "data_dir: state\n"
        "tools: [math, 'tests.service.svctools:hold']\n"
        "limits: {shutdown_grace: 0.5, sse_heartbeat_s: 0.5}\n"
    )
    served = Served("--config", str(config))
    assert served.admin_key is not None
    client = httpx.Client(
        base_url=served.url, headers={"Authorization": f"Bearer {served.admin_key}"}, timeout=30
    )
    try:
        run_id = client.post("/v1/runs", json={"plan": '1. hold(name="never")\n2. join()'}).json()["id"]
        kinds = []
        with client.stream(
            "GET", f"/v1/runs/{run_id}/events", headers={"Accept": "application/x-ndjson"}
        ) as events:
            for line in events.iter_lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                kinds.append(event["kind"])
                if event["kind"] == "task_started":
                    served.process.send_signal(signal.SIGINT)  # the stream goes on until the run ends
                if event["kind"] == "run_finished":
                    assert event["status"] == "cancelled"
        assert kinds[-1] == "run_finished"
    finally:
        client.close()
        code = served.stop()
    assert code == 0
    restarted = Served("--config", str(config))
    try:
        headers = {"Authorization": f"Bearer {served.admin_key}"}
        run = httpx.get(f"{restarted.url}/v1/runs/{run_id}", headers=headers).json()
        assert (run["status"], run["tasks"][0]["status"]) == ("cancelled", "cancelled")
    finally:
        restarted.stop()
