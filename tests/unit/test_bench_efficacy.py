"""The efficacy benchmark's stream generator keeps its ground truth: what it measures on is never
in the logs, and what users teach is right. (The benchmark's result is in benchmarks/README.md.)"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.bench_efficacy import (
    HELD_OUT_TEMPLATES,
    INTENTS,
    LOGGED_TEMPLATES,
    generate,
    held_out_paraphrases,
    normalise,
)

BY_NAME = {i.name: i for i in INTENTS}


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def test_held_out_paraphrases_never_appear_in_the_logs(tmp_path: Path) -> None:
    stream = generate(tmp_path, weeks=3, per_intent=12, seed=5)
    logged = [r["messages"][-1]["content"] for w in stream.weeks for r in _lines(w.interactions)]
    assert logged and set(logged) == stream.logged_questions()
    seen = {normalise(q) for q in logged}
    for intent in INTENTS:
        held = held_out_paraphrases(intent)
        assert len(held) == len(HELD_OUT_TEMPLATES) * len(intent.phrases)
        assert not seen & {normalise(q) for q in held}, intent.name
    # ... nor any logged question worded with a held-out template
    stems = [t.split("{p}")[0].strip().lower() for t in HELD_OUT_TEMPLATES]
    assert not any(stem in q.lower() for q in logged for stem in stems)
    assert set(HELD_OUT_TEMPLATES).isdisjoint(LOGGED_TEMPLATES)


def test_corrections_are_the_right_answers_and_only_wrong_intents_get_them(
    tmp_path: Path,
) -> None:
    stream = generate(tmp_path, weeks=3, per_intent=12, seed=5)
    corrections = 0
    for week in stream.weeks:
        answers = {r["interaction_id"]: r for r in _lines(week.interactions)}
        for r in answers.values():  # the agent: right unless the intent is answered wrong
            intent = BY_NAME[week.intent_of[r["interaction_id"]]]
            question = r["messages"][-1]["content"]
            assert any(p in question for p in intent.phrases)
            want = intent.wrong if intent.wrong is not None else intent.right
            assert r["response"] == want
        for event in _lines(week.feedback):
            intent = BY_NAME[week.intent_of[event["interaction_id"]]]
            assert event["interaction_id"] in answers  # feedback on this week's interactions
            if "correction" in event:
                corrections += 1
                assert event["thumb"] == -1 and intent.wrong is not None
                assert normalise(event["correction"]) == normalise(intent.right)
                assert normalise(event["correction"]) != normalise(intent.wrong)
                assert week.number >= intent.correct_from and intent.correct_p > 0
                assert event["correction"] in week.corrections[intent.name]
    assert corrections == sum(len(v) for w in stream.weeks for v in w.corrections.values()) > 0
    corrected = stream.corrected_by(3)
    assert corrected <= {i.name for i in INTENTS if i.correct_p > 0}
    assert stream.corrected_by(1) <= stream.corrected_by(2) <= corrected
    assert not corrected & stream.right_from_start()


def test_the_same_seed_writes_the_same_bytes(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", weeks=2, per_intent=5, seed=3)
    b = generate(tmp_path / "b", weeks=2, per_intent=5, seed=3)
    c = generate(tmp_path / "c", weeks=2, per_intent=5, seed=4)
    for wa, wb, wc in zip(a.weeks, b.weeks, c.weeks, strict=True):
        assert wa.interactions.read_bytes() == wb.interactions.read_bytes()
        assert wa.feedback.read_bytes() == wb.feedback.read_bytes()
        assert wa.interactions.read_bytes() != wc.interactions.read_bytes()
