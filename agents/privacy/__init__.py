"""Personal data never reaches an external tier or the tracking store in the clear.

* :class:`Redactor` finds e-mail addresses, phone numbers, payment cards (Luhn), IBANs
  (checksum), IP addresses, URLs carrying credentials, dates of birth and street addresses by
  pattern (Presidio's analyzer and our recognizers), and person names with spaCy's English
  NER, and replaces each with a typed placeholder (``<EMAIL_1>``) from a per-request
  :class:`Vault`, which also restores the values in the answer.
* :class:`RedactingGenerator` puts that in front of an external text generator.
* :class:`PrivacyPolicy` is the team spec's ``privacy:`` block; :func:`is_external` decides
  which endpoint agents are external.
* :func:`store_text` is what the tracking store writes instead of raw text; :func:`excerpt`
  is what an error message may quote of a text.

Modules: ``kinds`` (the kinds), ``recognizers`` (the pattern recognizers), ``detector``
(the analyzer and the NER), ``vault``, ``redactor``, ``guard``, ``policy``, ``stored``.
Presidio and spaCy load on first use, not on import.
"""

from slm_agents.privacy.detector import Detector, Entity
from slm_agents.privacy.guard import RedactingGenerator
from slm_agents.privacy.kinds import KINDS, NER_KINDS, PATTERN_KINDS
from slm_agents.privacy.policy import PrivacyPolicy, is_external
from slm_agents.privacy.redactor import Redaction, Redactor
from slm_agents.privacy.stored import excerpt, store_text
from slm_agents.privacy.vault import Vault

__all__ = [
    "KINDS",
    "NER_KINDS",
    "PATTERN_KINDS",
    "Detector",
    "Entity",
    "PrivacyPolicy",
    "RedactingGenerator",
    "Redaction",
    "Redactor",
    "Vault",
    "excerpt",
    "is_external",
    "store_text",
]
