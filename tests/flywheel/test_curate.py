"""S2 Curate on small slices, with the real encoder and the real redactor: failed and invalid
calls go, near-duplicates go (the earliest stays), personal data is redacted and counted, and
the time split keeps a conversation on one side."""

from __future__ import annotations

import pytest

from slm_agents.finetune.flywheel.calls import Call
from slm_agents.finetune.flywheel.curate import CurateError, curate
from slm_agents.finetune.flywheel.embed import embed_texts


def call(i: int, text: str, output="an answer", **fields) -> Call:
    return Call(f"c{i}", text, output, model="gpt-4o-mini", timestamp=1000.0 + i, **fields)


TOPICS = [
    "How do I close my savings account?",
    "The exchange rate on my transfer looks wrong.",
    "Can I get a refund for a duplicate charge?",
    "My new card still has not been delivered.",
    "Why was my top-up declined this morning?",
]


def test_failed_and_invalid_calls_are_dropped_and_counted():
    calls = [
        call(0, TOPICS[0]),
        call(1, TOPICS[1], None, error="HTTP 500 from the endpoint"),
        call(2, TOPICS[2], ""),
        call(3, "   ", "an answer to nothing"),
        call(4, TOPICS[3], {}),
        call(5, TOPICS[4], None),
        call(6, "Where is my transfer to my landlord?", {"intent": "transfer"}),
    ]
    done = curate(calls, holdout_fraction=0.0)
    assert [c.id for c in done.train] == ["c0", "c6"] and done.heldout == []
    assert done.dropped == {"failed": 1, "invalid": 4, "near_duplicate": 0}
    assert done.counts()["calls"] == len(calls)


def test_near_duplicates_are_dropped_and_the_earliest_is_kept():
    calls = [
        call(0, "My card has not arrived yet, what should I do?"),
        call(1, TOPICS[0]),
        call(2, "My card has not arrived yet, what should I do??"),
        call(3, "my card has not arrived yet. What should I do?"),
        call(4, TOPICS[1]),
    ]
    done = curate(calls, holdout_fraction=0.0)
    assert [c.id for c in done.train] == ["c0", "c1", "c4"]
    assert done.dropped["near_duplicate"] == 2
    assert len(curate(calls, holdout_fraction=0.0, dedup_threshold=None).train) == 5


def test_long_texts_are_compared_whole_not_by_their_first_window():
    header = "ACME SUPERSTORE 12 HIGH STREET RECEIPT NO 0042 CASHIER 7 " * 30  # > 256 tokens
    a = header + "MILK 1.20 BREAD 2.10 EGGS 3.40 TOTAL 6.70 PAID CASH"
    b = header + "LAPTOP 899.00 WARRANTY 99.00 TOTAL 998.00 PAID CARD VISA"
    vectors = embed_texts([a, b, a])
    assert vectors.shape[0] == 3 and abs(float((vectors**2).sum(axis=1)[0]) - 1) < 1e-5
    assert float(vectors[0] @ vectors[2]) > 0.9999  # the same text
    assert float(vectors[0] @ vectors[1]) < 0.999  # cut at 256 tokens they would be equal


def test_embeddings_do_not_depend_on_the_batch_and_bad_texts_are_named():
    import numpy

    one_by_one = embed_texts(TOPICS, batch_size=1)
    assert one_by_one.shape == (5, 384) and one_by_one.dtype == numpy.float32
    assert numpy.allclose(one_by_one, embed_texts(TOPICS), atol=1e-5)
    with pytest.raises(ValueError, match="text 1 is empty"):
        embed_texts(["fine", "  "])
    with pytest.raises(TypeError, match="list of texts"):
        embed_texts("one text")


def test_personal_data_is_redacted_counted_and_never_kept():
    calls = [
        call(
            0,
            "Hi, I'm Jane Roe, my e-mail is jane.roe@example.org, my card did not arrive.",
            {"reply_to": "jane.roe@example.org", "intent": "card_arrival"},
        ),  # fmt: skip
        call(
            1, "Please call <PERSON_1> back, and also Mark Lewis.", "We will call Mark Lewis today."
        ),
        call(2, TOPICS[2], "Refunds take five days."),
    ]
    done = curate(calls, holdout_fraction=0.0)
    first, second, third = done.train
    assert "jane.roe@example.org" not in first.input and "Jane Roe" not in first.input
    assert first.output == {"reply_to": "<EMAIL_1>", "intent": "card_arrival"}  # same vault
    assert "<EMAIL_1>" in first.input and "<PERSON_1>" in first.input
    # a call already redacted once: new finds are numbered after what it holds
    assert second.input == "Please call <PERSON_1> back, and also <PERSON_2>."
    assert second.output == "We will call <PERSON_2> today."
    assert third.input == TOPICS[2]
    assert done.redacted_calls == 2
    assert done.redacted_values == {"PERSON": 3, "EMAIL": 2}


def test_the_time_split_holds_out_the_latest_and_keeps_a_conversation_together():
    calls = [call(i, f"{TOPICS[i % 5]} (case {i}, detail {i * 7})") for i in range(10)]
    calls[1].conversation_id = calls[9].conversation_id = "conv-a"  # opened early, ended last
    calls[7].conversation_id = calls[8].conversation_id = "conv-b"
    shuffled = [calls[i] for i in (4, 9, 0, 7, 2, 5, 1, 8, 3, 6)]
    done = curate(shuffled, holdout_fraction=0.2, dedup_threshold=None)
    assert [c.id for c in done.heldout] == ["c1", "c9"]  # the whole of conv-a, in time order
    assert [c.id for c in done.train] == [f"c{i}" for i in (0, 2, 3, 4, 5, 6, 7, 8)]
    done = curate(shuffled, holdout_fraction=0.3, dedup_threshold=None)
    assert [c.id for c in done.heldout] == ["c1", "c7", "c8", "c9"]  # then conv-b, whole
    untimed = [Call(f"u{i}", TOPICS[i], "ok") for i in range(5)]  # the log's order is the time
    assert [c.id for c in curate(untimed, dedup_threshold=None).heldout] == ["u4"]


def test_what_cannot_be_curated_is_a_clear_error():
    with pytest.raises(CurateError, match="no call is left .* 1 failed, 1 without"):
        curate([call(0, "x", None, error="boom"), call(1, TOPICS[0], "")])
    mixed = [call(0, TOPICS[0]), Call("c1", TOPICS[1], "ok")]
    with pytest.raises(CurateError, match="1 of 2 calls have no timestamp"):
        curate(mixed)
    with pytest.raises(CurateError, match="holdout_fraction"):
        curate([call(0, TOPICS[0])], holdout_fraction=1.0)
    with pytest.raises(CurateError, match="dedup_threshold"):
        curate([call(0, TOPICS[0])], dedup_threshold=0.0)
