"""Curation core on tiny hand-built tables: each signal rule, dedupe, filters, balance, splits,
leakage, eval accumulation and version ids."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pytest

from ratchet import schemas
from ratchet.config import CurationConfig
from ratchet.curation import CurationInputError, curate, dataset_version_id, text
from ratchet.curation import split as split_mod

AGENT = "agent-a"
T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
CFG = CurationConfig(holdout_share=0.0, validation_share=0.0)

_PROV = {
    "content_hash": "c" * 64,
    "source_file": "f" * 64,
    "source_line": 1,
    "timestamp_assumed_utc": False,
    "redaction_version": "1",
    "pii_counts": None,
    "pii_residual": 0,
    "extra": None,
}


def interaction(
    iid: str,
    question: str,
    answer: str = "Here is how you do it.",
    *,
    tool_calls: list | None = None,
    metadata: dict | None = None,
    minutes: int = 0,
) -> dict:
    return {
        "schema_version": "1.0",
        "agent_id": AGENT,
        "interaction_id": iid,
        "conversation_id": None,
        "user_id": None,
        "timestamp": T0 + dt.timedelta(minutes=minutes),
        "messages": [
            {"role": "system", "content": "You are a helpful support agent."},
            {"role": "user", "content": question},
        ],
        "response": answer,
        "response_tool_calls": tool_calls,
        "model_version": "m1",
        "tools_used": None,
        "sources": None,
        "latency_ms": None,
        "prompt_tokens": None,
        "completion_tokens": None,
        "cost_usd": None,
        "consent": True,
        "metadata": json.dumps(metadata) if metadata is not None else None,
        **_PROV,
    }


def fb(
    iid: str,
    *,
    thumb: int | None = None,
    rating: int | None = None,
    correction: str | None = None,
    source: str = "user",
    annotator: str | None = "u1",
    minutes: int = 10,
    fid: str | None = None,
) -> dict:
    return {
        "schema_version": "1.0",
        "agent_id": AGENT,
        "feedback_id": fid or f"{iid}-{source}-{annotator}-{minutes}",
        "interaction_id": iid,
        "timestamp": T0 + dt.timedelta(minutes=minutes),
        "source": source,
        "annotator": annotator,
        "rating": rating,
        "thumb": thumb,
        "correction": correction,
        "comment": None,
        "aspects": None,
        **_PROV,
    }


def itab(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schemas.INTERACTIONS)


def ftab(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schemas.FEEDBACK)


def zeros(table: pa.Table) -> pa.Array:
    return pa.array(np.zeros(table.num_rows, dtype=np.int32))


def run(inter: list[dict], feed: list[dict], config: CurationConfig = CFG, previous=None, **kw):
    return curate(itab(inter), ftab(feed), previous, config, now=NOW, scan_residual=zeros, **kw)


QUESTIONS = [
    "How do I reset my password?",
    "What are your opening hours on weekends?",
    "Can I change the delivery address of my order?",
    "Why was my card declined at checkout?",
    "How do I export my invoices as PDF?",
    "Is there a student discount available?",
]


# --- signals ----------------------------------------------------------------------------------
def test_output_tables_match_schemas_exactly() -> None:
    r = run([interaction("i1", QUESTIONS[0])], [fb("i1", thumb=1)])
    for kind, table in r.tables().items():
        assert table.schema.equals(schemas.schema_for(kind)), kind
    assert r.rejected.schema.names[:3] == ["agent_id", "interaction_id", "case_id"]


def test_thumb_up_is_golden_case_and_sft_example_with_tool_calls_kept() -> None:
    calls = [
        {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": 1}'}}
    ]
    r = run(
        [interaction("i1", QUESTIONS[0], "Let me check.", tool_calls=calls)], [fb("i1", thumb=1)]
    )
    case = r.eval_cases.to_pylist()[0]
    assert (case["kind"], case["split"], case["fix_check"], case["status"]) == (
        "golden",
        "train",
        False,
        "active",
    )
    assert case["expected"] == "Let me check." and case["expected_tool_calls"][0]["id"] == "c1"
    sft = r.sft_examples.to_pylist()[0]
    assert sft["origin"] == "golden"
    assert sft["messages"][-1]["role"] == "assistant"
    assert sft["messages"][-1]["tool_calls"][0]["function"]["name"] == "lookup"
    assert [b["label"] for b in r.binary_feedback.to_pylist()] == [True]
    assert r.stats["signal_golden"] == 1


@pytest.mark.parametrize("rating, outcome", [(5, "golden"), (4, "golden"), (3, "neutral")])
def test_rating_thresholds(rating: int, outcome: str) -> None:
    r = run([interaction("i1", QUESTIONS[0])], [fb("i1", rating=rating)])
    assert r.stats[f"signal_{outcome}"] == 1
    assert r.eval_cases.num_rows == (1 if outcome == "golden" else 0)


def test_rating_3_to_review_when_configured() -> None:
    cfg = CFG.model_copy(update={"neutral_rating_to": "review"})
    r = run([interaction("i1", QUESTIONS[0])], [fb("i1", rating=3)], cfg)
    assert r.review_queue["reason"].to_pylist() == ["neutral_rating"]
    assert r.stats["signal_neutral"] == 0


@pytest.mark.parametrize("signal", [{"thumb": -1}, {"rating": 1}, {"rating": 2}, {}])
def test_negative_with_correction_is_regression_sft_and_pair(signal: dict) -> None:
    r = run(
        [interaction("i1", QUESTIONS[0], "Wrong answer.")],
        [fb("i1", correction="Go to Settings, then Reset password.", **signal)],
    )
    case = r.eval_cases.to_pylist()[0]
    assert case["kind"] == "regression" and case["fix_check"] is True
    assert case["expected"] == "Go to Settings, then Reset password."
    assert case["production_answer"] == "Wrong answer."
    sft = r.sft_examples.to_pylist()[0]
    assert sft["origin"] == "correction"
    assert sft["messages"][-1]["content"] == "Go to Settings, then Reset password."
    pair = r.preference_pairs.to_pylist()[0]
    assert (pair["chosen"], pair["rejected"]) == (
        "Go to Settings, then Reset password.",
        "Wrong answer.",
    )
    assert r.binary_feedback.num_rows == 0  # paired, not unpaired


@pytest.mark.parametrize(
    ("answer", "calls", "reason"),
    [
        (
            "",
            [{"id": "c1", "type": "function", "function": {"name": "refund", "arguments": "{}"}}],
            "rejected_has_tool_calls",
        ),
        (
            "Let me refund that.",
            [{"id": "c1", "type": "function", "function": {"name": "refund", "arguments": "{}"}}],
            "rejected_has_tool_calls",
        ),
        ("   ", None, "rejected_empty"),
        ("Go to Settings, then Reset password.", None, "identical_outputs"),
    ],
)
def test_pair_whose_rejected_answer_cannot_be_a_dpo_output_is_dropped_and_counted(
    answer: str, calls: list | None, reason: str
) -> None:
    r = run(
        [
            interaction("i1", QUESTIONS[0], answer, tool_calls=calls),
            interaction("i2", QUESTIONS[1], "Wrong answer."),
        ],
        [
            fb("i1", thumb=-1, correction="Go to Settings, then Reset password."),
            fb("i2", thumb=-1, correction="We open at nine on Saturdays."),
        ],
    )
    assert r.preference_pairs["case_id"].to_pylist() == [
        c
        for c, i in zip(
            r.eval_cases["case_id"].to_pylist(),
            r.eval_cases["interaction_id"].to_pylist(),
            strict=True,
        )
        if i == "i2"
    ]
    assert r.stats[f"pairs_dropped_{reason}"] == 1
    assert sum(v for k, v in r.stats.items() if k.startswith("pairs_dropped_")) == 1
    rej = [x for x in r.rejected.to_pylist() if x["stage"] == "pairs"]
    assert [(x["interaction_id"], x["reason"]) for x in rej] == [("i1", reason)]
    # the correction still teaches: the SFT example and the regression case stand
    assert r.sft_examples.num_rows == 2 and r.eval_cases.num_rows == 2


def test_thumb_down_without_correction_goes_to_review_and_binary() -> None:
    r = run([interaction("i1", QUESTIONS[0], "Meh.")], [fb("i1", thumb=-1)])
    assert r.review_queue["reason"].to_pylist() == ["thumbs_down_no_correction"]
    assert r.eval_cases.num_rows == 0 and r.sft_examples.num_rows == 0
    assert [(b["completion"], b["label"]) for b in r.binary_feedback.to_pylist()] == [
        ("Meh.", False)
    ]


def test_changed_vote_latest_event_per_annotator_wins() -> None:
    r = run(
        [interaction("i1", QUESTIONS[0])],
        [fb("i1", thumb=1, minutes=5), fb("i1", thumb=-1, minutes=50)],
    )
    assert r.review_queue["reason"].to_pylist() == ["thumbs_down_no_correction"]
    assert r.stats["feedback_superseded"] == 1
    assert r.review_queue["feedback_ids"].to_pylist()[0] == ["i1-user-u1-50"]


def test_late_feedback_after_now_is_ignored() -> None:
    late = fb("i1", thumb=-1, minutes=60 * 24 * 60)  # two months later: after NOW
    r = run([interaction("i1", QUESTIONS[0])], [fb("i1", thumb=1), late])
    assert r.eval_cases["kind"].to_pylist() == ["golden"]
    assert r.stats["feedback_ignored_future"] == 1


def test_same_rank_disagreement_is_a_conflict() -> None:
    r = run(
        [interaction("i1", QUESTIONS[0])],
        [fb("i1", thumb=1, annotator="u1"), fb("i1", thumb=-1, annotator="u2")],
    )
    assert r.review_queue["reason"].to_pylist() == ["conflict"]


@pytest.mark.parametrize("outranks", [True, False])
def test_user_vs_expert(outranks: bool) -> None:
    cfg = CFG.model_copy(update={"expert_outranks_user": outranks})
    r = run(
        [interaction("i1", QUESTIONS[0], "Wrong.")],
        [
            fb("i1", thumb=1),
            fb("i1", thumb=-1, correction="Right answer here.", source="expert", annotator="e1"),
        ],
        cfg,
    )
    if outranks:
        assert r.eval_cases["kind"].to_pylist() == ["regression"]
        assert r.stats["expert_overrode_user"] == 1
    else:
        assert r.eval_cases.num_rows == 0
        assert r.review_queue["reason"].to_pylist() == ["conflict"]
        assert r.stats["conflicts_user_vs_expert"] == 1


def test_system_feedback_ignored_by_default() -> None:
    r = run([interaction("i1", QUESTIONS[0])], [fb("i1", thumb=1, source="system")])
    assert r.stats["feedback_ignored_system"] == 1 and r.eval_cases.num_rows == 0
    cfg = CFG.model_copy(update={"system_feedback": "as_user"})
    r = run([interaction("i1", QUESTIONS[0])], [fb("i1", thumb=1, source="system")], cfg)
    assert r.eval_cases.num_rows == 1


def test_several_agents_rejected_and_naive_now_rejected() -> None:
    other = interaction("i2", QUESTIONS[1]) | {"agent_id": "agent-b"}
    with pytest.raises(CurationInputError):
        run([interaction("i1", QUESTIONS[0]), other], [fb("i1", thumb=1)])
    with pytest.raises(CurationInputError):
        curate(itab([]), ftab([]), None, CFG, now=NOW.replace(tzinfo=None), scan_residual=zeros)


def test_residual_scanner_sets_the_column_and_is_checked() -> None:
    r = curate(
        itab([interaction("i1", QUESTIONS[0])]),
        ftab([fb("i1", thumb=1)]),
        None,
        CFG,
        now=NOW,
        scan_residual=lambda t: pa.array([7] * t.num_rows, pa.int64()),
    )
    assert r.eval_cases["pii_residual"].to_pylist() == [7]
    assert r.eval_cases.schema.field("pii_residual").type == pa.int32()
    with pytest.raises(TypeError):
        curate(
            itab([interaction("i1", QUESTIONS[0])]),
            ftab([fb("i1", thumb=1)]),
            None,
            CFG,
            now=NOW,
            scan_residual=lambda t: pa.array([], pa.int32()),
        )


# --- dedupe -----------------------------------------------------------------------------------
def test_exact_duplicates_keep_best_labelled() -> None:
    inter = [
        interaction("i1", "How do I reset my password?", minutes=1),
        interaction("i2", "how do I  reset my PASSWORD", "Bad.", minutes=2),
        interaction("i3", "How do I reset my password!!", minutes=3),
    ]
    feed = [
        fb("i1", thumb=1),
        fb("i2", thumb=-1, correction="Use the reset link."),
        fb("i3", thumb=1),
    ]
    r = run(inter, feed)
    assert r.eval_cases["interaction_id"].to_pylist() == ["i2"]  # correction over none
    assert r.stats["removed_duplicate_exact"] == 2
    rej = r.rejected.to_pylist()
    assert {x["reason"] for x in rej} == {"duplicate_exact"}
    assert {x["kept_case_id"] for x in rej} == set(r.eval_cases["case_id"].to_pylist())


def test_exact_duplicates_expert_over_user_then_newest() -> None:
    inter = [
        interaction("i1", QUESTIONS[0], minutes=1),
        interaction("i2", QUESTIONS[0], minutes=9),
        interaction("i3", QUESTIONS[0], minutes=5),
    ]
    feed = [fb("i1", thumb=1, source="expert", annotator="e"), fb("i2", thumb=1), fb("i3", thumb=1)]
    assert run(inter, feed).eval_cases["interaction_id"].to_pylist() == ["i1"]
    feed = [fb("i1", thumb=1), fb("i2", thumb=1), fb("i3", thumb=1)]
    assert run(inter, feed).eval_cases["interaction_id"].to_pylist() == ["i2"]


def test_near_duplicates_removed() -> None:
    base = (
        "I ordered a blue winter jacket last Tuesday and it still has not arrived, "
        "can you tell me where my parcel is and when it will be delivered"
    )
    near = base.replace("Tuesday", "Monday")
    inter = [
        interaction("i1", base, minutes=1),
        interaction("i2", near, minutes=2),
        interaction("i3", QUESTIONS[1]),
    ]
    r = run(inter, [fb("i1", thumb=1), fb("i2", thumb=1), fb("i3", thumb=1)])
    assert sorted(r.eval_cases["interaction_id"].to_pylist()) == ["i2", "i3"]  # newest kept
    assert r.stats["removed_duplicate_near"] == 1


# --- filters ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "question, answer, signal, reason",
    [
        ("How do I reset my password?", "   ", {"thumb": 1}, "empty_answer"),
        ("[EMAIL] [PHONE]", "Sure, done.", {"thumb": 1}, "placeholder_only"),
        ("How do I reset my password?", "[EMAIL]", {"thumb": 1}, "placeholder_only"),
        ("?", "Fine answer.", {"thumb": 1}, "too_short"),
        ("How do I reset my password?", "x" * 300, {"thumb": 1}, "too_long"),
        (
            "How do I reset my password?",
            "I'm sorry, but I can't help with that.",
            {"thumb": 1},
            "refusal",
        ),
        ("How do I reset my password?", "Fine answer.", {"thumb": 1, "rating": 2}, "low_rating"),
    ],
)
def test_filter_reasons(question: str, answer: str, signal: dict, reason: str) -> None:
    cfg = CFG.model_copy(update={"min_chars": 2, "max_chars": 250})
    r = run([interaction("i1", question, answer)], [fb("i1", **signal)], cfg)
    assert r.eval_cases.num_rows == 0 and r.sft_examples.num_rows == 0
    assert r.stats[f"filtered_{reason}"] == 1
    assert r.rejected.to_pylist()[0]["reason"] == reason
    assert r.rejected.to_pylist()[0]["stage"] == "filter"


def test_tool_call_only_answer_is_not_empty() -> None:
    calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    r = run([interaction("i1", QUESTIONS[0], "", tool_calls=calls)], [fb("i1", thumb=1)])
    assert r.eval_cases.num_rows == 1
    assert r.sft_examples["messages"].to_pylist()[0][-1]["content"] is None


# --- balance ----------------------------------------------------------------------------------
def test_balance_caps_per_topic_deterministically() -> None:
    inter = [
        interaction(f"i{k}", QUESTIONS[k], metadata={"topic": "billing"}, minutes=k)
        for k in range(5)
    ]
    inter.append(interaction("i5", QUESTIONS[5], metadata={"task": "other"}))
    cfg = CFG.model_copy(update={"max_per_topic": 2})
    feed = [fb(f"i{k}", thumb=1) for k in range(6)]
    r1, r2 = run(inter, feed, cfg), run(list(reversed(inter)), list(reversed(feed)), cfg)
    assert r1.stats["capped_by_balance"] == 3
    ids = sorted(r1.eval_cases["interaction_id"].to_pylist())
    assert ids == ["i3", "i4", "i5"]  # the newest two billing cases, plus the other topic
    assert ids == sorted(r2.eval_cases["interaction_id"].to_pylist())
    assert set(r1.eval_cases["topic"].to_pylist()) == {"billing", "other"}


def test_topic_falls_back_to_a_minhash_cluster() -> None:
    r = run([interaction("i1", QUESTIONS[0])], [fb("i1", thumb=1)])
    assert r.eval_cases["topic"].to_pylist()[0].startswith("cluster-")


# --- splits, leakage, fix checks ---------------------------------------------------------------
def test_holdout_split_deterministic_and_near_share() -> None:
    ids = [f"{i:064x}" for i in range(1000)]
    a = split_mod.eval_splits(ids, 0.2)
    assert (a == split_mod.eval_splits(list(reversed(ids)), 0.2)[::-1]).all()
    assert 0.16 < (a == "holdout").mean() < 0.24
    v = split_mod.training_splits(ids, 0.1)
    assert 0.07 < (v == "validation").mean() < 0.13


def test_holdout_cases_never_reach_training_and_train_regressions_are_fix_checks() -> None:
    cfg = CFG.model_copy(update={"holdout_share": 0.5})
    inter = [
        interaction(f"i{k}", f"Question number {k} about topic {k * 7919}", "Bad answer.")
        for k in range(40)
    ]
    feed = [fb(f"i{k}", thumb=-1, correction=f"Right answer {k}.") for k in range(40)]
    r = run(inter, feed, cfg)
    hold = set(
        r.eval_cases.filter(pa.compute.equal(r.eval_cases["split"], "holdout"))[
            "case_id"
        ].to_pylist()
    )
    assert 0 < len(hold) < 40
    for table in (r.sft_examples, r.preference_pairs, r.binary_feedback):
        assert not hold & set(table["case_id"].to_pylist())
    for case in r.eval_cases.to_pylist():
        assert case["fix_check"] == (case["split"] == "train")


def test_leakage_guard_removes_near_duplicates_of_previous_holdout_cases() -> None:
    base = (
        "My subscription renewed yesterday even though I cancelled it two weeks ago, "
        "please refund the charge and confirm the cancellation by email"
    )
    first = run(
        [interaction("i1", base)],
        [fb("i1", thumb=1)],
        CFG.model_copy(update={"holdout_share": 0.999999}),
    )
    assert first.eval_cases["split"].to_pylist() == ["holdout"]
    near = base.replace("two weeks", "three weeks")
    r = run([interaction("i2", near)], [fb("i2", thumb=1)], CFG, previous=first.eval_cases)
    assert r.sft_examples.num_rows == 0 and r.binary_feedback.num_rows == 0
    assert r.stats["leakage_removed_near"] == 1
    assert r.eval_cases.num_rows == 1  # the holdout case stands for it
    assert r.rejected.to_pylist()[0]["kept_case_id"] == first.eval_cases["case_id"][0].as_py()


def test_leakage_guard_covers_holdout_cases_of_older_versions_and_counts_them() -> None:
    """A training example that is a near duplicate of a holdout case registered by an older
    eval-cases version, which the previous version does not hold, is removed and counted."""
    base = (
        "My subscription renewed yesterday even though I cancelled it two weeks ago, "
        "please refund the charge and confirm the cancellation by email"
    )
    older = run(
        [interaction("i1", base)],
        [fb("i1", thumb=1)],
        CFG.model_copy(update={"holdout_share": 0.999999}),
    )
    assert older.eval_cases["split"].to_pylist() == ["holdout"]
    # the previous version (made apart from the older one) holds an unrelated case only
    previous = run([interaction("i9", QUESTIONS[1])], [fb("i9", thumb=1)]).eval_cases
    near = base.replace("two weeks", "three weeks")
    unguarded = run([interaction("i2", near)], [fb("i2", thumb=1)], CFG, previous=previous)
    assert unguarded.sft_examples.num_rows == 1  # without the reference: it leaks
    r = run(
        [interaction("i2", near)],
        [fb("i2", thumb=1)],
        CFG,
        previous=previous,
        holdout_reference=pa.concat_tables([older.eval_cases, previous]),
    )
    assert r.sft_examples.num_rows == 0
    assert r.stats["leakage_removed_near"] == 1
    assert r.stats["leakage_reference_older_holdout_cases"] == 1
    assert r.rejected.to_pylist()[0]["kept_case_id"] == older.eval_cases["case_id"][0].as_py()
    # a case the previous version holds retired is not a reference, whatever older ones say
    retired = older.eval_cases.set_column(
        older.eval_cases.schema.get_field_index("status"), "status", pa.array(["retired"])
    )
    r2 = run(
        [interaction("i2", near)],
        [fb("i2", thumb=1)],
        CFG,
        previous=pa.concat_tables([previous, retired.cast(previous.schema)]),
        holdout_reference=older.eval_cases,
    )
    assert r2.sft_examples.num_rows == 1 and r2.stats["leakage_reference_older_holdout_cases"] == 0


def test_leakage_guard_exact() -> None:
    first = run(
        [interaction("i1", QUESTIONS[0])],
        [fb("i1", thumb=1)],
        CFG.model_copy(update={"holdout_share": 0.999999}),
    )
    r = run(
        [interaction("i2", QUESTIONS[0] + "!")], [fb("i2", thumb=1)], CFG, previous=first.eval_cases
    )
    assert r.stats["leakage_removed_exact"] == 1 and r.sft_examples.num_rows == 0


# --- eval accumulation and retirement ----------------------------------------------------------
def test_eval_cases_accumulate_and_golden_voted_down_is_retired() -> None:
    w1 = run(
        [interaction("i1", QUESTIONS[0]), interaction("i2", QUESTIONS[1])],
        [fb("i1", thumb=1), fb("i2", thumb=1)],
    )
    w2 = run(
        [interaction("i1", QUESTIONS[0]), interaction("i3", QUESTIONS[2])],
        [fb("i1", thumb=1, minutes=10), fb("i1", thumb=-1, minutes=900), fb("i3", thumb=1)],
        previous=w1.eval_cases,
    )
    rows = {r["interaction_id"]: r for r in w2.eval_cases.to_pylist()}
    assert set(rows) == {"i1", "i2", "i3"}
    assert (rows["i1"]["status"], rows["i1"]["retired_reason"]) == ("retired", "voted_down")
    assert rows["i2"]["status"] == rows["i3"]["status"] == "active"
    assert w2.stats["retired_golden"] == 1
    # The same week run again on its own output changes nothing (idempotent).
    again = run(
        [interaction("i1", QUESTIONS[0]), interaction("i3", QUESTIONS[2])],
        [fb("i1", thumb=1, minutes=10), fb("i1", thumb=-1, minutes=900), fb("i3", thumb=1)],
        previous=w2.eval_cases,
    )
    assert again.eval_cases.equals(w2.eval_cases)


def test_retired_golden_then_corrected_adds_regression_beside_it() -> None:
    w1 = run([interaction("i1", QUESTIONS[0])], [fb("i1", thumb=1)])
    w2 = run(
        [interaction("i1", QUESTIONS[0])],
        [fb("i1", thumb=1), fb("i1", thumb=-1, correction="Better answer.", minutes=99)],
        previous=w1.eval_cases,
    )
    got = sorted((r["kind"], r["status"]) for r in w2.eval_cases.to_pylist())
    assert got == [("golden", "retired"), ("regression", "active")]


def test_case_ids_stable_across_runs_and_weeks() -> None:
    a = run([interaction("i1", QUESTIONS[0])], [fb("i1", thumb=1)])
    b = run(
        [interaction("other-id", "how do I reset my password", minutes=999)],
        [fb("other-id", thumb=1)],
    )
    assert a.eval_cases["case_id"].to_pylist() == b.eval_cases["case_id"].to_pylist()
    assert (
        a.eval_cases["case_id"][0].as_py()
        == text.case_ids(AGENT, text.normalise(pa.array([QUESTIONS[0]])))[0]
    )


# --- dataset version ids -----------------------------------------------------------------------
def test_dataset_version_id_order_independent_and_config_sensitive() -> None:
    inter = [interaction(f"i{k}", q) for k, q in enumerate(QUESTIONS)]
    feed = [fb(f"i{k}", thumb=1) for k in range(len(QUESTIONS))]
    r1 = run(inter, feed)
    r2 = run(list(reversed(inter)), list(reversed(feed)))
    for kind in ("eval_cases", "sft_examples", "binary_feedback"):
        t1, t2 = r1.tables()[kind], r2.tables()[kind]
        shuffled = t2.take(pa.array(np.random.default_rng(0).permutation(t2.num_rows)))
        assert dataset_version_id(t1, kind, CFG) == dataset_version_id(shuffled, kind, CFG)
        other = CFG.model_copy(update={"max_per_topic": 7})
        assert dataset_version_id(t1, kind, CFG) != dataset_version_id(t1, kind, other)
    assert dataset_version_id(r1.eval_cases, "eval_cases", CFG) != dataset_version_id(
        r1.eval_cases.slice(1), "eval_cases", CFG
    )
