"""An in-process model: any model's logits, decoded under the plan grammar's token masks.

:class:`LocalModel` is a :class:`~tomasulo.planner.Model`, so the planner and the joiner use it
as they use an :class:`~tomasulo.planner.LLM`: plans stream task by task, and every plan is
valid by construction, since llguidance (:class:`~tomasulo.grammar.TokenMasker`) masks out
every token the grammar forbids before one is picked. Give it a function from the token ids so
far to one score per vocabulary entry (a ``transformers`` model's last logits, llama.cpp's
low-level API, a test's scripted weights) and the model's Hugging Face tokenizer::

    def logits(prompt: Sequence[int], generated: Sequence[int]) -> np.ndarray:
        ids = torch.tensor([[*prompt, *generated]])
        return model(ids).logits[0, -1].float().numpy()

    orch = Orchestrator(tools, LocalModel(logits, "path/to/tokenizer.json", model="qwen-local"))
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from contextlib import aclosing
from typing import Any

import anyio

from ..exceptions import ConfigError, LLMTruncated
from ..grammar import TokenMasker, load_tokenizer
from ._dialects import GrammarForm, GrammarSpec
from ._usage import Usage

__all__ = ["LocalModel", "chat_text"]

#: ``logits(prompt_ids, generated_ids)``: one score per vocabulary entry for the next token.
LogitsFn = Callable[[Sequence[int], Sequence[int]], Any]


def chat_text(messages: Sequence[Mapping[str, str]]) -> str:
    """The default prompt of a :class:`LocalModel`: each message under its role, then the
    assistant's turn. Pass your model's own chat template as ``template=`` instead."""
    turns = "".join(f"<|{m.get('role', 'user')}|>\n{m.get('content', '')}\n" for m in messages)
    return turns + "<|assistant|>\n"


class LocalModel:
    """A model run in this process under llguidance token masks.

    Args:
        logits: ``logits(prompt_ids, generated_ids)`` gives one score per vocabulary entry for
            the next token; it runs in a worker thread, one call per token (none where the
            grammar allows a single token).
        tokenizer: the model's tokenizer: a path to ``tokenizer.json``, its JSON text, a
            ``tokenizers.Tokenizer`` or an ``llguidance.LLTokenizer``.
        model: its name in events and logs.
        template: turns the chat messages into the prompt text (default: :func:`chat_text`).
        max_tokens: the longest answer, when the caller gives no ``max_tokens``.
        temperature: ``0`` (the default) picks the best allowed token; above it, a token is
            drawn from ``softmax(scores / temperature)`` with ``seed``.

    Raises:
        ConfigError: the tokenizer cannot be read, or a setting is out of range.
    """

    def __init__(
        self,
        logits: LogitsFn,
        tokenizer: Any,
        *,
        model: str = "local",
        template: Callable[[Sequence[Mapping[str, str]]], str] = chat_text,
        max_tokens: int = 1024,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> None:
        import numpy as np

        if max_tokens < 1:
            raise ConfigError(f"LocalModel max_tokens must be at least 1, got {max_tokens}")
        if temperature < 0:
            raise ConfigError(f"LocalModel temperature must be 0 or more, got {temperature}")
        self.model = model
        self.tokenizer = load_tokenizer(tokenizer)
        self.template = template
        self.max_tokens = max_tokens
        self.temperature = temperature
        self._logits = logits
        self._rng = np.random.default_rng(seed)
        #: What every call used, added up (as ``LLM.usage``).
        self.usage = Usage()

    def grammar_form(self) -> GrammarForm:
        """Plans are masked with the grammar's Lark form (llguidance reads it)."""
        return "lark"

    async def stream(
        self,
        messages: str | Sequence[Mapping[str, str]],
        *,
        grammar: GrammarSpec | None = None,
        max_tokens: int | None = None,
        stop: Sequence[str] | None = None,
        usage: Usage | None = None,
        watch: Callable[[Usage], None] | None = None,
    ) -> AsyncGenerator[str, None]:
        """Yield the text as it is decoded, under ``grammar`` (its Lark form, else its JSON
        schema; none: any text), until end-of-sequence, a ``stop`` string or ``max_tokens``.

        Raises:
            LLMTruncated: ``max_tokens`` came before the answer was complete.
        """
        run = _Decoding(self, messages, grammar, max_tokens or self.max_tokens, stop or ())
        try:
            while (text := await anyio.to_thread.run_sync(run.step)) is not None:
                if text:
                    yield text
                    if watch is not None:
                        watch(run.used() + usage if usage is not None else run.used())
            run.check_finish()
        finally:
            used = run.used()
            self.usage.add(used)
            if usage is not None:
                usage.add(used)

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
        """The whole answer (see :meth:`stream`); ``json_schema`` constrains it to that schema.

        Raises:
            LLMTruncated: ``max_tokens`` came before the answer was complete.
        """
        if json_schema is not None:
            if grammar is not None:
                raise ConfigError("give complete() a grammar or a json_schema, not both")
            grammar = GrammarSpec(json_schema=json_schema, name="answer")
        parts = []
        chunks = self.stream(messages, grammar=grammar, max_tokens=max_tokens, stop=stop, usage=usage)
        async with aclosing(chunks) as texts:
            async for text in texts:
                parts.append(text)
        return "".join(parts)


