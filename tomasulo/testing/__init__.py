"""Test helpers shipped with tomasulo: a simulated OpenAI-compatible LLM server.

``SimulatedLLM`` is a real HTTP server (uvicorn on loopback, or in-process through
``httpx.ASGITransport``) with scripted or grammar-sampled replies, a latency model, fault injection
and grammar enforcement with llguidance. See :class:`SimulatedLLM`.
"""

from ._constraint import GrammarConstraint, GrammarMismatch, InvalidGrammar, find_constraint
from ._script import (
    BadEvent,
    Disconnect,
    Fault,
    HTTPFault,
    KeepAlive,
    Latency,
    RawBody,
    RecordedRequest,
    Reply,
    Stall,
    count_tokens,
    split_tokens,
)
from ._server import ReplySource, SimulatedLLM, serve

__all__ = [
    "BadEvent",
    "Disconnect",
    "Fault",
    "GrammarConstraint",
    "GrammarMismatch",
    "HTTPFault",
    "InvalidGrammar",
    "KeepAlive",
    "Latency",
    "RawBody",
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
