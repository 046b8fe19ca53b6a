"""Our GBNF under llama.cpp's own grammar sampler never lets an invalid UTF-8 sequence through.

The vocabulary holds whole characters and, on purpose, lone bytes that only belong inside
multi-byte characters (continuation bytes; the leads of surrogates and of code points above
U+10FFFF), and the logits favour those bytes. llama.cpp decodes UTF-8 byte by byte, so a
negated class such as ``[^"\\\\]`` would let it emit a surrogate or a code point past U+10FFFF
(which stalls a server's detokenizer); every class we emit is a range of valid scalar values.
"""

from __future__ import annotations

import codecs
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tomasulo.grammar import build_grammar
from tomasulo.tools import Toolset, tool

from .tiny_gguf import HOSTILE, decode, piece, unpiece, vocabulary, write_model

pytestmark = [
    pytest.mark.llamacpp,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("gguf") is None,
        reason="llama-cpp-python (and gguf) not installed: run scripts/install-llamacpp.sh",
    ),
]

SAMPLES = 120


@tool
def note(text: str, tags: list[str] | None = None) -> str:
    """Keep a note with optional tags."""
    return text


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from grammar.grammar_support import LlamaGrammarEngine  # tests/grammar, as pytest names it

    path = write_model(tmp_path_factory.mktemp("gguf") / "hostile.gguf", hostile=True, weights=False)
    eng = LlamaGrammarEngine(Path(path))
    yield eng
    eng.close()


def hostile_logits(seed: int) -> Any:
    """Noise, a pull towards closing things (so plans end), and a stronger one towards lone bytes."""
    tokens, _ = vocabulary(hostile=True)
    lone = {piece(bytes([b])) for b in HOSTILE}
    bias = np.zeros(len(tokens), dtype=np.float32)
    for i, t in enumerate(tokens):
        if t in lone:
            bias[i] = 6.0
        elif i == 0 or unpiece(t) in (b'"', b")", b"\n", b'")', b")\n", b'")\n', b"]"):
            bias[i] = 3.0
    rng = np.random.default_rng(seed)
    pool = rng.normal(0.0, 2.0, (64, len(tokens))).astype(np.float32) + bias

    def logits(_ids: Any) -> Any:
        return pool[rng.integers(64)]

    return logits


def valid_so_far(data: bytes, *, complete: bool) -> bool:
    """Whether ``data`` is UTF-8 (a prefix of it, allowing a cut character, unless ``complete``)."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=complete)
    except UnicodeDecodeError:
        return False
    return True


def test_sampled_plans_are_valid_utf8_under_llama_cpp(engine: Any) -> None:
    gbnf = build_grammar(Toolset([note]), max_tasks=2).gbnf()
    invalid: list[bytes] = []
    wide = complete = 0
    for i in range(SAMPLES):
        ids, done = engine.sample(gbnf, hostile_logits(i), max_tokens=200)
        data = decode(ids, hostile=True)
        complete += done
        if not valid_so_far(data, complete=done):
            invalid.append(data)
        elif any(b >= 0x80 for b in data):
            wide += 1
    assert invalid == [], invalid[:3]
    assert wide > SAMPLES // 4, "the lone bytes were used (as parts of whole characters) often enough"
    assert complete > SAMPLES // 4
