"""Langfuse traces and scores (``--format langfuse``), as its public API returns them.

**Input.** One JSON object per line (or one document, or an array), each one of:

- a trace with its observations, as ``GET /api/public/traces/{traceId}`` returns it
  (``TraceWithFullDetails``)::

    {"id": "tr-1", "timestamp": "2026-11-02T09:00:00.000Z", "name": "support-chat",
     "sessionId": "sess-7", "userId": "cust-812", "metadata": {"agent_id": "shop-assistant"},
     "latency": 1.2, "totalCost": 0.0021, "tags": ["prod"], "projectId": "p1",
     "observations": [{"id": "gen-1", "traceId": "tr-1", "type": "GENERATION",
       "name": "answer", "startTime": "2026-11-02T09:00:00.100Z",
       "endTime": "2026-11-02T09:00:01.000Z", "model": "gpt-4.1-mini",
       "input": [{"role": "user", "content": "Where is my order?"}],
       "output": {"role": "assistant", "content": "It ships tomorrow."},
       "usageDetails": {"input": 84, "output": 17, "total": 101}}],
     "scores": [ ...scores as below... ]}

- a score, as ``GET /api/public/scores`` returns it (``Score``)::

    {"id": "sc-1", "traceId": "tr-1", "name": "user-feedback", "dataType": "BOOLEAN",
     "value": 0, "stringValue": "False", "source": "API", "comment": "wrong date",
     "authorUserId": null, "timestamp": "2026-11-02T10:00:00Z", ...}

- a page of either (``{"data": [...], "meta": {...}}``), as the list endpoints return them.

**Trace → interaction.** The trace's *answer* is its last ``GENERATION`` observation (by start
time) that has an input and an output: an agent's earlier model calls (tool calls, their
results) are the history the last one was sent. Without a generation, the trace's own
``input``/``output`` are used when they are chat-shaped.

===================  =========================================================================
canonical            Langfuse
===================  =========================================================================
interaction_id       trace ``id``
agent_id             ``metadata.agent_id`` of the trace (else of the generation), else --agent
timestamp            trace ``timestamp``
messages             the generation's ``input``: a message list, ``{"messages": [...]}``, or a
                     text prompt (one user message); LangChain message shapes are read too
response             the generation's ``output``: a message, ``{"content": ...}``, a chat
                     completion (``choices[0].message``), or a text
conversation_id      ``sessionId`` (turns of a session are joined into full histories)
user_id              ``userId`` (pseudonymised like any user id)
model_version        the generation's ``model``
latency_ms           trace ``latency`` (seconds) × 1000, else the generation's end − start
prompt_tokens, …     sum over the trace's generations of ``usageDetails.input``/``output``
                     (else ``usage.input``/``output``, else ``promptTokens``/``completionTokens``)
cost_usd             trace ``totalCost``, else the sum of the generations' ``calculatedTotalCost``
metadata             trace ``metadata`` without ``agent_id`` (a non-object goes to ``extra``)
extra.langfuse       every other trace field, and the observations (their ids, types, names,
                     times, levels, model parameters, and span/tool inputs and outputs); the
                     mapped generation's input/output and the other generations' inputs and
                     outputs (the history it was sent) are not copied again
===================  =========================================================================

**Score → feedback event.** ``feedback_id`` = score ``id``; ``interaction_id`` = ``traceId``
(a score on a session or a dataset run is refused: it is about no single interaction);
``timestamp`` = ``timestamp``; ``source``: ``API`` (sent by the application: its users) →
``user``, ``ANNOTATION`` (a person in Langfuse's annotation UI or queue) → ``expert``, ``EVAL``
(an LLM-as-judge evaluator) → ``system``; ``annotator`` = ``authorUserId``; ``comment`` =
``comment``; ``agent_id`` = ``metadata.agent_id``, else the trace's (a trace's own scores),
else --agent. The value, by ``dataType`` and the ``sources.*`` config
(:mod:`ratchet.ingest.sources.feedback_shapes`): ``CORRECTION`` or a name in
``sources.correction_names`` → ``correction`` (the ``stringValue``); ``BOOLEAN`` → thumb;
``NUMERIC`` → rating (``sources.rating_names``, ``sources.langfuse_numeric_as_rating``) or a
1/0 thumb; ``CATEGORICAL`` → ``sources.categorical_map``; ``TEXT`` → refused unless it is a
correction. Its ``name``, ``dataType``, ``observationId``, raw value and other fields go to
``extra.langfuse``.

A record that cannot be mapped is refused with a reason that starts with ``langfuse:`` and
names the missing piece.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from ratchet.config import SourcesConfig
from ratchet.ingest.adapters import FileKind, FileObject, Mapped
from ratchet.ingest.records import Reject
from ratchet.ingest.sources.feedback_shapes import (
    DEFAULT_SOURCES,
    correction_text,
    is_correction_name,
    vote_of_label,
    vote_of_number,
)
from ratchet.ingest.sources.message_shapes import chat_message, chat_messages, first_text

NAME = "langfuse"
SCORE_TYPES = frozenset({"NUMERIC", "BOOLEAN", "CATEGORICAL", "CORRECTION", "TEXT"})
SCORE_SOURCES = {"API": "user", "ANNOTATION": "expert", "EVAL": "system"}
_TRACE_MAPPED = frozenset(
    {"id", "timestamp", "sessionId", "userId", "metadata", "latency", "totalCost", "observations",
     "scores"}
)  # fmt: skip
_SCORE_MAPPED = frozenset(
    {"id", "traceId", "timestamp", "source", "authorUserId", "comment", "value", "stringValue"}
)


# --- shapes ---------------------------------------------------------------------------------
def _is_trace(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and isinstance(obj.get("observations"), list)
        and "id" in obj
        and "timestamp" in obj
        and "messages" not in obj
        and "response" not in obj
    )


def _is_score(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and str(obj.get("dataType")) in SCORE_TYPES
        and isinstance(obj.get("name"), str)
        and str(obj.get("source")) in SCORE_SOURCES
        and "value" in obj
    )


def _page_items(obj: Any) -> list[Any] | None:
    """The items of a list endpoint's page (``{"data": [...], "meta": {...}}``), or None."""
    if isinstance(obj, dict) and isinstance(obj.get("data"), list) and "meta" in obj:
        return obj["data"]
    return None


