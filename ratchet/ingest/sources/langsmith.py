"""LangSmith runs and feedback (``--format langsmith``), as its API exports them.

**Input.** One JSON object per line (or a JSON array, as ``GET /runs`` / ``list_runs`` and
``list_feedback`` give them), each a run or a feedback, with the fields of
``langsmith.schemas.Run`` and ``langsmith.schemas.Feedback``::

    {"id": "0b1e...", "trace_id": "0b1e...", "parent_run_id": null, "run_type": "chain",
     "name": "support-agent", "start_time": "2026-11-02T09:00:00", "end_time": "...",
     "inputs": {"messages": [{"role": "user", "content": "Where is my order?"}]},
     "outputs": {"messages": [..., {"type": "ai", "content": "It ships tomorrow."}]},
     "extra": {"metadata": {"agent_id": "shop-assistant", "thread_id": "th-7",
                            "user_id": "cust-812"}},
     "session_id": "<project uuid>", "prompt_tokens": 84, "completion_tokens": 17,
     "total_cost": "0.0021", "child_run_ids": [...], ...}
    {"id": "f1...", "run_id": "0b1e...", "trace_id": "0b1e...", "key": "user_score",
     "score": 0, "comment": "wrong date", "correction": {"output": "It ships Friday."},
     "feedback_source": {"type": "api", "user_id": null}, "created_at": "...", ...}

**Runs → interactions, one per trace.** A trace's runs (its root and the children a full export
holds, one per line, or nested in ``child_runs``) make one interaction, whose id is the
``trace_id`` (the root run's id). Its question and answer come from the root run when its
inputs/outputs are chat-shaped (a LangGraph agent's ``{"messages": [...]}``), else from the
trace's last ``llm`` run (by start time). Child runs add no record of their own: they are
folded into the interaction's ``extra.langsmith.child_runs`` (ids, names, types, times, and
tool/retriever inputs and outputs), never dropped.

===================  =========================================================================
canonical            LangSmith
===================  =========================================================================
interaction_id       ``trace_id`` (else the run ``id``)
agent_id             ``extra.metadata.agent_id``, else --agent
timestamp            ``start_time`` (no zone: UTC, as LangSmith writes it)
messages             ``inputs.messages`` (a list, or LangChain's batch ``[[...]]``), or a text
                     ``inputs.input``/``question``/``query``/``prompts[0]`` as one user message;
                     when ``outputs.messages`` holds the whole exchange, all but its last
response             the last of ``outputs.messages``, ``outputs.generations[0][0]`` (its
                     ``message``, else its ``text``), ``outputs.choices[0].message`` (an
                     OpenAI client wrapped by LangSmith), or a text ``output``/``answer``
conversation_id      ``extra.metadata`` ``thread_id``, ``session_id`` or ``conversation_id``
                     (the keys LangSmith groups threads by). The run's own ``session_id`` is
                     the tracing *project*, not a conversation: it goes to ``extra``
user_id              ``extra.metadata.user_id``
model_version        ``extra.metadata.ls_model_name``, ``extra.invocation_params.model``
                     (or ``model_name``) of the answering run
latency_ms           ``end_time`` − ``start_time`` of the run that is the interaction
prompt_tokens, …     the run's ``prompt_tokens``/``completion_tokens`` (a root run's sum its
                     children's), else the sum over the trace's llm runs
cost_usd             ``total_cost``
metadata             ``extra.metadata`` without the keys mapped above
extra.langsmith      every other run field (``name``, ``tags``, ``session_id``, ``status``,
                     ``error``, ``dotted_order``, ...) and the child-run summaries
===================  =========================================================================

**Feedback → feedback event.** ``feedback_id`` = ``id``; ``interaction_id`` = ``trace_id``,
else the trace of ``run_id`` when that run is in the same file, else ``run_id`` (which
names the interaction only when it is a trace's root: export feedback with its ``trace_id``);
feedback on a session or an experiment is refused (it is about no single interaction); ``timestamp`` =
``created_at`` (else ``modified_at``); ``source`` from ``feedback_source.type``: ``api``
(the application, i.e. its users) → ``user``, ``app`` (a person in LangSmith's UI or an
annotation queue) → ``expert``, ``model`` (an evaluator) → ``system``; ``annotator`` =
``feedback_source.user_id`` (else ``user_name``); ``comment``; ``correction`` = the
``correction`` field (a text, or the text in ``{"output": ...}``), or the value of a key in
``sources.correction_names``; ``score`` (bool or number) and ``value`` (a number, or a label
read through ``sources.categorical_map``) → thumb or rating
(:mod:`ratchet.ingest.sources.feedback_shapes`). ``key`` and the rest go to
``extra.langsmith``.
"""

