"""One evaluation: a candidate (and a baseline) answer the eval suites; scores, intervals and the
paired comparison are stored. No Prefect here (tasks/evaluate.py wraps :func:`evaluate`).

What it writes, for the gate (issue 11) to read:

* per model, one ``eval_runs`` row (``dataset_version_id``: the first suite) with its cost (what
  this run *paid*: cached and replayed answers cost nothing now) and ``results_path``
  ``evals/<eval_run_id>/results.parquet`` (``schemas.EVAL_RESULTS``, one row per case);
* ``eval_metrics`` per run: for every subset (``holdout``, ``fix_check``, ``holdout/kind=...``,
  ``holdout/topic=...``; see :mod:`ratchet.evaluation.stats`) and metric (each scorer's name,
  ``pass_rate``, ``latency_ms``, ``cost_usd``), the mean with its bootstrap interval;
* on the candidate's run, the paired differences against the baseline as metrics named
  ``delta:<metric>`` (value = mean of candidate − baseline, with its interval), and
  ``evals/<candidate_eval_run_id>/comparison.json`` (both run ids, every comparison row).

**Candidate-only replay**: a model version's stored per-case results of an earlier completed
run are reused (no answer, no scoring) where the case's input hash and every scorer's version
match; so once the baseline has been evaluated, only the candidate runs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy.orm import Session

from ratchet import schemas
from ratchet.backends import answerer_for
from ratchet.db import NotFoundError, repo
from ratchet.db.evals import MetricValue
from ratchet.evaluation import scorers as sc
from ratchet.evaluation import stats
from ratchet.evaluation.model_run import (
    EvalContext,
    ModelRun,
    results_path,
    rows_of,
    run_model,
    spec_of,
)
from ratchet.store import Store

__all__ = [
    "EvalContext",
    "EvalPlan",
    "EvalRequest",
    "EvaluationError",
    "compare_runs",
    "comparison_path",
    "evaluate",
    "plan_evaluation",
    "read_results",
    "results_path",
]

logger = logging.getLogger(__name__)

IMPORTED = "import"  # the ``stats.source`` of an imported suite's dataset version


class EvaluationError(ValueError):
    """An evaluation cannot start (unknown version, no suite, a suite of another agent)."""


def comparison_path(eval_run_id: str) -> str:
    return f"evals/{eval_run_id}/comparison.json"


@dataclass(frozen=True)
class EvalRequest:
    """What to evaluate. ``baseline``: ``production`` (the agent's, if any), a model version id,
    or ``None`` (the candidate alone). ``suites``: eval_cases dataset version ids; empty means
    the agent's latest curated eval_cases version."""

    candidate: str
    baseline: str | None = "production"
    suites: tuple[str, ...] = ()


# --- inputs -------------------------------------------------------------------------------------
def _version(session: Session, version_id: str, what: str) -> Any:
    try:
        return repo.get_model_version(session, version_id)
    except NotFoundError:
        raise EvaluationError(f"{what}: no model version {version_id!r}") from None


def default_suite(session: Session, agent_id: str) -> str | None:
    """The agent's newest curated (not imported) eval_cases version."""
    for v in repo.list_dataset_versions(session, agent_id=agent_id, kind="eval_cases"):
        if (v.stats or {}).get("source") != IMPORTED:
            return str(v.id)
    return None


def load_cases(store: Store, session: Session, agent_id: str, suites: Sequence[str]) -> pa.Table:
    """The active cases of the suites (a case in two suites counts once, the first), with a
    ``suite`` column."""
    tables = []
    for suite in suites:
        try:
            version = repo.get_dataset_version(session, suite)
        except NotFoundError:
            raise EvaluationError(f"--suite: no dataset version {suite!r}") from None
        if version.kind != "eval_cases" or version.agent_id != agent_id:
            raise EvaluationError(
                f"--suite {suite!r} is {version.kind} of agent {version.agent_id!r}, not "
                f"eval_cases of {agent_id!r}"
            )
        t = store.read_table(version.path, schemas.EVAL_CASES)
        t = t.filter(pc.equal(t["status"], "active"))
        tables.append(t.append_column("suite", pa.array([suite] * t.num_rows, pa.string())))
    rows, seen = [], set()
    for t in tables:
        for r in t.to_pylist():
            if r["case_id"] not in seen:
                seen.add(r["case_id"])
                rows.append(r)
    return pa.Table.from_pylist(rows) if rows else pa.table({"case_id": pa.array([], pa.string())})


# --- scorers ------------------------------------------------------------------------------------
def build_run_scorers(ctx: EvalContext) -> tuple[sc.Scorer, ...]:
    """The configured scorers; the LLM judge only when ``evaluation.judge_model`` is set."""
    cfg = ctx.config.evaluation
    judge = None
    if cfg.judge_model:
        with ctx.sessions() as s:
            jv = _version(s, cfg.judge_model, "evaluation.judge_model")
            spec = spec_of(jv)
        judge = sc.judge_scorer(answerer_for(spec, ctx.backend_context()), cfg.judge_model)
    return sc.build_scorers(
        embedding=cfg.embedding, refusal_patterns=ctx.config.curation.refusal_patterns, judge=judge
    )


# --- the whole evaluation -----------------------------------------------------------------------
@dataclass(frozen=True)
class EvalPlan:
    """What an evaluation will run, by reference (ids, not frames): a task on another machine
    rebuilds the cases from the suites (:func:`plan_cases`)."""

    agent: str
    candidate: str
    baseline: str | None
    suites: tuple[str, ...]
    cases: int


def plan_evaluation(ctx: EvalContext, request: EvalRequest) -> EvalPlan:
    """Resolve the request: the candidate, its baseline (``production``: the agent's, none when
    it is the candidate itself), the suites (default: the agent's latest curated) and how many
    active cases they hold. Raises :class:`EvaluationError` when it cannot start."""
    with ctx.sessions() as s:
        cand = _version(s, request.candidate, "--candidate")
        agent = cand.agent_id
        base = None
        if request.baseline == "production":
            base = repo.production_version(s, agent)
        elif request.baseline:
            base = _version(s, request.baseline, "--baseline")
            if base.agent_id != agent:
                raise EvaluationError("--baseline is a model version of another agent")
        if base is not None and base.id == cand.id:
            base = None
        suites = list(dict.fromkeys(request.suites))
        if not suites:
            default = default_suite(s, agent)
            if default is None:
                raise EvaluationError(
                    f"agent {agent!r} has no eval_cases dataset version (run curate, or "
                    "pass --suite)"
                )
            suites = [default]
        n = load_cases(ctx.store, s, agent, suites).num_rows
    if not n:
        raise EvaluationError("the suites hold no active eval case")
    return EvalPlan(agent, cand.id, base.id if base is not None else None, tuple(suites), n)


def plan_cases(ctx: EvalContext, plan: EvalPlan) -> list[dict[str, Any]]:
    """The plan's cases, in the same order on every machine."""
    with ctx.sessions() as s:
        return load_cases(ctx.store, s, plan.agent, plan.suites).to_pylist()


def model_version(ctx: EvalContext, version_id: str) -> Any:
    with ctx.sessions() as s:
        return _version(s, version_id, "model version")


def evaluate(ctx: EvalContext, request: EvalRequest) -> dict[str, Any]:
    """Evaluate a candidate (and its baseline) on the suites; returns a value-free report:
    both runs' summaries, the suites, and the comparison rows (see the module docstring)."""
    plan = plan_evaluation(ctx, request)
    cases = plan_cases(ctx, plan)
    scorers = build_run_scorers(ctx)
    logger.info(
        "evaluating %s against %s on %d case(s) of %d suite(s)",
        plan.candidate,
        plan.baseline or "no baseline",
        len(cases),
        len(plan.suites),
    )
    cand_run = run_model(ctx, model_version(ctx, plan.candidate), cases, plan.suites, scorers)
    base_run = None
    if plan.baseline is not None:
        base = model_version(ctx, plan.baseline)
        base_run = run_model(ctx, base, cases, plan.suites, scorers)
    return compare_runs(ctx, plan, {s.name: s.version for s in scorers}, cand_run, base_run)


def compare_runs(
    ctx: EvalContext,
    plan: EvalPlan,
    scorers: dict[str, str],
    cand_run: ModelRun,
    base_run: ModelRun | None,
) -> dict[str, Any]:
    """The report, and with a baseline the paired comparison: ``delta:<metric>`` metrics on the
    candidate's run and ``comparison.json``."""
    cfg = ctx.config.evaluation
    report: dict[str, Any] = {
        "agent": plan.agent,
        "suites": list(plan.suites),
        "cases": plan.cases,
        "scorers": scorers,
        "primary_metric": cfg.primary_metric,
        "candidate": cand_run.summary(),
        "baseline": None,
        "comparison": [],
        "comparison_path": None,
    }
    if base_run is None:
        return report
    comparison = stats.compare(
        cand_run.rows,
        base_run.rows,
        samples=cfg.bootstrap_samples,
        confidence=cfg.confidence,
        seed=cfg.seed,
    )
    deltas = [
        MetricValue(
            f"delta:{c.metric}",
            c.difference.value,
            c.n,
            c.difference.ci_low,
            c.difference.ci_high,
            c.subset,
        )
        for c in comparison
    ]
    with ctx.sessions() as s, s.begin():
        repo.add_eval_metrics(s, cand_run.eval_run_id, deltas)
    doc = {
        "candidate_eval_run_id": cand_run.eval_run_id,
        "baseline_eval_run_id": base_run.eval_run_id,
        "candidate": plan.candidate,
        "baseline": plan.baseline,
        "suites": list(plan.suites),
        "rows": [c.as_dict() for c in comparison],
    }
    path = comparison_path(cand_run.eval_run_id)
    ctx.store.write_bytes(path, json.dumps(doc, indent=1, sort_keys=True).encode())
    report.update(baseline=base_run.summary(), comparison=doc["rows"], comparison_path=path)
    return report


def read_results(store: Store, path: str) -> list[dict[str, Any]]:
    """A run's per-case results (for the gate), ``scores`` and ``scorer_versions`` as dicts."""
    return rows_of(store.read_table(path, schemas.EVAL_RESULTS))
