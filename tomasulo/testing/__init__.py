"""Test helpers shipped with tomasulo: a simulated OpenAI-compatible LLM server.

``SimulatedLLM`` is a real HTTP server (uvicorn on loopback, or in-process through
``httpx.ASGITransport``) with scripted or grammar-sampled replies, native tool calls, a latency
model with prefill and a prefix cache (:data:`LATENCY_PRESETS` from real servers), fault
injection and grammar enforcement with llguidance. See :class:`SimulatedLLM`.
"""

from ._constraint import GrammarConstraint, GrammarMismatch, InvalidGrammar, find_constraint
from ._latency import LATENCY_PRESETS, PrefixCache
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
    ToolCall,
    count_tokens,
    split_tokens,
)
from ._server import ReplySource, SimulatedLLM, serve

__all__ = [
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
]
