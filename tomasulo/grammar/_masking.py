"""Token masks for models run in-process: llguidance over a Hugging Face ``tokenizer.json``.

>>> masker = TokenMasker("tokenizer.json", build_grammar(toolset))   # doctest: +SKIP
>>> while not masker.is_stopped:                                     # doctest: +SKIP
...     allowed = masker.allowed()          # bool array, one entry per token id
...     token = pick(logits, allowed)
...     if token == masker.eos_token:
...         break
...     masker.accept(token)
>>> masker.text                                                      # doctest: +SKIP

:func:`constrained_generate` runs that loop for any logits function.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..exceptions import ConfigError
from ._build import PlanGrammar

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["Generation", "TokenMasker", "compile_grammar", "constrained_generate", "load_tokenizer"]

TokenizerSource = str | os.PathLike[str] | Any
GrammarSource = PlanGrammar | str | Mapping[str, Any]

_TOKENIZERS: dict[tuple[str, int | None], Any] = {}
_LOCK = threading.Lock()


def _tokenizer_json(tokenizer: TokenizerSource) -> str:
    if hasattr(tokenizer, "to_str"):  # a tokenizers.Tokenizer
        return str(tokenizer.to_str())
    if isinstance(tokenizer, os.PathLike) or (
        isinstance(tokenizer, str) and not tokenizer.lstrip().startswith("{")
    ):
        path = Path(tokenizer)
        if path.is_dir():
            path = path / "tokenizer.json"
        try:
            return path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read tokenizer file {str(path)!r}: {exc}") from None
    if isinstance(tokenizer, str):
        return tokenizer
    raise ConfigError(
        "tokenizer must be a path to tokenizer.json, its JSON text, or a tokenizers.Tokenizer, "
        f"not {type(tokenizer).__name__}"
    )


def load_tokenizer(tokenizer: TokenizerSource, *, eos_token: int | None = None) -> Any:
    """An ``llguidance.LLTokenizer`` for a Hugging Face tokenizer, built once and cached.

    ``tokenizer`` is a path to ``tokenizer.json`` (or its folder), its JSON text, or a
    ``tokenizers.Tokenizer``. ``eos_token`` overrides the end-of-sequence token id.
    """
    import llguidance

    if type(tokenizer).__name__ == "LLTokenizer":
        return tokenizer
    text = _tokenizer_json(tokenizer)
    key = (hashlib.sha256(text.encode()).hexdigest(), eos_token)
    with _LOCK:
        hit = _TOKENIZERS.get(key)
    if hit is not None:
        return hit
    try:
        lltok = llguidance.LLTokenizer(text, eos_token=eos_token)
    except Exception as exc:  # llguidance raises plain ValueError/RuntimeError
        raise ConfigError(f"llguidance cannot use this tokenizer: {exc}") from exc
    with _LOCK:
        _TOKENIZERS[key] = lltok
    return lltok


def compile_grammar(grammar: GrammarSource) -> str:
    """The llguidance grammar for a :class:`PlanGrammar`, Lark text, GBNF text or a JSON schema
    (a mapping).

    A :class:`PlanGrammar` is compiled from its llguidance form (:meth:`PlanGrammar.llguidance`),
    which holds the same language as its portable Lark and compiles several times faster.
    """
    import llguidance

    if isinstance(grammar, PlanGrammar):
        return str(llguidance.LLMatcher.grammar_from_lark(grammar.llguidance()))
    if isinstance(grammar, Mapping):
        return str(llguidance.LLMatcher.grammar_from_json_schema(json.dumps(grammar)))
    if "::=" in grammar and not llguidance.gbnf_to_lark.is_lark_syntax(grammar):
        try:
            return str(llguidance.grammar_from("gbnf", grammar))
        except ValueError as exc:
            raise ConfigError(f"cannot read the GBNF grammar: {exc}") from None
    return str(llguidance.LLMatcher.grammar_from_lark(grammar))


class TokenMasker:
    """Which tokens may come next under a grammar, step by step.

    Args:
        tokenizer: a path to a Hugging Face ``tokenizer.json``, its JSON text, a
            ``tokenizers.Tokenizer`` or an ``llguidance.LLTokenizer``.
        grammar: a :class:`PlanGrammar`, grammar text in Lark or GBNF, or a JSON schema.
        eos_token: the end-of-sequence token id, if the tokenizer does not say.

    Raises:
        ConfigError: the tokenizer cannot be read or the grammar does not compile.
    """

    def __init__(
        self,
        tokenizer: TokenizerSource,
        grammar: GrammarSource,
        *,
        eos_token: int | None = None,
    ) -> None:
        import llguidance
        import numpy as np

        self.tokenizer = load_tokenizer(tokenizer, eos_token=eos_token)
        compiled = compile_grammar(grammar)
        self._matcher = llguidance.LLMatcher(self.tokenizer, compiled, log_level=0)
        if self._matcher.is_error():
            raise ConfigError(f"llguidance rejected the grammar: {self._matcher.get_error()}")
        self.vocab_size: int = int(self.tokenizer.vocab_size)
        self._bitmask = np.zeros(((self.vocab_size + 31) // 32,), dtype=np.int32)
        self._bitmask_ptr: int = self._bitmask.ctypes.data
        self._bitmask_bytes = self._bitmask.view(np.uint8)
        self.tokens: list[int] = []

    @property
    def eos_token(self) -> int:
        """The end-of-sequence token id: allowed once the grammar is satisfied."""
        return int(self.tokenizer.eos_token)

    def bitmask(self) -> npt.NDArray[np.int32]:
        """The allowed tokens as a packed bitmask (bit ``i % 32`` of word ``i // 32``).

        The array is reused by the next call; copy it to keep it.
        """
        v = self._bitmask
        self._matcher.unsafe_compute_mask_ptr(self._bitmask_ptr, v.size * v.itemsize)
        return v

    def allowed_array(self) -> npt.NDArray[np.intp]:
        """The ids of the tokens that may come next, as an array (cheaper than :meth:`allowed_ids`)."""
        import numpy as np

        self.bitmask()
        bits = np.unpackbits(self._bitmask_bytes, count=self.vocab_size, bitorder="little")
        return np.flatnonzero(bits)

    def allowed(self) -> npt.NDArray[np.bool_]:
        """One bool per token id: may it come next?"""
        import numpy as np

        bits = np.unpackbits(self.bitmask().view(np.uint8), bitorder="little")
        return bits[: self.vocab_size].astype(bool)

    def allowed_ids(self) -> list[int]:
        """The ids of the tokens that may come next."""
        import numpy as np

        return [int(i) for i in np.flatnonzero(self.allowed())]

    def accept(self, token: int) -> bool:
        """Take ``token`` as the next one; ``False`` (and no change) if the grammar forbids it."""
        if self._matcher.validate_tokens([token]) != 1:
            return False
        if not self._matcher.consume_token(token):  # pragma: no cover - validated above
            return False
        self.tokens.append(token)
        return True

    @property
    def is_accepting(self) -> bool:
        """The tokens so far form a complete text of the grammar (it may still go on)."""
        return bool(self._matcher.is_accepting())

    @property
    def is_stopped(self) -> bool:
        """Nothing but end-of-sequence may come next."""
        return bool(self._matcher.is_stopped())

    @property
    def text(self) -> str:
        """The accepted tokens, decoded."""
        return str(self.tokenizer.decode_str(self.tokens))

    def reset(self) -> None:
        """Back to the start of the grammar."""
        self._matcher.reset()
        self.tokens.clear()


@dataclass(frozen=True, slots=True)
class Generation:
    """What :func:`constrained_generate` produced: the text, its tokens, and whether it is complete."""

    text: str
    tokens: tuple[int, ...]
    complete: bool


LogitsFn = Callable[[Sequence[int]], Any]


def constrained_generate(
    logits_fn: LogitsFn,
    tokenizer: TokenizerSource,
    grammar: GrammarSource | TokenMasker,
    *,
    max_tokens: int = 1024,
    seed: int | None = None,
    temperature: float = 1.0,
) -> Generation:
    """Sample a text of ``grammar`` from any model's logits.

    ``logits_fn(tokens)`` gets the token ids so far and returns one score per vocabulary entry
    (a sequence or array at least the tokenizer's vocabulary size long). Tokens the grammar
    forbids are masked out, then a token is drawn from ``softmax(logits / temperature)``
    (``temperature=0``: the best one); where the grammar allows one token only, it is taken
    without calling ``logits_fn``. Generation stops at end-of-sequence, when the grammar
    admits nothing more, or after ``max_tokens`` (then ``complete`` is ``False``).

    Passing a :class:`TokenMasker` as ``grammar`` reuses its compiled grammar (it is reset first).
    """
    import numpy as np

    if max_tokens < 1:
        raise ConfigError(f"max_tokens must be at least 1, got {max_tokens}")
    if temperature < 0:
        raise ConfigError(f"temperature must be 0 or more, got {temperature}")
    if isinstance(grammar, TokenMasker):
        masker = grammar
        masker.reset()
    else:
        masker = TokenMasker(tokenizer, grammar)
    rng = np.random.default_rng(seed)
    n = masker.vocab_size
    eos = masker.eos_token
    for _ in range(max_tokens):
        if masker.is_stopped:
            break
        ids = masker.allowed_array()
        if ids.size == 0:  # pragma: no cover - llguidance always allows EOS or a token
            break
        if ids.size == 1:  # forced: no need to ask the model
            token = int(ids[0])
            if token == eos:
                break
            masker.accept(token)
            continue
        scores = np.asarray(logits_fn(masker.tokens), dtype=np.float64)[:n][ids]
        if temperature == 0:
            token = int(ids[int(np.argmax(scores))])
        else:
            # a draw from softmax(scores / temperature) by inverting its cumulative sum: one
            # uniform number per step (Gumbel noise per allowed token costs several times more
            # where thousands are allowed, as inside strings)
            z = np.exp((scores - scores.max()) / temperature)
            cdf = np.cumsum(z)
            pick = min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), ids.size - 1)
            token = int(ids[pick])
        if token == eos:
            break
        masker.accept(token)
    return Generation(masker.text, tuple(masker.tokens), masker.is_accepting)
