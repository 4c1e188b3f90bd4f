"""Data-quality suites of the curated tables, registered with :mod:`ratchet.quality`.

GX checks flat columns, so the rules that look inside messages are computed here, in the core,
as per-row columns of a *check frame* (ids, split, ``pii_residual`` and these derived columns),
and the suite asserts on them, as the residual-PII check already does:

* ``invalid_roles``: messages whose role is not an OpenAI role (must be 0);
* ``placeholder_only``: the user input or the answer is nothing but redaction placeholders
  (must be False; the review queue is exempt: a human decides what those rows mean);
* ``holdout_overlap``: a training row (sft, pairs, binary) whose ``case_id`` is a holdout case of
  the eval set of the same run (must be False, and counted as ``holdout_overlap_<kind>``).

Importing this module registers the suites (``ratchet.quality.SUITES``).
"""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ratchet import quality
from ratchet.config import CurationConfig
from ratchet.curation import text
from ratchet.quality import Spec
from ratchet.schemas import VALID_ROLES

TRAINING_KINDS = ("sft_examples", "preference_pairs", "binary_feedback")
EVAL_KINDS = ("golden", "regression")
EVAL_SPLITS = ("holdout", "train")
TRAINING_SPLITS = ("train", "validation")
CASE_STATUSES = ("active", "retired")
REVIEW_REASONS = ("thumbs_down_no_correction", "conflict", "neutral_rating")

_REQUIRED = {
    "eval_cases": [
        "case_id",
        "agent_id",
        "interaction_id",
        "kind",
        "split",
        "fix_check",
        "expected",
        "status",
    ],
    "sft_examples": ["example_id", "agent_id", "case_id", "origin", "split"],
    "preference_pairs": ["pair_id", "agent_id", "case_id", "split", "chosen", "rejected"],
    "binary_feedback": ["example_id", "agent_id", "case_id", "split", "completion", "label"],
    "review_queue": ["review_id", "agent_id", "interaction_id", "reason", "response"],
}
# (messages column, answer column or None when the answer is the messages' last turn)
_CONTENT = {
    "eval_cases": ("input", "expected"),
    "sft_examples": ("messages", None),
    "preference_pairs": ("input", "chosen"),
    "binary_feedback": ("prompt", "completion"),
    "review_queue": ("input", "response"),
}
_IDS = {
    "eval_cases": None,
    "sft_examples": "example_id",
    "preference_pairs": "pair_id",
    "binary_feedback": "example_id",
    "review_queue": "review_id",
}


def _zero(column: str) -> Spec:
    return ("ExpectColumnValuesToBeBetween", {"column": column, "min_value": 0, "max_value": 0})


def _in_set(column: str, values: list[object]) -> Spec:
    return ("ExpectColumnValuesToBeInSet", {"column": column, "value_set": values})


def _not_null(columns: list[str]) -> list[Spec]:
    return [("ExpectColumnValuesToNotBeNull", {"column": c}) for c in columns]


def _suite(kind: str) -> list[Spec]:
    specs = _not_null([*_REQUIRED[kind], "messages_present"])
    specs += [_zero("pii_residual"), _zero("invalid_roles"), _in_set("messages_present", [True])]
    if kind != "review_queue":
        specs.append(_in_set("placeholder_only", [False]))
    if _IDS[kind]:
        specs.append(("ExpectColumnValuesToBeUnique", {"column": _IDS[kind]}))
    if kind == "eval_cases":
        specs += [
            _in_set("kind", list(EVAL_KINDS)),
            _in_set("split", list(EVAL_SPLITS)),
            _in_set("status", list(CASE_STATUSES)),
        ]
    elif kind == "review_queue":
        specs.append(_in_set("reason", list(REVIEW_REASONS)))
    else:
        specs += [_in_set("split", list(TRAINING_SPLITS)), _in_set("holdout_overlap", [False])]
    return specs


def register() -> None:
    """Register one suite per curated table (idempotent)."""
    for kind in _REQUIRED:
        quality.register_suite(kind, functools.partial(_suite, kind))


def _invalid_roles(messages: pa.ChunkedArray | pa.Array) -> np.ndarray:
    arr = text.list_array(messages)
    n = len(arr)
    if not n:
        return np.zeros(0, dtype=np.int64)
    roles = pc.struct_field(arr.flatten(), "role")
    bad = pc.invert(pc.fill_null(pc.is_in(roles, value_set=pa.array(sorted(VALID_ROLES))), False))
    parents = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False)
    bad_np = np.asarray(bad.to_numpy(zero_copy_only=False), dtype=bool)
    return np.bincount(parents[bad_np], minlength=n).astype(np.int64)


def _last_assistant(messages: pa.ChunkedArray | pa.Array) -> pa.Array:
    out = []
    for conv in text.list_array(messages).to_pylist():
        last = next((m for m in reversed(conv or []) if m.get("role") == "assistant"), None)
        out.append((last or {}).get("content") or "")
    return pa.array(out, pa.string())


def holdout_case_ids(eval_cases: pa.Table) -> pa.Array:
    """Every case id the eval set holds out (splits are by case-id hash, so retired ones too)."""
    return pc.unique(pc.filter(eval_cases["case_id"], pc.equal(eval_cases["split"], "holdout")))


def check_frame(
    kind: str, table: pa.Table, config: CurationConfig, holdout_ids: pa.Array | None = None
) -> pa.Table:
    """The columns the ``kind`` suite asserts on, one row per row of ``table`` (no text)."""
    msg_col, answer_col = _CONTENT[kind]
    messages = table[msg_col]
    answer = table[answer_col] if answer_col else _last_assistant(messages)
    if isinstance(answer, pa.ChunkedArray):
        answer = answer.combine_chunks() if answer.num_chunks else pa.array([], pa.string())
    user = text.user_text(messages) if table.num_rows else pa.array([], pa.string())
    ph = (
        (
            text.placeholder_only(user, config.placeholder_pattern)
            | text.placeholder_only(text.string_array(answer), config.placeholder_pattern)
        )
        if table.num_rows
        else np.zeros(0, dtype=bool)
    )
    cols: dict[str, pa.Array | pa.ChunkedArray] = {c: table[c] for c in _REQUIRED[kind]}
    if "split" in table.column_names:
        cols["split"] = table["split"]
    cols["pii_residual"] = table["pii_residual"]
    cols["messages_present"] = pc.is_valid(messages)
    cols["invalid_roles"] = pa.array(_invalid_roles(messages), pa.int64())
    cols["placeholder_only"] = pa.array(ph, pa.bool_())
    if kind in TRAINING_KINDS:
        ids = holdout_ids if holdout_ids is not None else pa.array([], pa.string())
        cols["holdout_overlap"] = pc.fill_null(pc.is_in(table["case_id"], value_set=ids), False)
    return pa.table(cols)


def holdout_overlap_count(check: pa.Table) -> int:
    if "holdout_overlap" not in check.column_names:
        return 0
    return int(pc.sum(check["holdout_overlap"].cast(pa.int64())).as_py() or 0)


register()
