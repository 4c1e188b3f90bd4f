"""Langfuse and LangSmith exports, with their feedback, give the curated datasets that a
canonical file with the same content gives (issue 16's done-when), detection picks them and
refuses ambiguity, and ``ratchet feedback import`` reads a file that mixes vendors' feedback.

The core ingest and curation run here without Prefect (the flows wrap the same functions), so
the comparison costs seconds. Inputs are built with the vendors' own model classes.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from langfuse.api import ObservationV2, Score_Boolean, Score_Correction, Score_Numeric
from langfuse.api.core.jsonable_encoder import jsonable_encoder
from langsmith.schemas import Feedback, FeedbackSourceBase, Run
from typer.testing import CliRunner

from flows.cli import app
from ratchet.config import load_config
from ratchet.curation.registry import CurationContext, curate_agent, read_version
from ratchet.curation.select import Window
from ratchet.db import open_database, repo
from ratchet.ingest.adapters import AmbiguousFormat, detect_format
from ratchet.ingest.pipeline import IngestContext, IngestError, ingest_file
from ratchet.redaction import Redactor, resolve_pseudonym_key
from ratchet.settings import get_settings
from ratchet.store import Store

AGENT = "shop-assistant"
EMAIL = "jane.doe@example.com"
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
SYSTEM = {"role": "system", "content": "You help shoppers of the store."}
TOPICS = [
    "reset my account password", "change the delivery address", "cancel a subscription",
    "download an invoice", "enable two factor login", "report a damaged parcel",
    "upgrade the storage plan", "merge two accounts", "export my order history",
    "set up automatic top ups", "book a repair visit", "transfer my phone number",
]  # fmt: skip
CORRECTION = "Open Settings, then Security, then choose Reset password and follow the email."
# topic index -> the votes on it: (kind, value, source, annotator, minutes after)
VOTES: dict[int, list[tuple[str, Any, str, str | None, int]]] = {
    0: [("thumb", -1, "user", None, 60), ("correction", CORRECTION, "expert", "annot-1", 90)],
    1: [("thumb", -1, "user", None, 60)],
    2: [("rating", 5, "user", None, 60)],
    **{i: [("thumb", 1, "user", None, 60)] for i in range(3, 11)},
}
# topics 10 and 11 are two turns of one conversation; 11 is not voted on


def _question(i: int) -> str:
    return f"Please explain how to {TOPICS[i]}."


def _answer(i: int) -> str:
    return f"Here is how to {TOPICS[i]}: open your account page, then follow step {i}."


def _when(i: int, minutes: int = 0) -> datetime:
    return T0 + timedelta(hours=i, minutes=minutes)


def _canonical_history(i: int) -> list[dict[str, Any]]:
    if i == 11:  # the second turn: the whole conversation so far
        return [SYSTEM, {"role": "user", "content": _question(10)},
                {"role": "assistant", "content": _answer(10)},
                {"role": "user", "content": _question(11)}]  # fmt: skip
    return [SYSTEM, {"role": "user", "content": _question(i)}]


def _logged_history(i: int) -> list[dict[str, Any]]:
    """What a tracer logged for the turn: the second turn only holds its new message."""
    return [SYSTEM, {"role": "user", "content": _question(i)}]


def canonical_files(tmp: Path, ids: list[str], fids: dict[tuple[int, int], str]) -> list[Path]:
    rows = [
        {
            "interaction_id": ids[i],
            "agent_id": AGENT,
            "timestamp": _when(i).isoformat(),
            "messages": _canonical_history(i),
            "response": _answer(i),
            "conversation_id": "conv-1" if i >= 10 else None,
            "user_id": f"cust-{i}",
            "model_version": "gpt-4.1-mini",
        }
        for i in range(len(TOPICS))
    ]
    events = []
    for i, votes in VOTES.items():
        for n, (kind, value, source, annotator, minutes) in enumerate(votes):
            events.append({
                "feedback_id": fids[i, n], "interaction_id": ids[i], "agent_id": AGENT,
                "timestamp": _when(i, minutes).isoformat(), "source": source,
                "annotator": annotator, kind: value,
            })  # fmt: skip
    return [_jsonl(tmp / "canonical.jsonl", rows), _jsonl(tmp / "canonical-fb.jsonl", events)]


def _jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r, default=str) + "\n" for r in rows))
    return path


# --- Langfuse -------------------------------------------------------------------------------
def _lf(model: Any) -> Any:
    return json.loads(json.dumps(jsonable_encoder(model)))


def _lf_score(i: int, n: int, vote: tuple[str, Any, str, str | None, int]) -> dict:
    kind, value, source, annotator, minutes = vote
    common = {
        "id": f"lf-score-{i}-{n}", "trace_id": f"lf-trace-{i}", "timestamp": _when(i, minutes),
        "created_at": _when(i, minutes), "updated_at": _when(i, minutes),
        "environment": "production", "author_user_id": annotator,
        "source": {"user": "API", "expert": "ANNOTATION"}[source],
    }  # fmt: skip
    if kind == "thumb":
        return _lf(Score_Boolean(name="user-feedback", value=1 if value > 0 else 0,
                                 string_value="True" if value > 0 else "False", **common))  # fmt: skip
    if kind == "rating":
        return _lf(Score_Numeric(name="stars", value=value, **common))
    return _lf(Score_Correction(name="correction", value=0, string_value=value, **common))


def langfuse_files(tmp: Path) -> list[Path]:
    """Traces as GET /api/public/traces/{id} returns them (turn 0 carrying its scores inline),
    and the other scores as GET /api/public/scores pages them."""
    traces, pages = [], []
    for i in range(len(TOPICS)):
        gen = ObservationV2(
            id=f"lf-gen-{i}", trace_id=f"lf-trace-{i}", project_id="proj-1", type="GENERATION",
            name="chat", start_time=_when(i), end_time=_when(i) + timedelta(milliseconds=900),
            model="gpt-4.1-mini", input=_logged_history(i),
            output={"role": "assistant", "content": _answer(i)},
            usage_details={"input": 40, "output": 12, "total": 52},
        )  # fmt: skip
        scores = [_lf_score(i, n, v) for n, v in enumerate(VOTES.get(i, []))]
        traces.append({
            "id": f"lf-trace-{i}", "timestamp": _when(i).isoformat(), "name": "support-chat",
            "sessionId": "conv-1" if i >= 10 else None, "userId": f"cust-{i}",
            "metadata": {"agent_id": AGENT}, "tags": ["prod"], "release": "v3",
            "htmlPath": f"/project/proj-1/traces/lf-trace-{i}", "latency": 0.9,
            "observations": [_lf(gen)], "scores": scores if i == 0 else [],
        })  # fmt: skip
        if i != 0:
            pages.extend(scores)
    page = {"data": pages, "meta": {"page": 1, "limit": 100, "totalItems": len(pages)}}
    return [
        _jsonl(tmp / "langfuse-traces.jsonl", traces),
        _jsonl(tmp / "langfuse-scores.jsonl", [page]),
    ]


# --- LangSmith ------------------------------------------------------------------------------
def _ls_id(kind: str, i: int, n: int = 0) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{kind}/{i}/{n}")


def langsmith_files(tmp: Path) -> list[Path]:
    """Root chain runs with their llm children (as list_runs returns a project), and feedback."""
    runs, fbs = [], []
    for i in range(len(TOPICS)):
        root, llm = _ls_id("root", i), _ls_id("llm", i)
        meta = {"agent_id": AGENT, "user_id": f"cust-{i}"}
        if i >= 10:
            meta["thread_id"] = "conv-1"
        common = {"trace_id": root, "start_time": _when(i), "end_time": _when(i) + timedelta(seconds=1),
                  "session_id": _ls_id("project", 0)}  # fmt: skip
        runs.append(Run(
            id=root, name="support-agent", run_type="chain", inputs={"messages": _logged_history(i)},
            outputs={"messages": [*_logged_history(i), {"type": "ai", "content": _answer(i)}]},
            extra={"metadata": {**meta, "ls_model_name": "gpt-4.1-mini"}},
            dotted_order=f"{i}", **common,
        ).model_dump(mode="json"))  # fmt: skip
        runs.append(Run(
            id=llm, name="ChatOpenAI", run_type="llm", parent_run_id=root,
            inputs={"messages": [_logged_history(i)]},
            outputs={"generations": [[{"text": _answer(i)}]]},
            extra={"metadata": meta, "invocation_params": {"model": "gpt-4.1-mini"}},
            dotted_order=f"{i}.1", **common,
        ).model_dump(mode="json"))  # fmt: skip
        for n, (kind, value, source, annotator, minutes) in enumerate(VOTES.get(i, [])):
            fields: dict[str, Any] = {
                "id": _ls_id("fb", i, n), "created_at": _when(i, minutes),
                "modified_at": _when(i, minutes), "run_id": llm if n else root, "trace_id": root,
                "feedback_source": FeedbackSourceBase(
                    type={"user": "api", "expert": "app"}[source], user_id=annotator
                ),
            }  # fmt: skip
            if kind == "thumb":
                fields.update(key="user_score", score=1 if value > 0 else 0)
            elif kind == "rating":
                fields.update(key="stars", score=value)
            else:
                fields.update(key="annotation", score=None, correction={"output": value})
            fbs.append(Feedback(**fields).model_dump(mode="json"))
    return [_jsonl(tmp / "langsmith-runs.jsonl", runs), _jsonl(tmp / "langsmith-fb.jsonl", fbs)]


# --- the pipeline ---------------------------------------------------------------------------
def _contexts() -> tuple[IngestContext, CurationContext]:
    settings = get_settings()
    config = load_config(settings)
    store, sessions = Store(settings.store_root), open_database(settings)
    red = Redactor(config.redaction)
    ictx = IngestContext(store=store, sessions=sessions, config=config, redactor=red,
                         pseudonym_key=resolve_pseudonym_key(settings), now=datetime.now(UTC))  # fmt: skip
    return ictx, CurationContext(store, sessions, config, red, None)


def _curated(home: Path, files: list[Path], monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """Ingest the files into a fresh home, curate, and return each dataset's rows."""
    monkeypatch.setenv("RATCHET_HOME", str(home))
    ictx, cctx = _contexts()
    for f in files:
        report = ingest_file(ictx, f, "auto", default_agent=AGENT)  # `ratchet ingest --agent`
        assert not report.quarantined, (f.name, report.as_dict())
    out = curate_agent(cctx, AGENT, Window(None, datetime.now(UTC)))
    rows: dict[str, list] = {}
    with cctx.sessions() as s:
        for v in out["versions"]:
            table = read_version(cctx.store, repo.get_dataset_version(s, v["version"]))
            rows[v["kind"]] = sorted(table.to_pylist(), key=lambda r: json.dumps(r, default=str))
    return rows


