"""Ingest of the whole bundled sample, checked against the generator's ground-truth manifest.

The manifest counts what the generator planted (duplicates, conflicts, malformed lines by
reason, consent refusals, feedback events), independently of ingest's own bookkeeping.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from ratchet.config import PipelineConfig
from ratchet.db import open_database, repo
from ratchet.ingest.pipeline import IngestContext, ingest_file
from ratchet.redaction import Redactor
from ratchet.schemas import FEEDBACK, INTERACTIONS
from ratchet.settings import get_settings
from ratchet.store import Store
from tests.conftest import SAMPLE_DIR


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((SAMPLE_DIR / "manifest.json").read_text())


def test_sample_ingest_matches_the_manifest(ratchet_env, manifest) -> None:
    settings = get_settings()
    config = PipelineConfig.model_validate({"ingest": {"batch_size": 100, "workers": 1}})
    ctx = IngestContext(
        store=Store(settings.store_root),
        sessions=open_database(settings),
        config=config,
        redactor=Redactor(config.redaction),
        pseudonym_key=b"s" * 32,
        now=datetime(2026, 11, 20, tzinfo=UTC),
    )
    reports = [ingest_file(ctx, p) for p in sorted(SAMPLE_DIR.glob("interactions-*.jsonl"))]
    reports.append(ingest_file(ctx, SAMPLE_DIR / "openai-chat.jsonl"))
    reports += [
        ingest_file(ctx, p, kind="feedback") for p in sorted(SAMPLE_DIR.glob("feedback-*.jsonl"))
    ]

    m = manifest["interactions"]
    quarantined: dict[str, int] = {}
    for r in reports:
        for reason, n in r.quarantined.items():
            quarantined[reason] = quarantined.get(reason, 0) + n
    stored_i = sum(r.stored["interactions"] for r in reports)
    stored_f = sum(r.stored["feedback"] for r in reports)
    consent = sum(r.dropped_consent for r in reports)
    assert quarantined == m["expected_quarantine"]
    assert sum(r.skipped_stored["interactions"] for r in reports) == m["exact_duplicates"]
    assert sum(r.assumed_utc for r in reports) >= m["timestamp_no_zone"] - m["consent_false"]
    openai_lines = manifest["openai_chat"]["lines"]
    assert stored_i == m["valid_distinct"] - m["consent_false"] + openai_lines

    with ctx.sessions() as s:
        i_paths = [p.path for p in repo.list_parts(s, "interactions")]
        f_paths = [p.path for p in repo.list_parts(s, "feedback")]
    interactions = ctx.store.read_tables(
        i_paths, INTERACTIONS, ["agent_id", "interaction_id", "pii_residual"]
    )
    feedback = ctx.store.read_tables(f_paths, FEEDBACK, ["feedback_id", "interaction_id"])
    keys = list(
        zip(
            interactions.column("agent_id").to_pylist(),
            interactions.column("interaction_id").to_pylist(),
            strict=True,
        )
    )
    assert len(keys) == len(set(keys)) == stored_i
    assert set(interactions.column("pii_residual").to_pylist()) == {0}
    # every feedback event stored once; the only ones missing went with a consent refusal
    f = manifest["feedback"]
    assert stored_f == feedback.num_rows
    assert stored_f + (consent - m["consent_false"]) == f["events_total"]
    assert len(set(feedback.column("feedback_id").to_pylist())) == stored_f

    # pii found by ingest: at least what the generator planted in stored records
    found = sum(sum(r.pii_by_type.values()) for r in reports)
    planted = sum(manifest["pii"]["interactions"].values()) + sum(
        manifest["pii"]["openai_chat"].values()
    )
    assert found >= planted * 0.95