class _Decoding:
    """One answer of a :class:`LocalModel`, a token per :meth:`step` (each in a worker thread)."""

    def __init__(
        self,
        model: LocalModel,
        messages: str | Sequence[Mapping[str, str]],
        grammar: GrammarSpec | None,
        max_tokens: int,
        stop: Sequence[str],
    ) -> None:
        chat = [{"role": "user", "content": messages}] if isinstance(messages, str) else messages
        self.model = model
        self.tokenizer = model.tokenizer
        self.prompt = [int(t) for t in self.tokenizer.tokenize_str(model.template(chat))]
        self.masker: TokenMasker | None = None
        if grammar is not None:
            source = grammar.lark if grammar.lark is not None else grammar.json_schema
            if source is None:
                raise ConfigError(
                    "a LocalModel reads a grammar's Lark form or its JSON schema, not GBNF alone"
                )
            self.masker = TokenMasker(self.tokenizer, source)
        self.tokens: list[int] = []
        self.max_tokens = max_tokens
        self.stop = tuple(stop)
        self.text = ""
        self.ended = False  # end-of-sequence, a stop string, or the grammar's end
        self._stopped = False  # by a stop string
        self._held = ""  # text that may be the start of a stop string
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def step(self) -> str | None:
        """Decode one more token; the new text (maybe ``""``), or ``None`` once the answer ended.

        Text that may be the start of a ``stop`` string is held back until it is known not to
        be; the stop string itself is never passed on."""
        if self.ended or len(self.tokens) >= self.max_tokens:
            if self._held and not self._stopped:
                held, self._held = self._held, ""
                self.text += held
                return held
            return None
        token = self._pick()
        if token is None:
            self.ended = True
            return self.step()
        self.tokens.append(token)
        pending = self._held + self._decoder.decode(bytes(self.tokenizer.decode_bytes([token])))
        for s in self.stop:
            at = pending.find(s)
            if at >= 0:
                self.ended = self._stopped = True
                self._held = ""
                self.text += pending[:at]
                return pending[:at]
        keep = max((n for s in self.stop for n in range(1, len(s)) if pending.endswith(s[:n])), default=0)
        piece, self._held = (pending[:-keep], pending[-keep:]) if keep else (pending, "")
        self.text += piece
        return piece

    def _pick(self) -> int | None:
        import numpy as np

        eos = int(self.tokenizer.eos_token)
        masker = self.masker
        if masker is not None:
            if masker.is_stopped:
                return None
            ids = masker.allowed_array()
            if ids.size == 1:  # forced: no need to ask the model
                token = int(ids[0])
                return None if token == eos else token if masker.accept(token) else None
        scores = np.asarray(self.model._logits(self.prompt, self.tokens), dtype=np.float64)
        if masker is not None:
            scores = scores[: masker.vocab_size][ids]
        else:
            ids = np.arange(scores.size)
        if self.model.temperature == 0:
            token = int(ids[int(np.argmax(scores))])
        else:
            z = np.exp((scores - scores.max()) / self.model.temperature)
            cdf = np.cumsum(z)
            draw = self.model._rng.random() * cdf[-1]
            token = int(ids[min(int(np.searchsorted(cdf, draw, side="right")), ids.size - 1)])
        if token == eos:
            return None
        if masker is not None:
            masker.accept(token)
        return token

    def check_finish(self) -> None:
        """Raise :class:`LLMTruncated` if ``max_tokens`` cut the answer short."""
        if self.ended:
            return
        complete = self.masker is not None and self.masker.is_stopped
        if not complete:
            raise LLMTruncated(
                f"the local model {self.model.model!r} reached max_tokens={self.max_tokens} "
                "before its answer was complete",
                partial=self.text,
                max_tokens=self.max_tokens,
            )

    def used(self) -> Usage:
        return Usage(prompt_tokens=len(self.prompt), completion_tokens=len(self.tokens), requests=1)
