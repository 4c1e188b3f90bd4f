"""Redaction: PII out of every text field before anything is stored, and user ids pseudonymised.

Public API: :class:`Redactor` (``redact_text``, ``redact_table``, ``scan_text``, ``scan_table``,
``version``), :class:`RedactionResult`, :data:`RULESET_VERSION`, :data:`TYPES`,
:func:`pseudonymise`, :func:`pseudonymise_array`, :func:`resolve_pseudonym_key` and the typed
errors. Core package: it never imports Prefect.

Modules: ``detectors`` (the rules and the documented type list), ``engine`` (the column passes),
``checksums`` (Luhn, mod-97, base58/bech32, address checks), ``literals`` (which values after
``password=``/``token:`` are secrets, and which are code or placeholders, kept), ``escapes``
(the decoded view through which every rule also reads Markdown/HTML/JSON/URL-escaped text),
``arrow`` (nested columns), ``pseudonym`` (keyed ids).
"""

from ratchet.redaction.detectors import TYPES
from ratchet.redaction.engine import (
    IDENTITY_COLUMNS,
    NEVER_TOUCHED_COLUMNS,
    NEVER_TOUCHED_LEAVES,
    RULESET_VERSION,
    RedactionResult,
    Redactor,
    redactable_columns,
    scannable_columns,
)
from ratchet.redaction.errors import (
    PseudonymKeyInsecure,
    PseudonymKeyMissing,
    RedactionConfigError,
    RedactionError,
)
from ratchet.redaction.pseudonym import (
    pseudonymise,
    pseudonymise_array,
    resolve_pseudonym_key,
)

__all__ = [
    "IDENTITY_COLUMNS",
    "NEVER_TOUCHED_COLUMNS",
    "NEVER_TOUCHED_LEAVES",
    "RULESET_VERSION",
    "TYPES",
    "PseudonymKeyInsecure",
    "PseudonymKeyMissing",
    "RedactionConfigError",
    "RedactionError",
    "RedactionResult",
    "Redactor",
    "pseudonymise",
    "pseudonymise_array",
    "redactable_columns",
    "resolve_pseudonym_key",
    "scannable_columns",
]
