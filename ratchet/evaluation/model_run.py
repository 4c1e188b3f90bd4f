"""One model version's eval run: answer (or replay) and score the cases, whole or in batches.

:func:`run_model` does the lot in one call (``runtime.task_runner: threads``: answering is
already concurrent in :func:`~ratchet.evaluation.runner.answer_all`'s pool). On a cluster
(``runtime.task_runner: dask``) the same run is cut into batches of cases, each a task of its
own on any worker: :func:`start_run` records the run, :func:`run_batch` answers and scores one
slice of the cases and writes its rows to ``evals/<eval_run_id>/batches/part-<start>.parquet``
(a reference, not a frame, travels back), and :func:`finish_from_batches` joins the batches in
case order, writes ``results.parquet`` and the metrics, and deletes the batch files. Both ways
give the same rows: a case's answer and scores depend on the case alone (scorers are per case,
the answer cache and the replay key on the case's input hash).

A batch that runs twice (a retried task, a worker that died) writes the same file again and pays
nothing twice: answers are cached per model version and input hash as soon as its batch ends.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa
from sqlalchemy.orm import Session, sessionmaker

from ratchet import schemas
from ratchet.backends import BackendContext, answerer_for
from ratchet.backends.base import ModelSpec
from ratchet.config import PipelineConfig
from ratchet.db import repo
from ratchet.db.evals import MetricValue
from ratchet.evaluation import scorers as sc
from ratchet.evaluation import stats
from ratchet.evaluation.runner import AnswerCache, CallPolicy, answer_all, input_hash
from ratchet.store import Store

logger = logging.getLogger(__name__)


def results_path(eval_run_id: str) -> str:
    return f"evals/{eval_run_id}/results.parquet"


def batch_path(eval_run_id: str, start: int) -> str:
    return f"evals/{eval_run_id}/batches/part-{start:08d}.parquet"


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


def spec_of(version: Any) -> ModelSpec:
    return ModelSpec(
        version.backend, version.model_ref, version.system_prompt, dict(version.parameters or {})
    )


def rows_of(table: pa.Table) -> list[dict[str, Any]]:
    """Result rows as the scorers wrote them (``scores``, ``scorer_versions`` as dicts)."""
    rows = table.to_pylist()
    for row in rows:
        row["scores"] = dict(row["scores"] or {})
        row["scorer_versions"] = dict(row["scorer_versions"] or {})
    return rows


def _prior_results(ctx: EvalContext, model_version_id: str) -> dict[tuple[str, str], dict]:
    """Stored per-case results of the model's completed runs, newest first wins."""
    with ctx.sessions() as s:
        runs = repo.list_eval_runs(s, model_version_id=model_version_id, status="completed")
        paths = [r.results_path for r in runs if r.results_path]
    out: dict[tuple[str, str], dict] = {}
    for path in paths:
        if not ctx.store.exists(path):
            continue
        for row in rows_of(ctx.store.read_table(path, schemas.EVAL_RESULTS)):
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


@dataclass(frozen=True)
class BatchResult:
    """What a batch task hands back: where its rows are, and value-free counts."""

    start: int
    path: str
    counts: dict[str, int]
    cost_usd: float


def start_run(ctx: EvalContext, version: Any, suites: Sequence[str]) -> str:
    """Record a running eval run for ``version``; returns its id."""
    with ctx.sessions() as s, s.begin():
        run = repo.create_eval_run(
            s,
            agent_id=version.agent_id,
            model_version_id=version.id,
            dataset_version_id=suites[0] if suites else None,
            flow_run_id=ctx.flow_run_id,
        )
        return str(run.id)


def fail_run(ctx: EvalContext, run_id: str, error: str) -> None:
    """Mark the run failed; ``error`` is value-free (an exception's type, a batch's name)."""
    with ctx.sessions() as s, s.begin():
        repo.finish_eval_run(s, run_id, status="failed", n_cases=0, error=error[:500])


def run_model(
    ctx: EvalContext,
    version: Any,
    cases: list[dict[str, Any]],
    suites: Sequence[str],
    scorers: Sequence[sc.Scorer],
) -> ModelRun:
    """Answer (or replay) and score every case for one model version; write its results and
    its run with metrics. The eval run is marked failed if anything raises."""
    run_id = start_run(ctx, version, suites)
    try:
        rows, counts, cost = score_cases(ctx, version, run_id, cases, scorers)
        return finish_run(ctx, version.id, run_id, rows, counts, cost)
    except Exception as exc:
        fail_run(ctx, run_id, type(exc).__name__)
        raise


