"""Workflows on the Orchestrator: `query:` steps against SimulatedLLM, model settings, HTTP tools."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tomasulo.exceptions import ConfigError
from tomasulo.planner import resolve_model
from tomasulo.testing import Reply, SimulatedLLM
from tomasulo.workflows import (
    ModelConfig,
    OrchestratorRunner,
    load_workflow,
    loads_workflow,
    run_workflow,
)

pytestmark = pytest.mark.anyio
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

PLAN = (
    "1. sql(query=\"SELECT height_m FROM mountains WHERE name = 'K2'\")\n"
    '2. math(expression="h * 3.28084", variables={"h": $1.rows[0].height_m})\n'
    "3. join()"
)
FINISH = json.dumps({"thought": "task 2 has it", "action": "finish", "answer": "K2 is 28251 feet tall."})


async def test_query_workflow_against_simulated_llm() -> None:
    sim = SimulatedLLM([PLAN, FINISH])
    wf = load_workflow(EXAMPLES / "ask.yaml")
    events: list[tuple[str, str]] = []
    with anyio.fail_after(30):
        async with sim.serve() as base_url:
            runner = OrchestratorRunner(
                on_event=lambda step, e: events.append((step, type(e).__name__)),
                model={"base_url": base_url, "model": "sim", "dialect": "vllm"},
            )
            result = await run_workflow(wf, {"question": "How tall is K2 in feet?"}, runner)
    assert result.ok, result.error
    assert result.outputs == {"answer": "K2 is 28251 feet tall."}
    # the question reached the planner with the input filled in, and the plan grammar went along
    planner_request = sim.requests[0]
    assert "How tall is K2 in feet? Use the sql tool" in planner_request.prompt
    assert "structured_outputs" in planner_request.body
    run = runner.runs[0].result
    assert [t.status for t in run.tasks] == ["succeeded", "succeeded"]
    assert run.tasks[0].value["rows"] == [{"height_m": 8611}]
    assert ("answer", "PlanStarted") in events and ("answer", "JoinerDecided") in events


async def test_query_step_fails_cleanly_when_the_llm_refuses() -> None:
    sim = SimulatedLLM([Reply.server_error(400, "model not found")])
    wf = load_workflow(EXAMPLES / "ask.yaml")
    with anyio.fail_after(30):
        async with sim.serve() as base_url:
            runner = OrchestratorRunner(model={"base_url": base_url, "model": "nope"})
            result = await run_workflow(wf, {}, runner)
    assert not result.ok
    assert result.failed_step == "answer"
    assert "the run failed" in (result.error or "") and "400" in (result.error or "")


def test_model_settings_come_from_flags_then_env_then_file() -> None:
    cfg = ModelConfig(base_url="http://file/v1", model="file-model", dialect="ollama", api_key_env="MY_KEY")
    env = {"TOMASULO_MODEL": "env-model", "MY_KEY": "k-from-file-var"}
    got = resolve_model(cfg, environ=env)
    assert (got.base_url, got.model, got.dialect, got.api_key) == (
        "http://file/v1",
        "env-model",
        "ollama",
        "k-from-file-var",
    )
    got = resolve_model(cfg, model="flag-model", dialect="llamacpp", environ={**env, "TOMASULO_API_KEY": "k"})
    assert (got.model, got.dialect, got.api_key) == ("flag-model", "llamacpp", "k")
    assert resolve_model(None, base_url="http://x/v1", model="m", environ={}).dialect == "plain"


def test_missing_model_says_how_to_configure_one() -> None:
    with pytest.raises(ConfigError) as info:
        resolve_model(ModelConfig(model="m"), environ={})
    text = str(info.value)
    assert "--base-url" in text and "TOMASULO_BASE_URL" in text and "missing: a base URL" in text
    with pytest.raises(ConfigError, match="unknown dialect 'gpt'"):
        resolve_model(None, base_url="http://x/v1", model="m", dialect="gpt", environ={})


async def _weather(request: Request) -> Response:
    body = await request.json()
    if body["city"] == "Atlantis":
        return PlainTextResponse("no such city", status_code=404)
    return JSONResponse({"city": body["city"], "temp_c": 21.5})


async def _elevation(request: Request) -> Response:
    return JSONResponse({"place": request.query_params["place"], "m": 1400})


HTTP_APP = Starlette(
    routes=[Route("/weather", _weather, methods=["POST"]), Route("/elevation", _elevation, methods=["GET"])]
)


def _http_workflow(base: str, city: str) -> Any:
    text = textwrap.dedent(
        f"""\
        tools:
          - math
          - http:
              name: weather
              url: {base}/weather
              net: {{allow_private_hosts: ["127.0.0.1"]}}
              input_schema:
                type: object
                properties: {{city: {{type: string}}}}
                required: [city]
          - http: {{name: elevation, method: GET, url: "{base}/elevation",
                    net: {{allow_private_hosts: ["127.0.0.1"]}},
                    input_schema: {{type: object, properties: {{place: {{type: string}}}}}}}}
        inputs:
          city: string
        steps:
          - id: trip
            plan: |
              1. input("city")
              2. weather(city=$1)
              3. elevation(place=$1)
              4. math(expression="t + m / 1000", variables={{"t": $2.temp_c, "m": $3.m}})
              5. join()
        outputs:
          weather: trip
        """
    )
    return loads_workflow(text, path=EXAMPLES / "http.yaml"), city


async def test_http_endpoint_tools_against_a_loopback_server(serve_app: Callable[[Any], str]) -> None:
    base = serve_app(HTTP_APP)
    wf, city = _http_workflow(base, "Nairobi")
    runner = OrchestratorRunner()
    with anyio.fail_after(30):
        result = await run_workflow(wf, {"city": city}, runner)
    assert result.ok, result.error
    assert result.outputs["weather"] == pytest.approx(22.9)
    values = runner.runs[0].result.results
    assert values[2] == {"city": "Nairobi", "temp_c": 21.5}
    assert values[3] == {"place": "Nairobi", "m": 1400}

    wf, city = _http_workflow(base, "Atlantis")
    with anyio.fail_after(30):
        failed = await run_workflow(wf, {"city": city}, OrchestratorRunner())
    assert not failed.ok
    assert "404" in (failed.error or "") and "task 4: skipped" in (failed.error or "")
