"""Conversation joining (ratchet.ingest.sources.conversations), shared by every source: turns
logged one per span or run get the history of the earlier turns, and only then."""

from __future__ import annotations

from typing import Any

import pytest

from ratchet.ingest.sources.conversations import join_conversations

SYS = {"role": "system", "content": "Be brief."}


def u(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def a(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


def turn(iid: str, ts: str, messages: list[dict[str, Any]], answer: Any, **kw: Any) -> dict:
    return {"interaction_id": iid, "conversation_id": "c1", "agent_id": "bot",
            "timestamp": ts, "messages": messages, "response": answer, **kw}  # fmt: skip


def test_new_message_only_turns_get_the_history_in_time_order() -> None:
    t3 = turn("t3", "2026-11-20T10:02:00Z", [u("q3")], "a3")
    t1 = turn("t1", "2026-11-20T10:00:00Z", [SYS, u("q1")], "a1")
    t2 = turn("t2", 1795168860, [u("q2")], {"role": "assistant", "content": "a2"})  # 10:01 epoch
    assert join_conversations([t3, t1, t2]) == 2  # file order is not time order
    assert t1["messages"] == [SYS, u("q1")]
    assert t2["messages"] == [SYS, u("q1"), a("a1"), u("q2")]
    assert t3["messages"] == [SYS, u("q1"), a("a1"), u("q2"), a("a2"), u("q3")]


def test_full_histories_and_fresh_starts_are_kept() -> None:
    t1 = turn("t1", "2026-11-20T10:00:00Z", [u("q1")], "a1")
    full = turn("t2", "2026-11-20T10:01:00Z", [u("q1"), a("a1"), u("q2")], "a2")
    # a tracer that logged the last exchange only: the missing beginning is prepended
    tail = turn("t3", "2026-11-20T10:02:00Z", [a("a2"), u("q3")], "a3")
    restart = turn("t4", "2026-11-20T10:03:00Z", [u("q1"), u("again")], "a4")
    assert join_conversations([t1, full, tail, restart]) == 1
    assert full["messages"] == [u("q1"), a("a1"), u("q2")]
    assert tail["messages"] == [u("q1"), a("a1"), u("q2"), a("a2"), u("q3")]
    assert restart["messages"] == [u("q1"), u("again")]


def test_tool_calls_in_answers_are_part_of_the_history() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    t1 = turn("t1", "2026-11-20T10:00:00Z", [u("q1")], {"content": None, "tool_calls": [call]})
    t2 = turn(
        "t2",
        "2026-11-20T10:00:01Z",
        [{"role": "tool", "tool_call_id": "c", "content": "ok"}],
        "done",
    )
    join_conversations([t1, t2])
    assert t2["messages"] == [
        u("q1"), {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c", "content": "ok"},
    ]  # fmt: skip


@pytest.mark.parametrize(
    "other",
    [
        {"conversation_id": None},  # no conversation: left alone
        {"conversation_id": "c2"},  # another conversation
        {"agent_id": "other-bot"},  # the same id under another agent is another conversation
    ],
)
def test_only_the_same_conversation_is_joined(other: dict[str, Any]) -> None:
    t1 = turn("t1", "2026-11-20T10:00:00Z", [u("q1")], "a1")
    t2 = turn("t2", "2026-11-20T10:01:00Z", [u("q2")], "a2", **other)
    assert join_conversations([t1, t2]) == 0
    assert t2["messages"] == [u("q2")]


def test_unreadable_turns_do_not_raise() -> None:
    t1 = turn("t1", "not a time", "not a list", None)
    t2 = turn("t2", True, [u("q2"), 5, None], ["odd"])
    t3 = turn("t3", "2026-11-20T10:00:00Z", [u("q3")], "a3")
    join_conversations([t1, t2, t3])
    assert t1["messages"] == "not a list"
