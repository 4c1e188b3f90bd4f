"""Dataset version ids: the hash of a curated table's content and the config that made it.

Canonical and order-independent: rows are sorted by the table's id columns and serialised as
sorted-key JSON (timestamps as ISO-8601 UTC), so the same inputs give the same id whichever run,
machine or row order produced the table, and any change of content or config changes it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

import pyarrow as pa
from pydantic import BaseModel

from ratchet import schemas

ID_COLUMNS: dict[str, list[str]] = {
    "eval_cases": ["case_id", "status", "kind", "interaction_id"],
    "sft_examples": ["example_id"],
    "preference_pairs": ["pair_id"],
    "binary_feedback": ["example_id"],
    "review_queue": ["review_id"],
}


def _default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(type(value).__name__)


def dataset_version_id(table: pa.Table, kind: str, config: BaseModel) -> str:
    """A 24-hex-digit id of ``table`` (a curated ``kind``) and ``config`` (the curation config).

    Sorting is by ``ID_COLUMNS[kind]`` then every other column, so duplicate ids cannot make
    the order (and the id) depend on the input order.
    """
    schema = schemas.schema_for(kind)
    if kind not in ID_COLUMNS:
        raise ValueError(f"{kind!r} is not a curated table; known: {sorted(ID_COLUMNS)}")
    table = table.select(schema.names).cast(schema)
    h = hashlib.sha256()
    h.update(f"kind={kind};schema={schemas.fingerprint(schema)};".encode())
    h.update(json.dumps(config.model_dump(mode="json"), sort_keys=True).encode())
    keys = ID_COLUMNS[kind]
    rows = table.to_pylist()
    encoded = [json.dumps(r, sort_keys=True, default=_default, ensure_ascii=False) for r in rows]
    order = sorted(
        range(len(rows)), key=lambda i: (tuple(str(rows[i][k]) for k in keys), encoded[i])
    )
    for i in order:
        h.update(encoded[i].encode())
        h.update(b"\n")
    return h.hexdigest()[:24]
