"""The repetition rule, finish reasons and their carriers."""

from __future__ import annotations

import pickle

import pytest

from rait.answers import Answer, finish_reason
from rait.inference.stopping import Continuation, loop_end, repeats_itself, with_finish_reason


@pytest.mark.parametrize(
    ("ids", "loops"),
    [
        ([7] * 31, False),  # shorter than the 32-token minimum
        ([7] * 32, True),  # one token 32 times
        ([1, 2, 3] + [4, 5] * 16, True),  # a 2-token block over the last 32 tokens
        ([4, 5] * 15 + [4, 6], False),  # the last token breaks the pattern
        (list(range(40)), False),
        ([9] * 40 + [1], False),  # it looped, but the last token escaped the loop
        (list(range(20)) * 3, True),  # a 20-token block 3 times (60 tokens)
        (list(range(20)) * 2 + list(range(19)), False),  # not yet 3 times
        (list(range(70)) * 3, False),  # a period longer than 64 is not looked for
    ],
)
def test_repeats_itself(ids, loops):
    assert repeats_itself(ids) is loops


def test_loop_end_is_where_a_checking_decoder_stops():
    ids = [1, 2, 3] + [4, 5] * 30
    end = loop_end(ids)
    assert end == 3 + 32 and repeats_itself(ids[:end]) and not repeats_itself(ids[: end - 1])
    assert loop_end(list(range(100))) is None
    assert loop_end([7] * 10, min_tokens=4) == 4


def test_answers_and_continuations_carry_their_finish_reason():
    answer = Answer('["a"]', "length")
    assert answer == '["a"]' and isinstance(answer, str) and finish_reason(answer) == "length"
    assert finish_reason(pickle.loads(pickle.dumps(answer))) == "length"
    assert finish_reason('["a"]') is None
    ids = Continuation([1, 2], "repetition")
    assert ids == [1, 2] and ids.finish_reason == "repetition" and Continuation().finish_reason == "stop"
    merged = with_finish_reason('["a", "b"]', [Answer("[]", "stop"), Answer('["a"', "length")])
    assert merged == '["a", "b"]' and finish_reason(merged) == "length"
    assert finish_reason(with_finish_reason("[]", [Answer("[]"), Answer("x", "repetition")])) == "repetition"
    assert finish_reason(with_finish_reason("[]", ["[]", "[]"])) is None
