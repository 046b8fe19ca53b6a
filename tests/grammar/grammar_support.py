"""Shared pieces of the grammar engine tests: toolsets, local tokenizers, engine front ends.

Everything expensive is built once per test session (``functools.cache``).
"""

from __future__ import annotations

import ctypes
import functools
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tomasulo.exceptions import PlanError
from tomasulo.grammar import PlanGrammar, build_grammar, parse_plan
from tomasulo.tools import Tool, Toolset

from .plan_tools import plan_tools

DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"
EOS = "<|endoftext|>"


def rich_tools() -> Toolset:
    """Nested objects, arrays of objects, enums, const, unions, ranges, $defs, hyphenated and dotted names."""
    address = {
        "type": "object",
        "properties": {
            "street": {"type": "string"},
            "zip": {"type": "integer", "minimum": 1000, "maximum": 99999},
        },
        "required": ["street"],
    }
    return Toolset(
        [
            Tool(
                name="crm.create-contact",
                input_schema={
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "addresses": {"type": "array", "items": address, "maxItems": 3},
                        "kind": {"enum": ["person", "company", 7, None]},
                        "score": {"type": "number"},
                        "active": {"type": "boolean"},
                    },
                    "required": ["name", "kind"],
                },
            ),
            Tool(
                name="geo.lookup",
                input_schema={
                    "type": "object",
                    "properties": {
                        "place": {"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 0}]},
                        "mode": {"const": "fast"},
                        "level": {"type": "integer", "minimum": -3, "maximum": 12},
                        "bbox": {
                            "type": "array",
                            "items": {"type": "number"},
                            "minItems": 4,
                            "maxItems": 4,
                        },
                    },
                    "required": ["place"],
                },
            ),
            Tool(
                name="llm",
                input_schema={
                    "type": "object",
                    "properties": {
                        "prompt": {"type": "string"},
                        "context": {"type": "array", "items": {}},
                        "options": {"type": "object"},
                    },
                    "required": ["prompt"],
                },
            ),
        ]
    )


def qa_tools() -> Toolset:
    """The ParallelQA tools of the LLMCompiler paper: search(entity), math(problem, context)."""
    return Toolset(
        [
            Tool(
                name="search",
                input_schema={
                    "type": "object",
                    "properties": {"entity": {"type": "string"}},
                    "required": ["entity"],
                },
            ),
            Tool(
                name="math",
                input_schema={
                    "type": "object",
                    "properties": {
                        "problem": {"type": "string"},
                        "context": {"type": "array", "items": {"type": "string"}},
                    },
                    "required": ["problem"],
                },
            ),
        ]
    )


TOOLSETS: dict[str, Callable[[], Toolset]] = {
    "plan": plan_tools,
    "rich": rich_tools,
    "qa": qa_tools,
}


@functools.cache
def toolset(name: str) -> Toolset:
    return TOOLSETS[name]()


def judge(text: str, tools: Toolset, *, max_tasks: int, start_id: int = 1) -> bool:
    """Our strict parser's verdict: a complete, valid plan within max_tasks."""
    try:
        plan = parse_plan(text, tools, start_id=start_id, max_tasks=max_tasks)
    except PlanError:
        return False
    return plan.joined


# -- tokenizers ---------------------------------------------------------------------------------


def _training_text() -> list[str]:
    lines: list[str] = []
    for name in (
        "hotpotqa_comparison.json",
        "movie_recommendations_formatted.json",
        "parallelqa_dataset.json",
    ):
        path = DATASETS / name
        if path.exists():
            lines.extend(str(item["question"]) for item in json.loads(path.read_text()))
    rng = random.Random(7)
    words = sorted({w for line in lines for w in line.split()})
    for _ in range(4000):  # plan-shaped text so the vocabulary holds plan tokens
        tool = rng.choice(["search", "math", "get-weather", "book", "llm", "geo.lookup"])
        lines.append(
            f'{rng.randint(1, 40)}. {tool}(query="{" ".join(rng.choices(words or ["x"], k=3))}", '
            f"n={rng.randint(0, 999)}, ref=${rng.randint(1, 40)}.items[{rng.randint(0, 9)}])"
        )
        lines.append(f"Thought: {' '.join(rng.choices(words or ['x'], k=6))}")
    # random character soup lets the BPE learn enough merges for a large vocabulary
    alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-$.{}[]()"=, '
    for _ in range(30000):
        lines.append("".join(rng.choices(alphabet, k=rng.randint(8, 24))))
    return lines