def run_batch(
    ctx: EvalContext,
    version: Any,
    run_id: str,
    cases: list[dict[str, Any]],
    start: int,
    scorers: Sequence[sc.Scorer],
    rate_share: float = 1.0,
) -> BatchResult:
    """Answer and score ``cases`` (the suite's cases from index ``start``) and write their
    rows to the batch's file. ``rate_share``: this batch's part of
    ``evaluation.rate_limit_per_s`` while other batches answer at the same time."""
    rows, counts, cost = score_cases(ctx, version, run_id, cases, scorers, rate_share)
    path = batch_path(run_id, start)
    table = pa.Table.from_pylist(rows, schema=schemas.EVAL_RESULTS)
    ctx.store.write_table_at(path, table, schemas.EVAL_RESULTS)
    return BatchResult(start, path, counts, cost)


def finish_from_batches(
    ctx: EvalContext, model_version_id: str, run_id: str, batches: Sequence[BatchResult]
) -> ModelRun:
    """Join the batches in case order into the run's results; the batch files go after."""
    ordered = sorted(batches, key=lambda b: b.start)
    rows: list[dict[str, Any]] = []
    counts = {"answered": 0, "cached": 0, "replayed": 0, "errors": 0}
    for b in ordered:
        rows.extend(rows_of(ctx.store.read_table(b.path, schemas.EVAL_RESULTS)))
        for key, value in b.counts.items():
            counts[key] += value
    run = finish_run(ctx, model_version_id, run_id, rows, counts, sum(b.cost_usd for b in ordered))
    for b in ordered:
        ctx.store.delete(b.path)
    ctx.store.remove_empty_dir(batch_path(run_id, 0).rsplit("/", 1)[0])
    return run


def score_cases(
    ctx: EvalContext,
    version: Any,
    run_id: str,
    cases: list[dict[str, Any]],
    scorers: Sequence[sc.Scorer],
    rate_share: float = 1.0,
) -> tuple[list[dict[str, Any]], dict[str, int], float]:
    """Rows for ``cases`` (replayed where an earlier run of the model scored the same input
    with the same scorer versions, else answered or cached, then scored), counts and cost."""
    cfg = ctx.config.evaluation
    versions = {s.name: s.version for s in scorers}
    prior = _prior_results(ctx, version.id)
    hashes = [input_hash(c["input"]) for c in cases]
    replay = {
        i: prior[(c["case_id"], h)]
        for i, (c, h) in enumerate(zip(cases, hashes, strict=True))
        if (c["case_id"], h) in prior and prior[(c["case_id"], h)]["scorer_versions"] == versions
    }
    todo = [i for i in range(len(cases)) if i not in replay]
    outcomes: dict[int, Any] = {}
    cost = 0.0
    if todo:
        answerer = ctx.answerers.get(version.id) or answerer_for(
            spec_of(version), ctx.backend_context()
        )
        cache = AnswerCache(ctx.store, version.id)
        kw = {"sleep": ctx.sleep} if ctx.sleep else {}
        policy = CallPolicy.from_config(cfg)
        if policy.rate_limit_per_s and rate_share < 1.0:
            policy = replace(policy, rate_limit_per_s=policy.rate_limit_per_s * rate_share)
        got = answer_all(
            answerer,
            [cases[i]["input"] for i in todo],
            cache=cache,
            policy=policy,
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
            scores = dict(old["scores"])
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
    return rows, counts, cost


def finish_run(
    ctx: EvalContext,
    model_version_id: str,
    run_id: str,
    rows: list[dict[str, Any]],
    counts: dict[str, int],
    cost: float,
) -> ModelRun:
    """Write ``results.parquet`` and the run's metrics (means with bootstrap intervals per
    subset), and mark the run completed."""
    cfg = ctx.config.evaluation
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
    logger.info("eval run %s (%s): %d case(s): %s", run_id, model_version_id, len(rows), counts)
    return ModelRun(model_version_id, run_id, rows, counts, cost)


def _case(row: Mapping[str, Any]) -> sc.Case:
    return sc.Case(
        row["case_id"],
        row["input"],
        row["expected"] or "",
        tuple(row.get("expected_tool_calls") or ()),
    )
