"""Drafts and forced tokens (rait.inference.decoding) save model calls and change no answer and no score."""

from __future__ import annotations

import pytest

from rait.chat import encode_turns
from rait.inference import PassageQuery, Predictor, decoding
from rait.inference.decoding import Decoder, Lookup
from rait.inference.prefill import buckets
from rait.templates import question_turn
from rait.testing import tiny_model_and_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SENTENCES = (
    "Barack Obama was born in Honolulu, Hawaii, and later moved to Chicago.",
    "Apple chief executive Tim Cook met German Chancellor Olaf Scholz in Berlin on Tuesday.",
    "No entities here.",
    'He quoted "Apple Inc." twice: Apple Inc. and Apple Inc.',
    "马云于1999年在杭州创立了阿里巴巴集团。",
)
TYPES = ("person", "location", "organization")


class CountingPredictor(Predictor):
    """Counts the model calls; with ``block``, the model writes ``block[position % len(block)]`` (a loop).
    With ``openings``, after the prompt's last token it prefers ``["`` at even positions and ``[`` at odd
    ones (an answer's usual first tokens, which a random model never writes), so every row opens with one
    of the drafted branches; the rest of the answer is the model's."""

    calls = 0
    block: tuple[int, ...] = ()
    openings = False

    def _forward(self, ids, mask, positions, cache, select):
        self.calls += 1
        logits = super()._forward(ids, mask, positions, cache, select)
        if logits is None:
            return logits
        fed = ids.reshape(-1)[select].tolist()
        prompt_end = encode_turns(self.tokenizer, [question_turn("x", "en")], add_generation_prompt=True)[-1]
        for row, position in enumerate(positions.reshape(-1)[select].tolist()):
            if self.block:
                logits[row, self.block[position % len(self.block)]] = logits[row].max() + 1.0
            elif self.openings and fed[row] == prompt_end:
                logits[row, self._branches[position % 2]] = logits[row].max() + 1.0
        return logits


def answers(
    model, tokenizer, decoding: str, fast: bool, batch_size: int, block=(), min_score=None, openings=False
) -> tuple[list, int]:
    predictor = CountingPredictor(
        model, tokenizer, max_new_tokens=40, decoding=decoding, batch_size=batch_size
    )
    predictor.block, predictor.min_score, predictor.openings = block, min_score, openings
    if not fast:
        predictor.draft_budget, predictor.jump_forward = 0, False
    found = predictor.answer_many([PassageQuery(text, TYPES) for text in SENTENCES])
    rows = [[(answer, answer.finish_reason, answer.scores) for answer in passage] for passage in found]
    return rows, predictor.calls


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("decoding", ["free", "constrained", "constrained-words"])
def test_drafts_and_forced_tokens_give_the_one_token_per_call_answers(arch, decoding):
    model, tokenizer = tiny_model_and_tokenizer(arch)
    model = model.double()  # no float ties between the two loops' differently shaped products
    for batch_size in (1, 64):
        # free decoding of a random model copies nothing, so drafts save calls only once it loops
        for block in ((), (5, 6, 7, 8, 9)) if decoding == "free" else ((),):
            reference, plain_calls = answers(model, tokenizer, decoding, False, batch_size, block)
            fast, fast_calls = answers(model, tokenizer, decoding, True, batch_size, block)
            assert fast == reference
            assert fast_calls < plain_calls or decoding == "free" and not block


@pytest.mark.parametrize("decoding", ["free", "constrained", "constrained-words"])
def test_first_tokens_drafted_in_the_prompt_forward_change_no_answer(decoding, monkeypatch):
    model, tokenizer = tiny_model_and_tokenizer("llama")
    model = model.double()
    kept = []
    first = Decoder._first

    def counting(self, rows, scores, mask, branches):
        mask = first(self, rows, scores, mask, branches)
        kept.append(int(mask[:, mask.shape[1] - len(branches) :].sum()) if branches else 0)
        return mask

    monkeypatch.setattr(Decoder, "_first", counting)
    for batch_size in (1, 64):
        reference, plain_calls = answers(model, tokenizer, decoding, False, batch_size, openings=True)
        kept.clear()
        fast, fast_calls = answers(model, tokenizer, decoding, True, batch_size, openings=True)
        assert fast == reference
        assert sum(kept) and fast_calls < plain_calls


