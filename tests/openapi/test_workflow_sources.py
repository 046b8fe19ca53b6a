"""``openapi:`` and ``http:`` entries in workflow files, end to end against the loopback API."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from tomasulo.exceptions import WorkflowError
from tomasulo.workflows import OrchestratorRunner, load_workflow, run_workflow

from . import app as served
from .conftest import Served

pytestmark = pytest.mark.anyio

WORKFLOW = """
name: pets
tools:
  - openapi:
      spec: pets.json
      base_url: {url}
      prefix: pets_
      include: ["tag:pets", "secureKey"]
      auth: {{key_header: {{key_env: WF_PETS_KEY}}}}
      net: {{allow_private_hosts: ["127.0.0.1"]}}
  - http:
      name: pet
      prefix: raw_
      url: "{url}/pets/{{pet_id}}"
      method: GET
      input_schema: {{type: object, properties: {{pet_id: {{type: integer}}}}, required: [pet_id]}}
      net: {{allow_private_hosts: ["127.0.0.1"]}}
inputs:
  name: {{type: string, default: Tom}}
steps:
  - id: made
    plan: |
      1. input("name")
      2. pets_createPet(name=$1, tag="cat")
      3. raw_pet(pet_id=$2.id)
      4. pets_listPets(tags=[$2.tag])
      5. pets_secureKey()
      6. join()
    output: $3
outputs:
  pet: made.name
"""


def write(tmp_path: Path, api: Served, text: str = WORKFLOW) -> Path:
    (tmp_path / "pets.json").write_text(json.dumps(api.spec))
    path = tmp_path / "pets.yaml"
    path.write_text(text.format(url=api.url))
    return path


async def test_openapi_and_http_entries_run_end_to_end(
    api: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WF_PETS_KEY", served.API_KEY)
    wf = load_workflow(write(tmp_path, api))
    assert {"pets_createPet", "pets_getPet", "pets_secureKey", "raw_pet"} <= set(wf.toolset.names)
    assert "pets_secureBasic" not in wf.toolset  # not included
    runner = OrchestratorRunner()
    with anyio.fail_after(30):
        result = await run_workflow(wf, {}, runner)
    assert result.ok, result.error
    assert result.outputs["pet"] == "Tom"
    tasks = {t.id: t for t in runner.runs[0].result.tasks}
    assert tasks[5].value == "key ok"
    assert [p["name"] for p in tasks[4].value] == ["Tom"]


async def test_a_missing_secret_is_a_workflow_error_at_the_entry(
    api: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WF_PETS_KEY", raising=False)
    with pytest.raises(WorkflowError, match=r"pets\.yaml:\d+:\d+: .*WF_PETS_KEY"):
        load_workflow(write(tmp_path, api))


async def test_http_entries_refuse_loopback_unless_allowed(api: Served, tmp_path: Path) -> None:
    text = (
        'name: raw\ntools:\n  - http:\n      name: pet\n      url: "{url}/pets/{{pet_id}}"\n'
        "      method: GET\n      input_schema: {{type: object, properties: {{pet_id: {{type: integer}}}},"
        " required: [pet_id]}}\nsteps:\n  - plan: |\n      1. pet(pet_id=1)\n      2. join()\n"
    )
    wf = load_workflow(write(tmp_path, api, text))
    with anyio.fail_after(30):
        result = await run_workflow(wf, {}, OrchestratorRunner())
    assert not result.ok and "loopback" in (result.error or "")


def test_an_mcp_entry_needs_a_command_or_a_url(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("tools:\n  - mcp: {prefix: x_}\nsteps:\n  - plan: '1. join()'\n")
    with pytest.raises(WorkflowError, match="exactly one of `command`"):
        load_workflow(path)
