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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy.orm import Session, sessionmaker

from ratchet import schemas
from ratchet.backends import BackendContext, answerer_for
from ratchet.backends.base import ModelSpec
from ratchet.config import PipelineConfig
from ratchet.db import NotFoundError, repo
from ratchet.db.evals import MetricValue
from ratchet.evaluation import scorers as sc
from ratchet.evaluation import stats
from ratchet.evaluation.runner import AnswerCache, CallPolicy, answer_all, input_hash
from ratchet.store import Store

logger = logging.getLogger(__name__)

IMPORTED = "import"  # the ``stats.source`` of an imported suite's dataset version


class EvaluationError(ValueError):
    """An evaluation cannot start (unknown version, no suite, a suite of another agent)."""


def results_path(eval_run_id: str) -> str:
    return f"evals/{eval_run_id}/results.parquet"


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


@dataclass
class EvalContext:
    store: Store
    sessions: sessionmaker[Session]
    config: PipelineConfig
    settings: Any
    redact: Callable[[str], str]
    flow_run_id: str | None = None
    sleep: Callable[[float], None] | None = None
    answerers: dict[str, Any] = field(default_factory=dict)  # model version id -> Answerer

    def backend_context(self) -> BackendContext:
        return BackendContext(self.store, self.settings, self.config)


# --- inputs -------------------------------------------------------------------------------------
def _spec(version: Any) -> ModelSpec:
    return ModelSpec(
        version.backend, version.model_ref, version.system_prompt, dict(version.parameters or {})
    )


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


# --- one model ----------------------------------------------------------------------------------
def _prior_results(ctx: EvalContext, model_version_id: str) -> dict[tuple[str, str], dict]:
    """Stored per-case results of the model's completed runs, newest first wins."""
    with ctx.sessions() as s:
        runs = repo.list_eval_runs(s, model_version_id=model_version_id, status="completed")
        paths = [r.results_path for r in runs if r.results_path]
    out: dict[tuple[str, str], dict] = {}
    for path in paths:
        if not ctx.store.exists(path):
            continue
        for row in ctx.store.read_table(path, schemas.EVAL_RESULTS).to_pylist():
            if row["source"] != "error" and row["input_hash"]:
                out.setdefault((row["case_id"], row["input_hash"]), row)
    return out


def _passed(scores: Mapping[str, float], cfg: Any) -> bool | None:
    value = scores.get(cfg.primary_metric)
    return None if value is None else value >= cfg.pass_threshold[cfg.primary_metric]


@dataclass
class ModelRun:
    """One model's answers on the suite: rows for results.parquet and value-free counts."""

    model_version_id: str
    eval_run_id: str
    rows: list[dict[str, Any]]
    counts: dict[str, int]
    cost_usd: float

    def summary(self) -> dict[str, Any]:
        return {
            "model_version_id": self.model_version_id,
            "eval_run_id": self.eval_run_id,
            "results_path": results_path(self.eval_run_id),
            "cases": len(self.rows),
            "cost_usd": round(self.cost_usd, 6),
            **self.counts,
        }


def run_model(
    ctx: EvalContext,
    version: Any,
    cases: list[dict[str, Any]],
    suites: Sequence[str],
    scorers: Sequence[sc.Scorer],
) -> ModelRun:
    """Answer (or replay) and score every case for one model version; write its results and
    its run with metrics. The eval run is marked failed if anything raises."""
    cfg = ctx.config.evaluation
    with ctx.sessions() as s, s.begin():
        run = repo.create_eval_run(
            s,
            agent_id=version.agent_id,
            model_version_id=version.id,
            dataset_version_id=suites[0] if suites else None,
            flow_run_id=ctx.flow_run_id,
        )
        run_id = run.id
    try:
        return _run_model(ctx, version, run_id, cases, scorers, cfg)
    except Exception as exc:
        with ctx.sessions() as s, s.begin():
            repo.finish_eval_run(
                s, run_id, status="failed", n_cases=0, error=f"{type(exc).__name__}"[:500]
            )
        raise


