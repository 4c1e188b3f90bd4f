"""The curate summary names each refused export and says why, in words with numbers."""

from __future__ import annotations

from datetime import UTC, datetime

from ratchet.curation.select import Window


def test_summary_says_which_exports_were_refused_and_why() -> None:
    from flows.curate import summarise

    report = {
        "agent": "shop",
        "status": "curated",
        "selection": {},
        "stats": {},
        "versions": [],
        "exports": [
            {
                "kind": "preference_pairs",
                "version": "v1",
                "format": "openai-dpo",
                "status": "refused",
                "files": [],
                "rows": 0,
                "violations": {"too_few_examples": 1},
                "reason": "openai_dpo: 8 examples, export.min_examples is 10",
            },
            {
                "kind": "sft_examples",
                "version": "v2",
                "format": "openai-sft",
                "status": "written",
                "files": ["openai_chat.train.jsonl"],
                "rows": 12,
                "violations": {},
                "reason": "",
            },
        ],
    }
    out = summarise([report], Window(None, datetime(2026, 1, 1, tzinfo=UTC)))
    assert out["exports_written"] == 1
    assert out["exports_refused"] == {
        "shop/preference_pairs/openai-dpo": "openai_dpo: 8 examples, export.min_examples is 10"
    }
