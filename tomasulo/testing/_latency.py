"""The prefix cache behind :class:`Latency`'s prefill model, and latency presets of real servers."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from ._script import Latency

__all__ = ["LATENCY_PRESETS", "PrefixCache"]


class PrefixCache:
    """A bounded LRU cache of prompt prefixes, in blocks of tokens, as vLLM keeps them.

    Like vLLM's automatic prefix caching, the prompt is cut into blocks of ``block_tokens``
    tokens and each full block is keyed by a hash of itself and every block before it, so a
    block is only found after the same prefix. A lookup counts the leading blocks already held
    (at least one token is always left to compute, as a server must run the model on the
    last token to produce the first new one), then stores the prompt's full blocks. When more
    than ``capacity_tokens`` are held, the least recently used blocks go first. A partial last
    block is never stored. Prompts shorter than ``min_tokens`` are left alone.

    Example::

        cache = PrefixCache(capacity_tokens=1024, block_tokens=4)
        cache.lookup(list("abcdefghij"))   # 0: nothing seen yet; stores "abcd", "efgh"
        cache.lookup(list("abcdefghXY"))   # 8: both blocks are a prefix of this prompt
    """

    def __init__(self, capacity_tokens: int, block_tokens: int = 16, min_tokens: int = 0) -> None:
        if capacity_tokens < 0 or block_tokens < 1 or min_tokens < 0:
            raise ValueError(
                "PrefixCache needs capacity_tokens >= 0, block_tokens >= 1 and min_tokens >= 0, "
                f"got {capacity_tokens}, {block_tokens}, {min_tokens}"
            )
        self.capacity_tokens = capacity_tokens
        self.block_tokens = block_tokens
        self.min_tokens = min_tokens
        self._blocks: OrderedDict[int, None] = OrderedDict()

    @property
    def held_tokens(self) -> int:
        """How many tokens the cache holds now."""
        return len(self._blocks) * self.block_tokens

    def lookup(self, tokens: Sequence[str]) -> int:
        """How many leading tokens of ``tokens`` are cached; then remember this prompt."""
        n = len(tokens)
        if n < self.min_tokens or self.capacity_tokens < self.block_tokens:
            return 0
        size = self.block_tokens
        keys: list[int] = []
        parent = 0
        for start in range(0, n - n % size, size):
            parent = hash((parent, *tokens[start : start + size]))
            keys.append(parent)
        hits = 0
        for key in keys:
            if key not in self._blocks:
                break
            hits += 1
        cached = min(hits * size, (n - 1) // size * size)
        for key in keys:
            self._blocks[key] = None
            self._blocks.move_to_end(key)
        while self.held_tokens > self.capacity_tokens:
            self._blocks.popitem(last=False)
        return cached

    def clear(self) -> None:
        """Forget every block."""
        self._blocks.clear()


# Presets. Each figure is a published single-request (concurrency 1) measurement; where a
# figure was not found the comment says so and says what stands in for it. TTFT(n) is modelled
# as ttft + n / prefill_tokens_per_second, so a two-point fit of published TTFTs at two prompt
# lengths gives both numbers.

# Llama 3.3 70B Instruct, FP8, tensor parallel over 2 x H100 80GB (NVIDIA NIM 1.8.0), from
# NVIDIA's NIM LLM benchmarking guide, "Performance" page
# (https://docs.nvidia.com/nim/benchmarking/llm/1.0.0/performance), concurrency 1:
#   5000 input / 500 output tokens: TTFT 406.77 ms, ITL 18.58 ms
#   500 input / 2000 output tokens: TTFT 47.77 ms, ITL 18.91 ms
# Prefill: 4500 tokens in 406.77 - 47.77 = 359.0 ms -> 12,535 tokens/s; base TTFT:
# 47.77 ms - 500 / 12,535 s = 7.9 ms; decode: 1 / 18.58 ms = 53.8 tokens/s. vLLM-style cache:
# 16-token blocks (vLLM's default block size); the capacity bounds the simulator's memory and
# is far below what the GPUs' KV cache holds.
_LLAMA_70B_2XH100 = Latency(
    ttft=0.0079,
    tokens_per_second=53.8,
    prefill_tokens_per_second=12_535,
    prefix_cache_tokens=500_000,
    cache_block_tokens=16,
)

# Llama 3.1 8B Instruct on one H100 80GB (NVIDIA NIM 1.8.0), same page, concurrency 1:
# TTFT 10.26 ms, ITL 4.63 ms (-> 216 tokens/s; the page's 214.56 tokens/s throughput agrees).
# NOT FOUND: a published single-request prefill rate for this setup (the excerpt we could read
# does not give that table's prompt length, so the 10.26 ms cannot be split into base and
# prefill). It stands in with the 70B-on-2-GPUs rate above, which understates it: an 8B model
# needs about a ninth of the FLOPs per token. Base TTFT 10 ms as measured.
_LLAMA_8B_1XH100 = Latency(
    ttft=0.010,
    tokens_per_second=216,
    prefill_tokens_per_second=12_535,
    prefix_cache_tokens=500_000,
    cache_block_tokens=16,
)

# A hosted API: GPT-4o on OpenAI, from Artificial Analysis's provider page for GPT-4o (May '24)
# (https://artificialanalysis.ai/models/gpt-4o-2024-05-13/providers), measured with 1,000
# input tokens: TTFT 0.39 s, output 81 tokens/s. Prompt caching, from OpenAI's prompt caching
# guide (https://developers.openai.com/docs/guides/prompt-caching) and the "Prompt Caching 201"
# cookbook: prompts of 1,024 tokens or more, hits in increments of 128 tokens.
# NOT FOUND: OpenAI's prefill rate. The cookbook's "67% faster TTFT at 150k+ tokens" implies
# prefilling 150k tokens takes about twice the rest of the TTFT: 2 x 0.39 s -> ~190k tokens/s,
# an estimate from that one figure. 0.39 s is kept as the base, so short prompts read as measured.
_HOSTED_API = Latency(
    ttft=0.39,
    tokens_per_second=81,
    prefill_tokens_per_second=190_000,
    prefix_cache_tokens=1_000_000,
    cache_block_tokens=128,
    cache_min_tokens=1024,
)

LATENCY_PRESETS: Mapping[str, Latency] = MappingProxyType(
    {
        "llama-8b-1xh100": _LLAMA_8B_1XH100,
        "llama-70b-2xh100": _LLAMA_70B_2XH100,
        "hosted-api": _HOSTED_API,
    }
)
"""Latency models of real servers, by name; see the comments in ``_latency.py`` for sources.

- ``"llama-8b-1xh100"``: a self-hosted 8B model on one datacenter GPU (NVIDIA NIM on H100).
- ``"llama-70b-2xh100"``: a 70B model across two H100s (NVIDIA NIM, FP8, tensor parallel).
- ``"hosted-api"``: GPT-4o through OpenAI's API, with OpenAI's prompt caching rules.

Example::

    SimulatedLLM(script, latency=LATENCY_PRESETS["llama-8b-1xh100"])
"""
