"""The kinds of personal data we detect, and how they map onto Presidio's entity names.

Pattern kinds are found by regular expressions with a check (a checksum, a phone-number
parser, a context word, a street type); the NER kind needs the language model (spaCy) and costs
milliseconds a request.
"""

from __future__ import annotations

PATTERN_KINDS = ("EMAIL", "PHONE", "CARD", "IBAN", "IP", "URL", "DOB", "ADDRESS")
NER_KINDS = ("PERSON",)
KINDS = PATTERN_KINDS + NER_KINDS

# our kind -> the entity name its recognizer reports (Presidio's own names where it has one)
ENTITY_OF = {
    "EMAIL": "EMAIL_ADDRESS",
    "PHONE": "PHONE_NUMBER",
    "CARD": "CREDIT_CARD",
    "IBAN": "IBAN_CODE",
    "IP": "IP_ADDRESS",
    "URL": "TOKEN_URL",
    "DOB": "DATE_OF_BIRTH",
    "PERSON": "PERSON",
    "ADDRESS": "STREET_ADDRESS",
}
KIND_OF = {entity: kind for kind, entity in ENTITY_OF.items()}


def check_kinds(kinds: object, where: str = "redact") -> tuple[str, ...]:
    """``kinds`` as a tuple of known kinds (upper case); an unknown one is an error naming it."""
    if isinstance(kinds, str) or not isinstance(kinds, list | tuple | set | frozenset):
        raise ValueError(f"{where} must be a list of kinds out of {list(KINDS)}, got {kinds!r}")
    wanted = tuple(dict.fromkeys(str(k).upper() for k in kinds))
    unknown = [k for k in wanted if k not in KINDS]
    if unknown:
        raise ValueError(f"{where}: unknown kind(s) {unknown}; the kinds are {list(KINDS)}")
    return wanted
