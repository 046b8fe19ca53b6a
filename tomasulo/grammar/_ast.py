"""The plan as data: tasks, references, string templates and the plan itself.

A plan is a numbered list of tool calls ending in ``join()``, or in ``join("...")`` with an
answer template (see :attr:`Plan.answer`)::

    1. search(query="Mount Everest")
    2. math(expression="${1.height_m} / 2")
    3. join("Half of Everest is ${2} m")

Argument values are JSON values, :class:`Ref` (``$1``, ``$1.field``, ``$1[0]``: task 1's result as a
typed value) or :class:`Template` (a string with ``${k}`` interpolations, rendered as text).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

from ..exceptions import ArgumentTypeError, TaskIdError

if TYPE_CHECKING:
    import networkx as nx

__all__ = [
    "JOIN",
    "MAX_NESTING",
    "Plan",
    "Ref",
    "Task",
    "Template",
    "Value",
    "answer_text",
    "iter_refs",
    "stringify",
    "value_to_text",
]

#: The name of the plan's closing pseudo-tool.
JOIN = "join"
#: How deeply arrays and objects may nest inside one argument value (every parser refuses more,
#: and so does :class:`Task`), so no plan can drive a recursive reader past Python's stack.
MAX_NESTING = 64

PathItem: TypeAlias = str | int
#: An argument value: JSON data, possibly holding :class:`Ref` and :class:`Template` inside.
Value: TypeAlias = Any


def _path_text(path: tuple[PathItem, ...]) -> str:
    out = []
    for item in path:
        if isinstance(item, int):
            out.append(f"[{item}]")
        else:
            out.append(f".{item}")
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Ref:
    """Task ``task_id``'s result, or a part of it selected by ``path``.

    >>> Ref(2, ("items", 0)).to_text()
    '$2.items[0]'
    """

    task_id: int
    path: tuple[PathItem, ...] = ()
    #: Written as a whole quoted string (``"$1"``, compat mode): LLMCompiler pastes such a
    #: reference in as text, so a string parameter gets the value as text (see
    #: :func:`stringify`). Takes no part in equality.
    quoted: bool = field(default=False, compare=False)

    def to_text(self) -> str:
        """The reference as written in a plan, outside a string: ``$k.path``."""
        return f"${self.task_id}{_path_text(self.path)}"

    def to_template_text(self) -> str:
        """The reference as written inside a string: ``${k.path}``."""
        return f"${{{self.task_id}{_path_text(self.path)}}}"

    def select(self, value: Any) -> Any:
        """Pick this reference's path out of ``value``.

        Raises :class:`PathLookupError` (a ``LookupError``) for a key or index that is not
        there, and ``TypeError`` for a path step into a value that has no parts; both messages
        say where along the path it stopped and what the value there is.
        """
        for depth, item in enumerate(self.path):
            if isinstance(item, int):
                if not isinstance(value, list | tuple):
                    raise TypeError(f"cannot index {_what(value)} with [{item}]{self._at(depth)}")
                if item >= len(value):
                    raise PathLookupError(
                        f"index out of range: [{item}] into an array of {len(value)} "
                        f"item{'s' * (len(value) != 1)}{self._at(depth)}"
                    )
                value = value[item]
            elif isinstance(value, Mapping):
                if item not in value:
                    keys = ", ".join(repr(k) for k in list(value)[:8]) + (", ..." if len(value) > 8 else "")
                    has = f"an object with keys {keys}" if value else "an empty object"
                    raise PathLookupError(f"no key {item!r} in {has}{self._at(depth)}")
                value = value[item]
            elif hasattr(value, item) and not item.startswith("_"):
                value = getattr(value, item)
            else:
                raise PathLookupError(f"no key {item!r}: the value is {_what(value)}{self._at(depth)}")
        return value

    def _at(self, depth: int) -> str:
        return f" (at ${self.task_id}{_path_text(self.path[:depth])})" if depth else ""


class PathLookupError(LookupError):
    """A reference's path names a key or an index the value does not have."""


def _what(value: Any) -> str:
    """A value described for a message: its JSON type and a clipped text."""
    kind = {type(None): "null", bool: "boolean", int: "integer", float: "number", str: "string"}.get(
        type(value), "array" if isinstance(value, list | tuple) else type(value).__name__
    )
    text = repr(value)
    return f"{kind} {text[:40] + '...' if len(text) > 40 else text}"


