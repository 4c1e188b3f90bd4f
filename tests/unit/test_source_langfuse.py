"""The langfuse source: traces with observations and scores, built with Langfuse's own API
model classes (``langfuse.api``) and serialised as its public API returns them.

langfuse 5's SDK has no class for the trace envelope of ``GET /api/public/traces/{id}``
(``TraceWithFullDetails``); it is written here field by field from the API reference, with
the observations (``ObservationV2``) and scores (``Score_*``) made by the SDK's classes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langfuse.api import (
    ObservationV2,
    Score_Boolean,
    Score_Categorical,
    Score_Correction,
    Score_Numeric,
    Score_Text,
)
from langfuse.api.core.jsonable_encoder import jsonable_encoder

from ratchet.config import SourcesConfig
from ratchet.ingest.adapters import FileObject
from ratchet.ingest.records import Reject, TimeRules, parse_feedback, parse_interaction
from ratchet.ingest.sources import langfuse as lf

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
RULES = TimeRules(datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
SCORE_CLASSES = {
    "NUMERIC": Score_Numeric,
    "BOOLEAN": Score_Boolean,
    "CATEGORICAL": Score_Categorical,
    "CORRECTION": Score_Correction,
    "TEXT": Score_Text,
}


def api(model: Any) -> Any:
    """A Langfuse model as its API's JSON (camelCase, ISO times), via a JSON round trip."""
    return json.loads(json.dumps(jsonable_encoder(model)))


def generation(gid: str, trace_id: str, start: int, inp: Any, out: Any, **over: Any) -> dict:
    fields: dict[str, Any] = {
        "id": gid,
        "trace_id": trace_id,
        "project_id": "proj-1",
        "type": "GENERATION",
        "name": "chat",
        "start_time": T0 + timedelta(seconds=start),
        "end_time": T0 + timedelta(seconds=start, milliseconds=800),
        "model": "gpt-4.1-mini",
        "input": inp,
        "output": out,
        "usage_details": {"input": 50, "output": 10, "total": 60},
        "model_parameters": {"temperature": 0.2},
    }
    fields.update(over)
    return api(ObservationV2(**fields))


def score(kind: str, trace_id: str | None = "tr-1", **over: Any) -> dict:
    fields: dict[str, Any] = {
        "id": f"sc-{kind.lower()}",
        "trace_id": trace_id,
        "name": "user-feedback",
        "source": "API",
        "value": 1,
        "timestamp": T0 + timedelta(hours=1),
        "created_at": T0 + timedelta(hours=1),
        "updated_at": T0 + timedelta(hours=1),
        "environment": "production",
    }
    if kind in ("BOOLEAN", "CATEGORICAL", "CORRECTION"):
        fields["string_value"] = "True"
    if kind == "TEXT":
        fields.pop("value")
        fields["string_value"] = "a note"
    fields.update(over)
    return api(SCORE_CLASSES[kind](**fields))


def trace(observations: list[Any], scores: list[Any] | None = None, **over: Any) -> dict:
    """``TraceWithFullDetails`` as ``GET /api/public/traces/{id}`` returns it."""
    body: dict[str, Any] = {
        "id": "tr-1",
        "timestamp": "2026-11-02T09:00:00.000Z",
        "name": "support-chat",
        "input": None,
        "output": None,
        "sessionId": "sess-7",
        "release": "v3",
        "version": None,
        "userId": "cust-812",
        "metadata": {"agent_id": "shop-assistant", "topic": "orders"},
        "tags": ["prod"],
        "public": False,
        "environment": "production",
        "htmlPath": "/project/proj-1/traces/tr-1",
        "latency": 2.5,
        "totalCost": 0.0042,
        "observations": observations,
        "scores": scores or [],
    }
    body.update(over)
    return body


AGENT_TRACE = [
    generation(
        "gen-1", "tr-1", 0,
        [{"role": "system", "content": "You help shoppers."},
         {"role": "user", "content": "Where is order ORD-1?"}],
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "lookup_order", "arguments": "{\"id\": \"ORD-1\"}"}}]},
    ),
    api(ObservationV2(id="tool-1", trace_id="tr-1", project_id="proj-1", type="TOOL",
                      name="lookup_order", start_time=T0 + timedelta(seconds=1),
                      input={"id": "ORD-1"}, output={"status": "shipped"})),
    generation(
        "gen-2", "tr-1", 2,
        [{"role": "system", "content": "You help shoppers."},
         {"role": "user", "content": "Where is order ORD-1?"},
         {"role": "assistant", "content": None, "tool_calls": [
             {"id": "call_1", "type": "function",
              "function": {"name": "lookup_order", "arguments": "{\"id\": \"ORD-1\"}"}}]},
         {"role": "tool", "tool_call_id": "call_1", "content": "{\"status\": \"shipped\"}"}],
        {"role": "assistant", "content": "It has shipped."},
        model="gpt-4.1-mini-2025-04-14",
    ),
]  # fmt: skip


