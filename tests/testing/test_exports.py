"""The public face of tomasulo.testing is exactly the documented names."""

from __future__ import annotations

import tomasulo.testing

DOCUMENTED = {
    "LATENCY_PRESETS",
    "BadEvent",
    "Disconnect",
    "Fault",
    "GrammarConstraint",
    "GrammarMismatch",
    "HTTPFault",
    "InvalidGrammar",
    "KeepAlive",
    "Latency",
    "PrefixCache",
    "RawBody",
    "RecordedRequest",
    "Reply",
    "ReplySource",
    "SimulatedLLM",
    "Stall",
    "ToolCall",
    "count_tokens",
    "find_constraint",
    "serve",
    "split_tokens",
}


def test_exported_members() -> None:
    assert set(tomasulo.testing.__all__) == DOCUMENTED
    for name in DOCUMENTED:
        member = getattr(tomasulo.testing, name)
        if (callable(member) and not name[0].isupper()) or isinstance(member, type):
            assert member.__doc__, f"{name} has no docstring"