def stringify(value: Any) -> str:
    """How a value is written into a ``${k}`` interpolation.

    Strings go in as they are; ``None`` as ``null``, booleans as ``true``/``false``; integers and
    floats as Python writes them (``3``, ``2.5``); anything else as compact JSON (lists, dicts,
    pydantic models via ``model_dump``), falling back to ``str()``.

    It never raises. An integer longer than Python writes as text (``sys.get_int_max_str_digits``,
    4300 digits by default) is written as ``<integer of about N digits>``, inside JSON too (as
    a string); a value nested too deeply to write, or whose ``str()`` fails, as
    ``<TYPE that cannot be written as text>``.

    >>> stringify(2**20000)
    '<integer of about 6021 digits>'
    """
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _number_text(value)
    try:
        dump = getattr(value, "model_dump", None)
        if callable(dump):
            value = dump(mode="json")
        try:
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
        except ValueError:  # an integer too long to write (or a cycle): write it bounded
            shown = _writable(value, set(), 0)
            return json.dumps(shown, ensure_ascii=False, separators=(",", ":"), default=str)
    except Exception:  # not JSON data, nested too deeply, or a str() (the default) that raises
        pass
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__} that cannot be written as text>"


def answer_text(value: Any) -> str:
    """How a value is written into a plan's answer template (``join("... ${k} ...")``).

    As :func:`stringify`, except for floats, which are written for a reader rather than
    for a tool: with at most 15 significant digits (what a 64-bit float holds exactly in
    decimal), so ``0.1 + 0.2`` reads ``0.3``, and without a fraction when they are whole
    (``3.0`` reads ``3``). Strings go in as they are, other JSON compactly.

    >>> answer_text(8848 / 5895), answer_text(0.1 + 0.2), answer_text(3.0), answer_text([1, "a"])
    ('1.50093299406277', '0.3', '3', '[1,"a"]')
    """
    if type(value) is float and math.isfinite(value):
        return format(value, ".15g")
    return stringify(value)


def _number_text(value: int | float) -> str:
    try:
        return repr(value)
    except ValueError:  # more digits than int -> str converts (sys.get_int_max_str_digits)
        assert isinstance(value, int)
        return f"<{'negative ' if value < 0 else ''}integer of about {_digits(value)} digits>"


def _digits(value: int) -> int:
    """About how many decimal digits ``value`` has (without writing it out)."""
    return int(abs(value).bit_length() * math.log10(2)) + 1


def _writable(value: Any, path: set[int], depth: int) -> Any:
    """``value`` with each integer too long to write replaced by its :func:`_number_text`."""
    if type(value) is int:
        return _number_text(value) if value.bit_length() > 12_000 else value
    if isinstance(value, list | tuple | dict):
        if id(value) in path or depth > 2 * MAX_NESTING:
            raise ValueError("cycle or deep nesting")
        path.add(id(value))
        try:
            if isinstance(value, dict):
                return {k: _writable(v, path, depth + 1) for k, v in value.items()}
            return [_writable(v, path, depth + 1) for v in value]
        finally:
            path.discard(id(value))
    return value


@dataclass(frozen=True, slots=True)
class Template:
    """A string with ``${k}`` interpolations: literal text and :class:`Ref` parts, in order."""

    parts: tuple[str | Ref, ...]

    @property
    def refs(self) -> tuple[Ref, ...]:
        """The references inside the string, in order."""
        return tuple(p for p in self.parts if isinstance(p, Ref))

    def render(self, resolve: Callable[[Ref], Any], text: Callable[[Any], str] = stringify) -> str:
        """The string with each reference replaced by ``text(resolve(ref))`` (``text`` is
        :func:`stringify` for arguments, :func:`answer_text` for a plan's answer)."""
        return "".join(p if isinstance(p, str) else text(resolve(p)) for p in self.parts)

    def to_text(self) -> str:
        """The template as a quoted plan string."""
        body = []
        for p in self.parts:
            if isinstance(p, Ref):
                body.append(p.to_template_text())
            else:
                body.append(json.dumps(p, ensure_ascii=False)[1:-1].replace("${", "\\u0024{"))
        return '"' + "".join(body) + '"'