def detect(obj: Any) -> FileKind | None:
    """A Langfuse trace with observations (interactions), a score (feedback), or a page of
    either; strict, so that no other source's object matches."""
    items = _page_items(obj)
    first = items[0] if items else obj
    if _is_trace(first):
        return "interactions"
    if _is_score(first):
        return "feedback"
    return None


# --- traces ---------------------------------------------------------------------------------
def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None


def _messages(value: Any) -> list[dict[str, Any]] | None:
    if isinstance(value, dict) and "messages" in value:
        value = value["messages"]
    found = chat_messages(value)
    if found is not None:
        return found
    text = first_text(value)
    if text is None and isinstance(value, dict):
        text = first_text(value.get("input") or value.get("prompt") or value.get("query"))
    return [{"role": "user", "content": text}] if text is not None else None


def _answer(value: Any) -> dict[str, Any] | str | None:
    if isinstance(value, dict) and isinstance(value.get("choices"), list) and value["choices"]:
        choice = value["choices"][0]
        value = choice.get("message") if isinstance(choice, dict) else None
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    msg = chat_message(value)
    if msg is not None and msg["role"] == "assistant":
        return msg
    if isinstance(value, dict) and "content" in value and "role" not in value:
        return {"role": "assistant", "content": value["content"]}
    if isinstance(value, dict) and isinstance(value.get("output"), str):
        return value["output"]
    return first_text(value)


def _usage(gen: dict[str, Any], side: str) -> int | None:
    details = gen.get("usageDetails")
    if isinstance(details, dict) and isinstance(details.get(side), int):
        return int(details[side])
    usage = gen.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get(side), int):
        return int(usage[side])
    legacy = gen.get("promptTokens" if side == "input" else "completionTokens")
    return int(legacy) if isinstance(legacy, int) and not isinstance(legacy, bool) else None


def _sum(values: list[int | float | None]) -> int | float | None:
    found = [v for v in values if v is not None]
    return sum(found) if found else None


def _generation_cost(gen: dict[str, Any]) -> float | None:
    for key in ("calculatedTotalCost", "totalCost"):
        value = gen.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    details = gen.get("costDetails")
    if isinstance(details, dict) and isinstance(details.get("total"), int | float):
        return float(details["total"])
    return None


