"""The JSON dialect of plans, for providers that only take a JSON schema.

::

    {"thought": "optional",
     "tasks": [
        {"id": 1, "tool": "search", "args": {"query": "Mount Everest"}},
        {"id": 2, "tool": "math", "args": {"expression": "${1.height_m} / 2",
                                           "context": [{"$ref": 1, "path": "height_m"}]},
         "thought": "optional"}
     ],
     "answer": "optional: Half of Everest is ${2} m"}

Arguments are keyword-only. ``{"$ref": k}`` (with an optional ``"path": "a.b[0]"``) passes task
k's result as a typed value; ``${k}`` inside a string interpolates it as text. The end of the
``tasks`` array is the plan's ``join()``. Each task is handed over as soon as its object closes.
The optional ``answer`` string is the plan's answer template (the text dialect's
``join("...")``, see :attr:`~tomasulo.grammar.Plan.answer`); it may interpolate any task of the
plan (and of earlier plans), and is read when the document ends.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterable, AsyncIterator
from typing import TYPE_CHECKING, Any

from ..exceptions import IncompletePlanError, PlanSyntaxError, TaskIdError, TooManyTasksError
from ._ast import MAX_NESTING, Plan, Ref, Task, Template, Value
from ._check import as_toolset, check_answer, check_refs, check_tool_call, make_task
from ._parser import ArgNode, CallLine, parse_path, split_interpolations
from ._stream import aiter_parsed

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ..tools import Tool, Toolset

__all__ = ["JsonPlanStream", "aiter_json_tasks", "parse_json_plan"]

_STRUCTURAL = re.compile(r'["{}\[\]:\n]')
_STRING_STOP = re.compile(r'["\\\n]')
#: The document, the tasks array, a task and its args hold an argument value.
_VALUE_DEPTH = 4


class _BadNumber(ValueError):
    """A number JSON can write but a plan cannot take (it overflows, or is NaN/Infinity)."""


def _finite_float(text: str) -> float:
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise _BadNumber(f"the number {text} is too large (it overflows a 64-bit float)")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:  # more digits than int() converts
        raise _BadNumber(f"an integer of {len(text.lstrip('-'))} digits is too long to read") from None


def _no_constant(text: str) -> Any:
    raise _BadNumber(f"{text} is not a JSON number")


def _loads(text: str) -> Any:
    """``json.loads`` that refuses numbers which would reach a tool as ``inf`` or ``nan``."""
    return json.loads(text, parse_float=_finite_float, parse_int=_int, parse_constant=_no_constant)


class JsonPlanStream:
    """Incremental parser for the JSON dialect; same contract as :class:`PlanStream`."""

    def __init__(
        self,
        tools: Toolset | Iterable[Tool] | None = None,
        *,
        start_id: int = 1,
        max_tasks: int | None = None,
    ) -> None:
        self.tools = None if tools is None else as_toolset(tools)
        self.start_id = start_id
        self.max_tasks = max_tasks
        self._text: list[str] = []
        self._line = 1
        self._line_start = 0
        self._depth = 0
        self._in_string = False
        self._escape = False
        self._string_start = 0
        self._last_string: tuple[int, int] | None = None
        self._key = ""
        self._tasks_depth: int | None = None  # depth inside the tasks array, once it opened
        self._item_start: tuple[int, int, int] | None = None  # offset, line, line's offset
        self._tasks: list[Task] = []
        self._joined = False
        self._answer: Template | None = None
        self._closed = False
        self._buffer = ""

    @property
    def tasks(self) -> list[Task]:
        """Tasks parsed so far."""
        return list(self._tasks)

    @property
    def joined(self) -> bool:
        """Whether the ``tasks`` array has closed."""
        return self._joined

    @property
    def plan(self) -> Plan:
        """The plan so far."""
        join_id = self.start_id + len(self._tasks) if self._joined else None
        return Plan(tuple(self._tasks), join_id, answer=self._answer)

    def feed(self, chunk: str) -> list[Task]:
        """Take more text; return the tasks whose objects it closed."""
        out: list[Task] = []
        base = len(self._buffer)
        # keep the buffer's only reference local so CPython can grow it in place
        text = self._buffer
        self._buffer = ""
        text += chunk
        self._buffer = text
        i = base
        n = len(text)
        while i < n:
            if self._in_string:
                if self._escape:  # the previous chunk ended with a backslash
                    self._escape = False
                    i += 1
                    continue
                m = _STRING_STOP.search(text, i)
                if m is None:
                    i = n
                    break
                j = m.start()
                ch = text[j]
                if ch == "\\":
                    if j + 1 >= n:
                        self._escape = True
                        i = n
                        break
                    i = j + 2
                    continue
                if ch == "\n":
                    self._line += 1
                    self._line_start = j + 1
                    i = j + 1
                    continue
                self._in_string = False
                self._last_string = (self._string_start, j + 1)
                i = j + 1
                continue
            m = _STRUCTURAL.search(text, i)
            if m is None:
                i = n
                break
            i = m.start()
            c = text[i]
            if c == "\n":
                self._line += 1
                self._line_start = i + 1
            elif c == '"':
                self._in_string = True
                self._string_start = i
            elif c == ":" and self._depth == 1 and self._last_string is not None:
                s, e = self._last_string
                self._key = json.loads(text[s:e])
            elif c in "{[":
                self._depth += 1
                if self._depth > MAX_NESTING + _VALUE_DEPTH:
                    self._closed = True  # close() must not hand the text to a recursive reader
                    raise PlanSyntaxError(
                        f"nesting deeper than {MAX_NESTING} levels",
                        line=self._line,
                        column=i - self._line_start + 1,
                        text=_line_of(text[self._line_start :], 1)[:200],
                        hint="flatten the value, or pass deep data as a string",
                    )
                if c == "[" and self._depth == 2 and self._key == "tasks" and self._tasks_depth is None:
                    self._tasks_depth = 2
                elif c == "{" and self._tasks_depth is not None and self._depth == 3 and not self._joined:
                    self._item_start = (i, self._line, self._line_start)
            elif c in "}]":
                if self._tasks_depth is not None and not self._joined:
                    if c == "}" and self._depth == 3 and self._item_start is not None:
                        out.append(self._task(text[self._item_start[0] : i + 1]))
                        self._item_start = None
                    elif c == "]" and self._depth == 2:
                        self._joined = True
                self._depth -= 1
            i += 1
        return out

    def close(self) -> list[Task]:
        """End of text: the whole document must be valid JSON of the plan's shape."""
        if self._closed:
            return []
        self._closed = True
        try:
            doc = _loads(self._buffer)
        except _BadNumber as e:
            raise PlanSyntaxError(str(e), line=1, column=1, hint="numbers must be finite") from None
        except json.JSONDecodeError as e:
            # Cut off: the error is at the end, or the text ends inside a string (JSON reports
            # an unterminated string where the string starts).
            cut = self._in_string or e.pos >= len(self._buffer.rstrip())
            cls = IncompletePlanError if cut else PlanSyntaxError
            raise cls(
                f"not valid JSON: {e.msg}",
                line=e.lineno,
                column=e.colno,
                text=_line_of(self._buffer, e.lineno),
            ) from None
        if not isinstance(doc, dict) or not isinstance(doc.get("tasks"), list):
            raise PlanSyntaxError(
                'a JSON plan is an object with a "tasks" array', line=1, column=1, hint='{"tasks": [...]}'
            )
        if "answer" in doc:
            self._answer = self._read_answer(doc["answer"])
        return []

    def _read_answer(self, answer: Any) -> Template | None:
        """The document's ``answer``: a string whose references name tasks of the plan."""
        at = self._buffer.rfind('"answer"')
        line = self._buffer.count("\n", 0, max(at, 0)) + 1
        line_start = self._buffer.rfind("\n", 0, max(at, 0)) + 1
        column = max(at, 0) - line_start + 1
        text = _line_of(self._buffer, line)
        if not isinstance(answer, str):
            raise PlanSyntaxError(
                'the plan\'s "answer" must be a string',
                line=line,
                column=column,
                text=text,
                hint='"answer": "the answer, with ${k} for task k\'s result"',
            )
        join_id = self.start_id + len(self._tasks)
        call = CallLine(task_id=join_id, id_column=column, tool="join", tool_column=column)
        call.args.append(ArgNode(_from_json(answer), column))
        return check_answer(call, text, line)

    def _task(self, raw: str) -> Task:
        assert self._item_start is not None
        start, line, line_start = self._item_start
        column = start - line_start + 1
        end = self._buffer.find("\n", start)
        text = self._buffer[line_start : end if end >= 0 else len(self._buffer)]

        def error(message: str, cls: type[PlanSyntaxError] = PlanSyntaxError) -> PlanSyntaxError:
            return cls(message, line=line, column=column, text=text)

        try:
            obj = _loads(raw)
        except _BadNumber as e:
            raise error(f"tasks[{len(self._tasks)}]: {e}") from None
        except json.JSONDecodeError as e:
            raise error(f"task is not valid JSON: {e.msg}") from None
        index = len(self._tasks)
        if not isinstance(obj.get("id"), int) or isinstance(obj.get("id"), bool):
            raise error(f'tasks[{index}] needs an integer "id"')
        if not isinstance(obj.get("tool"), str):
            raise error(f'tasks[{index}] needs a string "tool"')
        args = obj.get("args", {})
        if not isinstance(args, dict):
            raise error(f"tasks[{index}].args must be an object of keyword arguments")
        extra = set(obj) - {"id", "tool", "args", "thought"}
        if extra:
            raise error(f"tasks[{index}] has unknown keys: {', '.join(sorted(extra))}")
        thought = obj.get("thought")
        expected = self.start_id + index
        if obj["id"] != expected:
            raise TaskIdError(
                f"task id {obj['id']} where {expected} was expected", line=line, column=column, text=text
            )
        if self.max_tasks is not None and index >= self.max_tasks:
            raise TooManyTasksError(f"more than {self.max_tasks} tasks in one plan", line=line, column=column)
        try:
            values = {k: _from_json(v) for k, v in args.items()}
        except ValueError as e:
            raise error(f"tasks[{index}]: {e}") from None
        call = CallLine(
            task_id=obj["id"],
            id_column=column,
            tool=obj["tool"],
            tool_column=column,
            args=[ArgNode(v, column, k) for k, v in values.items()],
            close_column=column,
        )
        check_refs(call, call.args, text, line)
        if self.tools is not None:
            check_tool_call(call, self.tools, text, line)
        task = make_task(call, thought if isinstance(thought, str) else None, line)
        self._tasks.append(task)
        return task


