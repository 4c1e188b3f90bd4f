"""The data-quality runner: failing expectations are named, values never are."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from ratchet.quality import validate_frame

TS = datetime(2026, 11, 2, tzinfo=UTC)


def _feedback(**over) -> pa.Table:
    cols = {
        "agent_id": ["a", "a"],
        "feedback_id": ["f1", "f2"],
        "interaction_id": ["i1", "i2"],
        "timestamp": pa.array([TS, TS], pa.timestamp("us", tz="UTC")),
        "source": ["user", "expert"],
        "rating": pa.array([5, None], pa.int8()),
        "thumb": pa.array([None, -1], pa.int8()),
        "pii_residual": pa.array([0, 0], pa.int32()),
    }
    cols.update(over)
    return pa.table(cols)


def test_clean_feedback_passes() -> None:
    report = validate_frame("feedback", _feedback())
    assert report.success and report.failed == [] and report.rows == 2


@pytest.mark.parametrize(
    ("over", "failed"),
    [
        (
            {"feedback_id": ["dup-secret@example.com", "dup-secret@example.com"]},
            "expect_compound_columns_to_be_unique(agent_id,feedback_id)",
        ),
        ({"rating": pa.array([9, None], pa.int8())}, "expect_column_values_to_be_between(rating)"),
        ({"thumb": pa.array([2, None], pa.int8())}, "expect_column_values_to_be_in_set(thumb)"),
        ({"source": ["user", "robot"]}, "expect_column_values_to_be_in_set(source)"),
        (
            {"pii_residual": pa.array([0, 3], pa.int32())},
            "expect_column_values_to_be_between(pii_residual)",
        ),
        (
            {
                "timestamp": pa.array(
                    [TS, datetime(1990, 1, 1, tzinfo=UTC)], pa.timestamp("us", tz="UTC")
                )
            },
            "expect_column_values_to_be_between(timestamp)",
        ),
    ],
)
def test_each_failure_is_named_without_values(over, failed) -> None:
    report = validate_frame("feedback", _feedback(**over))
    assert not report.success
    assert report.failed == [failed]
    assert "secret@example.com" not in repr(report.summary())


def test_unknown_table_is_an_error() -> None:
    with pytest.raises(ValueError, match="no data-quality suite"):
        validate_frame("nonsense", _feedback())