def test_end_branches_choose_the_next_mention_in_the_forward_that_verifies_one(monkeypatch):
    """A random model's constrained-words answers copy several passage words: where one closes at a drafted
    word end and goes on with the separator, the branch fed there chooses the next token. Same answers as
    one token per call and as drafts without end branches, in no more calls (a random model rarely writes
    the separator as the trained one does, so the calls saved are measured on the built-in model:
    benchmarks/bench_latency.py)."""
    model, tokenizer = tiny_model_and_tokenizer("llama")
    model = model.double()
    kept = []
    branch = Decoder._branch

    def counting(self, row, row_index, scores, greedy):
        kept.append(branch(self, row, row_index, scores, greedy))
        return kept[-1]

    monkeypatch.setattr(Decoder, "_branch", counting)
    reference, plain_calls = answers(model, tokenizer, "constrained-words", False, 1)
    monkeypatch.setattr(decoding, "MAX_ENDS", 0)
    without, without_calls = answers(model, tokenizer, "constrained-words", True, 1)
    assert not any(kept)
    monkeypatch.setattr(decoding, "MAX_ENDS", 3)
    fast, fast_calls = answers(model, tokenizer, "constrained-words", True, 1)
    assert fast == without == reference
    assert any(kept) and fast_calls <= without_calls < plain_calls


def test_end_branches_are_drafted_word_ends_inside_a_passage_string():
    token_bytes = [b"Marie", b" Cur", b"ie", b" won", b"Ma"]
    lookup = Lookup([], b"Marie Curie won")
    for token in (4,):  # '["Ma' written: inside a string, "Ma" in the passage but not at a word end
        lookup.add(token, b'["Ma')
    assert lookup.ends([], token_bytes, 3) == []  # "Ma|rie": no end after the pending token
    lookup = Lookup([], b"Marie Curie won")
    lookup.add(0, b'["Marie')
    assert lookup.ends([1, 2, 3], token_bytes, 3) == [0, 2, 3]  # Marie| Cur ie| won|
    assert lookup.ends([1, 2, 3], token_bytes, 1) == [0]
    assert lookup.ends([1, 3], token_bytes, 3) == [0]  # " won" is not what follows " Cur"
    assert lookup.ends([1, 2], token_bytes, 0) == []
    outside = Lookup([], b"Marie Curie won")
    outside.add(0, b'["Marie", ')
    assert outside.ends([1], token_bytes, 3) == []


@pytest.mark.parametrize("decoding", ["constrained", "constrained-words"])
def test_an_answer_scored_below_min_score_ends_at_its_first_choice_point(decoding):
    model, tokenizer = tiny_model_and_tokenizer("llama")
    model = model.double()
    whole, whole_calls = answers(model, tokenizer, decoding, True, 64)
    firsts = sorted({answer[2][0] for passage in whole for answer in passage if answer[2]})
    floor = firsts[len(firsts) // 2]  # the median answer score: some answers fall below it, some not
    cut, cut_calls = answers(model, tokenizer, decoding, True, 64, min_score=floor)
    dropped = 0
    for whole_passage, cut_passage in zip(whole, cut, strict=True):
        for before, after in zip(whole_passage, cut_passage, strict=True):
            if before[2] and before[2][0] < floor:
                assert after == ("[]", "dropped", ())
                dropped += 1
            else:
                assert after == before
    assert dropped and cut_calls <= whole_calls


def test_a_draft_is_what_followed_the_longest_match_of_the_last_tokens():
    lookup = Lookup([1, 2, 3, 9, 2, 3, 4, 5, 6])
    lookup.add(2)
    assert lookup.draft(3) == [3, 4, 5]  # the latest "2" is followed by 3 4 5
    lookup.add(3)
    assert lookup.draft(2) == [4, 5]
    lookup.add(9)
    assert lookup.draft(4) == [2, 3, 4, 5]  # "9" occurs once, after 1 2 3
    assert Lookup([7]).draft(3) == []


def test_prefixes_of_similar_length_share_a_forward():
    assert buckets([40]) == [(0, 1)]
    assert buckets([10, 11, 12, 12]) == [(0, 4)]  # padding 3 tokens costs less than a forward
    assert buckets([10, 11, 80, 90]) == [(0, 2), (2, 4)]
