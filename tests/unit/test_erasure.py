"""The erasure engine without Prefect (issue 12): parts rewritten with their keys moved, the
quarantine row found by hashing its raw user id, a superseding dataset version (the old file
deleted), the retrieval model rebuilt and marked, tombstones; dry run, idempotence, a crash
between a commit and a delete finished by the rerun; consent withdrawals at ingest."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from ratchet import schemas
from ratchet.backends.retrieval import RetrievalIndex, build_index
from ratchet.config import PipelineConfig
from ratchet.db import open_database, repo
from ratchet.ingest.pipeline import IngestContext, ingest_file
from ratchet.privacy.erasure import ErasureContext, ErasureRequest, erase
from ratchet.redaction import Redactor, pseudonymise
from ratchet.settings import get_settings
from ratchet.store import Store, dataset_path

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
KEY = b"k" * 32
AGENT = "shop-assistant"
PHRASE = "pomegranate tuba"


def _interaction(i: int, user: str) -> dict[str, Any]:
    return {
        "interaction_id": f"int-{i}", "agent_id": AGENT, "user_id": user,
        "timestamp": "2026-11-02T10:00:00Z",
        "messages": [{"role": "user", "content": f"{user} asks {PHRASE if user == 'cust-1' else 'x'} {i}"}],
        "response": f"answer {i}",
    }  # fmt: skip


def _write(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture
def setup(ratchet_env: Path, tmp_path: Path) -> tuple[ErasureContext, IngestContext]:
    settings = get_settings()
    config = PipelineConfig.model_validate(
        {"ingest": {"max_quarantine_share": 1.0, "fast_path": False}}
    )
    ingest = IngestContext(
        Store(settings.store_root), open_database(settings), config, Redactor(config.redaction),
        KEY, NOW,
    )  # fmt: skip
    rows = [_interaction(1, "cust-1"), _interaction(2, "cust-2"), _interaction(3, "cust-1")]
    broken = json.dumps({"interaction_id": "int-9", "agent_id": AGENT, "user_id": "cust-1"})
    ingest_file(ingest, _write(tmp_path / "logs.jsonl", [*rows, broken]))
    feedback = [
        {"feedback_id": f"fb-{i}", "interaction_id": f"int-{i}", "agent_id": AGENT,
         "timestamp": "2026-11-02T11:00:00Z", "thumb": 1, "annotator": "cust-2"}
        for i in (1, 2, 3)
    ]  # fmt: skip
    ingest_file(ingest, _write(tmp_path / "fb.jsonl", feedback), kind="feedback")
    _curated_and_trained(ingest)
    return ErasureContext(ingest.store, ingest.sessions, config, KEY), ingest


def _curated_and_trained(ctx: IngestContext) -> None:
    """An sft_examples version holding every interaction's question, and a local model (a
    retrieval index in its folder) trained on it."""
    messages = [
        [{"role": "user", "content": r["messages"][0]["content"]},
         {"role": "assistant", "content": f"answer {r['interaction_id']}"}]
        for r in (_interaction(i, u) for i, u in ((1, "cust-1"), (2, "cust-2"), (3, "cust-1")))
    ]  # fmt: skip
    from ratchet.curation import text

    norm = text.normalise(text.user_text(pa.array([m[:1] for m in messages], schemas.MESSAGES)))
    cases = text.case_ids(AGENT, norm)
    table = pa.table(
        {
            "example_id": [f"ex-{i}" for i in range(3)], "agent_id": [AGENT] * 3,
            "case_id": cases, "origin": ["golden"] * 3, "split": ["train"] * 3,
            "messages": messages, "topic": [None] * 3, "pii_residual": [0] * 3,
        },
        schema=schemas.SFT_EXAMPLES,
    )  # fmt: skip
    part = ctx.store.write_table_at(
        dataset_path(AGENT, "sft_examples", "v1"), table, schemas.SFT_EXAMPLES
    )
    index = build_index(
        ["ex-0", "ex-1", "ex-2"], [m[0]["content"] for m in messages],
        [m[1]["content"] for m in messages], meta={"backend": "local"},
    )  # fmt: skip
    index.save(ctx.store, "models/run-1/")
    with ctx.sessions() as s, s.begin():
        repo.register_dataset_version(
            s, version_id="v1", agent_id=AGENT, kind="sft_examples", path=part.path, rows=3,
            schema_fingerprint=part.schema_fingerprint, config_hash="c" * 64,
        )  # fmt: skip
        run = repo.create_training_run(
            s, agent_id=AGENT, dataset_version_id="v1", base_model_version="base",
            training_type="sft", backend="local", created_by="test",
        )  # fmt: skip
        repo.create_model_version(
            s, agent_id=AGENT, backend="local", model_ref="models/run-1/", status="candidate",
            training_run_id=run.id, version_id="mv-1",
        )  # fmt: skip


def _texts(store: Store) -> str:
    """Every file of the store as text (Parquet decoded)."""
    import pyarrow.parquet as pq

    out = []
    for rel in store.list_files(""):
        path = store.full(rel)
        if rel.endswith(".parquet"):
            out.append(json.dumps(pq.read_table(path).to_pylist(), default=str))
        else:
            out.append(Path(path).read_text(errors="replace"))
    return "\n".join(out)


def test_erase_a_user_everywhere_dry_run_first_then_idempotent(setup: Any) -> None:
    ctx, _ = setup
    user = pseudonymise("cust-1", KEY)
    before = _texts(ctx.store)
    assert PHRASE in before and user in before and "cust-1" in before  # quarantine: raw
    request = ErasureRequest(users=frozenset({user}), reason="test")

    dry = erase(ctx, request, dry_run=True)
    assert dry.rows_removed == {"interactions": 2, "feedback": 2, "quarantine": 1,
                                "sft_examples": 2}  # fmt: skip
    assert _texts(ctx.store) == before

    done = erase(ctx, request)
    assert done.counts() == {**dry.counts(), "dry_run": False}
    after = _texts(ctx.store)
    assert PHRASE not in after and user not in after and "cust-1" not in after
    assert "cust-2 asks" in after  # the other user stays, in parts, dataset and model
    with ctx.sessions() as s:
        old = repo.get_dataset_version(s, "v1")
        assert old.superseded_by == done.new_versions[0] and old.path.endswith(
            f"/{old.superseded_by}/data.parquet"
        )
        assert not ctx.store.exists(dataset_path(AGENT, "sft_examples", "v1"))
        assert repo.get_model_version(s, "mv-1").erased_data_at is not None
        keys = repo.lookup_keys(s, "interaction", AGENT, ["int-1", "int-2", "int-3"])
        assert set(keys) == {"int-2"}
        (live,) = repo.list_parts(s, "interactions", agent_id=AGENT)
        tombs = {(t.kind, t.value) for t in repo.list_tombstones(s)}
        assert tombs == {("user", user), ("interaction", "int-1"), ("interaction", "int-3")}
        assert all(t.erased_at is not None for t in repo.list_tombstones(s))
    assert ctx.store.read_table(live.path, schemas.INTERACTIONS)["interaction_id"].to_pylist() == [
        "int-2"
    ]
    assert RetrievalIndex.load(ctx.store, "models/run-1/").rows["id"].to_pylist() == ["ex-1"]
    assert done.model_versions == ["mv-1"] and done.models_marked == 1

    again = erase(ctx, request)
    assert again.rows_removed == {} and again.models_marked == 0 and again.files_deleted == 0


def test_a_crash_between_commit_and_delete_is_finished_by_the_rerun(
    setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, _ = setup
    request = ErasureRequest(users=frozenset({pseudonymise("cust-1", KEY)}))
    real = Store.delete

    def crash(self: Store, rel: str) -> None:
        raise OSError("simulated crash")

    monkeypatch.setattr(Store, "delete", crash)
    with pytest.raises(OSError):
        erase(ctx, request)  # the superseded version's commit happened, its delete did not
    monkeypatch.setattr(Store, "delete", real)
    assert PHRASE in _texts(ctx.store)
    erase(ctx, request)
    assert PHRASE not in _texts(ctx.store)


def test_a_consent_withdrawal_in_a_feedback_file_is_a_pending_erasure(
    setup: Any, tmp_path: Path
) -> None:
    ctx, ingest = setup
    event = {"event": "consent_withdrawn", "user_id": "cust-1", "agent_id": AGENT}
    report = ingest_file(ingest, _write(tmp_path / "consent.jsonl", [event]), kind="auto")
    assert report.consent_withdrawn == 1 and report.records == 0 and not report.quarantined
    with ctx.sessions() as s:
        (tomb,) = repo.list_tombstones(s)
        assert tomb.value == pseudonymise("cust-1", KEY) and tomb.erased_at is None
    # the same broken line again is not quarantined again: it names a tombstoned user
    broken = json.dumps({"interaction_id": "int-8", "agent_id": AGENT, "user_id": "cust-1"})
    again = ingest_file(
        ingest, _write(tmp_path / "again.jsonl", [broken, _interaction(7, "cust-1")])
    )
    assert report.quarantined == again.quarantined == {} and again.skipped_tombstone == 1
    erase(ctx, ErasureRequest())  # nothing named: sweeps the pending tombstone
    assert PHRASE not in _texts(ctx.store)
    with ctx.sessions() as s:
        assert all(t.erased_at is not None for t in repo.list_tombstones(s))


def test_cli_helpers_map_ids_as_ingest_stores_them(tmp_path: Path) -> None:
    from flows.cli_privacy import read_ids_file, stored_ids
    from ratchet.ingest.identity import pseudonymise_id

    f = tmp_path / "ids.txt"
    f.write_text("# who\ncust-1\nuser:cust-2\n\ninteraction:int-1\ninteraction:ann@example.com\n")
    users, interactions = read_ids_file(f)
    assert users == ["cust-1", "cust-2"] and interactions == ["int-1", "ann@example.com"]
    hashed, stored = stored_ids(users, interactions, PipelineConfig(), KEY)
    assert hashed == [pseudonymise("cust-1", KEY), pseudonymise("cust-2", KEY)]
    assert stored == ["int-1", pseudonymise_id("ann@example.com", KEY)]


def test_a_prompt_rule_quoting_an_erased_question_is_dropped() -> None:
    from ratchet.privacy.erasure import _strip_rules

    prompt = 'Base.\nRules.\n1. When asked "a b", answer: "x"\n2. When asked "c", answer: "y"'
    assert _strip_rules(prompt, {"a  b"}) == 'Base.\nRules.\n2. When asked "c", answer: "y"'
    assert _strip_rules(prompt, {"zzz"}) is None
