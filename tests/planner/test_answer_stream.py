"""The joiner's answer text, decoded from its JSON reply while the reply streams."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from tomasulo.planner._answer_stream import AnswerTextStream


@given(
    answer=st.text(),
    thought=st.text(),
    cuts=st.lists(st.integers(min_value=1, max_value=7), min_size=1, max_size=40),
    ascii_only=st.booleans(),
)
def test_pieces_join_to_the_answer_at_any_chunk_boundaries(
    answer: str, thought: str, cuts: list[int], ascii_only: bool
) -> None:
    doc = json.dumps({"thought": thought, "action": "finish", "answer": answer}, ensure_ascii=ascii_only)
    stream, out, pos, i = AnswerTextStream(), [], 0, 0
    while pos < len(doc):
        step = cuts[i % len(cuts)]
        out.append(stream.feed(doc[pos : pos + step]))
        pos, i = pos + step, i + 1
    assert "".join(out) == answer == stream.text
    assert stream.done


def test_a_thought_that_quotes_the_key_is_not_the_answer() -> None:
    doc = json.dumps({"thought": 'say "answer": "no"', "action": "finish", "answer": "yes"})
    stream = AnswerTextStream()
    assert "".join(stream.feed(c) for c in doc) == "yes"


def test_a_replan_has_no_answer() -> None:
    stream = AnswerTextStream()
    doc = json.dumps({"thought": "t", "action": "replan", "feedback": "answer: more"})
    assert stream.feed(doc) == "" and not stream.done
