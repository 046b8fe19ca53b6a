"""The JSON Schema of workflow files, committed as ``workflow.schema.json`` for editors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._model import Workflow

__all__ = ["SCHEMA_PATH", "schema_text", "workflow_json_schema"]

#: Where the committed schema lives (regenerate with ``python -m tomasulo.workflows``).
SCHEMA_PATH = Path(__file__).with_name("workflow.schema.json")


def workflow_json_schema() -> dict[str, Any]:
    """The JSON Schema of a workflow file (keys as written in YAML, e.g. ``import``)."""
    schema = Workflow.model_json_schema(by_alias=True, mode="validation")
    # the YAML shorthands: `- math` for a built-in, `- pkg.mod:name` for an import, `x: string`
    props = schema["properties"]
    props["tools"]["items"] = {"anyOf": [{"type": "string"}, props["tools"]["items"]]}
    types = ["string", "integer", "number", "boolean", "array", "object"]
    props["inputs"]["additionalProperties"] = {
        "anyOf": [{"enum": types}, props["inputs"]["additionalProperties"]]
    }
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "tomasulo workflow"
    return schema


def schema_text() -> str:
    """The schema as the committed file holds it."""
    return json.dumps(workflow_json_schema(), indent=2, sort_keys=True) + "\n"