def _chosen(trace: dict[str, Any]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The generation that answered (the last one with input and output), and all of them."""
    gens = [
        o
        for o in trace["observations"]
        if isinstance(o, dict) and str(o.get("type", "")).upper() == "GENERATION"
    ]
    usable = [g for g in gens if g.get("input") is not None and g.get("output") is not None]
    if not usable:
        return None, gens
    order = {id(g): i for i, g in enumerate(usable)}
    last = max(usable, key=lambda g: (_when(g.get("startTime")) is not None,
                                      _when(g.get("startTime")) or datetime.min, order[id(g)]))  # fmt: skip
    return last, gens


def _observation_extra(obs: Any) -> Any:
    if not isinstance(obs, dict):
        return obs
    is_generation = str(obs.get("type", "")).upper() == "GENERATION"
    drop = {"input", "output"} if is_generation else set()
    return {k: v for k, v in obs.items() if k not in drop}


def interaction_from_trace(trace: dict[str, Any]) -> dict[str, Any]:
    """A trace with its observations as a canonical interaction dict (see the module table);
    :class:`Reject` naming the missing piece when it holds no question and answer."""
    if not isinstance(trace.get("id"), str | int) or isinstance(trace.get("id"), bool):
        raise Reject("missing_field", "langfuse: trace id is required")
    observations = trace.get("observations")
    if not isinstance(observations, list):
        raise Reject("missing_field", "langfuse: trace observations are required")
    if observations and all(isinstance(o, str) for o in observations):
        raise Reject(
            "missing_field",
            "langfuse: trace observations are ids only (export traces with "
            "GET /api/public/traces/{id}, which includes them)",
        )
    gen, gens = _chosen(trace)
    source = gen if gen is not None else trace
    messages = _messages(source.get("input"))
    if messages is None:
        where = "generation input" if gen is not None else "trace (no GENERATION observation) input"
        raise Reject("missing_field", f"langfuse: {where} holds no chat messages")
    answer = _answer(source.get("output"))
    if answer is None:
        where = (
            "generation output" if gen is not None else "trace (no GENERATION observation) output"
        )
        raise Reject("missing_field", f"langfuse: {where} holds no answer")
    raw_meta = trace.get("metadata")
    metadata = dict(raw_meta) if isinstance(raw_meta, dict) else {}
    gen_meta = gen.get("metadata") if gen is not None else None
    agent = metadata.pop("agent_id", None)
    if agent is None and isinstance(gen_meta, dict):
        agent = gen_meta.get("agent_id")
    latency = trace.get("latency")
    latency_ms: float | None = None
    if isinstance(latency, int | float) and not isinstance(latency, bool):
        latency_ms = round(float(latency) * 1000, 3)
    elif gen is not None:
        start, end = _when(gen.get("startTime")), _when(gen.get("endTime"))
        if start is not None and end is not None:
            latency_ms = round((end - start).total_seconds() * 1000, 3)
    cost = trace.get("totalCost")
    if not isinstance(cost, int | float) or isinstance(cost, bool):
        cost = _sum([_generation_cost(g) for g in gens])
    out: dict[str, Any] = {
        "interaction_id": trace["id"],
        "timestamp": trace.get("timestamp"),
        "messages": messages,
        "response": answer,
        "conversation_id": trace.get("sessionId"),
        "user_id": trace.get("userId"),
        "model_version": gen.get("model") if gen is not None else None,
        "latency_ms": latency_ms,
        "prompt_tokens": _sum([_usage(g, "input") for g in gens]),
        "completion_tokens": _sum([_usage(g, "output") for g in gens]),
        "cost_usd": cost,
        "metadata": metadata or None,
    }
    if agent is not None:
        out["agent_id"] = agent
    extra: dict[str, Any] = {k: v for k, v in trace.items() if k not in _TRACE_MAPPED}
    if raw_meta is not None and not isinstance(raw_meta, dict):
        extra["metadata"] = raw_meta
    extra["observations"] = [_observation_extra(o) for o in observations]
    out[NAME] = extra  # unknown to the canonical form: kept in `extra`
    return out


# --- scores ---------------------------------------------------------------------------------
def _vote(score: dict[str, Any], config: SourcesConfig) -> dict[str, Any]:
    kind, name = score.get("dataType"), score.get("name")
    value, label = score.get("value"), score.get("stringValue")
    if kind == "CORRECTION" or is_correction_name(name, config):
        text = correction_text(label) or correction_text(value)
        if text is None:
            raise Reject("missing_field", "langfuse: correction score has no text (stringValue)")
        return {"correction": text}
    if kind == "BOOLEAN":
        if isinstance(value, bool) or (isinstance(value, int | float) and value in (0, 1)):
            return {"thumb": 1 if value else -1}
        if isinstance(label, str) and label.strip().lower() in ("true", "false"):
            return {"thumb": 1 if label.strip().lower() == "true" else -1}
        raise Reject("invalid_value", "langfuse: BOOLEAN score value must be 1 or 0")
    if kind == "NUMERIC":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Reject("wrong_type", "langfuse: NUMERIC score value must be a number")
        return vote_of_number(
            value, name, NAME, config, as_rating=config.langfuse_numeric_as_rating
        )
    if kind == "CATEGORICAL":
        if not isinstance(label, str):
            raise Reject("missing_field", "langfuse: CATEGORICAL score has no stringValue")
        return vote_of_label(label, NAME, config)
    if kind == "TEXT":
        raise Reject(
            "invalid_value",
            "langfuse: TEXT score carries no vote (name it in sources.correction_names if it "
            "is a correction)",
        )
    raise Reject(
        "invalid_value",
        "langfuse: score dataType is not NUMERIC, BOOLEAN, CATEGORICAL, CORRECTION or TEXT",
    )


def feedback_from_score(
    score: dict[str, Any],
    config: SourcesConfig = DEFAULT_SOURCES,
    trace: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Langfuse score as a canonical feedback event dict (see the module docstring);
    ``trace``: the trace it came inside, which fills its trace id and agent."""
    trace_id = score.get("traceId") or (trace or {}).get("id")
    if trace_id is None:
        raise Reject(
            "missing_field",
            "langfuse: score traceId is required (session and dataset-run scores are about no "
            "single interaction)",
        )
    source = SCORE_SOURCES.get(str(score.get("source")))
    if source is None:
        raise Reject("invalid_value", "langfuse: score source must be API, ANNOTATION or EVAL")
    out: dict[str, Any] = {
        "feedback_id": score.get("id"),
        "interaction_id": trace_id,
        "timestamp": score.get("timestamp"),
        "source": source,
        "annotator": score.get("authorUserId"),
        "comment": score.get("comment"),
        **_vote(score, config),
    }
    meta = score.get("metadata")
    trace_meta = (trace or {}).get("metadata")
    agent = meta.get("agent_id") if isinstance(meta, dict) else None
    if agent is None and isinstance(trace_meta, dict):
        agent = trace_meta.get("agent_id")
    if agent is not None:
        out["agent_id"] = agent
    extra = {k: v for k, v in score.items() if k not in _SCORE_MAPPED}
    extra["value"], extra["stringValue"] = score.get("value"), score.get("stringValue")
    out[NAME] = extra  # kept in `extra`
    return out


# --- the source -----------------------------------------------------------------------------
def _raw(obj: Any) -> bytes:
    import json

    return json.dumps(obj, ensure_ascii=False, default=str).encode()


def _map_one(line: int, obj: Any, config: SourcesConfig) -> Iterator[Mapped]:
    items = _page_items(obj)
    if items is not None:
        for item in items:
            yield from _map_one(line, item, config)
        return
    if _is_score(obj):
        try:
            yield Mapped.feedback(line, feedback_from_score(obj, config))
        except Reject as why:
            yield Mapped(line, "feedback", reject=why, raw=_raw(obj))
        return
    if not isinstance(obj, dict) or not isinstance(obj.get("observations"), list):
        yield Mapped.refused(
            line, "interaction", "missing_field",
            "langfuse: object is neither a trace with observations nor a score", _raw(obj),
        )  # fmt: skip
        return
    try:
        yield Mapped.interaction(line, interaction_from_trace(obj))
    except Reject as why:
        yield Mapped(line, "interaction", reject=why, raw=_raw({**obj, "scores": None}))
    for score in obj.get("scores") or []:
        try:
            if not isinstance(score, dict):
                raise Reject("wrong_type", "langfuse: trace scores must be objects")
            yield Mapped.feedback(line, feedback_from_score(score, config, trace=obj))
        except Reject as why:
            yield Mapped(line, "feedback", reject=why, raw=_raw(score))


def map_objects(objects: list[FileObject], config: SourcesConfig | None = None) -> Iterator[Mapped]:
    """Each trace to an interaction plus its scores' events; each score to an event; pages
    to their items. Refusals name the missing piece (``langfuse: ...``)."""
    cfg = config or DEFAULT_SOURCES
    for o in objects:
        yield from _map_one(o.line, o.obj, cfg)


__all__ = ["NAME", "detect", "feedback_from_score", "interaction_from_trace", "map_objects"]
