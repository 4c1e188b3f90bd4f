"""The langsmith source: runs and feedback built with LangSmith's own model classes
(``langsmith.schemas.Run`` / ``Feedback``) and serialised as its API exports them."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langsmith.schemas import Feedback, FeedbackSourceBase, Run

from ratchet.config import SourcesConfig
from ratchet.ingest.adapters import FileObject
from ratchet.ingest.records import Reject, TimeRules, parse_feedback, parse_interaction
from ratchet.ingest.sources import langsmith as ls

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
RULES = TimeRules(datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
ROOT = uuid.UUID(int=1)
LLM = uuid.UUID(int=2)
TOOL = uuid.UUID(int=3)
PROJECT = uuid.UUID(int=99)


def api(model: Any) -> dict:
    """A LangSmith model as its API's JSON."""
    return json.loads(json.dumps(model.model_dump(mode="json")))


def run(rid: uuid.UUID, run_type: str, start: int, inputs: dict, outputs: dict | None,
        parent: uuid.UUID | None = None, trace: uuid.UUID = ROOT, **over: Any) -> dict:  # fmt: skip
    fields: dict[str, Any] = {
        "id": rid, "name": f"{run_type}-{rid.int}", "run_type": run_type, "trace_id": trace,
        "parent_run_id": parent, "start_time": T0 + timedelta(seconds=start),
        "end_time": T0 + timedelta(seconds=start + 2), "inputs": inputs, "outputs": outputs,
        "dotted_order": f"20261102T0900{start:02d}000000Z{rid}", "session_id": PROJECT,
        "tags": ["prod"], "status": "success",
    }  # fmt: skip
    fields.update(over)
    return api(Run(**fields))


def feedback(key: str = "user_score", run_id: uuid.UUID | None = ROOT, **over: Any) -> dict:
    fields: dict[str, Any] = {
        "id": uuid.UUID(int=500), "created_at": T0 + timedelta(hours=1),
        "modified_at": T0 + timedelta(hours=1), "run_id": run_id, "trace_id": None, "key": key,
        "score": 1, "feedback_source": FeedbackSourceBase(type="api"),
    }  # fmt: skip
    fields.update(over)
    return api(Feedback(**fields))


def lc(kind: str, content: Any, **kwargs: Any) -> dict:
    """A LangChain message as LangChain serialises it into LangSmith (``dumpd``)."""
    return {"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", kind],
            "kwargs": {"content": content, **kwargs}}  # fmt: skip


QUESTION = [{"role": "system", "content": "You help shoppers."},
            {"role": "user", "content": "Where is order ORD-1?"}]  # fmt: skip
CALL = {"name": "lookup_order", "args": {"id": "ORD-1"}, "id": "call_1", "type": "tool_call"}
META = {"agent_id": "shop-assistant", "thread_id": "th-7", "user_id": "cust-812",
        "ls_model_name": "gpt-4.1-mini"}  # fmt: skip


def agent_trace() -> list[dict]:
    """A LangGraph-style trace as ``list_runs`` returns it: root chain, llm and tool children."""
    history = [*QUESTION, {"type": "ai", "content": "", "tool_calls": [CALL]},
               {"type": "tool", "content": "shipped", "tool_call_id": "call_1"},
               {"type": "ai", "content": "It has shipped."}]  # fmt: skip
    root = run(ROOT, "chain", 0, {"messages": QUESTION}, {"messages": history},
               extra={"metadata": META}, prompt_tokens=120, completion_tokens=30,
               total_tokens=150, total_cost="0.0031")  # fmt: skip
    llm = run(LLM, "llm", 1, {"messages": [[lc("SystemMessage", QUESTION[0]["content"]),
                                            lc("HumanMessage", QUESTION[1]["content"])]]},
              {"generations": [[{"text": "", "message": lc("AIMessage", "", tool_calls=[CALL])}]]},
              parent=ROOT, extra={"metadata": META, "invocation_params": {"model": "gpt-4.1-mini"}},
              prompt_tokens=60, completion_tokens=12)  # fmt: skip
    tool = run(TOOL, "tool", 2, {"input": "ORD-1"}, {"output": "shipped"}, parent=LLM)
    return [root, llm, tool]


