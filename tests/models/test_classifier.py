"""EncoderClassifier on the real bundled MiniLM: zero-shot, trained directories, bad input."""

from __future__ import annotations

import json

import pytest

from slm_agents.models import EncoderClassifier
from slm_agents.models.classifier import save_classifier
from slm_agents.models.sources import resolve

LABELS = ["cards", "transfers", "account"]


def test_zero_shot_routes_obvious_tickets(router):
    preds = router.predict(
        [
            "My card has not arrived yet",
            "I sent money to my friend and it never arrived",
            "How do I close my account?",
        ]
    )
    assert [p.label for p in preds] == LABELS
    for p in preds:
        assert set(p.probabilities) == set(LABELS)
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert p.confidence == max(p.probabilities.values())


def test_bad_texts_fail_alone(router):
    preds = router.predict(["", None, b"\xff\xfe", 3.5, "lost card"])
    assert "text is empty" in preds[0].error
    assert "got NoneType" in preds[1].error
    assert "bytes" in preds[2].error
    assert "got float" in preds[3].error
    assert preds[4].ok and preds[4].label == "cards"


def test_long_texts_are_truncated_with_a_warning(router):
    with pytest.warns(UserWarning, match="1 of 2 texts exceed max_length=128"):
        preds = router.predict(["my card is lost " * 200, "my card is lost"])
    assert all(p.ok for p in preds)


def test_encoder_without_labels_or_head_is_rejected():
    with pytest.raises(ValueError, match="pass labels="):
        EncoderClassifier()


def _sequence_classifier():
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    location = resolve("all-minilm-l6-v2").location
    model = AutoModelForSequenceClassification.from_pretrained(location, num_labels=len(LABELS))
    return model, AutoTokenizer.from_pretrained(location)


def _expected_probabilities(model, tokenizer, texts):
    import torch

    model.eval()
    with torch.inference_mode():
        enc = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
        return torch.softmax(model(**enc).logits, dim=-1).flatten().tolist()


TEXTS = ["my card is lost", "send money abroad", "change my address"]


def test_lora_adapter_directory_round_trips(tmp_path):
    from peft import LoraConfig, TaskType, get_peft_model

    model, tokenizer = _sequence_classifier()
    peft_model = get_peft_model(
        model,
        LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=4,
            target_modules=["query", "value"],
            init_lora_weights=False,
        ),
    )
    expected = _expected_probabilities(peft_model, tokenizer, TEXTS)
    save_classifier(peft_model, tokenizer, LABELS, tmp_path, base_model="all-minilm-l6-v2")

    loaded = EncoderClassifier(str(tmp_path), device="cpu")
    assert loaded.mode == "trained" and loaded.labels == LABELS
    got = [p.probabilities[label] for p in loaded.predict(TEXTS) for label in LABELS]
    assert got == pytest.approx(expected, abs=1e-5)


def test_full_model_directory_round_trips_and_saves_again(tmp_path):
    model, tokenizer = _sequence_classifier()
    expected = _expected_probabilities(model, tokenizer, TEXTS)
    save_classifier(model, tokenizer, LABELS, tmp_path / "one", base_model="all-minilm-l6-v2")
    loaded = EncoderClassifier(str(tmp_path / "one"), device="cpu")
    loaded.save(tmp_path / "two")
    again = EncoderClassifier(str(tmp_path / "two"), device="cpu")
    got = [p.probabilities[label] for p in again.predict(TEXTS) for label in LABELS]
    assert got == pytest.approx(expected, abs=1e-5)


def test_corrupted_directories_name_what_is_wrong(tmp_path):
    (tmp_path / "classifier.json").write_text("{not json")
    with pytest.raises(ValueError, match="classifier.json is not readable JSON"):
        EncoderClassifier(str(tmp_path))

    (tmp_path / "classifier.json").write_text(json.dumps({"labels": ["only-one"]}))
    with pytest.raises(ValueError, match="at least two strings"):
        EncoderClassifier(str(tmp_path))

    (tmp_path / "classifier.json").write_text(
        json.dumps({"labels": LABELS, "base_model": "all-minilm-l6-v2"})
    )
    (tmp_path / "adapter_config.json").write_text("{}")
    (tmp_path / "adapter_model.safetensors").write_bytes(b"truncated")
    with pytest.raises(ValueError, match="cannot load the LoRA adapter"):
        EncoderClassifier(str(tmp_path))


def test_a_zero_shot_classifier_has_nothing_to_save(router, tmp_path):
    with pytest.raises(ValueError, match="no weights to save"):
        router.save(tmp_path)
