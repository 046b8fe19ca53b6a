"""Streamed dispatch: whole-value references and the worker that stays awake for the next task."""

from __future__ import annotations

import enum
from typing import Any

import anyio
import pytest
from dtools import (
    ANY,
    ident,
    make_tool,
    on_both_backends,  # noqa: F401  (the anyio_backend fixture: asyncio and trio)
)
from hypothesis import given, settings
from hypothesis import strategies as st

from tomasulo.dispatcher import Dispatcher, Limits
from tomasulo.dispatcher._resolve import BoundArgs, checker_for, resolve_args
from tomasulo.exceptions import ReferenceResolutionError
from tomasulo.grammar import Ref, Task, Template
from tomasulo.tools import Toolset

pytestmark = pytest.mark.anyio


def test_whole_value_refs_pass_upstream_values_as_they_are() -> None:
    tool = make_tool("ident", ident)
    shared = {"k": [1, 2]}
    results = {1: shared, 2: "two", 3: 3}
    assert resolve_args(Task(4, "ident", (Ref(1),)), tool, results.__getitem__)["x"] is shared
    args = resolve_args(Task(4, "ident", ([Ref(2), Ref(3)], (Ref(3), Ref(2)))), tool, results.__getitem__)
    assert args == {"x": ["two", 3], "y": [3, "two"]}  # a tuple of refs becomes a list, as before
    mixed = resolve_args(Task(4, "ident", ([Ref(2), 5], Ref(1, ("k", 1)))), tool, results.__getitem__)
    assert mixed == {"x": ["two", 5], "y": 2}


def test_a_whole_value_ref_without_a_result_names_the_argument() -> None:
    tool = make_tool("ident", ident)
    with pytest.raises(ReferenceResolutionError, match=r"argument 'y': cannot take \$7 from"):
        resolve_args(Task(9, "ident", (1, [Ref(7)])), tool, {}.__getitem__)


def test_resolving_in_one_pass_gives_what_binding_first_gives() -> None:
    # A task that starts at once is resolved without binding; one that waited was bound first.
    # Both must give the same arguments, and the same error, for every shape of argument.
    typed = make_tool("typed", ident, {"type": "object", "properties": {"x": {"type": "integer"}}})
    loose = make_tool("ident", ident)
    results = {1: {"k": [1, 2]}, 2: "two", 3: 3}
    cases = [
        (loose, Task(9, "ident", (Ref(1), [Ref(2), Ref(3)]))),
        (loose, Task(9, "ident", ((Ref(3), Ref(2)), {"a": [Ref(1, ("k", 0))], "b": None}))),
        (loose, Task(9, "ident", (Template(("n=", Ref(3), "!")), []))),
        (loose, Task(9, "ident", (1,), {"y": Ref(2)})),
        (loose, Task(9, "ident", (1, 2, 3))),  # too many positional arguments
        (loose, Task(9, "ident", (Ref(1, ("nope",)),))),  # a path the value lacks
        (loose, Task(9, "ident", ([Ref(2), Ref(8)],))),  # a task without a result
        (typed, Task(9, "typed", (Ref(2),))),  # an upstream value the schema refuses
        (typed, Task(9, "typed", (Ref(3),))),
    ]
    for tool, task in cases:
        outcomes = []
        for bind_first in (False, True):
            args = BoundArgs(task, tool)
            if bind_first:
                args.bind()
            try:
                outcomes.append(args.resolve(results.__getitem__))
            except ReferenceResolutionError as exc:
                outcomes.append(f"{type(exc).__name__}: {exc}")
        assert outcomes[0] == outcomes[1], task


async def test_streamed_tasks_start_on_the_awake_worker_and_it_parks_when_idle() -> None:
    workers: list[int] = []

    async def where(x: Any = None, y: Any = None) -> Any:
        workers.append(anyio.get_current_task().id)
        return x

    tools = Toolset([make_tool("where", where, ANY)])
    with anyio.fail_after(10):
        async with Dispatcher(tools) as d:
            d.submit(Task(1, "where", (1,)))
            for i in range(2, 30):
                await anyio.lowlevel.checkpoint()
                await anyio.lowlevel.checkpoint()
                d.submit(Task(i, "where", (Ref(i - 1),)))
            await d.wait()
            assert [d.results[i] for i in range(1, 30)] == [1] * 29
            assert len(set(workers)) == 1  # one worker ran the whole stream
            for _ in range(3):
                await anyio.lowlevel.checkpoint()
            # Idle, it parks (no busy loop) and counts as neither busy nor waking.
            stats = d.statistics()
            assert (stats.parked, stats.waking, stats.busy, stats.workers) == (1, 0, 0, 1)
            d.submit(Task(30, "where", (Ref(29),)))
            await d.wait([30])
            assert d.results[30] == 1 and len(set(workers)) == 1


