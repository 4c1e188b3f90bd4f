"""openai-stored: stored chat completions (list pages, single objects) joined with the
messages endpoint's pages by completion id; metadata feedback; refusals with their reasons.

Inputs follow the shapes of OpenAI's API reference for ``GET /v1/chat/completions`` and
``GET /v1/chat/completions/{id}/messages``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
from hypothesis import given, settings

from ratchet.ingest.adapters import FileObject
from ratchet.ingest.sources import openai_stored
from ratchet.ingest.sources.detect import map_file
from tests.unit.openai_stored_fixtures import completion, stored_message


def _write(path: Path, objs: list[Any], pretty: bool = False) -> Path:
    if pretty:
        path.write_text(json.dumps(objs[0], indent=2))
    else:
        path.write_text("".join(json.dumps(o) + "\n" for o in objs))
    return path


def _page(items: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    return {"object": "list", "data": items, "first_id": items[0]["id"],
            "last_id": items[-1]["id"], "has_more": False, **kw}  # fmt: skip


def test_single_completion_joined_with_out_of_order_pages(tmp_path: Path) -> None:
    c = completion("chatcmpl-X", 1763632800, {"content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"agent_id": "bot", "topic": "orders", "user_id": "u-meta"}, (10, 2))  # fmt: skip
    c["input_user"] = None
    msgs = [stored_message("chatcmpl-X", i, "user", f"m{i}") for i in range(12)]
    # a later page first; a message whose text is in content_parts
    msgs[3] = {**msgs[3], "content": None, "content_parts": [{"type": "text", "text": "m3"}]}
    path = _write(tmp_path / "s.jsonl", [_page(msgs[10:]), c, _page(msgs[:10], has_more=True)])
    (m,) = map_file(path, "openai-stored", forced=False)
    r = m.record
    assert [x["content"] for x in r["messages"]][:3] == ["m0", "m1", "m2"]
    assert r["messages"][3]["content"] == [{"type": "text", "text": "m3"}]
    assert [x["content"] for x in r["messages"]][10:] == ["m10", "m11"]  # by index, not line
    assert r["response"]["tool_calls"][0]["function"]["name"] == "f"
    assert (r["agent_id"], r["user_id"], r["metadata"]) == ("bot", "u-meta", {"topic": "orders"})
    assert r["openai"]["request_id"] == "req_pl-X" and r["openai"]["finish_reason"] == "stop"
    assert "feedback" not in r


def test_page_with_completion_id_and_pretty_document(tmp_path: Path) -> None:
    c = completion("cmpl-1", 1763632800, {"content": "hi"}, {"thumb": "down"}, (1, 1))
    # message ids that do not name their completion: the page says it
    page = _page([{"id": "msg_a", "role": "user", "content": "hello"}], completion_id="cmpl-1")
    doc = tmp_path / "doc.json"
    doc.write_text(json.dumps([_page([c]), page], indent=2))
    (m,) = map_file(doc, "openai-stored", forced=True)
    assert m.record["messages"] == [{"role": "user", "content": "hello"}]
    assert m.record["feedback"] == [{"thumb": "down", "source": "user"}]


def test_refusals_name_the_adapter_and_the_missing_piece(tmp_path: Path) -> None:
    good = completion("cmpl-ok", 1763632800, {"content": "a"}, {}, (1, 1))
    lonely = completion("cmpl-lonely", 1763632800, {"content": "a"}, {}, (1, 1))
    broken = {**completion("cmpl-broken", 1763632800, {"content": "a"}, {}, (1, 1)), "choices": []}
    orphan = _page([stored_message("cmpl-gone", 0, "user", "x")])
    nameless = _page([{"id": "no-index", "role": "user", "content": "x"}])
    objs = [_page([good, lonely, broken]), _page([stored_message("cmpl-ok", 0, "user", "q")]),
            _page([stored_message("cmpl-broken", 0, "user", "q")]), orphan, nameless,
            {"unrelated": True}]  # fmt: skip
    out = map_file(_write(tmp_path / "s.jsonl", objs), "openai-stored", forced=True)
    assert [m.record["interaction_id"] for m in out if m.record] == ["cmpl-ok"]
    details = sorted((m.line, m.reject.detail) for m in out if m.reject)
    assert details == [
        (1, "openai-stored: choices[0].message (the answer) is missing"),
        (1, "openai-stored: no input messages for this completion in the file "
            "(GET /v1/chat/completions/{id}/messages)"),
        (4, "openai-stored: input messages of a completion the file does not hold "
            "(GET /v1/chat/completions)"),
        (5, "openai-stored: a stored message needs role and an id <completion id>-<n> "
            "(or the page's completion_id)"),
        (6, "openai-stored: not a chat.completion object nor a list page (object, data)"),
    ]  # fmt: skip


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=80, deadline=None)
@given(
    completion=st.dictionaries(
        st.sampled_from(["id", "choices", "metadata", "usage", "created", "model", "input_user"]),
        _values,
    ),
    message=st.dictionaries(st.sampled_from(["id", "role", "content", "content_parts"]), _values),
)
def test_arbitrary_values_map_or_refuse_never_raise(completion: dict, message: dict) -> None:
    objs = [
        FileObject(
            1, {**completion, "object": "chat.completion", "choices": completion.get("choices", [])}
        ),
        FileObject(2, {"object": "list", "data": [message]}),
        FileObject(
            3, {"object": "list", "data": [message, 5, None], "completion_id": message.get("id")}
        ),
    ]
    for m in openai_stored.map_objects(objs):
        assert (m.record is None) != (m.reject is None)
