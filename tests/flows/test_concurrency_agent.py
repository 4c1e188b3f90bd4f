"""One pipeline run per agent at a time, against a real Prefect server (the session's test
harness): a Prefect global concurrency limit per agent, ``ratchet-agent-<agent>``, one slot,
created on first use. A second run for the same agent waits for the slot (``wait``) or is
refused with a message that names the agent and the limit (``refuse``); another agent's run
is not held up. The weekly loop takes the slot around each agent's train → promote."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tasks import runtime

pytestmark = pytest.mark.usefixtures("prefect_harness", "ratchet_env")


def _thread(target: Callable[[], None]) -> threading.Thread:
    """A thread that sees the test's Prefect settings (the harness's server: a context var)."""
    thread = threading.Thread(target=contextvars.copy_context().run, args=(target,))
    thread.start()
    return thread


def _hold(agent: str, acquired: threading.Event, release: threading.Event) -> threading.Thread:
    def run() -> None:
        with runtime.agent_slot(agent, "wait", 60):
            acquired.set()
            release.wait(60)

    thread = _thread(run)
    assert acquired.wait(60), "the first run never got the agent's slot"
    return thread


def test_a_second_run_for_the_same_agent_is_refused_or_waits(ratchet_env: Path) -> None:
    from prefect.client.orchestration import get_client

    acquired, release = threading.Event(), threading.Event()
    holder = _hold("shop-assistant", acquired, release)
    try:
        with get_client(sync_client=True) as client:
            limit = client.read_global_concurrency_limit_by_name("ratchet-agent-shop-assistant")
        assert limit.limit == 1 and limit.active_slots == 1

        with pytest.raises(runtime.AgentBusy) as refused:
            with runtime.agent_slot("shop-assistant", "refuse", 60):
                pytest.fail("two runs held one agent's slot")
        assert "agent shop-assistant" in str(refused.value)
        assert "ratchet-agent-shop-assistant" in str(refused.value)

        # another agent is not held up by this one
        with runtime.agent_slot("billing-bot", "refuse", 60):
            pass

        # the weekly loop's per-agent stage, refused: a failure that says why, nothing run
        from flows.weekly_loop import improve_agent

        out = improve_agent(
            "shop-assistant", {}, strategy="sft", backend=None, dry_run=True,
            agent_concurrency="refuse",
        )  # fmt: skip
        assert out["runs"] == {} and "another pipeline run holds its slot" in out["failure"]

        # wait: queued until the first run lets go, then it runs
        order: list[str] = []

        def second() -> None:
            with runtime.agent_slot("shop-assistant", "wait", 60):
                order.append("second ran")

        waiter = _thread(second)
        time.sleep(2)  # give the waiter time to be refused once if it were not queued
        assert order == []
        order.append("first released")
        release.set()
        waiter.join(90)
        assert order == ["first released", "second ran"]
    finally:
        release.set()
        holder.join(60)


def test_a_wait_that_runs_out_ends_with_the_reason() -> None:
    acquired, release = threading.Event(), threading.Event()
    holder = _hold("support-bot", acquired, release)
    try:
        with pytest.raises(runtime.AgentBusy, match=r"gave up after 1 s"):
            with runtime.agent_slot("support-bot", "wait", 1):
                pytest.fail("two runs held one agent's slot")
    finally:
        release.set()
        holder.join(60)