def test_trace_maps_to_one_interaction_with_the_last_generation() -> None:
    out = lf.interaction_from_trace(trace(AGENT_TRACE))
    assert out["interaction_id"] == "tr-1"
    assert out["agent_id"] == "shop-assistant"
    assert out["conversation_id"] == "sess-7"
    assert out["user_id"] == "cust-812"
    assert out["model_version"] == "gpt-4.1-mini-2025-04-14"
    assert [m["role"] for m in out["messages"]] == ["system", "user", "assistant", "tool"]
    assert out["response"] == {"role": "assistant", "content": "It has shipped."}
    assert (out["prompt_tokens"], out["completion_tokens"]) == (100, 20)  # both generations
    assert out["latency_ms"] == 2500.0 and out["cost_usd"] == 0.0042
    assert out["metadata"] == {"topic": "orders"}
    extra = out["langfuse"]
    assert extra["tags"] == ["prod"] and extra["htmlPath"].endswith("tr-1")
    kept = {o["id"]: o for o in extra["observations"]}
    assert kept["tool-1"]["output"] == {"status": "shipped"}  # tool results are kept
    assert "input" not in kept["gen-2"] and kept["gen-2"]["modelParameters"]
    parsed = parse_interaction(out, RULES)  # the canonical validator accepts it
    assert parsed.row["response"] == "It has shipped."
    assert json.loads(parsed.row["extra"])["langfuse"]["release"] == "v3"


def test_trace_without_latency_or_generation_uses_what_it_has() -> None:
    gen = generation("g", "tr-1", 0, "What are your hours?", "Nine to five.")
    out = lf.interaction_from_trace(trace([gen], latency=None, totalCost=None))
    assert out["messages"] == [{"role": "user", "content": "What are your hours?"}]
    assert out["response"] == "Nine to five." and out["latency_ms"] == 800.0
    own = trace(
        [], input={"messages": [{"role": "user", "content": "hi"}]}, output={"content": "hello"}
    )
    assert lf.interaction_from_trace(own)["response"] == {"role": "assistant", "content": "hello"}


@pytest.mark.parametrize(
    ("body", "missing"),
    [
        (trace(["gen-1", "gen-2"]), "observations are ids only"),
        (trace([]), "trace (no GENERATION observation) input holds no chat messages"),
        (trace([generation("g", "tr-1", 0, {"x": 1}, "ok")]), "generation input holds no chat"),
        (trace([generation("g", "tr-1", 0, "q", {"x": 1})]), "generation output holds no answer"),
    ],
)
def test_unmappable_trace_is_refused_naming_the_missing_piece(body: dict, missing: str) -> None:
    with pytest.raises(Reject) as exc:
        lf.interaction_from_trace(body)
    assert exc.value.detail.startswith("langfuse: ") and missing in exc.value.detail


RATING_1_5 = SourcesConfig(rating_names=["stars"])
AS_RATING_0_1 = SourcesConfig(langfuse_numeric_as_rating=True, rating_range=(0.0, 1.0))
CATS = SourcesConfig(categorical_map={"Helpful": {"thumb": 1}, "wrong": {"thumb": -1},
                                      "great": {"rating": 5}})  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "over", "config", "expected"),
    [
        ("BOOLEAN", {"value": 1, "string_value": "True"}, None, {"thumb": 1}),
        ("BOOLEAN", {"value": 0, "string_value": "False"}, None, {"thumb": -1}),
        ("NUMERIC", {"value": 1}, None, {"thumb": 1}),
        ("NUMERIC", {"value": 0}, None, {"thumb": -1}),
        ("NUMERIC", {"value": 4, "name": "stars"}, RATING_1_5, {"rating": 4}),
        ("NUMERIC", {"value": 1, "name": "stars"}, RATING_1_5, {"rating": 1}),
        ("NUMERIC", {"value": 0.75}, AS_RATING_0_1, {"rating": 4}),
        ("CATEGORICAL", {"value": 0, "string_value": "helpful"}, CATS, {"thumb": 1}),
        ("CATEGORICAL", {"value": 2, "string_value": "great"}, CATS, {"rating": 5}),
        ("CORRECTION", {"value": 0, "string_value": "It ships Friday."}, None,
         {"correction": "It ships Friday."}),
        ("TEXT", {"name": "correction", "string_value": "It ships Friday."}, None,
         {"correction": "It ships Friday."}),
    ],
)  # fmt: skip
def test_score_values(kind: str, over: dict, config: SourcesConfig | None, expected: dict) -> None:
    event = lf.feedback_from_score(score(kind, **over), config or SourcesConfig())
    assert {k: event[k] for k in expected} == expected
    assert not {"rating", "thumb", "correction"} - expected.keys() & event.keys() - set(expected)
    parse_feedback({**event, "agent_id": "a"}, RULES)  # the canonical validator accepts it


