"""Multi-turn conversations: the earlier questions and answers a run continues from."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..exceptions import ConfigError

__all__ = ["Turn", "as_history", "history_text"]

#: An earlier answer longer than this is clipped in prompts.
MAX_TURN_CHARS = 2000
#: The most recent turns a prompt shows (older ones are left out, and it says how many).
MAX_TURNS = 20


@dataclass(frozen=True, slots=True)
class Turn:
    """One earlier exchange of a conversation: the user's question and the answer given."""

    question: str
    answer: str


def as_history(value: Any) -> tuple[Turn, ...]:
    """The turns of ``value``: ``None``; a previous :class:`~tomasulo.RunResult` (anything
    with a ``messages`` attribute: its whole conversation, its own question and answer last);
    or a list of :class:`Turn` s, ``(question, answer)`` pairs, or chat messages
    (``{"role": "user" | "assistant", "content": ...}``, a user message then its answer).

    >>> as_history([("Capital of France?", "Paris")])
    (Turn(question='Capital of France?', answer='Paris'),)
    >>> as_history([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}])
    (Turn(question='Hi', answer='Hello'),)

    Raises:
        ConfigError: a shape other than these, naming the item.
    """
    if value is None:
        return ()
    if hasattr(value, "messages") and not isinstance(value, Mapping | list | tuple):
        return as_history(value.messages)
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ConfigError(
            f"message_history must be a RunResult or a list of turns, got {type(value).__name__}"
        )
    turns: list[Turn] = []
    pending: str | None = None
    for i, item in enumerate(value):
        if isinstance(item, Turn):
            turns.append(item)
        elif isinstance(item, Mapping):
            role, content = item.get("role"), item.get("content")
            if not isinstance(content, str) or role not in ("user", "assistant", "system"):
                raise ConfigError(
                    f"message_history[{i}] must be a chat message with a role of user or assistant "
                    f"and text content, got {_brief(item)}"
                )
            if role == "user":
                if pending is not None:
                    turns.append(Turn(pending, ""))
                pending = content
            elif role == "assistant":
                turns.append(Turn(pending or "", content))
                pending = None
        elif isinstance(item, tuple | list) and len(item) == 2 and all(isinstance(x, str) for x in item):
            turns.append(Turn(item[0], item[1]))
        elif hasattr(item, "messages"):
            turns.extend(as_history(item))
        else:
            raise ConfigError(
                f"message_history[{i}] must be a (question, answer) pair of texts, a Turn, a chat "
                f"message or a RunResult, got {_brief(item)}"
            )
    if pending is not None:
        turns.append(Turn(pending, ""))
    return tuple(turns)


def history_text(turns: Iterable[Turn]) -> str:
    """The conversation so far as prompts show it, oldest first; ``""`` for none."""
    shown = list(turns)
    if not shown:
        return ""
    lines = []
    if len(shown) > MAX_TURNS:
        lines.append(f"({len(shown) - MAX_TURNS} earlier turns left out)")
        shown = shown[-MAX_TURNS:]
    for t in shown:
        lines.append(f"User: {_clip(t.question)}")
        lines.append(f"Assistant: {_clip(t.answer) if t.answer else '(no answer)'}")
    return "\n".join(lines)


def _clip(text: str) -> str:
    text = text.strip()
    return (
        text
        if len(text) <= MAX_TURN_CHARS
        else text[: MAX_TURN_CHARS - 15] + f"... [{len(text) - MAX_TURN_CHARS + 15} more]"
    )


def _brief(item: Any) -> str:
    text = repr(item)
    return text if len(text) <= 80 else text[:77] + "..."
