"""The ingest flow's counts carry the PII second opinion's hits by type (no Prefect run needed:
the summary is a plain function of the file reports)."""

from __future__ import annotations

from flows.ingest import _summarise


def _report(name: str, hits: dict[str, int]) -> dict:
    return {
        "name": name, "status": "ingested", "lines": 2, "records": 2, "dropped_consent": 0,
        "skipped_tombstone": 0, "assumed_utc": 0, "stored": {"interactions": 2},
        "skipped_stored": {}, "quarantined": {}, "pii_by_type": {}, "quality": [],
        "second_opinion": {
            "interactions": {"table": "interactions", "status": "scanned", "reason": None,
                             "rows_total": 2, "rows_scanned": 2, "rows_with_hits": len(hits),
                             "hit_rate": 0.0, "hits_by_type": hits},
        },
    }  # fmt: skip


def test_summary_totals_second_opinion_hits_by_type() -> None:
    summary = _summarise(
        [_report("a", {"PHONE_NUMBER": 1}), _report("b", {"PHONE_NUMBER": 2, "CRYPTO": 1})]
    )
    assert summary["second_opinion_hits_by_type"] == {"PHONE_NUMBER": 3, "CRYPTO": 1}
    assert summary["second_opinion_rows_scanned"] == 4  # two rows of each file
