"""Scorers (named, versioned, with their negative cases) and the bootstrap statistics."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ratchet.backends.base import Answer, BackendError
from ratchet.evaluation import scorers as sc
from ratchet.evaluation import stats
from ratchet.evaluation.runner import AnswerCache, CallPolicy, RateLimiter, answer_all
from ratchet.store import Store


def _case(expected: str, calls: tuple = ()) -> sc.Case:
    return sc.Case("c1", [{"role": "user", "content": "q?"}], expected, calls)


def _call(name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "x",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(args)},
    }


@pytest.mark.parametrize(
    ("fn", "expected", "answer", "score"),
    [
        (sc.exact_match, "Refunds take 5 days.", "Refunds take 5 days.", 1.0),
        (sc.exact_match, "Refunds take 5 days.", "refunds take 5 days", 0.0),
        (sc.normalised_match, "Refunds take 5 days.", "refunds  take 5 days", 1.0),
        (sc.normalised_match, "The refund", "refund", 1.0),
        (sc.normalised_match, "Refunds take 5 days.", "Refunds take 6 days.", 0.0),
        (sc.token_f1, "refunds take five days", "refunds take five days", 1.0),
        (sc.token_f1, "refunds take five days", "shipping is free", 0.0),
        (sc.token_f1, "w x y z", "w x", 2 * 1.0 * 0.5 / 1.5),
        (sc.token_f1, "", "", 1.0),
        (sc.token_f1, "x", "", 0.0),
        (sc.tfidf_cosine, "refunds take five days", "refunds take five days", 1.0),
        (sc.tfidf_cosine, "refunds take five days", "shipping is free", 0.0),
        (sc.json_valid, '{"a": 1}', '{"b": [1, 2]}', 1.0),
        (sc.json_valid, '{"a": 1}', "{not json", 0.0),
        (sc.json_valid, "plain text", "{}", None),
    ],
)
def test_text_scorers(fn: Any, expected: str, answer: str, score: float | None) -> None:
    got = fn(_case(expected), Answer(answer))
    assert got == (None if score is None else pytest.approx(score))


def test_tfidf_cosine_partial_overlap_is_between() -> None:
    s = sc.tfidf_cosine(_case("refunds take five days"), Answer("refunds take ten days"))
    assert 0.0 < s < 1.0


@pytest.mark.parametrize(
    ("want", "got", "selection", "arguments"),
    [
        ((_call("lookup", {"id": 1}),), (_call("lookup", {"id": 1}),), 1.0, 1.0),
        ((_call("lookup", {"id": 1}),), (_call("lookup", {"id": 2}),), 1.0, 0.0),
        ((_call("lookup", {"id": 1}),), (_call("refund", {"id": 1}),), 0.0, 0.0),
        ((_call("lookup", {"id": 1}),), (), 0.0, 0.0),
        ((), (_call("lookup", {"id": 1}),), 0.0, None),
        ((), (), None, None),
        ((_call("a", {}), _call("b", {"x": 1})), (_call("b", {"x": 1}), _call("a", {})), 1.0, 1.0),
    ],
)
def test_tool_scorers(
    want: tuple, got: tuple, selection: float | None, arguments: float | None
) -> None:
    case, answer = _case("", want), Answer("", tool_calls=got)
    assert sc.tool_selection(case, answer) == selection
    assert sc.tool_arguments(case, answer) == arguments


@pytest.mark.parametrize(
    ("answer", "refused"),
    [
        ("I'm sorry, but I can't help with that.", 1.0),
        ("I cannot assist with this.", 1.0),
        ("Your refund takes five days.", 0.0),
        ("Sorry for the wait: it ships today.", 0.0),
    ],
)
def test_refusal(answer: str, refused: float) -> None:
    assert sc.refusal_scorer()(_case("x"), Answer(answer)) == refused


class _Judge:
    def __init__(self, reply: str) -> None:
        self.reply, self.prompts = reply, []

    def answer(self, messages: Any) -> Answer:
        self.prompts.append(messages[0]["content"])
        return Answer(self.reply)


@pytest.mark.parametrize(
    ("reply", "score"), [("5", 1.0), ("Grade: 3", 0.5), ("1", 0.0), ("no idea", None)]
)
def test_llm_judge_maps_its_grade_and_pins_prompt_and_version(
    reply: str, score: float | None
) -> None:
    judge = _Judge(reply)
    scorer = sc.judge_scorer(judge, "judge-v1")
    assert scorer.name == "llm_judge" and scorer.version == f"{sc.JUDGE_VERSION}+judge-v1"
    assert scorer(_case("five days"), Answer("5 days")) == score
    assert "five days" in judge.prompts[0] and "5 days" in judge.prompts[0]


def test_similarity_scorers_have_different_names_and_build_scorers_records_versions() -> None:
    assert sc.similarity_scorer("tfidf").name == "tfidf_cosine"
    assert sc.similarity_scorer("minilm").name == "embedding_minilm"
    names = [s.name for s in sc.build_scorers(embedding="tfidf")]
    assert "tfidf_cosine" in names and "embedding_minilm" not in names and "llm_judge" not in names
    assert all(s.version for s in sc.build_scorers(embedding="tfidf"))


def test_minilm_similarity_when_the_extra_is_installed() -> None:
    if not sc.minilm_available():
        pytest.skip("embeddings extra not installed")
    same = sc.embedding_minilm(_case("Refunds take five days."), Answer("Refunds take 5 days."))
    other = sc.embedding_minilm(_case("Refunds take five days."), Answer("The sky is blue."))
    assert same > 0.8 > other


# --- statistics ---------------------------------------------------------------------------------
def test_bootstrap_mean_is_seeded_and_covers_the_mean() -> None:
    values = list(np.random.default_rng(1).normal(0.5, 0.1, 200))
    a = stats.bootstrap_mean(values, seed=3, key="m")
    assert a == stats.bootstrap_mean(values, seed=3, key="m")
    assert a.ci_low < a.value < a.ci_high and a.covers(0.5)
    assert a.ci_high - a.ci_low < 0.05


def test_paired_difference_of_identical_inputs_covers_zero() -> None:
    values = list(np.random.default_rng(2).uniform(0, 1, 100))
    d = stats.paired_difference(values, values, seed=0)
    assert d.value == 0.0 and d.covers(0.0)


def test_paired_difference_with_noise_and_no_shift_covers_zero_and_a_shift_excludes_it() -> None:
    rng = np.random.default_rng(4)
    base = rng.uniform(0, 1, 300)
    same = base + rng.normal(0, 0.05, 300)
    assert stats.paired_difference(list(same), list(base), seed=0).covers(0.0)
    shifted = stats.paired_difference(list(base + 0.2), list(base), seed=0)
    assert shifted.ci_low > 0.1 and not shifted.covers(0.0)


def test_paired_difference_needs_the_same_cases() -> None:
    with pytest.raises(ValueError, match="same cases"):
        stats.paired_difference([1.0], [1.0, 2.0])


def _row(
    case: str,
    f1: float,
    *,
    kind: str = "golden",
    topic: str = "refunds",
    split: str = "holdout",
    fix: bool = False,
) -> dict[str, Any]:
    return {
        "case_id": case,
        "scores": {"token_f1": f1},
        "passed": f1 >= 0.6,
        "kind": kind,
        "topic": topic,
        "split": split,
        "fix_check": fix,
        "latency_ms": 10.0,
        "cost_usd": 0.0,
    }


def test_slices_show_a_regression_hidden_in_one_topic_and_fix_checks_stay_apart() -> None:
    base = [_row(f"r{i}", 1.0) for i in range(20)] + [
        _row(f"s{i}", 1.0, topic="shipping") for i in range(20)
    ]
    base += [_row("fx", 0.0, kind="regression", split="train", fix=True)]
    cand = [_row(f"r{i}", 1.0) for i in range(20)] + [
        _row(f"s{i}", 0.0, topic="shipping") for i in range(20)
    ]
    cand += [_row("fx", 1.0, kind="regression", split="train", fix=True)]
    rows = {(c.subset, c.metric): c for c in stats.compare(cand, base, seed=0)}
    assert rows[("holdout/topic=refunds", "token_f1")].difference.covers(0.0)
    assert rows[("holdout/topic=shipping", "token_f1")].difference.value == -1.0
    assert rows[("holdout", "token_f1")].n == 40  # the fix check is not generalisation
    assert rows[("fix_check", "token_f1")].n == 1
    assert rows[("fix_check", "token_f1")].difference.value == 1.0
    assert rows[("holdout", "token_f1")].baseline.value == 1.0
    assert rows[("holdout", "token_f1")].candidate.value == 0.5
    summary = {(m.subset, m.metric) for m in stats.summarise(cand)}
    assert ("holdout/kind=golden", "pass_rate") in summary and (
        "fix_check",
        "latency_ms",
    ) in summary


# --- answering: cache, pool, retries ------------------------------------------------------------
class Counting:
    """Counts calls; answers after ``delay`` seconds; fails the first ``fail`` calls."""

    def __init__(self, delay: float = 0.0, fail: int = 0, retryable: bool = True) -> None:
        self.calls, self.delay, self.fail, self.retryable = 0, delay, fail, retryable
        self.threads: set[str] = set()
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0

    def answer(self, messages: Any) -> Answer:
        with self.lock:
            self.calls += 1
            n = self.calls
            self.threads.add(threading.current_thread().name)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(self.delay)
            if n <= self.fail:
                raise BackendError("fake: overloaded", retryable=self.retryable)
            return Answer(
                "answer to " + messages[-1]["content"] + " mail a@b.example",
                latency_ms=1.0,
                cost_usd=0.01,
            )
        finally:
            with self.lock:
                self.in_flight -= 1


def _inputs(n: int) -> list[list[dict[str, Any]]]:
    return [[{"role": "user", "content": f"q{i}"}] for i in range(n)]


def _redact(text: str) -> str:
    return text.replace("a@b.example", "[EMAIL]")


def test_cache_second_run_calls_the_answerer_zero_times(tmp_path: Path) -> None:
    store, fake = Store(str(tmp_path)), Counting()
    policy = CallPolicy(concurrency=2)
    cache = AnswerCache(store, "mv1")
    first = answer_all(fake, _inputs(5), cache=cache, policy=policy, redact=_redact)
    assert fake.calls == 5 and {o.source for o in first} == {"answered"}
    assert cache.flush() is not None and cache.flush() is None  # nothing new the second time
    fake2 = Counting()
    again = answer_all(
        fake2, _inputs(5), cache=AnswerCache(store, "mv1"), policy=policy, redact=_redact
    )
    assert fake2.calls == 0 and {o.source for o in again} == {"cached"}
    assert [o.answer.text for o in again] == [f"answer to q{i} mail [EMAIL]" for i in range(5)]
    assert "a@b.example" not in b"".join(
        store.read_bytes(p) for p in store.list_files("evals")
    ).decode("latin-1")
    other = Counting()
    answer_all(other, _inputs(2), cache=AnswerCache(store, "mv2"), policy=policy, redact=_redact)
    assert other.calls == 2  # the cache is per model version


def test_the_pool_runs_more_than_one_call_at_once(tmp_path: Path) -> None:
    fake = Counting(delay=0.05)
    out = answer_all(
        fake,
        _inputs(8),
        cache=AnswerCache(Store(str(tmp_path)), "m"),
        policy=CallPolicy(concurrency=4),
        redact=_redact,
    )
    assert len(out) == 8 and fake.max_in_flight > 1
    assert [o.answer.text.split()[2] for o in out] == [f"q{i}" for i in range(8)]  # in order


def test_retries_then_succeeds_and_a_refusal_is_not_retried(tmp_path: Path) -> None:
    sleeps: list[float] = []
    fake = Counting(fail=2)
    out = answer_all(
        fake,
        _inputs(1),
        cache=AnswerCache(Store(str(tmp_path)), "m"),
        policy=CallPolicy(concurrency=1, retries=2, retry_backoff_s=0.5),
        redact=_redact,
        sleep=sleeps.append,
    )
    assert out[0].source == "answered" and out[0].attempts == 3 and sleeps == [0.5, 1.0]
    refused = Counting(fail=5, retryable=False)
    out = answer_all(
        refused,
        _inputs(1),
        cache=AnswerCache(Store(str(tmp_path)), "n"),
        policy=CallPolicy(concurrency=1, retries=3),
        redact=_redact,
        sleep=sleeps.append,
    )
    assert refused.calls == 1 and out[0].source == "error"
    assert out[0].error == "BackendError: fake: overloaded"


def test_a_timed_out_call_is_an_error_not_a_hang(tmp_path: Path) -> None:
    fake = Counting(delay=0.5)
    out = answer_all(
        fake,
        _inputs(1),
        cache=AnswerCache(Store(str(tmp_path)), "m"),
        policy=CallPolicy(concurrency=1, timeout_s=0.05, retries=1),
        redact=_redact,
        sleep=lambda s: None,
    )
    assert out[0].source == "error" and out[0].error.startswith("CallTimeout")
    assert fake.calls == 2


def test_rate_limiter_spaces_starts() -> None:
    now = [0.0]
    waits: list[float] = []

    def sleep(s: float) -> None:
        waits.append(s)

    limiter = RateLimiter(10.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        limiter.wait()
    assert waits == pytest.approx([0.1, 0.2])