async def test_an_awake_worker_respects_the_run_limit() -> None:
    running = 0
    most = 0

    async def slow(x: Any = None, y: Any = None) -> Any:
        nonlocal running, most
        running += 1
        most = max(most, running)
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
        running -= 1
        return x

    tools = Toolset([make_tool("slow", slow, ANY)])
    with anyio.fail_after(10):
        async with Dispatcher(tools, limits=Limits(max_concurrency=2)) as d:
            for i in range(1, 41):
                d.submit(Task(i, "slow", (i,)))
                if i % 3 == 0:
                    await anyio.lowlevel.checkpoint()
            await d.wait()
    assert most == 2
    assert all(o.ok for o in d.outcomes.values()) and len(d.outcomes) == 40


_JSON_TYPE_NAMES = ("string", "integer", "number", "boolean", "array", "object", "null")
_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=2), inner, max_size=2),
    max_leaves=4,
)


@st.composite
def _simple_schemas(draw: st.DrawFn) -> dict[str, Any]:
    props = {}
    for name in draw(st.lists(st.sampled_from("abc"), unique=True, max_size=3)):
        kinds = draw(st.lists(st.sampled_from(_JSON_TYPE_NAMES), min_size=1, max_size=3, unique=True))
        props[name] = {"type": kinds[0] if len(kinds) == 1 else kinds}
    schema: dict[str, Any] = {"type": "object", "properties": props}
    schema["required"] = draw(st.lists(st.sampled_from("abcd"), unique=True, max_size=2))
    extra = draw(st.sampled_from([None, True, False]))
    if extra is not None:
        schema["additionalProperties"] = extra
    return schema


@settings(max_examples=400, deadline=None)
@given(schema=_simple_schemas(), args=st.dictionaries(st.sampled_from("abcd"), _values, max_size=4))
def test_the_fast_argument_check_accepts_only_what_the_schema_accepts(
    schema: dict[str, Any], args: dict[str, Any]
) -> None:
    # Resolved arguments skip full JSON Schema validation when the compiled check accepts them:
    # it must never accept what validation refuses, and must accept values of the exact types.
    tool = make_tool("typed", ident, schema)
    checker = checker_for(tool)
    assert checker is not None  # every schema drawn here is simple enough to compile
    if checker(args):
        assert tool.field_errors(args) == [], (schema, args)
    typed = {
        name: {"string": "s", "integer": 1, "number": 1.5, "boolean": True, "array": [], "object": {}}.get(
            kind if isinstance(kind := prop["type"], str) else kind[0]
        )
        for name, prop in schema["properties"].items()
    }
    if set(schema["required"]) <= set(typed):
        assert checker(typed), (schema, typed)


class _Level(enum.IntEnum):
    LOW = 1


class _Text(str):
    pass


def test_the_fast_argument_check_agrees_with_validation_on_every_type_and_value() -> None:
    # Exhaustive where the property test only samples: each JSON type (alone and paired with
    # another), open, closed and oddly closed objects, and values of every kind, bools included.
    samples: list[Any] = [True, False, 0, 1, -(2**70), 1.5, "s", _Text("t"), [], [1], {}, {"k": 1}, None]
    samples.append(_Level.LOW)
    kinds: list[Any] = list(_JSON_TYPE_NAMES)
    kinds += [[a, b] for a in _JSON_TYPE_NAMES for b in _JSON_TYPE_NAMES if a < b]
    fast = 0
    for kind in kinds:
        for extra in (True, False, 0, 1, None):
            schema: dict[str, Any] = {"type": "object", "properties": {"a": {"type": kind}}}
            if extra is not None:
                schema["additionalProperties"] = extra
            tool = make_tool("typed", ident, schema)
            checker = checker_for(tool)
            if checker is None:
                continue
            for value in samples:
                for args in ({"a": value}, {"b": value}, {"a": value, "b": value}):
                    if checker(args):
                        fast += 1
                        assert tool.field_errors(args) == [], (schema, args)
    assert fast > 1000  # the check did vouch for most well-typed arguments
