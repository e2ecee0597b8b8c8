"""One call's agreement with the LLM's answer: labels, fields, text; garbage scores 0."""

from __future__ import annotations

import pytest

from slm_agents.finetune.flywheel.agreement import agreement, text_similarity


def test_labels_agree_after_strip_and_casefold():
    assert agreement("classification", "  Card_Arrival\n", "card_arrival") == 1.0
    assert agreement("classification", "card_arrival", "lost_or_stolen_card") == 0.0
    assert agreement("classification", 3, "3") == 1.0  # a number label is its text


def test_extraction_scores_the_share_of_the_llm_fields_answered_alike():
    llm = {"company": "Book Ta .K", "date": "25/12/2018", "total": "9.00", "address": "X"}
    slm = {"company": "BOOK TA .K", "date": "25 / 12 / 2018", "total": "9.10"}
    # company and date match after normalise (case, whitespace); total differs; address missing
    assert agreement("extraction", slm, llm) == pytest.approx(0.5)
    assert agreement("extraction", dict(llm), llm) == 1.0
    assert agreement("extraction", {**llm, "extra": "ignored"}, llm) == 1.0


def test_extraction_parses_json_text_on_either_side():
    assert agreement("extraction", '{"a": "1", "b": "2"}', {"a": "1", "b": "3"}) == 0.5
    assert agreement("extraction", {"a": 1}, '{"a": "1"}') == 1.0  # values compared as text


def test_generation_is_word_level_order_aware_similarity():
    assert agreement("generation", "return  a +\n b", "return a + b") == 1.0  # whitespace free
    assert agreement("generation", "b + a return", "return a + b") < 0.5  # order counts
    one_word = agreement("generation", "return a - b", "return a + b")
    assert one_word == pytest.approx(0.75)  # 3 of 4 words in place: 2 * 3 / 8
    assert text_similarity("", "") == 1.0
    assert agreement("generation", {"answer": "x"}, '{"answer": "x"}') == 1.0


@pytest.mark.parametrize(
    ("kind", "garbage", "llm"),
    [
        ("classification", None, "card_arrival"),
        ("classification", {"label": "card_arrival"}, "card_arrival"),
        ("classification", ["card_arrival"], "card_arrival"),
        ("extraction", "not json at all", {"a": "1"}),
        ("extraction", '{"a": "1"', {"a": "1"}),  # cut off
        ("extraction", '["a", "1"]', {"a": "1"}),  # JSON, not an object
        ("extraction", None, {"a": "1"}),
        ("extraction", 42, {"a": "1"}),
        ("extraction", {"a": "1"}, "the LLM answered text"),
        ("generation", None, "some text"),
        ("generation", 3.5, "some text"),
        ("generation", "", "some text"),
    ],
)
def test_garbage_scores_zero_and_never_raises(kind, garbage, llm):
    assert agreement(kind, garbage, llm) == 0.0


def test_an_unknown_kind_is_an_error_not_a_score():
    with pytest.raises(ValueError, match="kind must be one of"):
        agreement("summary", "a", "a")
