"""Test helpers shipped with tomasulo: a simulated OpenAI-compatible LLM server.

``SimulatedLLM`` is a real HTTP server (uvicorn on loopback, or in-process through
``httpx.ASGITransport``) with scripted or grammar-sampled replies, a latency model, fault injection
and grammar enforcement with llguidance. See :class:`SimulatedLLM`.
"""

from ._constraint import GrammarConstraint, GrammarMismatch, InvalidGrammar, find_constraint
from ._script import (
    Disconnect,
    Fault,
    HTTPFault,
    Latency,
    RecordedRequest,
    Reply,
    Stall,
    count_tokens,
    split_tokens,
)
from ._server import ReplySource, SimulatedLLM, serve

__all__ = [
    "Disconnect",
    "Fault",
    "GrammarConstraint",
    "GrammarMismatch",
    "HTTPFault",
    "InvalidGrammar",
    "Latency",
    "RecordedRequest",
    "Reply",
    "ReplySource",
    "SimulatedLLM",
    "Stall",
    "count_tokens",
    "find_constraint",
    "serve",
    "split_tokens",
]
