"""A counting fake answering backend for the evaluation tests, handed out by the backend
registry (``BACKENDS["evalfake"] = ("tests.eval_fakes", None)``): nothing patches an import.

A model version's ``parameters`` say what it answers: ``answers`` (the last user message ->
the answer), else ``default``; ``delay_s`` holds each answer that long. ``CALLS`` counts answers
per ``model_ref`` across threads, so a test proves a rerun or a replay paid nothing.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from ratchet.backends.base import Answer, ModelSpec

CALLS: Counter[str] = Counter()
_LOCK = threading.Lock()


class FakeAnswerer:
    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    def answer(self, messages: Sequence[Mapping[str, Any]]) -> Answer:
        with _LOCK:
            CALLS[self.spec.model_ref] += 1
        p = self.spec.parameters
        time.sleep(float(p.get("delay_s", 0.0)))
        question = [m for m in messages if m.get("role") == "user"][-1].get("content") or ""
        text = dict(p.get("answers") or {}).get(question, p.get("default", "I do not know."))
        return Answer(text, latency_ms=5.0, cost_usd=float(p.get("cost_usd", 0.001)))


def make_answerer(spec: ModelSpec, context: Any) -> FakeAnswerer:
    return FakeAnswerer(spec)


# --- a seeded agent -------------------------------------------------------------------------------
AGENT = "help-desk"
CASES = [  # case id, kind, split, topic, question, expected
    *[
        (f"g{i}", "golden", "holdout", "refunds", f"refund question {i}", f"Refund answer {i}.")
        for i in range(4)
    ],
    *[
        (f"s{i}", "golden", "holdout", "shipping", f"shipping question {i}", f"Ships in {i} days.")
        for i in range(3)
    ],
    *[
        (
            f"r{i}",
            "regression",
            "holdout",
            "refunds",
            f"regression question {i}",
            f"Corrected answer {i}.",
        )
        for i in range(4)
    ],
    *[
        (f"f{i}", "regression", "train", "refunds", f"fix question {i}", f"Fixed answer {i}.")
        for i in range(2)
    ],
]
RIGHT = {q: e for _, _, _, _, q, e in CASES}
BASELINE_ANSWERS = {q: (e if k == "golden" else "Wrong old answer.") for _, k, _, _, q, e in CASES}


def _cases_table() -> Any:
    import pyarrow as pa

    from ratchet import schemas

    return pa.Table.from_pylist(
        [
            {
                "case_id": cid,
                "agent_id": AGENT,
                "interaction_id": f"i-{cid}",
                "kind": kind,
                "split": split,
                "fix_check": split == "train",
                "input": [
                    {
                        "role": "user",
                        "content": q,
                        "name": None,
                        "tool_call_id": None,
                        "tool_calls": None,
                    }
                ],
                "expected": exp,
                "expected_tool_calls": None,
                "production_answer": None,
                "status": "active",
                "retired_reason": None,
                "feedback_ids": None,
                "topic": topic,
                "first_seen": None,
                "pii_residual": 0,
            }
            for cid, kind, split, topic, q, exp in CASES
        ],
        schema=schemas.EVAL_CASES,
    )


def seed(sessions: Any, store: Any) -> dict[str, str]:
    """The eval_cases version ``v1`` of :data:`CASES` and three model versions of the fake
    backend: ``baseline`` (production; right on golden cases only), ``candidate`` and ``other``
    (right everywhere). Returns their ids by name."""
    from ratchet import schemas
    from ratchet.db import repo
    from ratchet.store import dataset_path

    table = _cases_table()
    part = store.write_table_at(dataset_path(AGENT, "eval_cases", "v1"), table, schemas.EVAL_CASES)
    with sessions() as s, s.begin():
        repo.register_dataset_version(
            s,
            version_id="v1",
            agent_id=AGENT,
            kind="eval_cases",
            path=part.path,
            rows=table.num_rows,
            schema_fingerprint=part.schema_fingerprint,
            config_hash="x",
        )
        base = repo.create_model_version(
            s,
            agent_id=AGENT,
            backend="evalfake",
            model_ref="baseline",
            status="production",
            parameters={"answers": BASELINE_ANSWERS},
        )
        cand = repo.create_model_version(
            s,
            agent_id=AGENT,
            backend="evalfake",
            model_ref="candidate",
            parameters={"answers": RIGHT},
        )
        other = repo.create_model_version(
            s, agent_id=AGENT, backend="evalfake", model_ref="other", parameters={"answers": RIGHT}
        )
        return {"baseline": base.id, "candidate": cand.id, "other": other.id}
