"""Outcomes and the typed events of a run, and their JSON form.

Every event carries ``run_id``, ``seq`` (strictly increasing within a run), ``ts``
(``time.monotonic()``) and ``task_id`` (``None`` for run-wide events such as a deadline interrupt).
Its class has a ``kind`` (``"task_succeeded"``), the discriminator of its JSON form.

The JSON form (:meth:`Event.to_json`, :meth:`Event.from_json`) round-trips, by this rule:

- values that are JSON values (every task result is one: the dispatcher converts results by
  :func:`~tomasulo.tools.to_json_value`'s rule) stay as they are; tuples become lists,
  and fields typed as tuples come back as tuples;
- a value that rule refuses (an ``Interrupt``'s partial value that is not JSON, a reference
  object inside task arguments) becomes ``{"$type": <type name>, "$repr": <its repr>}``, or,
  for dataclasses such as a plan's references, the object of its fields: never an error; it comes
  back as that object, not as the original value;
- an exception (``Outcome.error``, ``InterruptRaised.error``) becomes ``{"type": <type name>,
  "message": <its text>}`` and comes back as a :class:`RecordedError`, which equals any exception
  of the same type name and message;
- an :class:`Outcome` becomes the object of its fields by the same rules.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal, TypeAlias, TypeVar

from ..exceptions import RecordedError
from ..tools import to_json_value

__all__ = [
    "MAX_REPR_CHARS",
    "Event",
    "InterruptRaised",
    "Outcome",
    "RecordedError",
    "Status",
    "TaskAbandoned",
    "TaskCancelled",
    "TaskEvent",
    "TaskFailed",
    "TaskPlanned",
    "TaskReady",
    "TaskRestored",
    "TaskRetrying",
    "TaskSkipped",
    "TaskStarted",
    "TaskSucceeded",
    "event_kinds",
    "json_value",
]

Status: TypeAlias = Literal["succeeded", "failed", "skipped", "cancelled"]
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one task ended. Each task gets exactly one.

    Attributes:
        task_id: the task.
        tool: the tool it called.
        status: ``"succeeded"``, ``"failed"``, ``"skipped"`` or ``"cancelled"``.
        value: the result (succeeded), or the partial value a tool passed with ``Interrupt``.
        error: the exception (failed, skipped, cancelled), else ``None``.
        error_type: the name of the error's type; for a tool that raised, the tool's own
            exception type (``"ValueError"``).
        message: one line saying what happened, naming the task and the cause.
        attempts: how many times the tool was called (0 when it never ran).
        planned_at, ready_at, started_at, finished_at: ``time.monotonic()`` when the task was
            submitted, had all its inputs, first called its tool, and ended (``None`` where that
            did not happen).
        skipped_because: for a skipped task, the id of the failed or cancelled task that caused it.
    """

    task_id: int
    tool: str
    status: Status
    value: Any = None
    error: BaseException | None = None
    error_type: str | None = None
    message: str | None = None
    attempts: int = 0
    planned_at: float | None = None
    ready_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    skipped_because: int | None = None

    @property
    def ok(self) -> bool:
        """Whether the task succeeded."""
        return self.status == "succeeded"

    @property
    def duration(self) -> float | None:
        """Seconds from the first call to the end, when the tool ran."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def to_json(self) -> dict[str, Any]:
        """The outcome as a JSON object (see the module's rule for values and errors)."""
        return {f.name: _dump_field(f.name, getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Outcome:
        """The outcome :meth:`to_json` wrote; its ``error`` is a :class:`RecordedError`."""
        kwargs = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        if kwargs.get("error") is not None:
            kwargs["error"] = RecordedError.from_json(kwargs["error"])
        return cls(**kwargs)


def _dump_field(name: str, value: Any) -> Any:
    if name == "error":
        return None if value is None else RecordedError.to_json(value)
    return json_value(value)


#: Every event class by its ``kind``; classes register themselves when they are defined.
_KINDS: dict[str, type[Event]] = {}
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def event_kinds() -> dict[str, type[Event]]:
    """Every event class, by its ``kind`` (``{"task_succeeded": TaskSucceeded, ...}``).

    A class defined anywhere that derives from :class:`Event` is listed once its module is
    imported, so :meth:`Event.from_json` reads its JSON form.
    """
    return dict(_KINDS)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every event of a run.

    ``kind`` (a class attribute) names the event in its JSON form: the class name in snake case
    (``TaskSucceeded`` is ``"task_succeeded"``), unless the class sets its own.

    >>> e = TaskReady(run_id="r", seq=3, ts=1.5, task_id=2, tool="search")
    >>> e.to_json()
    {'kind': 'task_ready', 'run_id': 'r', 'seq': 3, 'ts': 1.5, 'task_id': 2, 'tool': 'search'}
    >>> Event.from_json(e.to_json()) == e
    True
    """

    kind: ClassVar[str] = "event"

    run_id: str
    seq: int
    ts: float
    task_id: int | None

    def __init_subclass__(cls) -> None:
        # (no super() call: in a slotted dataclass its implicit __class__ is the class replaced)
        if "kind" not in cls.__dict__:
            cls.kind = _CAMEL.sub("_", cls.__name__).lower()
        taken = _KINDS.get(cls.kind)
        # (the slotted class that replaces the first has its module and name, not yet its qualname)
        if taken is not None and (taken.__module__, taken.__name__) != (cls.__module__, cls.__name__):
            raise TypeError(
                f"event kind {cls.kind!r} of {cls.__module__}.{cls.__qualname__} is already taken by "
                f"{taken.__module__}.{taken.__qualname__}; give the class a kind of its own "
                '(kind: ClassVar[str] = "...")'
            )
        _KINDS[cls.kind] = cls  # the slotted class dataclass makes replaces the first one

    def to_json(self) -> dict[str, Any]:
        """The event as a JSON object: ``kind`` first, then every field (see the module's rule)."""
        out: dict[str, Any] = {"kind": self.kind}
        for name, dump, _ in _codecs(type(self)):
            out[name] = dump(getattr(self, name))
        return out

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> Event:
        """The event whose JSON form is ``data`` (of whichever class its ``kind`` names).

        Raises:
            ValueError: ``data`` has no ``kind``, or one no imported event class has.
        """
        kind = data.get("kind")
        cls = _KINDS.get(kind) if isinstance(kind, str) else None
        if cls is None:
            raise ValueError(f"no event class has kind {kind!r}; known kinds: {', '.join(sorted(_KINDS))}")
        kwargs = {name: load(data[name]) for name, _, load in _codecs(cls) if name in data}
        return cls(**kwargs)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskEvent(Event):
    """An event about one task; ``tool`` names its tool."""

    task_id: int
    tool: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskPlanned(TaskEvent):
    """A task was submitted; ``deps`` are the ids of the tasks whose results it uses.

    ``args`` are its arguments by parameter name, as written in the plan (references are
    :class:`~tomasulo.grammar.Ref` and :class:`~tomasulo.grammar.Template` objects; their JSON
    form is the object of their fields).
    """

    deps: tuple[int, ...] = ()
    args: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskReady(TaskEvent):
    """Every input of the task exists; it waits only for a free slot now."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskStarted(TaskEvent):
    """The tool is being called (``attempt`` counts from 1)."""

    attempt: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRetrying(TaskEvent):
    """An attempt failed with a retryable error; the next one starts after ``delay`` seconds."""

    attempt: int
    error_type: str
    message: str
    delay: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRestored(TaskEvent):
    """A task that ended in an earlier run: its recorded ``outcome`` was given to this one
    (``Dispatcher(restore=...)``), so references to it resolve and it does not run again."""

    outcome: Outcome


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSucceeded(TaskEvent):
    """The task ended with a value."""

    outcome: Outcome


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFailed(TaskEvent):
    """The task ended with an error."""

    outcome: Outcome


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSkipped(TaskEvent):
    """The task never ran because an input failed or was cancelled."""

    outcome: Outcome


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskCancelled(TaskEvent):
    """The task was cancelled (by the caller, or by the run's deadline)."""

    outcome: Outcome


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskAbandoned(TaskEvent):
    """A cancelled task's call (its outcome already recorded) ignored cancellation for
    ``grace`` seconds, so the run ended without waiting for it: it may still be running.

    ``message`` names the task and the tool. ``outcome`` is the task's outcome as the run ends
    (its ``error_type`` is ``"Abandoned"``); the task's earlier :class:`TaskCancelled` event
    carries the outcome as it was when it was cancelled (``"Cancelled"``).
    """

    grace: float
    message: str
    outcome: Outcome | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class InterruptRaised(Event):
    """Something the planner should hear about: a task failed, a tool raised ``Interrupt``, or the
    run's deadline passed.

    Attributes:
        source: ``"failure"``, ``"interrupt"`` or ``"deadline"``.
        reason: one line for the planner.
        error: the exception behind it, if any.
    """

    source: Literal["failure", "interrupt", "deadline"]
    reason: str
    error: BaseException | None = None


# -- the JSON form ------------------------------------------------------------------------------

#: A non-JSON value's repr is kept to this many characters in its JSON form.
MAX_REPR_CHARS = 2000

_Codec: TypeAlias = tuple[str, Callable[[Any], Any], Callable[[Any], Any]]
_CODECS: dict[type, list[_Codec]] = {}


def json_value(value: Any) -> Any:
    """``value`` as a JSON value by :func:`~tomasulo.tools.to_json_value`'s rule, or, for a
    value that rule refuses, ``{"$type": <type name>, "$repr": <repr>}``; never raises."""
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return value
    try:
        return to_json_value(value)
    except Exception:  # NotJSONError, or an object that breaks while being converted
        try:
            text = repr(value)
        except Exception as exc:
            text = f"<{t.__name__} whose repr() raised {type(exc).__name__}>"
        if len(text) > MAX_REPR_CHARS:
            text = text[: MAX_REPR_CHARS - 3] + "..."
        return {"$type": t.__name__, "$repr": text}


def _identity(value: Any) -> Any:
    return value


def _types_in(hint: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return tuple(t for arg in typing.get_args(hint) for t in _types_in(arg))
    return (hint,)


def _codec(name: str, hint: Any) -> _Codec:
    kinds = [typing.get_origin(t) or t for t in _types_in(hint) if t is not type(None)]
    if Outcome in kinds:
        return (
            name,
            lambda v: None if v is None else v.to_json(),
            lambda v: None if v is None else Outcome.from_json(v),
        )
    if any(isinstance(k, type) and issubclass(k, BaseException) for k in kinds):
        return (
            name,
            lambda v: None if v is None else RecordedError.to_json(v),
            lambda v: None if v is None else RecordedError.from_json(v),
        )
    if tuple in kinds:
        return (
            name,
            lambda v: None if v is None else [json_value(x) for x in v],
            lambda v: None if v is None else tuple(v),
        )
    for k in kinds:
        if isinstance(k, type) and dataclasses.is_dataclass(k):
            cls = k
            return (
                name,
                lambda v: None if v is None else {f.name: json_value(getattr(v, f.name)) for f in fields(v)},
                lambda v, cls=cls: None if v is None else cls(**v),
            )
    return name, json_value, _identity


def _codecs(cls: type[Event]) -> list[_Codec]:
    """How each field of ``cls`` is written and read, from its type hints (built once a class)."""
    codecs = _CODECS.get(cls)
    if codecs is None:
        hints = typing.get_type_hints(cls)
        codecs = _CODECS[cls] = [_codec(f.name, hints[f.name]) for f in fields(cls)]
    return codecs


def _fast_constructor(cls: type[_T]) -> Callable[..., _T]:
    """A positional constructor for a frozen, slotted dataclass that skips ``__init__``.

    The dispatcher builds several events and an outcome per task; a frozen dataclass's
    ``__init__`` sets each field through ``object.__setattr__`` by keyword, which costs a few
    microseconds per object. This sets the slots through their descriptors, in field order, to
    the same effect (the classes have no ``__post_init__``). Every field must be given. Like
    ``dataclasses`` itself, it generates the function's source so that the stores are unrolled.

    Kept because a paired run tells it from noise: without it (keyword constructors for the
    task events and the success outcome), ``python benchmarks/dispatch_ab.py <this tree> <that
    one> --rounds 4`` measured the streamed dispatch latency p50 1.07x and the throughput
    0.60x (``--listen``, every event built: 0.62x, p50 1.06x) on the shared 2-core VM, where
    the throughput figure swings widely; a best-of-15 in-process A/B gave 0.89x (0.76x with a
    listener).
    """
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    scope: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    scope.update({f"_set_{name}": getattr(cls, name).__set__ for name in names})
    body = "".join(f"    _set_{name}(obj, {name})\n" for name in names)
    source = f"def make({', '.join(names)}):\n    obj = _new(_cls)\n{body}    return obj\n"
    exec(source, scope)  # built from the class's own field names only
    make: Callable[..., _T] = scope["make"]
    make.__qualname__ = f"make_{cls.__name__}"
    return make


# Positional, every field in declaration order (see each class for the order).
make_outcome = _fast_constructor(Outcome)
make_planned = _fast_constructor(TaskPlanned)  # run_id, seq, ts, task_id, tool, deps, args
make_ready = _fast_constructor(TaskReady)  # run_id, seq, ts, task_id, tool
make_started = _fast_constructor(TaskStarted)  # run_id, seq, ts, task_id, tool, attempt
#: The terminal event for each status: run_id, seq, ts, task_id, tool, outcome.
make_terminal: dict[str, Callable[..., TaskEvent]] = {
    "succeeded": _fast_constructor(TaskSucceeded),
    "failed": _fast_constructor(TaskFailed),
    "skipped": _fast_constructor(TaskSkipped),
    "cancelled": _fast_constructor(TaskCancelled),
}
