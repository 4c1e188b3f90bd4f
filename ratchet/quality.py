"""Data-quality suites: Great Expectations, one builder per table, one runner.

Suites are code (reviewed with the schemas they guard), run on an ephemeral context: no files,
no network. Results are reduced to what may be shown anywhere: the suite, which expectations
failed on which column, and counts. GX's own result objects carry offending values
(``partial_unexpected_list``), so they never leave this module, and the runner asks for
``BOOLEAN_ONLY`` results in the first place.

The residual-PII check is a plain expectation on an integer column (``pii_residual`` must be 0):
the redaction code counts hits per row with its full detector set, checksums included, which GX
regexes could not do and would do ~3× slower (ENVIRONMENT.md).

That check is zero by construction, so an independent second opinion
(:mod:`ratchet.second_opinion`: Presidio over a sample of each written table) is judged here
too, by :func:`second_opinion_report`: above ``quality.second_opinion_max_hit_rate`` of sampled
rows with a hit, the table's ``<table>_second_opinion`` suite fails, naming each entity type and
its count (never a value). It is plain arithmetic over counts, so it needs no GX.

GX takes ~5 s to import, so it is imported inside :func:`validate_frame`, never at module top.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from ratchet.config import QualityConfig
from ratchet.schemas import FEEDBACK_SOURCES, QUARANTINE_REASONS
from ratchet.second_opinion import SecondOpinionResult


class DataQualityError(RuntimeError):
    """A suite failed; carries the value-free report so a flow can publish it."""

    def __init__(self, message: str, report: QualityReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class QualityReport:
    suite: str
    success: bool
    rows: int
    evaluated: int
    failed: list[str] = field(default_factory=list)  # "expectation(column)"

    def summary(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "success": self.success,
            "rows": self.rows,
            "expectations": self.evaluated,
            "failed": list(self.failed),
        }


# Expectations are described as (type name, kwargs) and built inside validate_frame, so this
# module imports without GX.
Spec = tuple[str, dict[str, Any]]
_EARLIEST = datetime(2015, 1, 1, tzinfo=UTC)
_LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def _not_null(*columns: str) -> list[Spec]:
    return [("ExpectColumnValuesToNotBeNull", {"column": c}) for c in columns]


def _zero_residual() -> Spec:
    return (
        "ExpectColumnValuesToBeBetween",
        {"column": "pii_residual", "min_value": 0, "max_value": 0},
    )


def _in_set(column: str, values: list[Any], mostly: float = 1.0) -> Spec:
    return (
        "ExpectColumnValuesToBeInSet",
        {"column": column, "value_set": values, "mostly": mostly},
    )


def _unique(*columns: str) -> Spec:
    if len(columns) == 1:
        return ("ExpectColumnValuesToBeUnique", {"column": columns[0]})
    return ("ExpectCompoundColumnsToBeUnique", {"column_list": list(columns)})


def _ts_range(column: str) -> Spec:
    return (
        "ExpectColumnValuesToBeBetween",
        {"column": column, "min_value": _EARLIEST, "max_value": _LATEST},
    )


SUITES: dict[str, Callable[[], list[Spec]]] = {
    "interactions": lambda: [
        *_not_null("agent_id", "interaction_id", "timestamp", "response_length"),
        _unique("agent_id", "interaction_id"),
        _ts_range("timestamp"),
        _zero_residual(),
    ],
    "feedback": lambda: [
        *_not_null("agent_id", "feedback_id", "interaction_id", "timestamp", "source"),
        _unique("agent_id", "feedback_id"),
        ("ExpectColumnValuesToBeBetween", {"column": "rating", "min_value": 1, "max_value": 5}),
        _in_set("thumb", [-1, 1]),
        _in_set("source", list(FEEDBACK_SOURCES)),
        _ts_range("timestamp"),
        _zero_residual(),
    ],
    "quarantine": lambda: [
        *_not_null("source_line", "reason", "redaction_version"),
        _in_set("reason", list(QUARANTINE_REASONS)),
    ],
}

_lock = threading.Lock()  # GX contexts are not thread-safe; validation is short


def register_suite(table: str, builder: Callable[[], list[Spec]]) -> None:
    """Add a suite for a table (curation registers its own next to its rules)."""
    SUITES[table] = builder


def _build_definition(table: str, specs: list[Spec]) -> Any:
    """A GX validation definition for a suite, on its own ephemeral context."""
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    asset = ctx.data_sources.add_pandas(f"{table}-source").add_dataframe_asset(table)
    batch = asset.add_batch_definition_whole_dataframe("whole")
    suite = ctx.suites.add(gx.ExpectationSuite(name=f"{table}_suite"))
    for type_name, kwargs in specs:
        suite.add_expectation(getattr(gxe, type_name)(**kwargs))
    return ctx.validation_definitions.add(
        gx.ValidationDefinition(name=f"{table}_validation", data=batch, suite=suite)
    )


_definitions: dict[str, Any] = {}  # built once per suite per process; ingest validates per batch


def validate_frame(table: str, data: pa.Table, extra: list[Spec] | None = None) -> QualityReport:
    """Run the table's suite on the data (only the columns it checks need be present)."""
    import logging
    import os

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations  # noqa: F401  (its import sets its own loggers' levels)

    # GX logs an INFO line per ephemeral context ("Created temporary directory ..."): noise in
    # every flow run; its warnings and errors still show.
    for name in ("great_expectations", "great_expectations.data_context.types.base"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        specs = SUITES[table]() + (extra or [])
    except KeyError:
        raise ValueError(f"no data-quality suite for table {table!r}") from None
    frame = data.to_pandas()
    key = f"{table}:{specs!r}"
    with _lock:
        definition = _definitions.get(key)
        if definition is None:
            definition = _definitions[key] = _build_definition(table, specs)
        result = definition.run(batch_parameters={"dataframe": frame}, result_format="BOOLEAN_ONLY")
    failed = [
        f"{r.expectation_config.type}"
        f"({r.expectation_config.kwargs.get('column') or ','.join(r.expectation_config.kwargs.get('column_list') or [])})"
        for r in result.results
        if not r.success
    ]
    return QualityReport(f"{table}_suite", bool(result.success), len(frame), len(specs), failed)


def second_opinion_report(result: SecondOpinionResult, config: QualityConfig) -> QualityReport:
    """The second opinion's verdict on one table as a suite result (counts only).

    Fails when the share of sampled rows with a hit is above
    ``quality.second_opinion_max_hit_rate``, or when the scan was skipped for a missing package
    and ``quality.second_opinion_required`` is set. A scan switched off by config passes with
    no expectation evaluated.
    """
    suite = f"{result.table}_second_opinion"
    if result.status != "scanned":
        if config.second_opinion_enabled and config.second_opinion_required:
            failed = [f"second_opinion_required({result.reason})"]
            return QualityReport(suite, False, result.rows_total, 1, failed)
        return QualityReport(suite, True, result.rows_total, 0)
    limit = config.second_opinion_max_hit_rate
    if result.hit_rate <= limit:
        return QualityReport(suite, True, result.rows_scanned, 1)
    by_type = ", ".join(f"{k}={v}" for k, v in sorted(result.hits_by_type.items()))
    why = (
        f"second_opinion_hit_rate({result.rows_with_hits} of {result.rows_scanned} sampled rows "
        f"hold PII, {result.hit_rate:.2%} > quality.second_opinion_max_hit_rate {limit:.2%}: "
        f"{by_type})"
    )
    return QualityReport(suite, False, result.rows_scanned, 1, [why])
