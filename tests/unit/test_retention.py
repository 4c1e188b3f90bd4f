"""Retention without Prefect (issue 12): the config section, the cutoffs, and a run that deletes
the expired interactions (with their feedback), whole old quarantine parts and old eval answers,
keeping the rest."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from ratchet import schemas
from ratchet.config import PipelineConfig, RetentionConfig
from ratchet.db import open_database, repo
from ratchet.ingest.pipeline import IngestContext, ingest_file
from ratchet.privacy import retention
from ratchet.privacy.erasure import ErasureContext
from ratchet.redaction import Redactor
from ratchet.settings import get_settings
from ratchet.store import Store

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
KEY = b"k" * 32


def test_the_config_keeps_everything_by_default_and_refuses_a_zero_age() -> None:
    assert RetentionConfig() == RetentionConfig(
        interactions_days=None, feedback_days=None, quarantine_days=None, eval_answers_days=None
    )
    cuts = retention.cutoffs(RetentionConfig(feedback_days=10), NOW)
    assert cuts == {"interactions": None, "feedback": NOW - timedelta(days=10),
                    "quarantine": None, "eval_answers": None}  # fmt: skip
    with pytest.raises(ValueError, match=r"retention\.interactions_days"):
        PipelineConfig.model_validate({"retention": {"interactions_days": 0}})


def test_retention_deletes_the_expired_and_keeps_the_rest(
    ratchet_env: Path, tmp_path: Path
) -> None:
    settings = get_settings()
    config = PipelineConfig.model_validate(
        {"ingest": {"max_quarantine_share": 1.0, "fast_path": False}}
    )
    ingest = IngestContext(
        Store(settings.store_root), open_database(settings), config, Redactor(config.redaction),
        KEY, NOW,
    )  # fmt: skip
    lines = []
    for i, age in enumerate((90, 60, 5)):
        when = (NOW - timedelta(days=age)).isoformat()
        lines.append(json.dumps({
            "interaction_id": f"int-{i}", "agent_id": "a", "timestamp": when,
            "messages": [{"role": "user", "content": f"question aged {age}"}],
            "response": "ok", "feedback": {"thumb": 1, "timestamp": when},
        }))  # fmt: skip
    lines.append("not json")
    path = tmp_path / "logs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    ingest_file(ingest, path)
    cache = pa.table(
        {"model_version_id": ["m"], "input_hash": ["h"], "answer": ["old answer"],
         "tool_calls": [None], "latency_ms": [1.0], "cost_usd": [0.0]},
        schema=schemas.EVAL_ANSWER_CACHE,
    )  # fmt: skip
    cached = ingest.store.write_part("evals/cache/m", cache, schemas.EVAL_ANSWER_CACHE).path
    ctx = ErasureContext(ingest.store, ingest.sessions, config, KEY)

    rules = RetentionConfig(interactions_days=30, quarantine_days=1, eval_answers_days=1)
    later = datetime.now(UTC) + timedelta(days=2)  # the quarantine part and cache are 2 days old
    dry = retention.apply(ctx, rules, later, dry_run=True)
    assert dry["rows_removed"] == {"interactions": 2, "feedback": 2, "quarantine": 1,
                                   "eval_answer_cache": 1}  # fmt: skip
    out = retention.apply(ctx, rules, NOW)  # by NOW: only the interactions are old enough
    assert out["rows_removed"] == {"interactions": 2, "feedback": 2}
    assert out["tombstones_added"] == 0
    with ctx.sessions() as s:
        (part,) = repo.list_parts(s, "interactions", agent_id="a")
        assert repo.list_tombstones(s) == []
    kept = ctx.store.read_table(part.path, schemas.INTERACTIONS)
    assert kept["interaction_id"].to_pylist() == ["int-2"]
    assert ctx.store.exists(cached)
    out = retention.apply(ctx, rules, later)
    assert out["rows_removed"] == {"quarantine": 1, "eval_answer_cache": 1}
    assert not ctx.store.exists(cached)