from __future__ import annotations

import json
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

NAME = "langsmith"
RUN_TYPES = frozenset({"llm", "chain", "tool", "retriever", "prompt", "parser", "embedding"})
FEEDBACK_SOURCES = {"api": "user", "app": "expert", "model": "system"}
THREAD_KEYS = ("thread_id", "session_id", "conversation_id")
_RUN_MAPPED = frozenset(
    {"id", "trace_id", "start_time", "end_time", "inputs", "outputs", "prompt_tokens",
     "completion_tokens", "total_cost", "child_runs", "extra"}
)  # fmt: skip
_FEEDBACK_MAPPED = frozenset(
    {"id", "run_id", "trace_id", "created_at", "comment", "correction", "feedback_source"}
)


# --- shapes ---------------------------------------------------------------------------------
def _is_run(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and str(obj.get("run_type")) in RUN_TYPES
        and isinstance(obj.get("inputs"), dict)
        and "id" in obj
        and "start_time" in obj
    )


def _is_feedback(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and isinstance(obj.get("key"), str)
        and ("run_id" in obj or "trace_id" in obj)
        and any(k in obj for k in ("score", "value", "correction"))
        and "run_type" not in obj
        and "dataType" not in obj
    )


def detect(obj: Any) -> FileKind | None:
    """A LangSmith run (interactions) or feedback (feedback); strict, so that no other source's
    object matches."""
    if _is_run(obj):
        return "interactions"
    if _is_feedback(obj):
        return "feedback"
    return None


# --- runs -----------------------------------------------------------------------------------
def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None


def _meta(run: dict[str, Any]) -> dict[str, Any]:
    extra = run.get("extra")
    meta = extra.get("metadata") if isinstance(extra, dict) else None
    return meta if isinstance(meta, dict) else {}


def _question(inputs: Any) -> list[dict[str, Any]] | None:
    if not isinstance(inputs, dict):
        return None
    if "messages" in inputs:
        found = chat_messages(inputs["messages"])
        if found is not None:
            return found
    if isinstance(inputs.get("input"), list):
        found = chat_messages(inputs["input"])
        if found is not None:
            return found
    for key in ("input", "question", "query", "prompt", "prompts"):
        text = first_text(inputs.get(key))
        if text is not None:
            return [{"role": "user", "content": text}]
    return None


def _answer(outputs: Any) -> tuple[dict[str, Any] | str | None, list[dict[str, Any]] | None]:
    """The answer, and the whole exchange before it when the outputs hold it."""
    if not isinstance(outputs, dict):
        return None, None
    msgs = outputs.get("messages")
    if isinstance(msgs, list) and msgs:
        found = chat_messages(msgs)
        if found is not None and found[-1]["role"] == "assistant":
            return found[-1], found[:-1] or None
    gens = outputs.get("generations")
    while isinstance(gens, list) and gens and isinstance(gens[0], list):
        gens = gens[0]
    if isinstance(gens, list) and gens and isinstance(gens[0], dict):
        msg = chat_message(gens[0].get("message"))
        if msg is not None:
            return msg, None
        if isinstance(gens[0].get("text"), str):
            return gens[0]["text"], None
    choices = outputs.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        msg = chat_message(choices[0].get("message"))
        if msg is not None:
            return msg, None
    for key in ("output", "answer", "content", "text"):
        value = outputs.get(key)
        msg = chat_message(value)
        if msg is not None:
            return msg, None
        if isinstance(value, str):
            return value, None
    return None, None


