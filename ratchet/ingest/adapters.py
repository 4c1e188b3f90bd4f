"""Adapters from log formats people already have to the canonical interaction object.

Each adapter maps one parsed JSON object to a canonical interaction dict (then validated by
:func:`ratchet.ingest.records.parse_interaction` like any other line), or raises ``Reject``.

OpenAI chat-completions logs (``--format openai-chat``), one object per line, the request you
sent and the response you got::

    {"request": {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "Where is my
      order ORD-2026-118842?"}], "tools": [...], "user": "cust-812",
      "metadata": {"agent_id": "shop-assistant", "topic": "orders"}},
     "response": {"id": "chatcmpl-9x...", "object": "chat.completion", "created": 1761984000,
      "model": "gpt-4.1-mini-2025-04-14", "choices": [{"index": 0, "message": {"role":
      "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
      "function": {"name": "lookup_order", "arguments": "{\\"order_id\\": \\"ORD-2026-118842\\"}"}}]},
      "finish_reason": "tool_calls"}], "usage": {"prompt_tokens": 84, "completion_tokens": 17}},
     "agent_id": "shop-assistant", "latency_ms": 812}

Mapping: ``interaction_id`` = ``response.id``; ``agent_id`` = the line's ``agent_id``, else
``request.metadata.agent_id``, else ``--agent``; ``timestamp`` = ``response.created`` (epoch
seconds, UTC) or the line's ``timestamp``; ``messages`` = ``request.messages``; ``response`` =
the first choice's message (content and tool calls); ``model_version`` = ``response.model``;
``user_id`` = ``request.user``; tokens from ``usage``; ``metadata`` = ``request.metadata``
without ``agent_id``; the request's other parameters (``temperature``, ``tools``...) go to
``extra.request``.

**Sources: the registry** (issue 16). Exports that do not come one record per line (an OTLP
trace request holds many spans; a vendor page holds many records; a conversation is spread over
spans) are *sources*: each is a module under ``ratchet/ingest/sources/`` named in
:data:`SOURCE_MODULES` (format name → module). A source module defines:

- ``detect(obj) -> "interactions" | "feedback" | None``: whether one parsed file object (a JSON
  line, or the whole file when it is one JSON document) has this source's shape, and what it
  mostly holds (the file's kind in the ledger). It must be cheap and strict: it runs on the
  first objects of every file, and two detectors matching one object make the file ambiguous.
- ``map_objects(objects: list[FileObject], config=None) -> Iterator[Mapped]``: the file's
  objects (all of them, so spans and pages can be joined across lines; ``config`` is the run's
  ``sources`` config section when there is one, else None) to canonical interaction and feedback
  dicts (:meth:`Mapped.interaction`, :meth:`Mapped.feedback`), or to refusals
  (:meth:`Mapped.refused`, reason one of QUARANTINE_REASONS and a detail that starts with the
  source's name and names the missing piece, never a value). One object may give several
  records. Unknown vendor fields go under one key of the canonical dict (kept in ``extra``).

To add one: write the module, add ``"name": "ratchet.ingest.sources.module"`` to
:data:`SOURCE_MODULES`, and ``ratchet ingest --format name`` / ``--format auto`` know it. The
mapped records then go through the ordinary path (validation, redaction, quarantine, exactly
once); interactions that share a ``conversation_id`` are joined into full histories by
:mod:`ratchet.ingest.sources.conversations` for every source, so a mapper needs not do it.
``detect_format`` tells a file's format from its first objects, refusing an ambiguous one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from ratchet.ingest.records import Reject

# Sources (see the docstring): format name -> module. Add a line to register one.
SOURCE_MODULES: dict[str, str] = {
    "otel-genai": "ratchet.ingest.sources.otel_genai",
    "openai-stored": "ratchet.ingest.sources.openai_stored",
    "langfuse": "ratchet.ingest.sources.langfuse",
    "langsmith": "ratchet.ingest.sources.langsmith",
}
LINE_FORMATS = ("canonical", "openai-chat")  # one record per line, streamed in batches
FORMATS = (*LINE_FORMATS, *SOURCE_MODULES)
FileKind = Literal["interactions", "feedback"]
RecordKind = Literal["interaction", "feedback"]
_FEEDBACK_KEYS = frozenset({"rating", "thumb", "feedback_id"})
DETECT_OBJECTS = 50  # how many of a file's first objects decide its format


class AmbiguousFormat(ValueError):
    """A file whose shape matches several formats: named, never guessed."""


@dataclass(frozen=True)
class FileObject:
    """One parsed object of a source file: its 1-based line (1 for a whole-file document)."""

    line: int
    obj: Any


@dataclass(frozen=True)
class Mapped:
    """One record a source produced (``record``), or one it could not (``reject``); ``raw`` is
    what to show, redacted and truncated, in the quarantine row of a refusal."""

    line: int
    kind: RecordKind
    record: dict[str, Any] | None = None
    reject: Reject | None = None
    raw: bytes = b""

    @classmethod
    def interaction(cls, line: int, record: dict[str, Any]) -> Mapped:
        return cls(line, "interaction", record=record)

    @classmethod
    def feedback(cls, line: int, record: dict[str, Any]) -> Mapped:
        return cls(line, "feedback", record=record)

    @classmethod
    def refused(
        cls, line: int, kind: RecordKind, reason: str, detail: str, raw: bytes = b""
    ) -> Mapped:
        return cls(line, kind, reject=Reject(reason, detail), raw=raw)


@dataclass(frozen=True)
class Source:
    """A registered source: its detector and its mapper."""

    name: str
    detect: Callable[[Any], FileKind | None]
    map_objects: Callable[..., Iterator[Mapped]]  # (objects, config=None)


def source(name: str) -> Source:
    """The registered source called ``name`` (KeyError for an unknown one)."""
    module = importlib.import_module(SOURCE_MODULES[name])
    return Source(name, module.detect, module.map_objects)


def line_format(obj: Any) -> tuple[str, FileKind] | None:
    """The line format an object has (canonical or openai-chat), and its kind."""
    if not isinstance(obj, dict):
        return None
    if looks_like_openai_chat(obj):
        return "openai-chat", "interactions"
    if "messages" in obj or "response" in obj:
        return "canonical", "interactions"
    if _FEEDBACK_KEYS & obj.keys():
        return "canonical", "feedback"
    return None


def formats_of(obj: Any) -> list[tuple[str, FileKind]]:
    """Every format whose shape this object has (normally one, or none)."""
    found = [line] if (line := line_format(obj)) is not None else []
    for name in SOURCE_MODULES:
        kind = source(name).detect(obj)
        if kind is not None:
            found.append((name, kind))
    return found


def detect_format(objects: Iterable[Any]) -> str | None:
    """The format of a file from its first objects, or None when none of them decides.

    Refuses (:class:`AmbiguousFormat`) an object whose shape matches several formats, and a
    file whose interactions come in several formats (canonical and openai-chat lines mix, as
    they always could; feedback of several sources may mix too: each object is mapped by its
    own source). The message names the candidates and says how to choose.
    """
    first: str | None = None
    interaction_formats: list[str] = []
    for i, obj in enumerate(objects):
        if i >= DETECT_OBJECTS:
            break
        found = formats_of(obj)
        if len(found) > 1:
            names = ", ".join(n for n, _ in found)
            raise AmbiguousFormat(
                f"ambiguous input: an object has the shape of several formats ({names}); "
                "pass --format with one of them"
            )
        if not found:
            continue
        name, kind = found[0]
        family = "canonical" if name in LINE_FORMATS else name
        if kind == "interactions" and family not in interaction_formats:
            interaction_formats.append(family)
        if first is None or (first in LINE_FORMATS and name not in LINE_FORMATS):
            first = name
    if len(interaction_formats) > 1:
        raise AmbiguousFormat(
            "ambiguous input: the file mixes interaction formats "
            f"({', '.join(interaction_formats)}); split it by format or pass --format"
        )
    return first


def looks_like_openai_chat(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("request"), dict) and "response" in obj


def from_openai_chat(obj: dict[str, Any]) -> dict[str, Any]:
    request = obj.get("request")
    response = obj.get("response")
    if not isinstance(request, dict):
        raise Reject("missing_field", "request is required (openai-chat)")
    if not isinstance(response, dict):
        raise Reject("missing_field", "response is required (openai-chat)")
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise Reject("missing_field", "response.choices[0] is required (openai-chat)")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise Reject("missing_field", "response.choices[0].message is required (openai-chat)")
    metadata = request.get("metadata")
    metadata = dict(metadata) if isinstance(metadata, dict) else {}
    agent = obj.get("agent_id") or metadata.pop("agent_id", None)
    metadata.pop("agent_id", None)
    raw_usage = response.get("usage")
    usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
    rest = {k: v for k, v in request.items() if k not in {"messages", "model", "user", "metadata"}}
    out: dict[str, Any] = {
        "interaction_id": response.get("id"),
        "timestamp": obj.get("timestamp", response.get("created")),
        "messages": request.get("messages"),
        "response": message,
        "model_version": response.get("model") or request.get("model"),
        "user_id": request.get("user"),
        "prompt_tokens": usage.get("prompt_tokens"),
        "completion_tokens": usage.get("completion_tokens"),
        "latency_ms": obj.get("latency_ms"),
        "metadata": metadata or None,
    }
    if agent is not None:
        out["agent_id"] = agent
    finish = choices[0].get("finish_reason")
    extra: dict[str, Any] = {}
    if rest:
        extra["request"] = rest
    if finish is not None:
        extra["finish_reason"] = finish
    for key in ("conversation_id", "consent", "feedback", "cost_usd", "schema_version"):
        if key in obj:
            out[key] = obj[key]
    if extra:
        out["openai"] = extra  # unknown to the canonical form: kept in `extra`
    return out
