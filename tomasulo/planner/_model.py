"""The model protocol: what the planner and the joiner need of a model.

:class:`~tomasulo.planner.LLM` (an OpenAI-compatible server over HTTP) is one model; anything
with the same four members is another, so a model can be wrapped (instrumentation, fallback
between servers, recording and replay) without the planner knowing::

    class Counted:
        def __init__(self, inner: Model) -> None:
            self.inner, self.calls = inner, 0
            self.model = inner.model

        def grammar_form(self) -> GrammarForm | None:
            return self.inner.grammar_form()

        async def stream(self, messages, **kw):
            self.calls += 1
            async with aclosing(self.inner.stream(messages, **kw)) as chunks:
                async for text in chunks:
                    yield text

        async def complete(self, messages, **kw):
            self.calls += 1
            return await self.inner.complete(messages, **kw)
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from ._dialects import GrammarForm, GrammarSpec
from ._usage import Usage

__all__ = ["Model"]


@runtime_checkable
class Model(Protocol):
    """A model the planner streams plans from and the joiner asks for decisions.

    ``model`` names it in events (``LLMCallStarted.model``) and logs. :meth:`grammar_form` says
    which form of the plan grammar to build for it (the planner builds only that one) and so
    whether its plans come as text or JSON; ``None`` means it takes no grammar, and its plans
    are read in compat mode (LLMCompiler's syntax too) with a repair round for prose.

    The two calls follow :meth:`LLM.stream <tomasulo.planner.LLM.stream>` and
    :meth:`LLM.complete <tomasulo.planner.LLM.complete>`: the same arguments, the same errors
    (:class:`~tomasulo.exceptions.LLMError` and its subclasses, ``partial`` holding the text
    that arrived), and each adds what it used into the ``usage`` meter it is given.
    """

    @property
    def model(self) -> str:
        """The model's name, as events and logs give it."""
        ...

    def grammar_form(self) -> GrammarForm | None:
        """The form of the plan grammar this model reads, or ``None`` if it takes none."""
        ...

    def stream(
        self,
        messages: str | Sequence[Mapping[str, str]],
        *,
        grammar: GrammarSpec | None = None,
        max_tokens: int | None = None,
        stop: Sequence[str] | None = None,
        usage: Usage | None = None,
        watch: Callable[[Usage], None] | None = None,
    ) -> AsyncGenerator[str, None]:
        """Yield the model's text as it arrives (see :meth:`LLM.stream`)."""
        ...

    async def complete(
        self,
        messages: str | Sequence[Mapping[str, str]],
        *,
        grammar: GrammarSpec | None = None,
        json_schema: Mapping[str, Any] | None = None,
        max_tokens: int | None = None,
        stop: Sequence[str] | None = None,
        usage: Usage | None = None,
    ) -> str:
        """The model's whole answer (see :meth:`LLM.complete`)."""
        ...
