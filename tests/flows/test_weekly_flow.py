"""The weekly flow on the bundled sample, end to end: ingest then curate (with exports)."""

from __future__ import annotations

from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[2] / "ratchet" / "data" / "sample"


def test_weekly_on_the_sample_ingests_and_curates(prefect_harness, ratchet_env) -> None:
    from flows.weekly import weekly_flow

    result = weekly_flow(
        paths=[str(p) for p in sorted(SAMPLE.glob("interactions-*.jsonl"))]
        + [str(SAMPLE / "openai-chat.jsonl")],
        feedback_paths=[str(p) for p in sorted(SAMPLE.glob("feedback-*.jsonl"))],
        all_time=True,
    )
    assert result["ingest"]["stored"]["feedback"] == 115
    curate = result["curate"]
    assert curate["window"].startswith("[beginning, ")
    assert curate["feedback_in_window"] == 115
    assert curate["versions_new"] >= 12 and curate["exports_written"] > 0
    assert {r["agent"] for r in curate["reports"]} == {
        "billing-helper", "returns-bot", "shop-assistant"}
