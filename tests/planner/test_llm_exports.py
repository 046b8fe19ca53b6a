"""The LLM part of tomasulo.planner exports the documented names, each with a docstring."""

from __future__ import annotations

import tomasulo.planner

LLM_NAMES = {
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUTS",
    "DIALECTS",
    "LLM",
    "Dialect",
    "GrammarSpec",
    "Message",
    "OutputFormat",
    "Prices",
    "RequestShape",
    "RetryPolicy",
    "Timeouts",
    "Usage",
    "estimate_tokens",
    "shape_request",
}


def test_llm_names_are_exported() -> None:
    assert LLM_NAMES <= set(tomasulo.planner.__all__)
    for name in ("LLM", "GrammarSpec", "Prices", "RetryPolicy", "Timeouts", "Usage", "shape_request"):
        assert getattr(tomasulo.planner, name).__doc__, name
    assert tomasulo.planner.DIALECTS == ("vllm", "llamacpp", "sglang", "openai", "ollama", "plain")