def test_a_trace_maps_to_one_interaction_its_children_folded_in() -> None:
    root, llm, tool = agent_trace()
    out = list(ls.map_objects([FileObject(1, root), FileObject(2, llm), FileObject(3, tool)]))
    assert len(out) == 1 and out[0].line == 1 and out[0].reject is None
    rec = out[0].record
    assert rec["interaction_id"] == str(ROOT) and rec["agent_id"] == "shop-assistant"
    assert rec["conversation_id"] == "th-7" and rec["user_id"] == "cust-812"
    assert [m["role"] for m in rec["messages"]] == ["system", "user", "assistant", "tool"]
    assert rec["messages"][2]["tool_calls"][0]["function"] == {
        "name": "lookup_order", "arguments": '{"id": "ORD-1"}'
    }  # fmt: skip
    assert rec["response"]["content"] == "It has shipped."
    assert (rec["prompt_tokens"], rec["completion_tokens"], rec["cost_usd"]) == (120, 30, 0.0031)
    assert rec["latency_ms"] == 2000.0 and rec["model_version"] == "gpt-4.1-mini"
    assert rec["metadata"] == {"ls_model_name": "gpt-4.1-mini"}
    extra = rec["langsmith"]
    assert extra["session_id"] == str(PROJECT) and extra["tags"] == ["prod"]
    children = {c["id"]: c for c in extra["child_runs"]}
    assert children[str(TOOL)]["outputs"] == {"output": "shipped"}  # what the tool returned
    assert "inputs" not in children[str(LLM)]
    parsed = parse_interaction(rec, RULES)
    assert parsed.row["response"] == "It has shipped."


def test_a_lone_llm_run_with_langchain_messages_and_generations() -> None:
    llm = run(LLM, "llm", 0, {"messages": [[lc("HumanMessage", "Opening hours?")]]},
              {"generations": [[{"text": "Nine to five.",
                                 "message": lc("AIMessage", "Nine to five.")}]],
               "llm_output": {"model_name": "gpt-4.1-mini"}},
              trace=LLM, extra={"invocation_params": {"model_name": "gpt-4.1-mini"}},
              prompt_tokens=9, completion_tokens=4)  # fmt: skip
    rec = ls.interaction_from_runs(llm, [llm])
    assert rec["messages"] == [{"role": "user", "content": "Opening hours?"}]
    assert rec["response"] == {"role": "assistant", "content": "Nine to five."}
    assert rec["model_version"] == "gpt-4.1-mini" and rec["prompt_tokens"] == 9
    wrapped = run(LLM, "llm", 0, {"messages": QUESTION, "model": "gpt-4.1-mini"},
                  {"choices": [{"message": {"role": "assistant", "content": "Friday."}}]},
                  trace=LLM)  # fmt: skip
    assert ls.interaction_from_runs(wrapped, [wrapped])["response"]["content"] == "Friday."


def test_a_trace_whose_root_is_not_chat_shaped_answers_from_its_last_llm_run() -> None:
    root = run(ROOT, "chain", 0, {"order": "ORD-1"}, {"result": {"ok": True}})
    early = run(LLM, "llm", 1, {"messages": QUESTION}, {"generations": [[{"text": "draft"}]]},
                parent=ROOT)  # fmt: skip
    late = run(TOOL, "llm", 3, {"messages": QUESTION}, {"generations": [[{"text": "final"}]]},
               parent=ROOT)  # fmt: skip
    rec = ls.interaction_from_runs(root, [root, early, late])
    assert rec["response"] == "final" and rec["interaction_id"] == str(ROOT)
    with pytest.raises(Reject) as exc:
        ls.interaction_from_runs(root, [root])
    assert exc.value.detail.startswith("langsmith: ") and "no chat inputs" in exc.value.detail


@pytest.mark.parametrize(
    ("over", "config", "expected"),
    [
        ({"score": 1}, None, {"thumb": 1}),
        ({"score": 0}, None, {"thumb": -1}),
        ({"score": True}, None, {"thumb": 1}),
        ({"score": 4, "key": "stars"}, SourcesConfig(rating_names=["stars"]), {"rating": 4}),
        ({"score": None, "value": "great"},
         SourcesConfig(categorical_map={"great": {"rating": 5}}), {"rating": 5}),
        ({"score": 0, "correction": {"output": "It ships Friday."}}, None,
         {"thumb": -1, "correction": "It ships Friday."}),
        ({"score": None, "key": "correction", "value": "It ships Friday."}, None,
         {"correction": "It ships Friday."}),
    ],
)  # fmt: skip
def test_feedback_values(over: dict, config: SourcesConfig | None, expected: dict) -> None:
    event = ls.feedback_from_langsmith(feedback(**over), config or SourcesConfig())
    assert {k: event.get(k) for k in ("thumb", "rating", "correction") if k in event} == expected
    parse_feedback({**event, "agent_id": "a"}, RULES)