@pytest.mark.parametrize(
    ("kind", "over", "config", "names"),
    [
        ("NUMERIC", {"value": 0.73}, None, "sources.rating_names"),
        ("NUMERIC", {"value": 7, "name": "stars"}, RATING_1_5, "sources.rating_range"),
        ("CATEGORICAL", {"string_value": "meh"}, CATS, "sources.categorical_map"),
        ("TEXT", {}, None, "TEXT score carries no vote"),
        ("BOOLEAN", {"trace_id": None, "session_id": "sess-7"}, None, "traceId is required"),
        ("BOOLEAN", {"value": 0.5, "string_value": "x"}, None, "BOOLEAN score value"),
    ],
)
def test_unmappable_scores_are_refused_naming_the_rule(
    kind: str, over: dict, config: SourcesConfig | None, names: str
) -> None:
    body = score(kind, **over)
    with pytest.raises(Reject) as exc:
        lf.feedback_from_score(body, config or SourcesConfig())
    assert exc.value.detail.startswith("langfuse: ") and names in exc.value.detail
    assert "0.73" not in exc.value.detail and "meh" not in exc.value.detail


@pytest.mark.parametrize(
    ("source", "expected"), [("API", "user"), ("ANNOTATION", "expert"), ("EVAL", "system")]
)
def test_score_source_author_and_extra(source: str, expected: str) -> None:
    body = score("BOOLEAN", source=source, author_user_id="annot-3", comment="late",
                 observation_id="gen-2", metadata={"agent_id": "shop-assistant"})  # fmt: skip
    event = lf.feedback_from_score(body)
    assert event["source"] == expected and event["annotator"] == "annot-3"
    assert (event["feedback_id"], event["interaction_id"]) == ("sc-boolean", "tr-1")
    assert event["comment"] == "late" and event["agent_id"] == "shop-assistant"
    assert event["langfuse"]["observationId"] == "gen-2" and event["langfuse"]["name"]
    assert event["timestamp"].startswith("2026-11-02T10:00:00")


def test_detect_is_strict() -> None:
    assert lf.detect(trace(AGENT_TRACE)) == "interactions"
    assert lf.detect(score("BOOLEAN")) == "feedback"
    assert lf.detect({"data": [score("NUMERIC")], "meta": {"page": 1}}) == "feedback"
    for other in (
        {"interaction_id": "i", "messages": [], "response": "r"},
        {"interaction_id": "i", "thumb": 1},
        {"id": "x", "run_type": "llm", "inputs": {}, "start_time": "2026-01-01"},
        {"key": "user_score", "score": 1, "run_id": "r"},
        {"resourceSpans": []},
        [1, 2],
    ):
        assert lf.detect(other) is None


def test_map_objects_gives_the_interaction_its_scores_and_refusals() -> None:
    inline = score("BOOLEAN", trace_id=None, value=0, string_value="False")
    objects = [
        FileObject(1, trace(AGENT_TRACE, scores=[inline])),
        FileObject(2, {"data": [score("CORRECTION", string_value="Friday.")], "meta": {}}),
        FileObject(3, trace(["a"], id="tr-2")),
        FileObject(4, score("NUMERIC", value=0.5)),
    ]
    out = list(lf.map_objects(objects))
    kinds = [(m.line, m.kind, m.reject is None) for m in out]
    assert kinds == [(1, "interaction", True), (1, "feedback", True), (2, "feedback", True),
                     (3, "interaction", False), (4, "feedback", False)]  # fmt: skip
    assert out[1].record["interaction_id"] == "tr-1"  # an inline score takes its trace's id
    assert out[1].record["agent_id"] == "shop-assistant"  # and its agent
    assert all(m.reject.detail.startswith("langfuse: ") for m in out if m.reject)
    assert out[3].raw and out[4].raw  # what the quarantine row shows (redacted there)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from(["trace", "score", "page"]),
    changes=st.dictionaries(
        st.sampled_from(["id", "timestamp", "observations", "scores", "metadata", "latency",
                         "totalCost", "traceId", "dataType", "value", "stringValue", "source",
                         "name", "data", "input", "output", "sessionId"]),
        JSON, max_size=4,
    ),
    obs_changes=st.dictionaries(
        st.sampled_from(["type", "input", "output", "startTime", "usageDetails", "model",
                         "metadata", "calculatedTotalCost", "usage"]),
        JSON, max_size=3,
    ),
)  # fmt: skip
def test_any_value_is_mapped_or_refused_never_raised(
    base: str, changes: dict, obs_changes: dict
) -> None:
    if base == "trace":
        obs = [{**AGENT_TRACE[2], **obs_changes}, AGENT_TRACE[0]]
        obj: Any = {**trace(obs), **changes}
    elif base == "score":
        obj = {**score("BOOLEAN"), **changes}
    else:
        obj = {"data": [{**score("NUMERIC"), **changes}], "meta": {}}
    lf.detect(obj)
    for m in lf.map_objects([FileObject(1, obj)], SourcesConfig(rating_names=["x"])):
        assert (m.record is None) != (m.reject is None)
        if m.reject is not None:
            assert m.reject.detail.startswith("langfuse: ")


def test_a_number_too_large_for_a_float_is_refused_not_raised() -> None:
    body = {**score("NUMERIC", name="stars"), "value": 10**400}  # JSON allows it
    with pytest.raises(Reject, match="langfuse: score is out of range"):
        lf.feedback_from_score(body, RATING_1_5)
