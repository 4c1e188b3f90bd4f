"""TF-IDF retrieval counts a question's unseen words against a match (found by the efficacy
benchmark, issue 11): a question about something the index never saw must not reach the local
model's threshold on its boilerplate alone, or the local model answers it with an unrelated
example instead of falling back to its base."""

from __future__ import annotations

from pathlib import Path

import pytest

from ratchet.backends.retrieval import RetrievalIndex, TfidfEncoder, build_index

QUESTIONS = ["Can you help me reset my password?", "Can you help me update my payment card?"]
ANSWERS = ["Go to Settings > Security.", "Go to Billing > Payment methods."]


def _index() -> RetrievalIndex:
    return build_index(["a", "b"], QUESTIONS, ANSWERS)


def test_a_question_on_an_unseen_topic_scores_below_the_threshold() -> None:
    hit = _index().nearest("Can you help me follow my delivery?")
    # Its known terms ("can you help me ... my") alone have a cosine near 0.6 with either row.
    assert hit.score < 0.5


def test_known_terms_keep_their_score_and_the_nearest_row_never_changes() -> None:
    index = _index()
    encoder = index.encoder
    assert isinstance(encoder, TfidfEncoder)
    assert index.nearest(QUESTIONS[1]).score == pytest.approx(1.0, abs=1e-6)
    assert encoder.known_share(QUESTIONS).tolist() == [1.0, 1.0]
    plain = (encoder.transform(["please reset my password today"]) @ index._by_term).toarray()
    hit = index.nearest("please reset my password today")
    assert hit.row == int(plain.argmax()) and 0 < hit.score < float(plain.max())
    assert encoder.known_share([""]).tolist() == [1.0]  # nothing to compare: unchanged


def test_the_local_model_falls_back_to_its_base_on_an_unseen_topic(tmp_path: Path) -> None:
    from ratchet.backends import BackendContext
    from ratchet.backends.base import ModelSpec
    from ratchet.backends.local import LocalAnswerer
    from ratchet.store import Store

    store = Store(str(tmp_path / "store"))
    _index().save(store, "models/m1/")
    spec = ModelSpec("local", "models/m1/", parameters={"min_similarity": 0.5})
    answer = LocalAnswerer(spec, BackendContext(store, None, None)).answer(
        [{"role": "user", "content": "Can you help me follow my delivery?"}]
    )
    assert answer.details["source"] == "none" and answer.text == ""  # no base: it declines
