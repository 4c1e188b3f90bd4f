"""A counting fake answering backend for the evaluation tests, handed out by the backend
registry (``BACKENDS["evalfake"] = ("tests.eval_fakes", None)``): nothing patches an import.

A model version's ``parameters`` say what it answers: ``answers`` (the last user message ->
the answer), else ``default``; ``delay_s`` holds each answer that long. ``CALLS`` counts answers
per ``model_ref`` across threads, so a test proves a rerun or a replay paid nothing.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from ratchet.backends.base import Answer, ModelSpec

CALLS: Counter[str] = Counter()
_LOCK = threading.Lock()


class FakeAnswerer:
    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    def answer(self, messages: Sequence[Mapping[str, Any]]) -> Answer:
        with _LOCK:
            CALLS[self.spec.model_ref] += 1
        p = self.spec.parameters
        time.sleep(float(p.get("delay_s", 0.0)))
        question = [m for m in messages if m.get("role") == "user"][-1].get("content") or ""
        text = dict(p.get("answers") or {}).get(question, p.get("default", "I do not know."))
        return Answer(text, latency_ms=5.0, cost_usd=float(p.get("cost_usd", 0.001)))


def make_answerer(spec: ModelSpec, context: Any) -> FakeAnswerer:
    return FakeAnswerer(spec)