@pytest.mark.parametrize(
    ("over", "names"),
    [
        ({"score": 0.4}, "sources.rating_names"),
        ({"score": None, "value": "meh"}, "sources.categorical_map"),
        ({"score": None, "comment": "just a note"}, "no score, value or correction"),
        ({"run_id": None, "session_id": PROJECT}, "run_id is required"),
        ({"feedback_source": FeedbackSourceBase(type="robot")}, "feedback_source.type"),
    ],
)
def test_unmappable_feedback_is_refused_naming_the_rule(over: dict, names: str) -> None:
    with pytest.raises(Reject) as exc:
        ls.feedback_from_langsmith(feedback(**over))
    assert exc.value.detail.startswith("langsmith: ") and names in exc.value.detail
    assert "meh" not in exc.value.detail and "note" not in exc.value.detail


@pytest.mark.parametrize(("kind", "expected"), [("api", "user"), ("app", "expert"),
                                                ("model", "system")])  # fmt: skip
def test_feedback_source_annotator_and_trace(kind: str, expected: str) -> None:
    src = FeedbackSourceBase(type=kind, user_id="annot-3", metadata={"agent_id": "shop"})
    event = ls.feedback_from_langsmith(
        feedback(run_id=LLM, feedback_source=src, comment="late"), trace_of={str(LLM): str(ROOT)}
    )
    assert event["source"] == expected and event["annotator"] == "annot-3"
    assert event["interaction_id"] == str(ROOT)  # feedback on a child run: its trace
    assert event["agent_id"] == "shop" and event["comment"] == "late"
    assert event["langsmith"]["key"] == "user_score"
    assert event["feedback_id"] == str(uuid.UUID(int=500))


def test_detect_is_strict() -> None:
    assert ls.detect(agent_trace()[0]) == "interactions"
    assert ls.detect(feedback()) == "feedback"
    for other in (
        {"interaction_id": "i", "messages": [], "response": "r"},
        {"interaction_id": "i", "thumb": 1, "rating": 4},
        {"id": "t", "timestamp": "2026-01-01", "observations": []},
        {"id": "s", "traceId": "t", "name": "n", "dataType": "NUMERIC", "value": 1,
         "source": "API"},
        {"resourceSpans": []},
        "text",
    ):  # fmt: skip
        assert ls.detect(other) is None


def test_map_objects_feedback_follows_runs_and_refuses_strangers() -> None:
    root, llm, tool = agent_trace()
    objects = [FileObject(1, llm), FileObject(2, root), FileObject(3, tool),
               FileObject(4, feedback(run_id=LLM, score=0)), FileObject(5, {"x": 1})]  # fmt: skip
    out = list(ls.map_objects(objects))
    assert [(m.line, m.kind, m.reject is None) for m in out] == [
        (2, "interaction", True), (4, "feedback", True), (5, "interaction", False)
    ]  # fmt: skip
    assert out[1].record["interaction_id"] == str(ROOT)
    assert out[2].reject.detail.startswith("langsmith: ")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.sampled_from([0, 1, 3]),
    changes=st.dictionaries(
        st.sampled_from(["id", "trace_id", "parent_run_id", "run_type", "inputs", "outputs",
                         "start_time", "end_time", "extra", "prompt_tokens", "total_cost",
                         "child_runs", "key", "score", "value", "correction", "run_id",
                         "feedback_source", "created_at"]),
        JSON, max_size=4,
    ),
)  # fmt: skip
def test_any_value_is_mapped_or_refused_never_raised(which: int, changes: dict) -> None:
    objects = [*agent_trace(), feedback()]
    objects[which] = {**objects[which], **changes}
    for obj in objects:
        ls.detect(obj)
    files = [FileObject(n, o) for n, o in enumerate(objects, start=1)]
    for m in ls.map_objects(files, SourcesConfig(rating_names=["x"])):
        assert (m.record is None) != (m.reject is None)
        if m.reject is not None:
            assert m.reject.detail.startswith("langsmith: ")
