"""`tomasulo remote ...` as a subprocess against the real service on loopback (SimulatedLLM)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import clean_env, tomasulo
from service.conftest import LiveService, fresh_database
from service.svctools import GATES
from service.test_service_runs import sim_url, start_service

from tomasulo.client import Client

__all__ = ["sim_url"]  # a fixture, found here by pytest


@pytest.fixture(scope="module")
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, sim_url: str
) -> Iterator[LiveService]:
    url = fresh_database(request, "sqlite", tmp_path_factory.mktemp("db"))
    service, stop = start_service(url, sim_url)
    try:
        yield service
    finally:
        stop()
        service.db.close()


def remote(live: LiveService, *args: str, key_env: str = "TOMASULO_API_KEY") -> tuple[int, str, str]:
    env = clean_env(TOMASULO_URL=live.url, **{key_env: live.keys["acme"]})
    done = tomasulo("remote", *args, env=env)
    return done.returncode, done.stdout, done.stderr


def test_ask_follows_the_run_and_prints_the_answer(live: LiveService) -> None:
    code, out, err = remote(live, "ask", "add two numbers")
    assert code == 0, err
    assert "task 1 math: done" in out
    assert "add two numbers -> " in out.splitlines()[-1]
    assert "finished" in out


def test_ask_json_prints_only_the_run(live: LiveService) -> None:
    code, out, _ = remote(live, "ask", "add two numbers", "--json", "-m", "team=cli")
    assert code == 0
    run = json.loads(out)
    assert (run["status"], run["metadata"]) == ("finished", {"team": "cli"})


def test_run_a_plan_file_then_read_its_events(live: LiveService, tmp_path: Path) -> None:
    plan = tmp_path / "plan.txt"
    plan.write_text('1. math(expression="6 * 7")\n2. join()\n')
    code, out, err = remote(live, "run", str(plan))
    assert code == 0, err
    assert "task 1 math: done" in out
    code, out, _ = remote(live, "run", str(plan), "--no-follow")
    run_id = out.strip()
    assert code == 0 and run_id
    code, out, err = remote(live, "events", run_id, "--after", "2", "--json")
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["seq"] for e in events] == list(range(3, len(events) + 3))
    assert events[-1]["kind"] == "run_finished"


def test_cancel_and_interrupt(live: LiveService) -> None:
    held, talk = uuid.uuid4().hex[:8], uuid.uuid4().hex[:8]
    with Client(live.url, api_key=live.keys["acme"]) as client:
        run = client.create_run(query=f"hold {held}")
        code, out, _ = remote(live, "cancel", run.id)
        assert code == 0 and out.startswith(f"run {run.id}: ")
        assert client.wait(run.id, timeout=20).status == "cancelled"
        GATES[held].set()
        code, _, err = remote(live, "interrupt", run.id, "too late")
        assert code == 2 and "409" in err and err.startswith("error: ")

        other = client.create_run(query=f"hold {talk}")
        code, out, err = remote(live, "interrupt", other.id, "the user said: use 40 + 2", "--json")
        assert code == 0, err
        assert json.loads(out) == {"id": other.id, "accepted": True}
        GATES[talk].set()
        assert client.wait(other.id, timeout=20).status == "finished"


def test_mistakes_are_one_error_line(live: LiveService, tmp_path: Path) -> None:
    code, out, err = remote(live, "ask", "x", "--api-key-env", "NO_SUCH_VARIABLE_HERE")
    assert code == 2 and out == "" and "NO_SUCH_VARIABLE_HERE" in err
    code, _, err = remote(live, "events", "no-such-run")
    assert code == 2 and "404" in err and "Traceback" not in err
    code, _, err = remote(live, "run", str(tmp_path / "missing.txt"))
    assert code == 2 and "cannot read" in err
    code, _, err = remote(live, "ask", "x", "--mode", "fast")
    assert code == 2 and "--mode" in err


def test_the_key_can_come_from_another_variable(live: LiveService) -> None:
    code, out, err = remote(live, "ask", "add two numbers", "--api-key-env", "MY_KEY", key_env="MY_KEY")
    assert code == 0, err
    assert "add two numbers -> " in out
