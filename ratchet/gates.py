"""The promotion gate: a candidate replaces production only when it is provably no worse.

Rules come from ``gates.yaml`` in the config folder (``ratchet/configs``, or
``RATCHET_CONFIG_DIR``), validated into :class:`GatesConfig`. Each rule is reported with its
numbers, pass or fail, so a rejection says *why* in figures an operator can check:

* ``min_cases``: enough paired holdout cases to decide at all.
* ``quality``: for each quality metric, the **lower bound** of the paired interval of
  candidate − baseline is at least ``-(1 - margin) × baseline mean`` (the candidate keeps
  ``margin`` of the baseline's quality with the stated confidence). A noisy small-sample
  mean that happens to be higher does not pass on luck; one that happens to be lower does not
  fail on luck either.
* ``latency`` / ``cost``: candidate ≤ ratio × baseline + an absolute slack; latency compares
  per-case medians (one slow case, a noisy neighbour or a cold cache, is not the model's speed),
  cost compares means (costs add up).
* ``no_regressions``: every golden and regression case the baseline passed still passes.
* ``key_metric_better``: at least one key metric's paired interval lies above zero.
* ``fix_checks``: the cases the candidate was trained to fix, reported and never gated (they
  are in its training data, so they say nothing about generalisation).

The gate judges a :class:`Comparison`: a small typed summary that evaluation results convert
into (:func:`comparison_from_results`), so the rules never depend on how answers were scored.
"""

from __future__ import annotations

import itertools
import logging
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

log = logging.getLogger(__name__)

GATES_FILE = "gates.yaml"
GATED_KINDS = ("golden", "regression")


class GateConfigError(ValueError):
    """``gates.yaml`` is missing or invalid; the message names the key and the file."""


