"""Means with bootstrap confidence intervals, paired differences, and the slices they are
reported on.

Why paired: candidate and baseline answer the *same* cases, so the difference per case removes
the between-case spread that dominates two independent intervals; the gate decides on the
interval of the mean paired difference (candidate − baseline), never on two means.

Slices (the ``subset`` of an ``eval_metrics`` row): ``holdout`` (generalisation: holdout cases,
fix checks excluded), ``fix_check`` (train-split regression cases, reported apart and never
counted as generalisation), and per slice of the holdout: ``holdout/kind=<golden|regression>``,
``holdout/topic=<topic>`` (cut to 64 characters), so a regression hidden in one slice shows.
Intervals are percentile bootstrap intervals, seeded, so a rerun gives the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

SUBSET_CHARS = 64


@dataclass(frozen=True)
class Interval:
    """A mean and its confidence interval over ``n`` values."""

    value: float
    ci_low: float
    ci_high: float
    n: int

    def covers(self, x: float) -> bool:
        return self.ci_low <= x <= self.ci_high


def _rng(seed: int, key: str) -> np.random.Generator:
    # one stream per (seed, metric, subset): adding a metric does not move another's interval
    salt = int.from_bytes(key.encode()[:16].ljust(16, b"\0"), "little")
    return np.random.default_rng([seed, salt % (2**63)])


def bootstrap_mean(
    values: Sequence[float],
    *,
    samples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    key: str = "",
) -> Interval:
    """The mean of ``values`` with a percentile bootstrap interval; one value gives a point."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("bootstrap_mean needs at least one value")
    mean = float(x.mean())
    if x.size == 1 or np.all(x == x[0]):
        return Interval(mean, mean, mean, int(x.size))
    idx = _rng(seed, key).integers(0, x.size, size=(samples, x.size))
    means = x[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return Interval(mean, float(min(low, mean)), float(max(high, mean)), int(x.size))


def paired_difference(candidate: Sequence[float], baseline: Sequence[float], **kw: Any) -> Interval:
    """Mean of ``candidate[i] - baseline[i]`` (the same cases, in the same order) with its
    bootstrap interval."""
    if len(candidate) != len(baseline):
        raise ValueError("paired_difference needs the same cases on both sides")
    c, b = np.asarray(candidate, dtype=float), np.asarray(baseline, dtype=float)
    return bootstrap_mean(list(c - b), **kw)


# --- slices -------------------------------------------------------------------------------------
def subsets_of(row: Mapping[str, Any]) -> list[str]:
    """The subsets a per-case result row counts in (see the module docstring)."""
    if row.get("fix_check"):
        return ["fix_check"]
    if row.get("split") != "holdout":
        return ["train"]
    out = ["holdout"]
    if row.get("kind"):
        out.append(f"holdout/kind={row['kind']}"[:SUBSET_CHARS])
    if row.get("topic"):
        out.append(f"holdout/topic={row['topic']}"[:SUBSET_CHARS])
    return out


def _metric_values(row: Mapping[str, Any]) -> dict[str, float]:
    scores = dict(row.get("scores") or {})
    out = {k: float(v) for k, v in scores.items() if v is not None}
    out["pass_rate"] = float(bool(row.get("passed")))
    if row.get("latency_ms") is not None:
        out["latency_ms"] = float(row["latency_ms"])
    if row.get("cost_usd") is not None:
        out["cost_usd"] = float(row["cost_usd"])
    return out


@dataclass(frozen=True)
class MetricSummary:
    subset: str
    metric: str
    interval: Interval


def summarise(
    rows: Iterable[Mapping[str, Any]],
    *,
    samples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[MetricSummary]:
    """Per subset and metric: the mean with its interval over the rows that have the metric."""
    groups: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        values = _metric_values(row)
        for subset in subsets_of(row):
            for metric, v in values.items():
                groups.setdefault((subset, metric), []).append(v)
    return [
        MetricSummary(
            subset,
            metric,
            bootstrap_mean(
                vs, samples=samples, confidence=confidence, seed=seed, key=f"{subset}|{metric}"
            ),
        )
        for (subset, metric), vs in sorted(groups.items())
    ]


@dataclass(frozen=True)
class Comparison:
    """One row of the comparison table: baseline and candidate on the same cases."""

    subset: str
    metric: str
    n: int
    baseline: Interval
    candidate: Interval
    difference: Interval  # candidate - baseline, paired

    def as_dict(self) -> dict[str, Any]:
        return {
            "subset": self.subset,
            "metric": self.metric,
            "n": self.n,
            "baseline": asdict(self.baseline),
            "candidate": asdict(self.candidate),
            "difference": asdict(self.difference),
        }


def compare(
    candidate_rows: Iterable[Mapping[str, Any]],
    baseline_rows: Iterable[Mapping[str, Any]],
    *,
    samples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[Comparison]:
    """Paired comparison on the cases both sides answered (by ``case_id``), per subset and per
    metric both sides have on a case; subsets and slices as :func:`subsets_of` (the
    candidate's row decides a case's slices)."""
    base = {r["case_id"]: r for r in baseline_rows}
    pairs: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    for row in candidate_rows:
        other = base.get(row["case_id"])
        if other is None:
            continue
        cv, bv = _metric_values(row), _metric_values(other)
        for subset in subsets_of(row):
            for metric in sorted(set(cv) & set(bv)):
                c, b = pairs.setdefault((subset, metric), ([], []))
                c.append(cv[metric])
                b.append(bv[metric])
    out = []
    for (subset, metric), (c, b) in sorted(pairs.items()):
        kw: dict[str, Any] = {
            "samples": samples,
            "confidence": confidence,
            "seed": seed,
            "key": f"{subset}|{metric}",
        }
        out.append(
            Comparison(
                subset,
                metric,
                len(c),
                baseline=bootstrap_mean(b, **kw),
                candidate=bootstrap_mean(c, **kw),
                difference=paired_difference(c, b, **kw),
            )
        )
    return out
