"""Person names beyond what the English NER finds: whole names, and names where people put them.

spaCy's small English model cuts foreign names short (``Charles Andre`` of ``Charles Andre du
Riou``, ``Élodie`` of ``Élodie-Claudine Gautier``) and misses many that are not English. Two
rules over the text, both on capitalised words (``spacy``'s English stop words never count as
one):

* **Whole names.** A name the NER found grows over the name words touching it on its line:
  capitalised words, hyphenated parts, particles (``du``, ``de la``, ``von``, ``van``) and a
  title before it (``Dr.``, ``Mme``).
* **Where names go.** Two or more name words right after an introduction (``my name is``,
  ``I'm``, ``this is``, ``in the name of``, ``holder:``), or closing the text as a signature
  (after a line break, a comma, a dash or a colon, with nothing after but a full stop).

Stop words and greetings (``Hi``, ``Thanks``) at either end are given back.
"""

from __future__ import annotations

import re
from functools import lru_cache

_CAP = "A-ZÀ-ÖØ-Þ"
_WORD = rf"(?:[{_CAP}]\.|[{_CAP}][^\W\d_]*(?:[-'’][{_CAP}]?[^\W\d_]+)*)"  # an initial, or a word
_PARTICLE = r"(?:de la|de l'|du|de|des|von|van|der|den|le|la|di|da|dos|del|zu|ter|ten|bin|al)"
_TITLE = r"(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Herr|Frau|Mme|Mlle|M|Sir|Dame)\.?"
_SEQUENCE = rf"{_WORD}(?:[ \t]+(?:{_PARTICLE}[ \t]+)?{_WORD}){{1,4}}"
NAME = re.compile(rf"(?:{_TITLE}[ \t]+)?(?P<name>{_SEQUENCE})")
INTRODUCED = re.compile(
    rf"(?i:\b(?:my name is|name is|i'm|i am|this is|in the name of|holder:?))[ \t]+"
    rf"(?P<name>(?:{_TITLE}[ \t]+)?{_SEQUENCE})"
)
SIGNATURE = re.compile(
    rf"(?:^|[\n,:\-–—])[ \t]*(?P<name>(?:{_TITLE}[ \t]+)?{_SEQUENCE})[ \t]*\.?\s*$"
)
_AFTER = re.compile(rf"(?:-{_WORD})?(?:[ \t]+(?:{_PARTICLE}[ \t]+)?{_WORD})*")
_BEFORE = re.compile(rf"(?:(?:{_TITLE}|{_WORD})[ \t]+(?:{_PARTICLE}[ \t]+)?)*$")


@lru_cache(maxsize=1)
def _stop_words() -> frozenset[str]:
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset(STOP_WORDS)


GREETINGS = frozenset({"hi", "hello", "hey", "dear", "thanks", "thank", "regards", "cheers"})


def _not_a_name(word: str) -> bool:
    """A stop word (``This``, ``I'm``) or a greeting: never part of a name."""
    word = word.strip(".,;:!?").casefold()
    head = re.split(r"['’]", word)[0]
    return word in _stop_words() or head in _stop_words() or word in GREETINGS


def _trim_stop_words(text: str, start: int, end: int) -> tuple[int, int]:
    """Give back words at either end of a span that are not names (``This`` of ``This Jean``)."""
    words = list(re.finditer(r"\S+", text[start:end]))
    while words and _not_a_name(words[0].group()):
        words.pop(0)
    while words and _not_a_name(words[-1].group()):
        words.pop()
    if not words:
        return start, start
    return start + words[0].start(), start + words[-1].end()


def whole_name(text: str, start: int, end: int) -> tuple[int, int]:
    """The span of a found name, grown over the name words touching it on its line."""
    after = _AFTER.match(text, end)
    before = _BEFORE.search(text[:start])
    grown_start = before.start() if before else start
    grown_end = after.end() if after else end
    return _trim_stop_words(text, min(grown_start, start), max(grown_end, end))


def placed_names(text: str) -> list[tuple[int, int]]:
    """Names after an introduction or closing the text as a signature."""
    spans = []
    for pattern in (INTRODUCED, SIGNATURE):
        for match in pattern.finditer(text):
            start, end = _trim_stop_words(text, *match.span("name"))
            if len(text[start:end].split()) >= 2:  # one capitalised word is too often not a name
                spans.append((start, end))
    return spans
