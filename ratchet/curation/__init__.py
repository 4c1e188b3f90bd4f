"""Curation: one agent's interactions and feedback → eval cases, training data, review queue.

Entry points: :func:`curate` (pure: Arrow tables in, :class:`CurationResult` out) and
:func:`dataset_version_id` (the content + config hash that names a dataset version). Each rule
lives in the module named for it: ``signals`` (current feedback and outcomes), ``filters``,
``dedupe`` with ``minhash``, ``balance``, ``split``, ``evalset`` (accumulation, retirement).
"""

from ratchet.curation.pipeline import (
    CURATION_REJECTS,
    CurationInputError,
    CurationResult,
    ResidualScanner,
    curate,
)
from ratchet.curation.version import ID_COLUMNS, dataset_version_id

__all__ = [
    "CURATION_REJECTS",
    "ID_COLUMNS",
    "CurationInputError",
    "CurationResult",
    "ResidualScanner",
    "curate",
    "dataset_version_id",
]
