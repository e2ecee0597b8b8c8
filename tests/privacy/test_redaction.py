"""Redaction on the real recognizers (Presidio, phonenumbers, spaCy's English NER): each kind is
found and restored, checksums and context decide, and text without personal data is untouched."""

from __future__ import annotations

import csv

import pytest

from slm_agents.datasets import data_dir
from slm_agents.privacy import KINDS, Detector, Redactor, Vault

FOUND = [
    ("EMAIL", "Please write to jane.doe@example.co.uk about it.", "jane.doe@example.co.uk"),
    ("PHONE", "You can call me on +44 20 7946 0958 after six.", "+44 20 7946 0958"),
    ("PHONE", "my number is (415) 555-0132, thanks", "(415) 555-0132"),
    ("CARD", "The card 4111 1111 1111 1111 was declined twice.", "4111 1111 1111 1111"),
    ("IBAN", "Send the refund to DE89370400440532013000 please.", "DE89370400440532013000"),
    ("IP", "The login came from 203.0.113.77 and not from me.", "203.0.113.77"),
    ("URL", "The link https://bank.example.com/reset?token=9f8e7d6c5b4a fails.",
     "https://bank.example.com/reset?token=9f8e7d6c5b4a"),
    ("DOB", "My date of birth is 17/05/1990 if you need it.", "17/05/1990"),
    ("DOB", "I was born on March 3, 1985.", "March 3, 1985"),
    ("ADDRESS", "I moved to 742 Evergreen Terrace, Springfield, OR 97403 last month.",
     "742 Evergreen Terrace, Springfield, OR 97403"),
    ("ADDRESS", "Post it to Flat 5, 12 Smith Road, London W1 2AB.",
     "Flat 5, 12 Smith Road, London W1 2AB"),
    # tickets are English; the values in them come from anywhere
    ("ADDRESS", "My new address is Hauptstraße 5, 10115 Berlin.", "Hauptstraße 5, 10115 Berlin"),
    ("ADDRESS", "I now live at 12, rue de la Paix, 75002 Paris.",
     "12, rue de la Paix, 75002 Paris"),
    ("PERSON", "Hi, this is Sarah Connor and my card is stuck.", "Sarah Connor"),
]  # fmt: skip


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor()


@pytest.mark.parametrize(("kind", "text", "value"), FOUND)
def test_each_kind_is_replaced_by_a_typed_placeholder_and_restored(redactor, kind, text, value):
    vault = Vault()
    done = redactor.redact(text, vault)
    assert value not in done.text
    assert done.text == text.replace(value, f"<{kind}_1>")
    assert done.counts == {kind: 1}
    assert vault.restore(done.text) == text


def test_one_value_keeps_its_placeholder_and_the_next_gets_the_next_number(redactor):
    vault = Vault()
    text = "Mail a@example.com, not b@example.org; I said a@example.com."
    done = redactor.redact(text, vault)
    assert done.text == "Mail <EMAIL_1>, not <EMAIL_2>; I said <EMAIL_1>."
    assert done.counts == {"EMAIL": 3} and len(vault) == 2
    # a second text of the same request continues the same vault
    assert redactor.redact("again b@example.org", vault).text == "again <EMAIL_2>"


@pytest.mark.parametrize(
    "text",
    [
        "The card 4111 1111 1111 1112 was declined.",  # fails the Luhn check
        "Send it to DE89370400440532013001.",  # fails the IBAN checksum
        "The payment on 17/05/2024 is missing.",  # a date, but no one's birthday
        "See https://bank.example.com/help/cards for the fees.",  # a link, no credential
    ],
)
def test_checksums_and_context_decide_what_is_personal(redactor, text):
    assert redactor.redact(text).text == text


def test_tickets_without_personal_data_come_through_unchanged(redactor):
    with (data_dir() / "banking77" / "test.csv").open(encoding="utf-8") as f:
        texts = [row["text"] for row, _ in zip(csv.DictReader(f), range(200), strict=False)]
    changed = [(t, redactor.redact(t).text) for t in texts if redactor.redact(t).text != t]
    assert len(changed) <= 2, changed  # at most 1% false alarms on real tickets


def test_the_kinds_choose_what_is_redacted():
    text = "I'm Sarah Connor, mail sarah@example.com"
    assert Redactor(["EMAIL"]).redact(text).text == "I'm Sarah Connor, mail <EMAIL_1>"
    assert Redactor(["person"]).redact(text).text == "I'm <PERSON_1>, mail sarah@example.com"
    assert Redactor().kinds == KINDS
    with pytest.raises(ValueError, match=r"unknown kind\(s\) \['PASSPORT'\]"):
        Redactor(["EMAIL", "passport"])


def test_empty_text_and_text_that_is_not_a_string():
    assert Redactor().redact("").text == "" and Redactor().redact("   ").counts == {}
    with pytest.raises(TypeError, match="must be str, got bytes"):
        Detector().detect(b"jane@example.com")  # type: ignore[arg-type]


def test_the_vault_restores_inside_json_and_leaves_unknown_placeholders_alone():
    vault = Vault()
    placeholder = vault.placeholder("EMAIL", "jane@example.com")
    answer = {"to": placeholder, "cc": ["<EMAIL_7>", placeholder], "n": 2}
    assert vault.restore(answer) == {
        "to": "jane@example.com", "cc": ["<EMAIL_7>", "jane@example.com"], "n": 2
    }  # fmt: skip
    assert "jane" not in repr(vault)
