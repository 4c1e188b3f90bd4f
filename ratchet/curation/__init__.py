"""Curation: one agent's interactions and feedback → eval cases, training data, review queue.

Entry points: :func:`curate` (pure: Arrow tables in, :class:`CurationResult` out) and
:func:`dataset_version_id` (the content + config hash that names a dataset version). Each rule
lives in the module named for it: ``signals`` (current feedback and outcomes), ``filters``,
``dedupe`` with ``minhash``, ``balance``, ``split``, ``evalset`` (accumulation, retirement).
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported on first use (PEP 562): the pipeline pulls in pandas, and a command that only needs
# ``ratchet.curation.select`` (``ratchet feedback add``) must not pay for it.
_LAZY = {
    "CURATION_REJECTS": "pipeline", "CurationInputError": "pipeline",
    "CurationResult": "pipeline", "ResidualScanner": "pipeline", "curate": "pipeline",
    "ID_COLUMNS": "version", "dataset_version_id": "version",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"ratchet.curation.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'ratchet.curation' has no attribute {name!r}")


__all__ = [
    "CURATION_REJECTS",
    "ID_COLUMNS",
    "CurationInputError",
    "CurationResult",
    "ResidualScanner",
    "curate",
    "dataset_version_id",
]