def _line_of(text: str, lineno: int) -> str:
    lines = text.split("\n")
    return lines[lineno - 1] if 0 < lineno <= len(lines) else ""


def _from_json(value: Any) -> Value:
    """JSON-dialect values: ``{"$ref": k, "path": ...}`` objects and ``${k}`` strings."""
    if isinstance(value, dict):
        if "$ref" in value:
            k = value["$ref"]
            if not isinstance(k, int) or isinstance(k, bool) or set(value) - {"$ref", "path"}:
                raise ValueError('a reference is {"$ref": <task id>, "path": "optional.path"}')
            path = value.get("path") or ""
            if not isinstance(path, str):
                raise ValueError("a reference's path is a string such as 'items[0].name'")
            return Ref(k, parse_path(path))
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    if isinstance(value, str) and "${" in value:
        parts = split_interpolations(value)
        if len(parts) == 1 and isinstance(parts[0], str):
            return value
        return Template(tuple(parts))
    return value


def parse_json_plan(
    text: str,
    tools: Toolset | Iterable[Tool] | None = None,
    *,
    start_id: int = 1,
    max_tasks: int | None = None,
) -> Plan:
    """Parse a whole plan in the JSON dialect."""
    stream = JsonPlanStream(tools, start_id=start_id, max_tasks=max_tasks)
    stream.feed(text)
    stream.close()
    return stream.plan


def aiter_json_tasks(
    chunks: AsyncIterable[str],
    tools: Toolset | Iterable[Tool] | None = None,
    *,
    start_id: int = 1,
    max_tasks: int | None = None,
    stream: JsonPlanStream | None = None,
) -> AsyncIterator[Task]:
    """Async adapter: JSON text chunks in, tasks out as each object closes."""
    parser = stream or JsonPlanStream(tools, start_id=start_id, max_tasks=max_tasks)
    return aiter_parsed(chunks, parser)