class GatesConfig(BaseModel):
    """The promotion gate's rules and the rollout's steps (``gates.yaml``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    quality_metrics: list[str] = Field(
        default_factory=lambda: ["token_f1"],
        min_length=1,
        description="Holdout quality metrics; each must keep quality_margin of the baseline, "
        "judged on the lower bound of the paired interval of candidate - baseline.",
    )
    quality_margin: float = Field(
        0.95,
        gt=0.0,
        le=1.0,
        description="Share of the baseline's quality the candidate must keep (0.95: at most 5% "
        "worse), judged on the paired interval, not the mean.",
    )
    key_metrics: list[str] = Field(
        default_factory=lambda: ["pass_rate", "token_f1", "normalised_match", "exact_match"],
        min_length=1,
        description="At least one must be better: its paired interval lies above "
        "0 (pass_rate: the share of holdout cases that pass).",
    )
    pass_metric: str = Field(
        "token_f1",
        description="The per-case score that says whether a case passes when the "
        "results carry no verdict of their own (the evaluation's 'passed' wins).",
    )
    pass_threshold: float = Field(
        0.8, ge=0.0, le=1.0, description="A case passes when pass_metric reaches this value."
    )
    max_new_failures: int = Field(
        0,
        ge=0,
        description="Golden/regression holdout cases the baseline passed that the "
        "candidate may fail (0: every one must still pass).",
    )
    latency_max_ratio: float = Field(
        1.10, ge=1.0, description="Candidate median latency at most this times the baseline's."
    )
    latency_slack_ms: float = Field(
        50.0,
        ge=0.0,
        description="Absolute allowance added to the latency limit, so a "
        "sub-millisecond baseline (the logs model) does not fail a candidate on noise.",
    )
    cost_max_ratio: float = Field(
        1.20, ge=1.0, description="Candidate mean cost per case at most this times the baseline's."
    )
    cost_slack_usd: float = Field(
        0.0, ge=0.0, description="Absolute allowance (USD per case) added to the cost limit."
    )
    min_cases: int = Field(
        20, ge=1, description="Paired holdout cases needed to decide; fewer fails the gate."
    )
    confidence: float = Field(
        0.95, gt=0.5, lt=1.0, description="Two-sided level of the paired bootstrap intervals."
    )
    bootstrap_samples: int = Field(
        2000, ge=100, le=100_000, description="Bootstrap resamples per interval."
    )
    seed: int = Field(
        0,
        description="Seed of the bootstrap (the same results give the same "
        "intervals, so a rerun decides the same).",
    )
    rollout_shares: list[float] = Field(
        default_factory=lambda: [0.1, 0.5, 1.0],
        min_length=1,
        description="A candidate's traffic share, step by step (rising, the last one 1.0).",
    )

    @field_validator("rollout_shares")
    @classmethod
    def _rising_to_one(cls, v: list[float]) -> list[float]:
        if any(not 0.0 < s <= 1.0 for s in v):
            raise ValueError("every share must be within (0, 1]")
        if any(b <= a for a, b in itertools.pairwise(v)) or v[-1] != 1.0:
            raise ValueError("shares must rise and end at 1.0")
        return v


def load_gates(config_dir: Path, overrides: Mapping[str, Any] | None = None) -> GatesConfig:
    """``<config_dir>/gates.yaml`` with ``overrides`` over it, validated (errors name the key)."""
    path = config_dir / GATES_FILE
    if not path.is_file():
        raise GateConfigError(f"config folder {config_dir} has no {GATES_FILE}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        raise GateConfigError(f"config file {path} is not valid YAML") from None
    if not isinstance(data, dict):
        raise GateConfigError(f"config file {path} must hold a mapping at the top")
    data.update(overrides or {})
    try:
        return GatesConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}"
            for e in exc.errors(include_input=False, include_url=False)
        )
        raise GateConfigError(f"invalid gates config ({path}): {problems}") from None


# ============================================================================ the comparison ====
@dataclass(frozen=True)
class MetricComparison:
    """One metric on the same cases: both means and the paired difference with its interval."""

    metric: str
    n: int
    baseline_mean: float
    candidate_mean: float
    diff: float  # candidate - baseline
    diff_ci_low: float
    diff_ci_high: float


@dataclass(frozen=True)
class CaseOutcome:
    """Whether each model passed one case (by ``pass_metric`` ≥ ``pass_threshold``)."""

    case_id: str
    kind: str
    baseline_passed: bool
    candidate_passed: bool


@dataclass(frozen=True)
class Comparison:
    """What the gate judges: candidate against baseline on the same holdout cases."""

    candidate_id: str
    baseline_id: str | None
    n_cases: int
    metrics: Mapping[str, MetricComparison]
    cases: Sequence[CaseOutcome]
    baseline_latency_ms: float
    candidate_latency_ms: float
    baseline_cost_usd: float
    candidate_cost_usd: float
    fix_checks: Sequence[CaseOutcome] = ()
    confidence: float = 0.95


def paired_interval(
    candidate: np.ndarray,
    baseline: np.ndarray,
    *,
    confidence: float,
    samples: int,
    rng: np.random.Generator,
) -> tuple[float, float, float]:
    """Mean of candidate − baseline per case and its percentile bootstrap interval.

    Resampling *cases* (the same index for both models) keeps the pairing: the between-case
    spread, which dwarfs the models' difference, cancels out. Identical answers give (0, 0, 0).
    """
    d = np.asarray(candidate, dtype=float) - np.asarray(baseline, dtype=float)
    n = d.size
    if n == 0:
        return 0.0, 0.0, 0.0
    if np.all(d == d[0]):
        return float(d[0]), float(d[0]), float(d[0])
    idx = rng.integers(0, n, size=(samples, n))
    means = d[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(d.mean()), float(low), float(high)


def compare_scores(
    candidate_id: str,
    baseline_id: str | None,
    case_ids: Sequence[str],
    kinds: Sequence[str],
    candidate_scores: Mapping[str, Sequence[float]],
    baseline_scores: Mapping[str, Sequence[float]],
    *,
    config: GatesConfig,
    latency_ms: tuple[float, float] = (0.0, 0.0),
    cost_usd: tuple[float, float] = (0.0, 0.0),
    fix_checks: Sequence[CaseOutcome] = (),
    passed: tuple[Sequence[bool], Sequence[bool]] | None = None,
) -> Comparison:
    """A :class:`Comparison` from per-case scores aligned on ``case_ids`` (the holdout cases).

    ``latency_ms`` (medians) and ``cost_usd`` (means) are (baseline, candidate). ``passed`` is the
    (baseline, candidate) per-case verdict when the evaluation gives one; otherwise a case
    passes when ``pass_metric`` reaches ``pass_threshold``. Metrics present for one model only
    are left out (the gate then names them as missing).
    """
    rng = np.random.default_rng(config.seed)
    metrics: dict[str, MetricComparison] = {}
    for name in sorted(set(candidate_scores) & set(baseline_scores)):
        c = np.asarray(candidate_scores[name], dtype=float)
        b = np.asarray(baseline_scores[name], dtype=float)
        if c.size != len(case_ids) or b.size != len(case_ids):
            raise ValueError(f"metric {name}: scores must align with the {len(case_ids)} cases")
        diff, low, high = paired_interval(
            c, b, confidence=config.confidence, samples=config.bootstrap_samples, rng=rng
        )
        metrics[name] = MetricComparison(
            name,
            int(c.size),
            float(b.mean()) if b.size else 0.0,
            float(c.mean()) if c.size else 0.0,
            diff,
            low,
            high,
        )
    cases: list[CaseOutcome] = []
    if passed is not None:
        cases = [
            CaseOutcome(cid, kind, bool(b), bool(c))
            for cid, kind, b, c in zip(case_ids, kinds, passed[0], passed[1], strict=True)
        ]
    elif config.pass_metric in candidate_scores and config.pass_metric in baseline_scores:
        thr = config.pass_threshold
        cases = [
            CaseOutcome(cid, kind, float(b) >= thr, float(c) >= thr)
            for cid, kind, c, b in zip(
                case_ids,
                kinds,
                candidate_scores[config.pass_metric],
                baseline_scores[config.pass_metric],
                strict=True,
            )
        ]
    return Comparison(
        candidate_id=candidate_id,
        baseline_id=baseline_id,
        n_cases=len(case_ids),
        metrics=metrics,
        cases=cases,
        baseline_latency_ms=latency_ms[0],
        candidate_latency_ms=latency_ms[1],
        baseline_cost_usd=cost_usd[0],
        candidate_cost_usd=cost_usd[1],
        fix_checks=tuple(fix_checks),
        confidence=config.confidence,
    )


def comparison_from_results(
    candidate_rows: Sequence[Mapping[str, Any]],
    baseline_rows: Sequence[Mapping[str, Any]],
    *,
    config: GatesConfig,
    candidate_id: str,
    baseline_id: str | None,
) -> Comparison:
    """The gate's input from two eval runs' per-case results (``evals/<run>/results.parquet``).

    Holdout cases both runs answered are paired by ``case_id``; fix checks (``fix_check``) are
    kept apart; train-split cases that are not fix checks are left out. A case the candidate
    failed to answer (``source == "error"``) scores 0 on every metric the baseline has and does
    not pass: an error is never dropped in the candidate's favour. ``pass_rate`` (the
    evaluation's own per-case verdict, ``passed``) joins the scorers' metrics.
    """
    base = {r["case_id"]: r for r in baseline_rows}
    holdout: list[tuple[Mapping[str, Any], Mapping[str, Any]]] = []
    fix: list[CaseOutcome] = []
    for row in candidate_rows:
        other = base.get(row["case_id"])
        if other is None:
            continue
        if row.get("fix_check"):
            fix.append(
                CaseOutcome(
                    str(row["case_id"]),
                    str(row.get("kind") or ""),
                    _passed(other, config),
                    _passed(row, config),
                )
            )
        elif row.get("split") == "holdout":
            holdout.append((row, other))
    names = sorted({k for _, b in holdout for k in dict(b.get("scores") or {})})
    cand_scores: dict[str, list[float]] = {}
    base_scores: dict[str, list[float]] = {}
    for name in names:
        pairs = [(_score(c, name), _score(b, name)) for c, b in holdout]
        if all(cv is not None and bv is not None for cv, bv in pairs):
            cand_scores[name] = [float(cv) for cv, _ in pairs]  # type: ignore[arg-type]
            base_scores[name] = [float(bv) for _, bv in pairs]  # type: ignore[arg-type]
        else:  # a scorer that abstains on some cases (tool calls): judged where both scored
            log.debug("metric %s is not scored on every holdout case; left out", name)
    verdicts = ([_passed(b, config) for _, b in holdout], [_passed(c, config) for c, _ in holdout])
    cand_scores["pass_rate"] = [float(v) for v in verdicts[1]]
    base_scores["pass_rate"] = [float(v) for v in verdicts[0]]

    def mean(rows: Sequence[Mapping[str, Any]], col: str) -> float:
        vals = [float(r[col]) for r in rows if r.get(col) is not None]
        return sum(vals) / len(vals) if vals else 0.0

    def median(rows: Sequence[Mapping[str, Any]], col: str) -> float:
        vals = [float(r[col]) for r in rows if r.get(col) is not None]
        return float(statistics.median(vals)) if vals else 0.0

    cands, bases = [c for c, _ in holdout], [b for _, b in holdout]
    return compare_scores(
        candidate_id,
        baseline_id,
        [str(c["case_id"]) for c in cands],
        [str(c.get("kind") or "") for c in cands],
        cand_scores,
        base_scores,
        config=config,
        latency_ms=(median(bases, "latency_ms"), median(cands, "latency_ms")),
        cost_usd=(mean(bases, "cost_usd"), mean(cands, "cost_usd")),
        fix_checks=fix,
        passed=verdicts,
    )


def _score(row: Mapping[str, Any], name: str) -> float | None:
    if row.get("source") == "error":
        return 0.0
    value = dict(row.get("scores") or {}).get(name)
    return None if value is None else float(value)


def _passed(row: Mapping[str, Any], config: GatesConfig) -> bool:
    if row.get("source") == "error":
        return False
    if row.get("passed") is not None:
        return bool(row["passed"])
    value = _score(row, config.pass_metric)
    return value is not None and value >= config.pass_threshold


# ============================================================================ the rules =========
@dataclass(frozen=True)
class RuleResult:
    """One rule's verdict with the numbers it was judged on; ``gated=False``: reported only."""

    rule: str
    passed: bool
    detail: str
    numbers: Mapping[str, Any] = field(default_factory=dict)
    gated: bool = True