def iter_refs(value: Value) -> Iterator[Ref]:
    """Every :class:`Ref` in a value, including those inside templates, lists and dicts."""
    if isinstance(value, Ref):
        yield value
    elif isinstance(value, Template):
        yield from value.refs
    elif isinstance(value, list | tuple):
        for item in value:
            yield from iter_refs(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from iter_refs(item)


_NO_DEPS: frozenset[int] = frozenset()
_PLAIN = frozenset((str, int, float, bool, type(None)))


def _add_ref_ids(value: Value, ids: set[int]) -> None:
    """Add the task ids of every :class:`Ref` in ``value`` to ``ids`` (:func:`iter_refs`, faster:
    plain scalars and lists of plain ``$k`` are read by their type, without a generator)."""
    kind = type(value)
    if kind in _PLAIN:
        return
    if kind is Ref:
        ids.add(value.task_id)
    elif kind is list or kind is tuple:
        for item in value:
            if type(item) is Ref:
                ids.add(item.task_id)
            elif type(item) not in _PLAIN:
                _add_ref_ids(item, ids)
    else:
        ids.update(ref.task_id for ref in iter_refs(value))


def _value_problem(value: Value, depth: int = 1) -> str | None:
    """Why ``value`` cannot be a plan argument (not JSON data, a reference or a template), or
    ``None``; ``depth`` counts the arrays and objects it is inside."""
    kind = type(value)
    if kind is str or kind is bool or value is None or kind is Ref or kind is Template:
        return None
    if kind is int:
        # the parsers refuse an integer longer than Python writes as text: so does a task
        # built by hand, so that every plan can be written out (``to_text``) and read back
        if value.bit_length() <= 12_000 or not _number_text(value).startswith("<"):
            return None
        return f"an integer of about {_digits(value)} digits is too long for a plan (pass it as a string)"
    if kind is float:
        return None if math.isfinite(value) else f"{value!r} is not a JSON number"
    if kind is list or kind is tuple or kind is dict:
        if depth > MAX_NESTING:
            return f"nesting deeper than {MAX_NESTING} levels"
        if kind is dict:
            for key, item in value.items():
                if type(key) is not str:
                    return f"the object key {key!r} is not a string"
                problem = _value_problem(item, depth + 1)
                if problem is not None:
                    return _inside(f"[{key!r}]", problem)
            return None
        for i, item in enumerate(value):
            problem = _value_problem(item, depth + 1)
            if problem is not None:
                return _inside(f"[{i}]", problem)
        return None
    return (
        f"a value of type {kind.__name__} is not JSON data "
        "(use strings, numbers, booleans, null, lists and dicts)"
    )


def _inside(where: str, problem: str) -> str:
    if problem.startswith("nesting"):
        return problem  # a path 65 levels long says nothing more
    return f"{where}{problem}" if problem[0] == "[" else f"{where}: {problem}"


def _check_task(task: Task) -> None:
    """Refuse a hand-built task that no parser could have produced, before anything runs it."""
    tid = task.id
    if type(tid) is not int or tid < 1:
        raise TaskIdError(
            f"task id {tid!r}: ids are whole numbers from 1 up",
            text=f"Task(id={tid!r}, tool={task.tool!r})",
            hint="number tasks 1, 2, 3, ... (a replan continues the numbering)",
        )
    if type(task.tool) is not str or not task.tool:
        raise ArgumentTypeError(f"task {tid}: the tool must be a non-empty string, got {task.tool!r}")
    where = [(f"argument {i + 1}", v) for i, v in enumerate(task.args)]
    for key in task.kwargs:
        if type(key) is not str:
            raise ArgumentTypeError(f"task {tid}: the keyword {key!r} is not a string")
    where.extend((f"argument {k!r}", v) for k, v in task.kwargs.items())
    for name, value in where:
        problem = _value_problem(value)
        if problem is not None:
            sep = "" if problem[0] == "[" else ": "
            raise ArgumentTypeError(
                f"task {tid} ({task.tool}), {name}{sep}{problem}",
                hint="plan arguments are JSON values, $k references or templates",
            )


def value_to_text(value: Value) -> str:
    """A value as written in a plan."""
    if isinstance(value, Ref | Template):
        return value.to_text()
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("${", "\\u0024{")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(value_to_text(v) for v in value) + "]"
    if isinstance(value, dict):
        items = (f"{json.dumps(k, ensure_ascii=False)}: {value_to_text(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    return json.dumps(value)


@dataclass(frozen=True, slots=True)
class Task:
    """One tool call in a plan.

    ``args`` are the positional arguments, ``kwargs`` the keyword ones, exactly as written.
    Use :meth:`bind` to map them onto parameter names. ``line`` and ``column`` say where the task
    starts in the plan text (0 when built by hand) and take no part in equality. A task is
    immutable, its ``kwargs`` included: :attr:`deps` is found once, when it is built (use
    :func:`dataclasses.replace` for a changed copy).
    """

    id: int
    tool: str
    args: tuple[Value, ...] = ()
    kwargs: Mapping[str, Value] = field(default_factory=dict)
    thought: str | None = None
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)

    #: Ids of the tasks whose results this task uses, found once when the task is built (a
    #: parsed plan's tasks are built as the plan streams in, so schedulers read it for free).
    deps: frozenset[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_task(self)
        ids: set[int] = set()
        for value in self.args:
            _add_ref_ids(value, ids)
        for value in self.kwargs.values():
            _add_ref_ids(value, ids)
        object.__setattr__(self, "deps", frozenset(ids) if ids else _NO_DEPS)

    @property
    def refs(self) -> tuple[Ref, ...]:
        """Every reference in the arguments, in order of appearance."""
        out = [r for v in self.args for r in iter_refs(v)]
        out.extend(r for v in self.kwargs.values() for r in iter_refs(v))
        return tuple(out)

    def bind(self, param_names: list[str] | tuple[str, ...]) -> dict[str, Value]:
        """Arguments by parameter name: positional ones take ``param_names`` in order.

        Raises ``ValueError`` when there are more positional arguments than names, or a name is
        given twice; plan validation reports these with line and column first.
        """
        if len(self.args) > len(param_names):
            raise ValueError(
                f"{self.tool} takes {len(param_names)} positional arguments, got {len(self.args)}"
            )
        out = dict(zip(param_names, self.args, strict=False))
        for key, value in self.kwargs.items():
            if key in out:
                raise ValueError(f"{self.tool} got argument {key!r} twice")
            out[key] = value
        return out

    def to_text(self) -> str:
        """The task's line as written in a plan (without its Thought)."""
        parts = [value_to_text(v) for v in self.args]
        parts.extend(f"{k}={value_to_text(v)}" for k, v in self.kwargs.items())
        return f"{self.id}. {self.tool}({', '.join(parts)})"


@dataclass(frozen=True, slots=True)
class Plan:
    """A parsed plan: its tasks in order and, when present, the closing ``join()``.

    ``answer`` is the plan's answer template, ``join("Everest is ${5} times as tall")``: the
    answer the plan proposes, written with the results of earlier tasks (a template without
    references is a plain answer). ``None`` for a plain ``join()``. The runtime answers with it,
    rendered, once every task it references has succeeded, without asking the joiner.
    """

    tasks: tuple[Task, ...] = ()
    join_id: int | None = None
    join_thought: str | None = None
    answer: Template | None = None

    @property
    def joined(self) -> bool:
        """Whether the plan ended with ``join()``."""
        return self.join_id is not None

    @property
    def ids(self) -> tuple[int, ...]:
        """The task ids, in order."""
        return tuple(t.id for t in self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks)

    def task(self, task_id: int) -> Task:
        """The task with id ``task_id``; ``KeyError`` if there is none."""
        for t in self.tasks:
            if t.id == task_id:
                return t
        raise KeyError(task_id)

    def to_text(self) -> str:
        """The plan in the text dialect; ``parse_plan(plan.to_text()) == plan``."""
        lines = []
        for t in self.tasks:
            if t.thought is not None:
                lines.append(f"Thought: {t.thought}")
            lines.append(t.to_text())
        if self.join_id is not None:
            if self.join_thought is not None:
                lines.append(f"Thought: {self.join_thought}")
            answer = "" if self.answer is None else self.answer.to_text()
            lines.append(f"{self.join_id}. {JOIN}({answer})")
        return "\n".join(lines) + "\n"

    # -- the plan as a graph --------------------------------------------------------------------

    def graph(self) -> nx.DiGraph:
        """The task DAG: a node per task id (attribute ``task``), an edge from each input to its user."""
        import networkx as nx

        g = nx.DiGraph()
        for t in self.tasks:
            g.add_node(t.id, task=t)
        for t in self.tasks:
            for dep in t.deps:
                if dep in g:
                    g.add_edge(dep, t.id)
        return g

    def generations(self) -> list[list[int]]:
        """Task ids grouped into waves: each wave needs only tasks of earlier waves."""
        import networkx as nx

        return [sorted(gen) for gen in nx.topological_generations(self.graph())]

    def critical_path(
        self, durations: Mapping[int, float] | Callable[[Task], float] | None = None
    ) -> tuple[list[int], float]:
        """The longest chain of dependent tasks and its total duration.

        ``durations`` gives each task's duration, by id or as a function of the task; every task
        counts 1 when it is omitted.
        """
        import networkx as nx

        def duration(t: Task) -> float:
            if durations is None:
                return 1.0
            if callable(durations):
                return float(durations(t))
            return float(durations.get(t.id, 0.0))

        g = self.graph()
        if not g:
            return [], 0.0
        finish: dict[int, float] = {}
        best: dict[int, int | None] = {}
        for node in nx.topological_sort(g):
            preds = list(g.predecessors(node))
            prev = max(preds, key=lambda p: finish[p]) if preds else None
            start = finish[prev] if prev is not None else 0.0
            finish[node] = start + duration(g.nodes[node]["task"])
            best[node] = prev
        end = max(finish, key=lambda n: finish[n])
        path: list[int] = []
        cur: int | None = end
        while cur is not None:
            path.append(cur)
            cur = best[cur]
        return path[::-1], finish[end]