def _run_model(
    ctx: EvalContext,
    version: Any,
    run_id: str,
    cases: list[dict[str, Any]],
    scorers: Sequence[sc.Scorer],
    cfg: Any,
) -> ModelRun:
    versions = {s.name: s.version for s in scorers}
    prior = _prior_results(ctx, version.id)
    hashes = [input_hash(c["input"]) for c in cases]
    replay = {
        i: prior[(c["case_id"], h)]
        for i, (c, h) in enumerate(zip(cases, hashes, strict=True))
        if (c["case_id"], h) in prior
        and dict(prior[(c["case_id"], h)]["scorer_versions"] or {}) == versions
    }
    todo = [i for i in range(len(cases)) if i not in replay]
    outcomes: dict[int, Any] = {}
    cost = 0.0
    if todo:
        answerer = ctx.answerers.get(version.id) or answerer_for(
            _spec(version), ctx.backend_context()
        )
        cache = AnswerCache(ctx.store, version.id)
        kw = {"sleep": ctx.sleep} if ctx.sleep else {}
        got = answer_all(
            answerer,
            [cases[i]["input"] for i in todo],
            cache=cache,
            policy=CallPolicy.from_config(cfg),
            redact=ctx.redact,
            **kw,
        )
        outcomes = dict(zip(todo, got, strict=True))
        cost = sum(o.answer.cost_usd for o in got if o.source == "answered")
        cache.flush()
    rows, counts = [], {"answered": 0, "cached": 0, "replayed": 0, "errors": 0}
    for i, case in enumerate(cases):
        base = {
            "eval_run_id": run_id,
            "case_id": case["case_id"],
            "model_version_id": version.id,
            "suite": case.get("suite"),
            "kind": case["kind"],
            "split": case["split"],
            "fix_check": case["fix_check"],
            "topic": case.get("topic"),
            "input_hash": hashes[i],
        }
        if i in replay:
            old = replay[i]
            scores = dict(old["scores"] or {})
            row = {
                **base,
                "answer": old["answer"],
                "scores": scores,
                "latency_ms": old["latency_ms"],
                "cost_usd": old["cost_usd"],
                "tool_calls": old["tool_calls"],
                "source": "replayed",
                "error": None,
            }
            counts["replayed"] += 1
        else:
            o = outcomes[i]
            scores = sc.score(scorers, _case(case), o.answer)
            calls = (
                json.dumps([dict(c) for c in o.answer.tool_calls], sort_keys=True)
                if o.answer.tool_calls
                else None
            )
            row = {
                **base,
                "answer": o.answer.text if o.source != "error" else None,
                "scores": scores,
                "latency_ms": o.answer.latency_ms,
                "cost_usd": o.answer.cost_usd,
                "tool_calls": calls,
                "source": o.source,
                "error": o.error,
            }
            counts["errors" if o.source == "error" else o.source] += 1
        row["passed"] = _passed(scores, cfg)
        row["scorer_versions"] = versions
        rows.append(row)
    table = pa.Table.from_pylist(rows, schema=schemas.EVAL_RESULTS)
    ctx.store.write_table_at(results_path(run_id), table, schemas.EVAL_RESULTS)
    metrics = [
        MetricValue(
            m.metric,
            m.interval.value,
            m.interval.n,
            m.interval.ci_low,
            m.interval.ci_high,
            m.subset,
        )
        for m in stats.summarise(
            rows, samples=cfg.bootstrap_samples, confidence=cfg.confidence, seed=cfg.seed
        )
    ]
    with ctx.sessions() as s, s.begin():
        repo.finish_eval_run(
            s,
            run_id,
            n_cases=len(rows),
            cost_usd=cost,
            results_path=results_path(run_id),
            metrics=metrics,
        )
    logger.info("eval run %s (%s): %d case(s): %s", run_id, version.id, len(rows), counts)
    return ModelRun(version.id, run_id, rows, counts, cost)


def _case(row: Mapping[str, Any]) -> sc.Case:
    return sc.Case(
        row["case_id"],
        row["input"],
        row["expected"] or "",
        tuple(row.get("expected_tool_calls") or ()),
    )


def build_run_scorers(ctx: EvalContext) -> tuple[sc.Scorer, ...]:
    """The configured scorers; the LLM judge only when ``evaluation.judge_model`` is set."""
    cfg = ctx.config.evaluation
    judge = None
    if cfg.judge_model:
        with ctx.sessions() as s:
            jv = _version(s, cfg.judge_model, "evaluation.judge_model")
            spec = _spec(jv)
        judge = sc.judge_scorer(answerer_for(spec, ctx.backend_context()), cfg.judge_model)
    return sc.build_scorers(
        embedding=cfg.embedding, refusal_patterns=ctx.config.curation.refusal_patterns, judge=judge
    )


# --- the whole evaluation -----------------------------------------------------------------------
def evaluate(ctx: EvalContext, request: EvalRequest) -> dict[str, Any]:
    """Evaluate a candidate (and its baseline) on the suites; returns a value-free report:
    both runs' summaries, the suites, and the comparison rows (see the module docstring)."""
    cfg = ctx.config.evaluation
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
        cases = load_cases(ctx.store, s, agent, suites).to_pylist()
    if not cases:
        raise EvaluationError("the suites hold no active eval case")
    scorers = build_run_scorers(ctx)
    logger.info(
        "evaluating %s against %s on %d case(s) of %d suite(s)",
        cand.id,
        base.id if base is not None else "no baseline",
        len(cases),
        len(suites),
    )
    cand_run = run_model(ctx, cand, cases, suites, scorers)
    report: dict[str, Any] = {
        "agent": agent,
        "suites": suites,
        "cases": len(cases),
        "scorers": {s.name: s.version for s in scorers},
        "primary_metric": cfg.primary_metric,
        "candidate": cand_run.summary(),
        "baseline": None,
        "comparison": [],
        "comparison_path": None,
    }
    if base is None:
        return report
    base_run = run_model(ctx, base, cases, suites, scorers)
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
        "candidate": cand.id,
        "baseline": base.id,
        "suites": suites,
        "rows": [c.as_dict() for c in comparison],
    }
    path = comparison_path(cand_run.eval_run_id)
    ctx.store.write_bytes(path, json.dumps(doc, indent=1, sort_keys=True).encode())
    report.update(baseline=base_run.summary(), comparison=doc["rows"], comparison_path=path)
    return report


def read_results(store: Store, path: str) -> list[dict[str, Any]]:
    """A run's per-case results (for the gate), ``scores`` and ``scorer_versions`` as dicts."""
    rows = store.read_table(path, schemas.EVAL_RESULTS).to_pylist()
    for row in rows:
        row["scores"] = dict(row["scores"] or {})
        row["scorer_versions"] = dict(row["scorer_versions"] or {})
    return rows