@dataclass(frozen=True)
class GateReport:
    """Every rule's result; ``passed`` when every gated rule passed."""

    candidate_id: str
    baseline_id: str | None
    rules: Sequence[RuleResult]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rules if r.gated)

    @property
    def reasons(self) -> list[str]:
        """The failed gated rules, one line each (the rejection's reasons)."""
        return [f"{r.rule}: {r.detail}" for r in self.rules if r.gated and not r.passed]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: what the audit record and ``--json`` keep."""
        return {
            "candidate": self.candidate_id,
            "baseline": self.baseline_id,
            "passed": self.passed,
            "reasons": self.reasons,
            "rules": [asdict(r) | {"numbers": dict(r.numbers)} for r in self.rules],
        }


def _r(x: float) -> float:
    return round(float(x), 6)


def _min_cases(c: Comparison, cfg: GatesConfig) -> RuleResult:
    ok = c.n_cases >= cfg.min_cases
    return RuleResult(
        "min_cases",
        ok,
        f"{c.n_cases} paired holdout cases (need {cfg.min_cases})",
        {"n_cases": c.n_cases, "min_cases": cfg.min_cases},
    )


def _quality(c: Comparison, cfg: GatesConfig) -> list[RuleResult]:
    out = []
    for name in cfg.quality_metrics:
        m = c.metrics.get(name)
        if m is None:
            out.append(
                RuleResult(
                    f"quality:{name}",
                    False,
                    f"metric {name} is not in the results",
                    {"metric": name},
                )
            )
            continue
        floor = -(1.0 - cfg.quality_margin) * m.baseline_mean
        ok = m.diff_ci_low >= floor - 1e-12
        out.append(
            RuleResult(
                f"quality:{name}",
                ok,
                f"paired difference {m.diff:+.4f} [{m.diff_ci_low:+.4f}, {m.diff_ci_high:+.4f}] "
                f"(baseline {m.baseline_mean:.4f}, candidate {m.candidate_mean:.4f}); lower bound "
                f"must be >= {floor:+.4f} ({cfg.quality_margin:.0%} of the baseline)",
                {
                    "metric": name,
                    "n": m.n,
                    "baseline_mean": _r(m.baseline_mean),
                    "candidate_mean": _r(m.candidate_mean),
                    "diff": _r(m.diff),
                    "ci_low": _r(m.diff_ci_low),
                    "ci_high": _r(m.diff_ci_high),
                    "floor": _r(floor),
                    "margin": cfg.quality_margin,
                    "confidence": c.confidence,
                },
            )
        )
    return out


def _budget(
    rule: str, unit: str, base: float, cand: float, ratio: float, slack: float
) -> RuleResult:
    limit = base * ratio + slack
    ok = cand <= limit + 1e-12
    return RuleResult(
        rule,
        ok,
        f"candidate {cand:.4f} {unit} vs limit {limit:.4f} (baseline {base:.4f} x "
        f"{ratio:.2f} + {slack:g})",
        {
            "baseline": _r(base),
            "candidate": _r(cand),
            "limit": _r(limit),
            "max_ratio": ratio,
            "slack": slack,
            "ratio": _r(cand / base) if base > 0 else None,
        },
    )


def _no_regressions(c: Comparison, cfg: GatesConfig) -> RuleResult:
    gated = [k for k in c.cases if k.kind in GATED_KINDS]
    if not gated:
        return RuleResult(
            "no_regressions",
            False,
            f"no golden or regression case has a {cfg.pass_metric} score for both models",
            {"checked": 0},
        )
    kept = [k for k in gated if k.baseline_passed]
    lost = sorted(k.case_id for k in kept if not k.candidate_passed)
    fixed = sum(1 for k in gated if not k.baseline_passed and k.candidate_passed)
    ok = len(lost) <= cfg.max_new_failures
    return RuleResult(
        "no_regressions",
        ok,
        f"{len(lost)} of {len(kept)} cases the baseline passed now fail (allowed "
        f"{cfg.max_new_failures}); {fixed} newly pass",
        {
            "baseline_passed": len(kept),
            "now_failing": len(lost),
            "newly_passing": fixed,
            "allowed": cfg.max_new_failures,
            "failing_cases": lost[:20],
            "by_kind": {
                kind: sum(1 for k in kept if k.kind == kind and not k.candidate_passed)
                for kind in GATED_KINDS
            },
        },
    )


def _key_better(c: Comparison, cfg: GatesConfig) -> RuleResult:
    better = [
        m
        for name in cfg.key_metrics
        if (m := c.metrics.get(name)) is not None and m.diff_ci_low > 0
    ]
    seen = {
        name: {"diff": _r(m.diff), "ci_low": _r(m.diff_ci_low), "ci_high": _r(m.diff_ci_high)}
        for name in cfg.key_metrics
        if (m := c.metrics.get(name)) is not None
    }
    detail = (
        ", ".join(
            f"{m.metric} {m.diff:+.4f} [{m.diff_ci_low:+.4f}, {m.diff_ci_high:+.4f}]"
            for m in better
        )
        if better
        else "no key metric's paired interval lies above 0 ("
        + ", ".join(f"{k} [{v['ci_low']:+.4f}, {v['ci_high']:+.4f}]" for k, v in seen.items())
        + ")"
    )
    return RuleResult(
        "key_metric_better",
        bool(better),
        detail,
        {"better": [m.metric for m in better], "metrics": seen},
    )


def _fix_checks(c: Comparison) -> RuleResult:
    n = len(c.fix_checks)
    fixed = sum(1 for k in c.fix_checks if k.candidate_passed)
    before = sum(1 for k in c.fix_checks if k.baseline_passed)
    return RuleResult(
        "fix_checks",
        True,
        f"{fixed} of {n} fix checks pass (baseline: {before}); reported, not gated",
        {"cases": n, "candidate_passed": fixed, "baseline_passed": before},
        gated=False,
    )


def evaluate_gate(comparison: Comparison, config: GatesConfig) -> GateReport:
    """Judge every rule; the report keeps the numbers each verdict rests on."""
    c = comparison
    rules = [
        _min_cases(c, config),
        *_quality(c, config),
        _budget(
            "latency",
            "ms",
            c.baseline_latency_ms,
            c.candidate_latency_ms,
            config.latency_max_ratio,
            config.latency_slack_ms,
        ),
        _budget(
            "cost",
            "USD/case",
            c.baseline_cost_usd,
            c.candidate_cost_usd,
            config.cost_max_ratio,
            config.cost_slack_usd,
        ),
        _no_regressions(c, config),
        _key_better(c, config),
        _fix_checks(c),
    ]
    report = GateReport(c.candidate_id, c.baseline_id, rules)
    log.info(
        "gate for %s vs %s: %s",
        c.candidate_id,
        c.baseline_id,
        "pass"
        if report.passed
        else "fail (" + "; ".join(r.rule for r in rules if r.gated and not r.passed) + ")",
    )
    return report
