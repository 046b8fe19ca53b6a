"""Tiny GGUF models built on the spot: a byte-level BPE vocabulary and random llama weights.

The vocabulary holds printable ASCII (and a few hundred ASCII merges, so prompts stay short),
plus whole UTF-8 characters: no token is a lone byte of a multi-byte character, so whatever a
sampler picks decodes as UTF-8 (with one token per byte, llama.cpp's sampler can emit overlong
sequences that no grammar can exclude). ``hostile=True`` adds lone bytes whose every misuse a
grammar *can* exclude (continuation bytes, the leads of surrogates and of code points above
U+10FFFF), to check that our character classes do.

The weights are random but steered: every token embedding carries a constant in dimension 0,
and the output matrix's column 0 holds a per-token bias, so the logits are "bias + noise that
depends on the context". The bias favours tokens that close strings, calls and lines, so a
random model under a grammar writes short plans that end.
"""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path

import numpy as np

EOS = "<|endoftext|>"
#: whole characters of 2, 3 and 4 bytes in UTF-8
WIDE = "éüñßçøåΩλжя€中文日本語한글😀🙂🚀∑≈→"
#: bytes that only ever belong to a multi-byte character; the ones leading overlong forms
#: (C0, C1, E0, F0, F8-FF) are left out: no grammar over code points can refuse those
HOSTILE = [*range(0x80, 0xC0), 0xED, 0xF4, 0xF5, 0xF6, 0xF7]
CLOSERS = ('"', ")", "]", "}", "\n", '")', ")\n", '")\n', '",', ", ")


@functools.cache
def byte_map() -> dict[int, str]:
    """GPT-2's byte -> printable character map (what byte-level BPE pieces are written in)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars = list(keep)
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(keep, chars, strict=True)}


def piece(data: bytes) -> str:
    m = byte_map()
    return "".join(m[b] for b in data)


def unpiece(text: str) -> bytes:
    inverse = {c: b for b, c in byte_map().items()}
    return bytes(inverse[c] for c in text)


def _corpus() -> list[str]:
    rng = random.Random(5)
    words = [
        "search",
        "math",
        "query",
        "expression",
        "everest",
        "kilimanjaro",
        "join",
        "Thought",
        "thought",
        "action",
        "finish",
        "replan",
        "answer",
        "feedback",
        "height",
        "mountain",
    ]
    lines = []
    for _ in range(3000):
        w = rng.choices(words, k=3)
        lines.append(
            f'{rng.randint(1, 9)}. {w[0]}({w[1]}="{w[2]} ${{{rng.randint(1, 9)}}}", n={rng.randint(0, 99)})'
        )
        lines.append(f'{{"thought": "{w[0]} {w[1]}", "action": "{w[2]}", "answer": "{rng.random():.3f}"}}')
    return lines


@functools.cache
def _ascii_bpe() -> tuple[list[str], list[tuple[str, str]]]:
    """A small byte-level BPE trained here on plan- and joiner-shaped text: (pieces, merges)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    alphabet = [piece(bytes([b])) for b in [9, 10, *range(0x20, 0x7F)]]
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator(_corpus(), trainer)
    spec = json.loads(tok.to_str())["model"]
    return list(spec["vocab"]), _merges(spec["merges"])


@functools.cache
def vocabulary(*, hostile: bool = False) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(tokens, merges)``: EOS first, then ASCII, merges of ASCII, whole wide characters."""
    pieces, bpe_merges = _ascii_bpe()
    ascii_pieces = {p for p in pieces if all(b < 0x80 for b in unpiece(p))}
    singles = [piece(bytes([b])) for b in [9, 10, *range(0x20, 0x7F)]]
    tokens: list[str] = [EOS, *singles]
    seen = set(tokens)
    merges: list[str] = []
    for left, right in bpe_merges:
        joined = left + right
        if left in ascii_pieces and right in ascii_pieces and joined in ascii_pieces:
            merges.append(f"{left} {right}")
            if joined not in seen:
                tokens.append(joined)
                seen.add(joined)
    for ch in WIDE:  # each wide character: its byte-level piece, merged left to right
        p = piece(ch.encode())
        for i in range(2, len(p) + 1):
            merges.append(f"{p[: i - 1]} {p[i - 1]}")
        if p not in seen:
            tokens.append(p)
            seen.add(p)
    if hostile:
        for b in HOSTILE:
            p = piece(bytes([b]))
            if p not in seen:
                tokens.append(p)
                seen.add(p)
    return tuple(tokens), tuple(merges)


def _merges(raw: list[object]) -> list[tuple[str, str]]:
    out = []
    for m in raw:
        left, right = m.split(" ", 1) if isinstance(m, str) else m  # type: ignore[misc]
        out.append((str(left), str(right)))
    return out


def decode(ids: list[int], *, hostile: bool = False) -> bytes:
    tokens, _ = vocabulary(hostile=hostile)
    return b"".join(unpiece(tokens[i]) for i in ids if i != 0)


def write_model(
    path: Path,
    *,
    hostile: bool = False,
    n_embd: int = 16,
    n_ff: int = 32,
    context: int = 4096,
    seed: int = 7,
    weights: bool = True,
) -> Path:
    """Write the model (``weights=False``: vocabulary only, for the grammar sampler)."""
    import gguf

    tokens, merges = vocabulary(hostile=hostile)
    n_vocab = len(tokens)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(context)
    w.add_embedding_length(n_embd)
    w.add_block_count(1)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(2)
    w.add_head_count_kv(2)
    w.add_rope_dimension_count(n_embd // 2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(list(tokens))
    w.add_token_types([3 if t == EOS else 1 for t in tokens])
    w.add_token_merges(list(merges))
    w.add_bos_token_id(0)
    w.add_eos_token_id(0)
    w.add_add_bos_token(False)
    # a plain template, so the server needs no chat format of its own
    w.add_chat_template(
        "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}<|assistant|>\n"
    )
    if weights:
        rng = np.random.default_rng(seed)
        bias = np.zeros(n_vocab, dtype=np.float32)
        for i, t in enumerate(tokens):
            text = unpiece(t).decode(errors="replace") if t != EOS else EOS
            if "join" in text or "j" == text:  # so that plans hold tasks before their join()
                bias[i] = -1.5
            elif t == EOS or text in CLOSERS:
                bias[i] = 2.0
            elif any(c in text for c in '")]}\n'):
                bias[i] = 0.8

        def normal(*shape: int, scale: float) -> np.ndarray:
            return (rng.standard_normal(shape) * scale).astype(np.float32)

        emb = normal(n_vocab, n_embd, scale=0.5)
        emb[:, 0] = 4.0  # the constant the bias rides on
        out = normal(n_vocab, n_embd, scale=0.6)
        out[:, 0] = bias
        w.add_tensor("token_embd.weight", emb)
        w.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
        w.add_tensor("output.weight", out)
        small = 0.05
        w.add_tensor("blk.0.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            w.add_tensor(f"blk.0.{name}.weight", normal(n_embd, n_embd, scale=small))
        w.add_tensor("blk.0.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        w.add_tensor("blk.0.ffn_gate.weight", normal(n_ff, n_embd, scale=small))
        w.add_tensor("blk.0.ffn_up.weight", normal(n_ff, n_embd, scale=small))
        w.add_tensor("blk.0.ffn_down.weight", normal(n_embd, n_ff, scale=small))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