@functools.cache
def tokenizer(vocab_size: int) -> Any:
    """A byte-level BPE ``tokenizers.Tokenizer`` trained here, with ``<|endoftext|>`` as id 0."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_training_text(), trainer)
    return tok


# -- engines ------------------------------------------------------------------------------------


@functools.cache
def lark_parser(grammar: PlanGrammar) -> Any:
    import lark

    return lark.Lark(grammar.lark(), parser="earley", lexer="dynamic")


def lark_accepts(grammar: PlanGrammar, text: str) -> bool:
    import lark

    try:
        lark_parser(grammar).parse(text)
    except lark.exceptions.LarkError:
        return False
    return True


@functools.cache
def llg_grammar(grammar: PlanGrammar, kind: str) -> str:
    import llguidance

    if kind == "lark":  # the portable form (servers)
        return str(llguidance.LLMatcher.grammar_from_lark(grammar.lark()))
    if kind == "llguidance":  # llguidance's own form (TokenMasker)
        return str(llguidance.LLMatcher.grammar_from_lark(grammar.llguidance()))
    return str(llguidance.grammar_from("gbnf", grammar.gbnf()))


@functools.cache
def llg_tokenizer(vocab_size: int) -> Any:
    import llguidance

    return llguidance.LLTokenizer(tokenizer(vocab_size).to_str())


def llg_matcher(grammar: PlanGrammar, kind: str, vocab_size: int = 4096) -> Any:
    import llguidance

    m = llguidance.LLMatcher(llg_tokenizer(vocab_size), llg_grammar(grammar, kind), log_level=0)
    assert not m.is_error(), m.get_error()
    return m


def llg_accepts(grammar: PlanGrammar, kind: str, text: str) -> bool:
    m = llg_matcher(grammar, kind)
    ids = tokenizer(4096).encode(text).ids
    return bool(m.consume_tokens(ids)) and bool(m.is_accepting())


def plan_logits(vocab_size: int, seed: int, tools: Toolset | None = None) -> Callable[[Any], Any]:
    """Random logits, nudged towards tokens that close things so that plans end soon.

    With ``tools``, pieces of tool and parameter names get a smaller nudge, so that the best few
    tokens usually hold an allowed one where a name is being spelled out.
    """
    tok = tokenizer(vocab_size)
    rng = np.random.default_rng(seed)
    bias = np.zeros(vocab_size)
    closers = {'"', '")', ")", "]", "}", "\n", ")\n", '")\n', '"]', '"}', '",', "join", "()"}
    words = "Thought: join()"
    if tools is not None:
        words += " ".join(
            [t.name + "(" for t in tools]
            + [p + "=" for t in tools for p in t.input_schema.get("properties", {})]
        )
    for i in range(vocab_size):
        piece = tok.decode([i])
        if piece in closers or i == 0:
            bias[i] = 7.0
        elif any(c in piece for c in '")]}\n'):
            bias[i] = 2.0
        elif len(piece) > 1 and piece in words:
            bias[i] = 3.0

    # a pool of noise rows, drawn from at random: fresh noise each step costs more than the mask
    pool = rng.normal(0.0, 1.0, (256, vocab_size)) + bias

    def logits(_tokens: Any) -> Any:
        return pool[rng.integers(256)]

    return logits


# -- llama.cpp ----------------------------------------------------------------------------------


def write_vocab_gguf(path: Path, vocab_size: int) -> None:
    """A vocabulary-only GGUF of the local tokenizer (enough for llama.cpp's grammar sampler)."""
    import gguf

    tok = tokenizer(vocab_size)
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    tokens = [""] * len(vocab)
    for piece, idx in vocab.items():
        tokens[idx] = piece
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(512)
    w.add_embedding_length(8)
    w.add_block_count(1)
    w.add_feed_forward_length(8)
    w.add_head_count(1)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([3 if t == EOS else 1 for t in tokens])
    w.add_token_merges(merges)
    w.add_bos_token_id(0)
    w.add_eos_token_id(0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


class LlamaGrammarEngine:
    """llama.cpp's own grammar sampler over a vocabulary-only model."""

    def __init__(self, gguf_path: Path) -> None:
        import llama_cpp

        self.lib = llama_cpp
        llama_cpp.llama_backend_init()
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        self.model = llama_cpp.llama_model_load_from_file(str(gguf_path).encode(), params)
        assert self.model, "llama.cpp could not load the vocabulary-only GGUF"
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.eos = llama_cpp.llama_vocab_eos(self.vocab)
        self._data = (llama_cpp.llama_token_data * self.n_vocab)()
        self._ids = np.arange(self.n_vocab, dtype=np.int32)

    def sampler(self, gbnf: str) -> Any:
        from llama_cpp import LlamaGrammar

        g = LlamaGrammar.from_string(gbnf, verbose=False)
        smpl = self.lib.llama_sampler_init_grammar(self.vocab, g._grammar.encode(), b"root")
        assert smpl, "llama.cpp rejected the grammar"
        return smpl

    def _allowed(self, smpl: Any, logits: Any, ids: Any = None) -> Any:
        """Which of the candidate ``ids`` (default: all) llama.cpp's grammar sampler lets through."""
        ids = self._ids if ids is None else ids.astype(np.int32)
        n = int(ids.size)
        view = np.ctypeslib.as_array(
            ctypes.cast(self._data, ctypes.POINTER(ctypes.c_float)), shape=(n * 3,)
        ).reshape(n, 3)
        view[:, 0] = ids.view(np.float32)
        view[:, 1] = logits[ids]
        view[:, 2] = 0.0
        arr = self.lib.llama_token_data_array(self._data, n, -1, False)
        self.lib.llama_sampler_apply(smpl, ctypes.byref(arr))
        return np.isfinite(view[:, 1]) & (view[:, 1] > -1e30)

    def accepts(self, gbnf: str, ids: list[int]) -> bool:
        smpl = self.sampler(gbnf)
        try:
            zeros = np.zeros(self.n_vocab, dtype=np.float32)
            for t in ids:
                if not self._allowed(smpl, zeros, np.array([t]))[0]:
                    return False
                self.lib.llama_sampler_accept(smpl, t)
            return bool(self._allowed(smpl, zeros, np.array([self.eos]))[0])
        finally:
            self.lib.llama_sampler_free(smpl)

    def sample(
        self, gbnf: str, logits_fn: Callable[[Any], Any], max_tokens: int, top_k: int = 48
    ) -> tuple[list[int], bool]:
        """Greedy decoding of random logits under llama.cpp's mask.

        The mask is asked about the ``top_k`` best tokens first, and about the whole vocabulary
        only when none of those is allowed (the answer is the same, just cheaper).
        """
        smpl = self.sampler(gbnf)
        out: list[int] = []
        try:
            for _ in range(max_tokens):
                scores = np.asarray(logits_fn(out), dtype=np.float32)
                # the best top_k, then the best 8 * top_k, then all: llama.cpp's cost grows
                # with the number of candidates it checks
                ranked = np.argsort(-scores)
                for k in (top_k, 8 * top_k, self.n_vocab):
                    order = ranked[:k]
                    allowed = self._allowed(smpl, scores, order)
                    if allowed.any():
                        break
                else:
                    return out, False
                t = int(order[int(np.flatnonzero(allowed)[0])])
                if t == self.eos:
                    return out, True
                self.lib.llama_sampler_accept(smpl, t)
                out.append(t)
            return out, False
        finally:
            self.lib.llama_sampler_free(smpl)

    def close(self) -> None:
        self.lib.llama_model_free(self.model)


def grammar_for(name: str, max_tasks: int = 6) -> PlanGrammar:
    return build_grammar(toolset(name), max_tasks=max_tasks)