@pytest.fixture
def env(ratchet_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One pseudonym key for both homes (so user ids compare), and the sources config."""
    monkeypatch.setenv("RATCHET_PSEUDONYM_KEY", "k" * 32)
    layer = tmp_path / "sources.yaml"
    # the PII second opinion is tested elsewhere; here it would only add Presidio's start-up
    layer.write_text(
        "sources:\n  rating_names: [stars]\nquality:\n  second_opinion_enabled: false\n"
    )
    monkeypatch.setenv("RATCHET_CONFIG", str(layer))
    return tmp_path


@pytest.mark.parametrize("vendor", ["langfuse", "langsmith"])
def test_vendor_export_curates_like_its_canonical_twin(
    env: Path, monkeypatch: pytest.MonkeyPatch, vendor: str
) -> None:
    if vendor == "langfuse":
        ids = [f"lf-trace-{i}" for i in range(len(TOPICS))]
        fids = {(i, n): f"lf-score-{i}-{n}" for i, v in VOTES.items() for n in range(len(v))}
        files = langfuse_files(env)
    else:
        ids = [str(_ls_id("root", i)) for i in range(len(TOPICS))]
        fids = {(i, n): str(_ls_id("fb", i, n)) for i, v in VOTES.items() for n in range(len(v))}
        files = langsmith_files(env)
    assert [detect_format(json.loads(line) for line in f.read_text().splitlines())
            for f in files] == [vendor, vendor]  # fmt: skip
    vendor_rows = _curated(env / "home-vendor", files, monkeypatch)
    canonical_rows = _curated(env / "home-canonical", canonical_files(env, ids, fids), monkeypatch)
    assert set(vendor_rows) >= {"eval_cases", "sft_examples", "preference_pairs", "review_queue"}
    assert vendor_rows == canonical_rows
    regression = [r for r in vendor_rows["eval_cases"] if r["kind"] == "regression"]
    assert [r["expected"] for r in regression] == [CORRECTION]
    second_turn = [r for r in vendor_rows["eval_cases"] if r["interaction_id"] == ids[10]]
    assert second_turn and len(second_turn[0]["input"]) == 2  # its own history, turn 1
    sft = [r for r in vendor_rows["sft_examples"] if len(r["messages"]) > 3]
    assert not sft  # the unvoted second turn is not an example; the joined one is below
    monkeypatch.setenv("RATCHET_HOME", str(env / "home-vendor"))
    stored = _stored_interactions()
    joined = stored[ids[11]]
    assert [m["content"] for m in joined["messages"]][1:3] == [_question(10), _answer(10)]
    assert json.loads(joined["extra"])[vendor]  # the vendor's other fields are kept


def _stored_interactions() -> dict[str, dict]:
    settings = get_settings()
    root = Path(settings.store_root) / "interactions"
    rows = [r for p in sorted(root.rglob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    return {r["interaction_id"]: r for r in rows}


def test_detection_refuses_an_ambiguous_file(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lf_traces = langfuse_files(env)[0].read_text().splitlines()
    ls_runs = langsmith_files(env)[0].read_text().splitlines()
    mixed = _jsonl(env / "mixed.jsonl", [json.loads(lf_traces[0]), json.loads(ls_runs[0])])
    both = {**json.loads(lf_traces[0]), **json.loads(ls_runs[0])}  # one object, two shapes
    with pytest.raises(AmbiguousFormat, match="langfuse, langsmith"):
        detect_format([both])
    ictx, _ = _contexts()
    with pytest.raises(IngestError) as exc:
        ingest_file(ictx, mixed, "auto")
    assert "ambiguous" in str(exc.value) and "langfuse" in str(exc.value)
    assert "langsmith" in str(exc.value)
    forced = ingest_file(ictx, mixed, "auto", fmt="langfuse")  # --format decides
    assert forced.stored["interactions"] == 1  # the run is refused by the langfuse mapper
    assert dict(forced.quarantined) == {"missing_field": 1}
    quarantine = Path(get_settings().store_root) / "quarantine"
    details = [
        r["detail"] for p in quarantine.rglob("*.parquet") for r in pq.read_table(p).to_pylist()
    ]
    assert details == ["langfuse: object is neither a trace with observations nor a score"]


def test_feedback_import_reads_a_file_mixing_vendors(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lf_scores = json.loads(langfuse_files(env)[1].read_text())["data"]
    ls_feedback = [json.loads(x) for x in langsmith_files(env)[1].read_text().splitlines()]
    canonical = {"interaction_id": "lf-trace-5", "agent_id": AGENT, "thumb": 1,
                 "timestamp": _when(5, 30).isoformat(), "source": "expert"}  # fmt: skip
    unmappable = {**lf_scores[1], "id": "lf-bad", "dataType": "TEXT", "value": None,
                  "stringValue": f"a note from {EMAIL}"}  # fmt: skip
    ls_feedback[0] = {**ls_feedback[0], "comment": f"call me back at {EMAIL}",
                      "extra": {"reviewer_email": EMAIL}}  # fmt: skip
    mixed = _jsonl(env / "mixed-feedback.jsonl",
                   [lf_scores[0], ls_feedback[0], canonical, ls_feedback[1], unmappable])  # fmt: skip
    res = CliRunner().invoke(app, ["feedback", "import", str(mixed), "--agent", AGENT])
    assert res.exit_code == 0, res.output
    assert "recorded 4 feedback event(s)" in res.output and "quarantined 1" in res.output
    settings = get_settings()
    rows = [r for p in sorted((Path(settings.store_root) / "feedback").rglob("*.parquet"))
            for r in pq.read_table(p).to_pylist()]  # fmt: skip
    by_id = {r["feedback_id"]: r for r in rows}
    assert by_id[lf_scores[0]["id"]]["thumb"] == -1  # a Langfuse BOOLEAN score
    assert by_id[ls_feedback[0]["id"]]["thumb"] == -1  # a LangSmith score of 0
    assert by_id[ls_feedback[1]["id"]]["correction"] == CORRECTION  # LangSmith's correction
    assert by_id[ls_feedback[1]["id"]]["source"] == "expert"  # feedback_source type "app"
    assert sum(r["interaction_id"] == "lf-trace-5" for r in rows) == 1
    # redacted as any input: the comment, the vendor's extra fields, the quarantined line
    assert by_id[ls_feedback[0]["id"]]["comment"] == "call me back at [EMAIL]"
    assert "[EMAIL]" in by_id[ls_feedback[0]["id"]]["extra"]
    quarantine = Path(settings.store_root) / "quarantine"
    q_rows = [r for p in quarantine.rglob("*.parquet") for r in pq.read_table(p).to_pylist()]
    assert [r["detail"] for r in q_rows] == [
        "langfuse: TEXT score carries no vote (name it in sources.correction_names if it is a "
        "correction)"
    ]
    stored = [pq.read_table(p).to_pylist() for p in Path(settings.store_root).rglob("*.parquet")]
    assert EMAIL not in json.dumps(stored, default=str)
    assert "[EMAIL]" in q_rows[0]["raw_redacted"]


def test_feedback_import_reads_a_json_array_export(env: Path) -> None:
    """``list_feedback`` saved as one pretty-printed JSON array is records, not a manifest."""
    ls_feedback = [json.loads(x) for x in langsmith_files(env)[1].read_text().splitlines()]
    exported = env / "langsmith-feedback.json"
    exported.write_text(json.dumps(ls_feedback[:3], indent=2))
    res = CliRunner().invoke(app, ["feedback", "import", str(exported), "--agent", AGENT])
    assert res.exit_code == 0, res.output
    assert "recorded 3 feedback event(s)" in res.output