def _model(run: dict[str, Any]) -> str | None:
    meta = _meta(run)
    extra = run.get("extra") if isinstance(run.get("extra"), dict) else {}
    params = extra.get("invocation_params") if isinstance(extra, dict) else None
    params = params if isinstance(params, dict) else {}
    for value in (meta.get("ls_model_name"), params.get("model"), params.get("model_name")):
        if isinstance(value, str):
            return value
    return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):  # LangSmith serialises Decimal costs as strings
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _flatten(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The run and its nested ``child_runs``, depth first."""
    out = [run]
    for child in run.get("child_runs") or []:
        if isinstance(child, dict):
            out.extend(_flatten(child))
    return out


def _child_summary(run: dict[str, Any]) -> dict[str, Any]:
    keep = {k: v for k, v in run.items() if k not in {"child_runs", "inputs", "outputs"}}
    if run.get("run_type") in ("tool", "retriever"):  # what the agent fetched: not in messages
        keep["inputs"], keep["outputs"] = run.get("inputs"), run.get("outputs")
    return keep


def interaction_from_runs(
    root: dict[str, Any] | None, runs: list[dict[str, Any]]
) -> dict[str, Any]:
    """One trace's runs as a canonical interaction (see the module table). ``root``: the trace's
    root run when present; ``runs``: all of its runs (root included). :class:`Reject` names
    what is missing."""
    answering: dict[str, Any] | None = None
    messages: list[dict[str, Any]] | None = None
    answer: dict[str, Any] | str | None = None
    candidates = ([root] if root is not None else []) + sorted(
        (r for r in runs if r.get("run_type") == "llm" and r is not root),
        key=lambda r: _when(r.get("start_time")) or datetime.min,
        reverse=True,
    )
    for run in candidates:
        answer, history = _answer(run.get("outputs"))
        question = _question(run.get("inputs"))
        if answer is not None and (history or question):
            answering, messages = (
                run,
                history if history and len(history) >= len(question or []) else question,
            )
            break
    if answering is None or messages is None or answer is None:
        raise Reject(
            "missing_field",
            "langsmith: run has no chat inputs and answer (root run inputs.messages/outputs, "
            "or an llm run's messages and generations)",
        )
    top = root if root is not None else answering
    meta = dict(_meta(top))
    agent = meta.pop("agent_id", None) or _meta(answering).get("agent_id")
    thread = next((meta.pop(k) for k in THREAD_KEYS if meta.get(k) is not None), None)
    for k in THREAD_KEYS:
        meta.pop(k, None)
    user = meta.pop("user_id", None)
    start, end = _when(top.get("start_time")), _when(top.get("end_time"))
    llm_runs = [r for r in runs if r.get("run_type") == "llm"]
    prompt, completion = _int(top.get("prompt_tokens")), _int(top.get("completion_tokens"))
    if prompt is None and completion is None:
        p = [_int(r.get("prompt_tokens")) for r in llm_runs]
        c = [_int(r.get("completion_tokens")) for r in llm_runs]
        prompt = sum(v for v in p if v is not None) if any(v is not None for v in p) else None
        completion = sum(v for v in c if v is not None) if any(v is not None for v in c) else None
    out: dict[str, Any] = {
        "interaction_id": top.get("trace_id") or top.get("id"),
        "timestamp": top.get("start_time"),
        "messages": messages,
        "response": answer,
        "conversation_id": thread,
        "user_id": user,
        "model_version": _model(answering)
        or next(filter(None, map(_model, reversed(llm_runs))), None),
        "latency_ms": round((end - start).total_seconds() * 1000, 3) if start and end else None,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cost_usd": _number(top.get("total_cost")),
        "metadata": meta or None,
    }
    if agent is not None:
        out["agent_id"] = agent
    extra: dict[str, Any] = {k: v for k, v in top.items() if k not in _RUN_MAPPED}
    top_extra = top.get("extra")
    if isinstance(top_extra, dict):
        rest = {k: v for k, v in top_extra.items() if k != "metadata"}
        if rest:
            extra["extra"] = rest
    children = [_child_summary(r) for r in runs if r is not top]
    if children:
        extra["child_runs"] = children
    out[NAME] = extra  # unknown to the canonical form: kept in `extra`
    return out


# --- feedback -------------------------------------------------------------------------------
def _vote(fb: dict[str, Any], config: SourcesConfig) -> dict[str, Any]:
    key, score, value = fb.get("key"), fb.get("score"), fb.get("value")
    out: dict[str, Any] = {}
    correction = correction_text(fb.get("correction"))
    if correction is None and is_correction_name(key, config):
        correction = correction_text(value)
        if correction is None:
            raise Reject("missing_field", "langsmith: correction feedback has no text (value)")
        return {"correction": correction}
    if correction is not None:
        out["correction"] = correction
    if isinstance(score, bool | int | float):
        out.update(vote_of_number(score, key, NAME, config))
    elif isinstance(value, bool | int | float):
        out.update(vote_of_number(value, key, NAME, config))
    elif isinstance(value, str) and value.strip():
        out.update(vote_of_label(value, NAME, config))
    if not out:
        raise Reject("missing_field", "langsmith: feedback has no score, value or correction")
    return out


def feedback_from_langsmith(
    fb: dict[str, Any],
    config: SourcesConfig = DEFAULT_SOURCES,
    trace_of: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A LangSmith feedback as a canonical feedback event dict (see the module docstring).
    ``trace_of``: run id → trace id for the runs of the same file."""
    run_id = fb.get("run_id")
    interaction = fb.get("trace_id") or (trace_of or {}).get(str(run_id)) or run_id
    if interaction is None:
        raise Reject(
            "missing_field",
            "langsmith: feedback run_id is required (session or experiment feedback is about no "
            "single interaction)",
        )
    src = fb.get("feedback_source")
    src = src if isinstance(src, dict) else {}
    source = FEEDBACK_SOURCES.get(str(src.get("type") or "api"))
    if source is None:
        raise Reject("invalid_value", "langsmith: feedback_source.type must be api, app or model")
    out: dict[str, Any] = {
        "feedback_id": fb.get("id"),
        "interaction_id": interaction,
        "timestamp": fb.get("created_at") or fb.get("modified_at"),
        "source": source,
        "annotator": src.get("user_id") or src.get("user_name"),
        "comment": fb.get("comment"),
        **_vote(fb, config),
    }
    meta = src.get("metadata")
    extra_field = fb.get("extra")
    for holder in (meta, extra_field):
        if isinstance(holder, dict) and isinstance(holder.get("agent_id"), str):
            out["agent_id"] = holder["agent_id"]
            break
    extra = {k: v for k, v in fb.items() if k not in _FEEDBACK_MAPPED}
    if src:
        extra["feedback_source_type"] = src.get("type")
    out[NAME] = extra  # kept in `extra`
    return out


# --- the source -----------------------------------------------------------------------------
def _raw(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, default=str).encode()


def map_objects(objects: list[FileObject], config: SourcesConfig | None = None) -> Iterator[Mapped]:
    """Runs grouped by trace to one interaction each (at the line of the trace's root, else
    its first run); feedback to events. Refusals name the missing piece (``langsmith: ...``)."""
    cfg = config or DEFAULT_SOURCES
    traces: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    trace_of: dict[str, str] = {}
    out: list[Mapped] = []
    feedback: list[FileObject] = []
    for o in objects:
        if _is_run(o.obj):
            for run in _flatten(o.obj):
                trace = str(run.get("trace_id") or o.obj.get("trace_id") or o.obj["id"])
                trace_of[str(run.get("id"))] = trace
            trace = str(o.obj.get("trace_id") or o.obj["id"])
            traces.setdefault(trace, []).append((o.line, o.obj))
        elif _is_feedback(o.obj):
            feedback.append(o)
        else:
            out.append(Mapped.refused(
                o.line, "interaction", "missing_field",
                "langsmith: object is neither a run (run_type, inputs) nor a feedback (key, run_id)",
                _raw(o.obj),
            ))  # fmt: skip
    for trace, members in traces.items():
        runs = [r for _, top in members for r in _flatten(top)]
        roots = [
            (n, r) for n, r in members if not r.get("parent_run_id") or str(r.get("id")) == trace
        ]
        line, root = roots[0] if roots else (members[0][0], None)
        try:
            out.append(Mapped.interaction(line, interaction_from_runs(root, runs)))
        except Reject as why:
            out.append(Mapped(line, "interaction", reject=why, raw=_raw(root or members[0][1])))
    for o in feedback:
        try:
            out.append(Mapped.feedback(o.line, feedback_from_langsmith(o.obj, cfg, trace_of)))
        except Reject as why:
            out.append(Mapped(o.line, "feedback", reject=why, raw=_raw(o.obj)))
    out.sort(key=lambda m: m.line)
    yield from out


__all__ = ["NAME", "detect", "feedback_from_langsmith", "interaction_from_runs", "map_objects"]
