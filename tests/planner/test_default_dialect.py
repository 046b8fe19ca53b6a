"""One default dialect: LLM in code, workflows and the CLI pick the same one."""

from __future__ import annotations

import inspect

from tomasulo.planner import DEFAULT_DIALECT, LLM, resolve_model


def test_llm_workflows_and_the_cli_share_one_default_dialect() -> None:
    llm = LLM("http://127.0.0.1:8000/v1", model="m")
    settings = resolve_model(base_url="http://127.0.0.1:8000/v1", model="m", environ={})
    assert llm.dialect == settings.dialect == DEFAULT_DIALECT == "plain"
    assert inspect.signature(LLM).parameters["dialect"].default == DEFAULT_DIALECT
