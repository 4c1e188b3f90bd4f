"""Exports: the records each format writes, one negative test per format rule, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ratchet.config import ExportConfig
from ratchet.export import (
    ExportValidationError,
    eval_records,
    export_eval,
    export_hf_parquet,
    export_openai_chat,
    export_openai_dpo,
    validate_records,
)
from tests.unit.test_curation import CFG, fb, interaction, run

XC = ExportConfig(min_examples=1, context_tokens=512)
CALL = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": '{"a": 1}'}}


def _result():
    inter = [
        interaction("i1", "How do I reset my password?", "Open settings.", tool_calls=[CALL]),
        interaction("i2", "Where is my parcel right now?", "No idea."),
        interaction("i3", "Can I pay by bank transfer?", "Yes, you can."),
    ]
    feed = [
        fb("i1", thumb=1),
        fb("i2", thumb=-1, correction="Track it under Orders."),
        fb("i3", thumb=-1),
    ]
    return run(inter, feed, CFG)


def test_openai_chat_jsonl_keeps_tool_calls_and_omits_nulls(tmp_path: Path) -> None:
    res = export_openai_chat(_result().sft_examples, tmp_path, XC)
    lines = [json.loads(x) for x in res.path.read_text().splitlines()]
    assert res.rows == len(lines) == 2 and res.token_estimator.startswith(("chars", "tiktoken"))
    for rec in lines:
        assert set(rec) == {"messages"} and rec["messages"][-1]["role"] == "assistant"
        for m in rec["messages"]:
            assert None not in m.values()
    assert any(m.get("tool_calls") == [CALL] for rec in lines for m in rec["messages"])


def test_openai_dpo_jsonl_shape(tmp_path: Path) -> None:
    res = export_openai_dpo(_result().preference_pairs, tmp_path, XC)
    (rec,) = [json.loads(x) for x in res.path.read_text().splitlines()]
    assert rec["preferred_output"] == [{"role": "assistant", "content": "Track it under Orders."}]
    assert rec["non_preferred_output"] == [{"role": "assistant", "content": "No idea."}]
    assert rec["input"]["messages"][-1]["role"] == "user"


def test_eval_jsonl_shape(tmp_path: Path) -> None:
    res = export_eval(_result().eval_cases, tmp_path, XC)
    recs = [json.loads(x) for x in res.path.read_text().splitlines()]
    assert {tuple(sorted(r)) for r in recs} >= {("case_id", "expected", "input", "metadata")}
    assert {r["metadata"]["kind"] for r in recs} == {"golden", "regression"}


def test_hf_parquet_columns(tmp_path: Path) -> None:
    r = _result()
    sft = export_hf_parquet(r.sft_examples, "sft", tmp_path, XC)
    dpo = export_hf_parquet(r.preference_pairs, "dpo", tmp_path, XC)
    kto = export_hf_parquet(r.binary_feedback, "kto", tmp_path, XC)
    assert pq.read_table(sft.path).column_names == ["messages"]
    assert pq.read_table(dpo.path).column_names == ["prompt", "chosen", "rejected"]
    t = pq.read_table(kto.path)
    assert t.column_names == ["prompt", "completion", "label"]
    assert sorted(t["label"].to_pylist()) == [False, True]


def _chat(**over) -> dict:
    rec = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    rec.update(over)
    return rec


def _msgs(*extra: dict) -> dict:
    return {"messages": [{"role": "user", "content": "hi"}, *extra]}


@pytest.mark.parametrize(
    "record, rule",
    [
        ("not a dict", "not_object"),
        (_chat(extra=1), "unknown_key"),
        ({"nothing": 1}, "messages_missing"),
        ({"messages": []}, "messages_empty"),
        (
            _msgs({"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}),
            "unknown_role",
        ),
        (_msgs({"role": "assistant", "content": 5}), "content_not_string"),
        (_msgs({"role": "assistant"}), "content_missing"),
        (_msgs({"role": "assistant", "content": "x", "mood": "happy"}), "unknown_message_key"),
        (
            _msgs(
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{oops"},
                        }
                    ],
                }
            ),
            "tool_arguments_not_json",
        ),
        (
            _msgs({"role": "assistant", "tool_calls": [{"id": "1", "type": "function"}]}),
            "invalid_tool_call",
        ),
        (_msgs({"role": "assistant", "tool_calls": []}), "invalid_tool_calls"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "no_assistant_message"),
        (_msgs({"role": "assistant", "content": "x", "weight": 3}), "invalid_weight"),
        (_msgs({"role": "assistant", "content": "x" * 3000}), "too_many_tokens"),
    ],
)
def test_chat_rules_each_reported_by_line_without_text(record, rule: str) -> None:
    violations, _, _ = validate_records([_chat(), record], "openai_chat", XC)
    assert rule in {v.rule for v in violations}
    assert all(v.line == 2 for v in violations)
    assert "hi" not in repr(violations) and "oops" not in repr(violations)


def test_too_few_examples() -> None:
    violations, _, _ = validate_records([_chat()], "openai_chat", ExportConfig(min_examples=10))
    assert [(v.line, v.rule) for v in violations] == [(0, "too_few_examples")]


def _dpo(**over) -> dict:
    rec = {
        "input": {"messages": [{"role": "user", "content": "q"}]},
        "preferred_output": [{"role": "assistant", "content": "good"}],
        "non_preferred_output": [{"role": "assistant", "content": "bad"}],
    }
    rec.update(over)
    return rec


@pytest.mark.parametrize(
    "record, rule",
    [
        (_dpo(x=1), "unknown_key"),
        (_dpo(input={"messages": []}), "messages_empty"),
        (_dpo(input="q"), "invalid_input"),
        (_dpo(preferred_output=[{"role": "user", "content": "good"}]), "invalid_output"),
        (_dpo(preferred_output=[{"role": "assistant", "content": 1}]), "content_not_string"),
        (
            _dpo(non_preferred_output=[{"role": "assistant", "content": "good"}]),
            "identical_outputs",
        ),
    ],
)
def test_dpo_rules(record, rule: str) -> None:
    violations, _, _ = validate_records([_dpo(), record], "openai_dpo", XC)
    assert rule in {v.rule for v in violations} and all(v.line == 2 for v in violations)


@pytest.mark.parametrize(
    "record, rule",
    [
        (
            {"input": [{"role": "user", "content": "q"}], "expected": "a", "metadata": {}},
            "missing_case_id",
        ),
        (
            {
                "case_id": "c",
                "input": [{"role": "user", "content": "q"}],
                "expected": 1,
                "metadata": {},
            },
            "expected_not_string",
        ),
        (
            {
                "case_id": "c",
                "input": [{"role": "user", "content": "q"}],
                "expected": "a",
                "metadata": [],
            },
            "metadata_not_object",
        ),
        ({"case_id": "c", "input": [], "expected": "a", "metadata": {}}, "messages_empty"),
    ],
)
def test_eval_rules(record, rule: str) -> None:
    violations, _, _ = validate_records([record], "eval", XC)
    assert rule in {v.rule for v in violations}


def test_invalid_export_is_not_written(tmp_path: Path) -> None:
    with pytest.raises(ExportValidationError) as err:
        export_openai_chat(_result().sft_examples, tmp_path, ExportConfig(min_examples=100))
    assert err.value.violations[0].rule == "too_few_examples"
    assert list(tmp_path.iterdir()) == []


def test_rewrite_is_atomic_and_identical(tmp_path: Path) -> None:
    a = export_eval(_result().eval_cases, tmp_path, XC)
    b = export_eval(_result().eval_cases, tmp_path, XC)
    assert a.sha256 == b.sha256 and [p.name for p in tmp_path.iterdir()] == ["eval.jsonl"]


def test_retired_cases_not_exported() -> None:
    r = _result()
    w2 = run(
        [interaction("i1", "How do I reset my password?", "Open settings.")],
        [fb("i1", thumb=1), fb("i1", thumb=-1, minutes=500)],
        CFG,
        previous=r.eval_cases,
    )
    assert len(eval_records(w2.eval_cases)) == len(eval_records(r.eval_cases)) - 1


# --- issue 9: refusals in numbers, the validation split, a bad pair never blocks DPO ----------
def _pairs_table(n: int, *, bad: int = 0, validation: int = 0):
    """n regression pairs (the last ``validation`` in the validation split) plus ``bad`` pairs
    whose rejected answer is blank (a tool-call answer stored before curation dropped them)."""
    import pyarrow as pa

    from ratchet import schemas

    rows = []
    for i in range(n + bad):
        rows.append(
            {
                "pair_id": f"p{i:03d}",
                "agent_id": "a",
                "case_id": f"c{i}",
                "split": "validation" if n - validation <= i < n else "train",
                "input": [{"role": "user", "content": f"question {i}"}],
                "chosen": f"right answer {i}",
                "rejected": "" if i >= n else f"wrong answer {i}",
                "topic": None,
                "pii_residual": 0,
            }
        )
    return pa.Table.from_pylist(rows, schema=schemas.PREFERENCE_PAIRS)


def test_refused_export_says_why_in_numbers() -> None:
    violations, _, _ = validate_records([_chat()] * 8, "openai_chat", ExportConfig(min_examples=10))
    err = ExportValidationError("openai_chat", violations)
    assert "8 examples, export.min_examples is 10" in str(err)
    from ratchet.curation.registry import refusal_reason

    assert refusal_reason(err) == "8 examples, export.min_examples is 10 (too_few_examples)"
    bad, _, _ = validate_records(
        [
            _chat(),
            _msgs({"role": "assistant", "content": 5}),
            _msgs({"role": "assistant", "content": 6}),
        ],
        "openai_chat",
        XC,
    )
    assert refusal_reason(ExportValidationError("openai_chat", bad)) == (
        "content_not_string on 2 lines (first: 2)"
    )


def test_one_pair_with_a_tool_call_rejected_answer_never_blocks_the_dpo_export(
    tmp_path: Path,
) -> None:
    table = _pairs_table(3, bad=1)
    res = export_openai_dpo(table, tmp_path, XC)
    assert res.rows == 3 and res.skipped == {"rejected_empty": 1}
    assert len(res.path.read_text().splitlines()) == 3
    hf = export_hf_parquet(table, "dpo", tmp_path, XC)
    assert hf.rows == 3 and hf.skipped == {"rejected_empty": 1}


def test_validation_split_is_exported_beside_the_train_file(tmp_path: Path) -> None:
    from ratchet.curation.registry import export_table

    table = _pairs_table(12, validation=2)
    cfg = ExportConfig(min_examples=10)
    results = export_table(table, "preference_pairs", "openai-dpo", tmp_path, cfg)
    assert sorted((r.path.name, r.rows) for r in results) == [
        ("openai_dpo.train.jsonl", 10),
        ("openai_dpo.validation.jsonl", 2),
    ]
    only = export_table(
        table, "preference_pairs", "openai-dpo", tmp_path / "v", cfg, split="validation"
    )
    assert [(r.path.name, r.rows) for r in only] == [("openai_dpo.validation.jsonl", 2)]
    # no validation rows (validation_share 0): the train file alone
    solo = export_table(_pairs_table(10), "preference_pairs", "openai-dpo", tmp_path / "t", cfg)
    assert [r.path.name for r in solo] == ["openai_dpo.train.jsonl"]


def test_sft_validation_file_and_refusal_leaves_no_file_behind(tmp_path: Path) -> None:
    from ratchet.curation.registry import export_table

    r = _result()
    sft = r.sft_examples
    import pyarrow as pa

    sft = sft.set_column(
        sft.schema.get_field_index("split"), "split", pa.array(["train", "validation"], pa.string())
    )
    results = export_table(sft, "sft_examples", "openai-sft", tmp_path, XC)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "openai_chat.train.jsonl",
        "openai_chat.validation.jsonl",
    ]
    assert [x.rows for x in results] == [1, 1]
    # the train file is fine but the validation file is not: neither is left behind
    bad = sft.set_column(
        sft.schema.get_field_index("split"), "split", pa.array(["train", "train"], pa.string())
    )
    with pytest.raises(ExportValidationError):
        export_table(bad, "sft_examples", "openai-sft", tmp_path / "x", XC, split="validation")
    assert not (tmp_path / "x").exists() or list((tmp_path / "x").iterdir()) == []
