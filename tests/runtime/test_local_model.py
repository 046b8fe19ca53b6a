"""The in-process model: ``LocalModel`` decodes any logits under llguidance token masks and is a
``Model``, so the planner and joiner run on it as on an HTTP ``LLM``.

The "model" here is scripted weights over a tokenizer trained in the test: at each step it
scores the tokens that continue the reply it wants to write (longest piece best). The masks are
real: where the script wants something the grammar forbids, the mask decides."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

import anyio
import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from tomasulo.exceptions import LLMTruncated
from tomasulo.planner import GrammarSpec, LocalModel, Model, Usage, chat_text
from tomasulo.runtime import LLMCallStarted, Orchestrator

from .rtools import Lab

pytestmark = pytest.mark.anyio

PLAN = (
    '1. search(query="everest")\n'
    '2. search(query="kilimanjaro")\n'
    '3. math(expression="${1} / ${2}")\n'
    "4. join()\n"
)
FINISH = json.dumps({"thought": "the results answer it", "action": "finish", "answer": "1.5011"})


@functools.cache
def tokenizer() -> Tokenizer:
    """A small byte-level BPE with ``<|endoftext|>`` as id 0, trained on plan-shaped text."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    prompt = chat_text([{"role": "user", "content": "a question"}])
    tok.train_from_iterator([PLAN, FINISH, prompt] * 50, trainer)
    return tok


class Scripted:
    """Logits that spell out the reply whose marker is in the prompt (a dict: marker -> reply)."""

    def __init__(self, replies: dict[str, str]) -> None:
        self.tok = tokenizer()
        self.replies = replies
        self.pieces = [self.tok.decode([i]) for i in range(self.tok.get_vocab_size())]
        self.calls = 0

    @functools.lru_cache(maxsize=8)  # noqa: B019 (a test's few prompts)
    def _reply(self, prompt: tuple[int, ...]) -> str:
        text = self.tok.decode(list(prompt))
        return next(reply for marker, reply in self.replies.items() if marker in text)

    def __call__(self, prompt: Sequence[int], generated: Sequence[int]) -> Any:
        self.calls += 1
        target = self._reply(tuple(prompt))
        rest = target[len(self.tok.decode(list(generated))) :]
        scores = np.full(len(self.pieces), -1e9)
        for i, piece in enumerate(self.pieces):
            if i and piece and rest.startswith(piece):
                scores[i] = len(piece)
        if not rest:
            scores[0] = 1e9  # end of sequence
        return scores


def local(replies: dict[str, str], **kw: Any) -> tuple[LocalModel, Scripted]:
    weights = Scripted(replies)
    return LocalModel(weights, tokenizer(), model="local-sim", **kw), weights


async def test_an_orchestrator_plans_and_joins_with_an_in_process_model() -> None:
    lab = Lab()
    model, weights = local({"You are the joiner": FINISH, "You are the planner": PLAN})
    assert isinstance(model, Model) and model.grammar_form() == "lark"
    with anyio.fail_after(60):
        result = await Orchestrator(lab.tools, model).run("How many times taller is Everest?")
    assert result.status == "finished", result.reason
    assert result.answer == "1.5011"
    assert result.results == {1: 8849.0, 2: 5895.0, 3: 1.5011}
    assert [e.model for e in result.timeline if isinstance(e, LLMCallStarted)] == ["local-sim", "local-sim"]
    assert model.usage.requests == 2 and model.usage.completion_tokens > 0
    assert result.usage.completion_tokens == model.usage.completion_tokens
    assert weights.calls > 0


async def test_the_mask_keeps_the_answer_inside_the_grammar() -> None:
    model, _ = local({"": "maybe"})  # the weights want to say "maybe"
    with anyio.fail_after(20):
        free = await model.complete("Yes or no?")
        masked = await model.complete("Yes or no?", grammar=GrammarSpec(lark='start: "yes" | "no"'))
        shaped = await model.complete("Yes or no?", json_schema={"enum": ["yes", "no"]})
    assert free == "maybe"
    assert masked in ("yes", "no")
    assert json.loads(shaped) in ("yes", "no")


async def test_a_local_answer_cut_at_max_tokens_is_truncated_with_its_partial_text() -> None:
    model, _ = local({"": PLAN})
    usage = Usage()
    with anyio.fail_after(20), pytest.raises(LLMTruncated) as info:
        await model.complete("plan", max_tokens=3, usage=usage)
    assert info.value.max_tokens == 3 and PLAN.startswith(info.value.partial) and info.value.partial
    assert usage.completion_tokens == 3 and usage.requests == 1


async def test_a_stop_string_ends_a_local_answer_before_it() -> None:
    model, _ = local({"": PLAN})
    with anyio.fail_after(20):
        text = await model.complete("plan", stop=["2. "])
    assert text == '1. search(query="everest")\n'
