"""The recognizers behind each kind: Presidio's own where it has a good one, ours where not.

Presidio brings the e-mail, phone (Google's ``phonenumbers``), IBAN (the mod-97 checksum) and
IP address recognizers. Ours, as Presidio recognizers so the analyzer merges them alike:

* ``PHONE_NUMBER`` too: grouped digits with an extension, which the phonenumbers matcher
  gives up on (``+1-472-331-2927x65624``); either way 8 to 15 digits, not an amount.
* ``CREDIT_CARD``: 13 to 19 digits that pass the Luhn check (python-stdnum). Presidio's own
  misses 2-series Mastercard and 19-digit cards.
* ``TOKEN_URL``: a URL that carries a credential (a query key such as ``token``, ``key``,
  ``sig``, ``code``, or a long random path segment). Plain links are not personal data.
* ``DATE_OF_BIRTH``: a date right after words that make it one ("born on", "date of birth",
  "DOB", "birthday"). A date alone is not: banking tickets are full of transaction dates.
* ``STREET_ADDRESS``: a house number and a street name ending in a street type (USPS street
  suffixes, British, German and French street words), with the flat, town and postcode that
  follow it. spaCy's NER has no street-address entity; its places (GPE) join an address only
  when they touch one.

E-mail domains are checked against tldextract's bundled suffix list, never a download.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

# USPS Publication 28 street suffixes (primary names and common abbreviations), and the
# British, German and French street words.
STREET_TYPES = (  # noqa: SIM905 (a word list reads better as one string)
    "Alley Aly Annex Arcade Avenue Ave Av Bayou Beach Bend Bluffs? Bottom Boulevard Blvd Branch "
    "Bridge Brooks? Burgs? Bypass Camp Canyon Cape Causeway Centers? Ctr Circles? Cir Cliffs? "
    "Close Club Commons? Corners? Course Courts? Ct Coves? Creek Crescent Cres Crest Crossing "
    "Crossroads? Curve Dale Dam Divide Drives? Dr Estates? Expressway Extensions? Falls? Ferry "
    "Fields? Flats? Fords? Forest Forges? Forks? Fort Freeway Gardens? Gateway Glens? Greens? "
    "Groves? Harbors? Haven Heights Highway Hwy Hills? Hollow Inlet Islands? Isle Junctions? "
    "Keys? Knolls? Lakes? Land Landing Lane Ln Lights? Loaf Locks? Lodge Loop Mall Manors? "
    "Meadows? Mews Mills? Mission Motorway Mount Mountains? Neck Orchard Oval Overpass Parks? "
    "Parkways? Pkwy Pass Passage Path Pike Pines? Place Pl Plains? Plaza Points? Ports? Prairie "
    "Radial Ramp Ranch Rapids? Rest Ridges? River Roads? Rd Route Row Rue Run Shoals? Shores? "
    "Skyway Springs? Spurs? Squares? Sq Station Stravenue Stream Streets? St Summit Terrace "
    "Ter Throughway Trace Track Trafficway Trail Trl Trailer Tunnel Turnpike Underpass Unions? "
    "Valleys? Via Viaduct Views? Villages? Ville Vista Walks? Wall Ways? Wells? Wharf Wynd Yard "
    "Hill Gate Grove Rise Vale Parade Broadway Esplanade Embankment Green"
).split()
_UPPER = "A-ZÀ-ÖØ-Þ"  # capitals of the Latin alphabets (Étienne, Ørsted)
_NAME = rf"[{_UPPER}][\w'’.-]*"  # a capitalised word (unicode letters through \w)
_SUFFIX = r"(?:" + "|".join(STREET_TYPES) + r")\.?"
_UNIT = (
    r"(?:\b(?:Apt\.|Apt|Apartment|Suite|Ste\.|Unit|Flat|Studio|Room|Floor)\s+\w{1,6}\b|#\s?\d{1,5})"
)
_UK_POSTCODE = r"[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}"
_LETTERS = r"[^\W\d_]"  # a letter of any script: no digits, so a postcode is not a town
_TOWN_WORD = rf"[{_UPPER}]{_LETTERS}*(?:['’.-]{_LETTERS}+)*\b"
_TOWN = rf"(?:{_TOWN_WORD}(?:[ -](?:{_TOWN_WORD}|upon|on|under|le|la|les|de|sur|am|an|der|im))*)"
_TAIL = (  # town, state or county, postcode: whatever of them follows the street
    rf"(?:,?\s+(?:{_UNIT}))?"
    rf"(?:,?\s+{_TOWN})?"
    rf"(?:,?\s+(?:[A-Z]{{2}}\s+\d{{5}}(?:-\d{{4}})?|{_UK_POSTCODE}|\d{{5}}(?:-\d{{4}})?))?"
)
_FR_STREET = (
    r"(?i:rue|avenue|av\.|boulevard|bd|chemin|impasse|place|allée|quai|route|cours|square|"
    r"passage|voie)\s+(?:(?:de la|de l'|du|des|de|d')\s*)?[\w'’-]+(?:\s[A-ZÀ-ÖØ-Þ][\w'’-]*){0,3}"
)
_FR_TOWN = r"(?:CEDEX\s+)?\d{5}\s+[A-ZÀ-ÖØ-Þ][\w'’-]*(?:[ -][\w'’-]+){0,2}"
ADDRESS_PATTERNS = {
    # 0487 Kathryn Stream Apt. 123, North Tanya, FL 12345 / Flat 5, 12 Smith Road, London W1 2AB
    "numbered street": rf"(?:{_UNIT},?\s+)?\b\d{{1,5}}[A-Za-z]?,?\s+(?:{_NAME}\s+){{0,3}}"
    rf"{_SUFFIX}(?!\w){_TAIL}",
    # Flat 5, Smith Road, London (British: a flat, no house number)
    "unit and street": rf"\b{_UNIT},?\s+(?:{_NAME}\s+){{1,3}}{_SUFFIX}(?!\w){_TAIL}",
    # US military mail: Unit 7979 Box 5969, DPO AP 40328 / USNS Dunn, FPO AE 12345
    "military": r"\b(?:(?:Unit|PSC)\s+\d{4},?\s+Box\s+\d{4}|(?:USNS|USS|USNV|USCGC)\s+[A-Z]\w+)"
    r",?\s+(?:APO|FPO|DPO)\s+A[AEP]\s+\d{5}\b",
    # Hauptstraße 5, 10115 Berlin / Am Markt 3a, 80331 München
    "german street": r"\b(?:[A-ZÄÖÜ][\wäöüß.-]*\s)?[A-ZÄÖÜ][\wäöüß-]*?-?(?i:straße|strasse|str\.|"
    r"weg|gasse|platz|allee|ring|damm|ufer|chaussee|steig|pfad|markt)\s+"
    r"\d{1,4}\s?[a-z]?(?:\s?[-/]\s?\d{1,4}[a-z]?)?"
    r"(?:,?\s+\d{5}\s+[A-ZÄÖÜ][\wäöüß-]*(?:\s(?:am|an|der|im)\s[A-ZÄÖÜ][\wäöüß]*)?)?",
    # 12, rue de la Paix, 75002 Paris / 3 boulevard Dupont 13001 Marseille
    "french street": rf"\b\d{{1,4}}(?:\s?(?:bis|ter))?,?\s+{_FR_STREET}(?:,?\s+{_FR_TOWN})?",
    # rue David Bigot, 92960 Colletnec (no house number: then the postcode must follow)
    "french street, postcode": rf"\b{_FR_STREET},?\s+{_FR_TOWN}",
}

_DATE = (
    r"(?:\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}"
    r"|\d{1,2}(?:st|nd|rd|th)?\s+(?:of\s+)?[A-Z][a-z]{2,8}\.?,?\s+\d{4}"
    r"|[A-Z][a-z]{2,8}\.?\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{4})"
)
DOB_PATTERN = re.compile(
    r"(?i:\b(?:born(?:\s+on)?|date\s+of\s+birth|birth\s*date|birthday|d\.?o\.?b\.?)"
    r"(?:\s+(?:is|was|:|of))?\s*:?\s*)(?P<date>" + _DATE + r")"
)
SECRET_KEYS = (
    "token|access_token|refresh_token|id_token|auth|authorization|key|api_key|apikey|sig|"
    "signature|secret|password|passwd|pwd|session|sessionid|sid|code|otp|jwt|reset|hash"
)
URL_PATTERN = re.compile(r"\b(?:https?://|www\.)[^\s<>\"']+", re.IGNORECASE)
_SECRET_QUERY = re.compile(rf"[?&#;](?:{SECRET_KEYS})=[^&\s]{{4,}}", re.IGNORECASE)
_RANDOM_SEGMENT = re.compile(r"/(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[\w-]{20,}")


def _recognizer(base: type, name: str, find: Any) -> Any:
    """A Presidio recognizer of one entity whose matches come from ``find(text)``: an iterable
    of (start, end, score)."""
    from presidio_analyzer import RecognizerResult

    class Found(base):  # type: ignore[misc, valid-type]
        def load(self) -> None:
            pass

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list:
            return [RecognizerResult(name, s, e, score) for s, e, score in find(text)]

    Found.__name__ = Found.__qualname__ = f"{name.title().replace('_', '')}Recognizer"
    return Found(supported_entities=[name], name=Found.__name__)


def _token_urls(text: str):
    for match in URL_PATTERN.finditer(text):
        url = match.group().rstrip(".,;:!?)")
        if _SECRET_QUERY.search(url) or _RANDOM_SEGMENT.search(url):
            yield match.start(), match.start() + len(url), 0.9


def _dates_of_birth(text: str):
    for match in DOB_PATTERN.finditer(text):
        yield match.start("date"), match.end("date"), 0.9


_ADDRESS = re.compile("|".join(f"(?:{p})" for p in ADDRESS_PATTERNS.values()))


def _addresses(text: str):
    for match in _ADDRESS.finditer(text):
        yield match.start(), match.end(), 0.7


_EXTENSION = re.compile(r"\s?(?:x|ext\.?|extension)\s?\d{1,6}$", re.IGNORECASE)
# Grouped digits the way people write phone numbers, with an extension: what the
# phonenumbers matcher gives up on (``+1-472-331-2927x65624``, ``001-624-907-7108``).
PHONE_SHAPE = re.compile(
    r"(?<![\w+(])(?:(?:\+|00)?\d{1,3}[ .-]?)?(?:\(\d{1,5}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,6}){1,4}"
    r"(?:\s?(?:x|ext\.?|extension)\s?\d{1,6})?(?!\w)",
    re.IGNORECASE,
)
CARD_SHAPE = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")


def _phones(text: str):
    for match in PHONE_SHAPE.finditer(text):
        if _phone_shaped(text, match.start(), match.end()):
            yield match.start(), match.end(), 0.6


def _cards(text: str):
    """13 to 19 digits, grouped or not, that pass the Luhn check (python-stdnum)."""
    from stdnum import luhn

    for match in CARD_SHAPE.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if len(set(digits)) > 1 and luhn.is_valid(digits):
            yield match.start(), match.end(), 1.0


_DIGIT_BEFORE = re.compile(r"\d[\s-]?$")
_DIGIT_AFTER = re.compile(r"[\s-]?\d")
_AMOUNT = re.compile(r"\d{1,3}(?:[,.]\d{3})*(?:[.,]\d{1,2})?")


def _phone_shaped(text: str, start: int, end: int) -> bool:
    span = _EXTENSION.sub("", text[start:end])
    digits = sum(ch.isdigit() for ch in span)
    before = text[:start].rstrip()[-1:]
    inside_more = _DIGIT_BEFORE.search(text[:start]) or _DIGIT_AFTER.match(text[end:])
    return (
        8 <= digits <= 15
        and before not in "$£€¥"
        and not _AMOUNT.fullmatch(span)
        and not inside_more
    )


@lru_cache(maxsize=1)
def _offline_domains() -> Any:
    import tldextract

    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)  # the bundled snapshot


def pattern_recognizers(kinds: tuple[str, ...]) -> list[Any]:
    """Recognizers for the pattern kinds among ``kinds``."""
    from presidio_analyzer import EntityRecognizer
    from presidio_analyzer.predefined_recognizers import (
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
    )

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return _offline_domains()(pattern_text).fqdn != ""

    class PhoneShapedRecognizer(PhoneRecognizer):
        """``phonenumbers`` at POSSIBLE leniency, less what only looks like a number there: an
        amount (``$1.00``, ``1,250.00``), fewer than 8 digits, more than 15, or a piece of a
        longer run of digit groups (a card number that failed its checksum)."""

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list:
            return [r for r in super().analyze(text, entities, nlp_artifacts)
                    if _phone_shaped(text, r.start, r.end)]  # fmt: skip

    made = {
        "EMAIL": lambda: [OfflineEmailRecognizer()],
        # POSSIBLE leniency: a number of a plausible length for its region. Made-up and
        # foreign numbers are personal data too, and fail the VALID check.
        "PHONE": lambda: [
            PhoneShapedRecognizer(
                supported_regions=("US", "GB", "DE", "FR", "IE", "ES", "IT", "NL", "IN", "CA"),
                leniency=0,
            ),
            _recognizer(EntityRecognizer, "PHONE_NUMBER", _phones),
        ],
        # Presidio's card recognizer knows neither 2-series Mastercard nor 19-digit cards
        "CARD": lambda: [_recognizer(EntityRecognizer, "CREDIT_CARD", _cards)],
        "IBAN": lambda: [IbanRecognizer()],
        "IP": lambda: [IpRecognizer()],
        "URL": lambda: [_recognizer(EntityRecognizer, "TOKEN_URL", _token_urls)],
        "DOB": lambda: [_recognizer(EntityRecognizer, "DATE_OF_BIRTH", _dates_of_birth)],
        "ADDRESS": lambda: [_recognizer(EntityRecognizer, "STREET_ADDRESS", _addresses)],
    }
    return [recognizer for kind in kinds if kind in made for recognizer in made[kind]()]
