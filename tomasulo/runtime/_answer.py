"""The run's answer as it is written: a plan's answer template, and the joiner's streamed text.

A plan may end with an answer template, ``join("Everest is ${5} times as tall")``. When every
task it references has succeeded, :func:`render_answer` writes it out (values by
:func:`~tomasulo.grammar.answer_text`: strings as they are, numbers without float noise, other
JSON compactly) and the run answers with it, without a joiner call. :class:`AnswerDeltas` passes
the answer's text on as ``AnswerDelta`` events, coalesced, and only while someone listens.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from ..dispatcher import Outcome, RunJournal
from ..grammar import Ref, Template, answer_text
from ._events import AnswerDelta

__all__ = ["ANSWER_DELTA_INTERVAL", "JOINER_MODES", "AnswerDeltas", "JoinerMode", "render_answer"]

#: ``Orchestrator(joiner=...)``: ``"auto"`` answers with a plan's template when its tasks
#: succeeded (the joiner runs otherwise); ``"always"`` asks the joiner every time, showing it
#: the rendered template as the plan's proposed answer.
JoinerMode = Literal["auto", "always"]
JOINER_MODES: tuple[JoinerMode, ...] = ("auto", "always")

#: After its first piece, the answer's text is passed on at most once per this many seconds.
ANSWER_DELTA_INTERVAL = 0.05


class _Unrendered(Exception):
    """A referenced task has no result to write (it did not succeed, or the path is not there)."""


def render_answer(template: Template, outcomes: Mapping[int, Outcome]) -> str | None:
    """``template`` written out with the tasks' results, or ``None`` when one it references
    did not succeed (failed, skipped, cancelled, not run) or lacks the part its path selects."""

    def resolve(ref: Ref) -> Any:
        outcome = outcomes.get(ref.task_id)
        if outcome is None or outcome.status != "succeeded":
            raise _Unrendered(ref.task_id)
        try:
            return ref.select(outcome.value)
        except (LookupError, TypeError):
            raise _Unrendered(ref.task_id) from None

    try:
        return template.render(resolve, answer_text)
    except _Unrendered:
        return None


class AnswerDeltas:
    """Passes the answer's text on as ``AnswerDelta`` events while someone reads the journal.

    The first piece goes out at once (a caller sees the first words as soon as they exist);
    later ones are joined into one event per :data:`ANSWER_DELTA_INTERVAL`; :meth:`flush` sends
    what is left. While nobody listens nothing is kept and nothing is made, and the joiner's
    reply is not even streamed (:meth:`hook`).
    """

    def __init__(self, journal: RunJournal, source: Literal["joiner", "template"] = "joiner") -> None:
        self.journal = journal
        self.source = source
        self.pending: list[str] = []
        self.sent = False
        self.flushed = 0.0

    def hook(self) -> Callable[[str], None] | None:
        """The joiner's ``on_answer``: this, while someone listens; ``None`` (the reply is
        not streamed at all) while nobody does."""
        return self if self.journal.listening else None

    def __call__(self, piece: str) -> None:
        if not self.journal.listening:
            return
        self.pending.append(piece)
        if not self.sent or time.monotonic() - self.flushed >= ANSWER_DELTA_INTERVAL:
            self.flush()

    def flush(self) -> None:
        """Send the text not yet sent, as one event."""
        if self.pending:
            self.journal.record(AnswerDelta, text="".join(self.pending), source=self.source)
            self.pending.clear()
            self.sent = True
        self.flushed = time.monotonic()
