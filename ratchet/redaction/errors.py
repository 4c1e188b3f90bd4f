"""Typed errors of the redaction package.

Messages name the field, the rule or the setting, never a value: an exception text ends up in
logs, Prefect states and artifacts, which are outside the erasure boundary.
"""

from __future__ import annotations


class RedactionError(ValueError):
    """Base class: something in redaction or pseudonymisation cannot proceed."""


class RedactionConfigError(RedactionError):
    """A ``redaction`` config entry is unusable (bad type name, regex RE2 or Python rejects)."""


class PseudonymKeyMissing(RedactionError):
    """No pseudonymisation key, and none may be generated (the store is remote)."""


class PseudonymKeyInsecure(RedactionError):
    """The local key file is readable by others, or is not a usable key."""
