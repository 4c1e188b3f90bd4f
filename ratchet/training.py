"""The training lifecycle: a dataset version in, a candidate model version out, paid for once.

Steps, each its own function so a flow can make each a task (submit, wait, collect):

1. :func:`plan_training` resolves the dataset version and the base model version, then looks
   for a training run with the same dataset, strategy, backend, base and parameters. A
   ``completed`` one that made a model version is **reused** (nothing is trained); a ``pending``
   or ``in_progress`` one is **resumed** (a killed flow started again polls the job it already
   started); otherwise the training record is written, ``pending``, *before* anything is
   submitted.
2. :func:`submit_job` checks the budgets against the trainer's estimate, then submits the job
   tagged with the record's id (the trainer finds before it creates). A record that already has
   an external job id is never submitted again.
3. :func:`wait_for_job` polls with backoff until the job ends or the timeout passes (then the
   job is cancelled and the record ends ``failed``), reporting each poll to a callback: the core
   never imports Prefect, the flow turns the callback into artifacts.
4. :func:`collect_model` makes the candidate model version (parent: the base version; linked to
   the run), records the job's cost, and writes the model card next to the model.

``few_shot`` and ``prompt`` need no job: :func:`make_candidate` builds the candidate from the
base model directly. A budget refusal (:class:`BudgetExceeded`) leaves the record ``failed`` with
the refusal as its error, so the refusal shows in ``ratchet models`` and in the monthly audit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from ratchet.backends import BackendContext, trainer_for
from ratchet.backends.base import (
    STRATEGIES,
    BackendError,
    BudgetExceeded,
    JobEvent,
    JobSpec,
    JobStatus,
    ModelSpec,
    Trainer,
    TrainingData,
)
from ratchet.budget import check_budget, job_cost
from ratchet.config import PipelineConfig
from ratchet.db import NotFoundError, repo
from ratchet.db.models import ModelVersion, TrainingRun

log = logging.getLogger(__name__)

#: The dataset kind each strategy trains on (``prompt`` takes rules from eval cases' corrections,
#: or any dataset when the system prompt is given as a parameter).
STRATEGY_KINDS: dict[str, tuple[str, ...]] = {
    "sft": ("sft_examples",),
    "dpo": ("preference_pairs",),
    "kto": ("binary_feedback",),
    "few_shot": ("sft_examples",),
    "prompt": ("eval_cases", "sft_examples", "preference_pairs", "binary_feedback"),
}
NO_JOB_STRATEGIES = frozenset({"few_shot", "prompt"})


class TrainingError(RuntimeError):
    """The run cannot go on; the message names the run, the rule and the reason, no data."""


class TrainingFailed(TrainingError):
    """The job ended ``failed`` (the provider's own message is kept as it is)."""


class TrainingCancelled(TrainingError):
    """The job was cancelled (by an operator, or by the provider)."""


class TrainingTimeout(TrainingError):
    """The job did not finish within ``training.timeout_s``; it was cancelled."""


@dataclass(frozen=True)
class TrainRequest:
    """What ``ratchet train`` asks for. ``base``: a model version id or ``production``."""

    dataset_version_id: str
    strategy: str
    backend: str
    base: str = "production"
    params: Mapping[str, Any] = field(default_factory=dict)
    created_by: str = "ratchet"
    notes: str | None = None  # the operator's words, kept on the training record
    agent_id: str | None = None  # when given, the dataset version must be this agent's


@dataclass(frozen=True)
class Plan:
    """What :func:`plan_training` decided: ``reuse``, ``resume``, ``submit`` or ``no_job``."""

    action: str
    training_run_id: str
    agent_id: str
    strategy: str
    backend: str
    model_version_id: str | None = None
    external_job_id: str | None = None


@dataclass
class TrainingContext:
    """The services the lifecycle uses. ``trainers`` overrides the registry by backend name
    (tests pass fakes here); ``sleep``/``clock`` let tests poll without waiting."""

    sessions: sessionmaker[Session]
    store: Any
    config: PipelineConfig
    settings: Any = None
    trainers: Mapping[str, Trainer] | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    _built: dict[str, Trainer] = field(default_factory=dict, repr=False)

    def trainer(self, name: str) -> Trainer:
        if self.trainers is not None and name in self.trainers:
            return self.trainers[name]
        if name not in self._built:
            self._built[name] = trainer_for(
                name, BackendContext(store=self.store, settings=self.settings, config=self.config)
            )
        return self._built[name]


#: Called after every poll with the status and the events not seen before.
StatusCallback = Callable[[JobStatus, list[JobEvent]], None]


# --- step 1: plan (reuse, resume or write the record) -----------------------------------------
def _params(config: PipelineConfig, req: TrainRequest) -> dict[str, Any]:
    params = dict(req.params)
    if req.strategy == "few_shot":
        params.setdefault("k", config.training.few_shot_k)
        params["k"] = int(params["k"])
        params["few_shot_dataset"] = req.dataset_version_id
    return params


def resolve_base(session: Session, agent_id: str, base: str) -> ModelVersion:
    """The base model version: an id, or the agent's production version for ``production``."""
    if base == "production":
        row = repo.production_version(session, agent_id)
        if row is None:
            raise TrainingError(
                f"agent {agent_id!r} has no production model version to train from: register "
                "one (ratchet models register-logs --agent ...) or pass --base MODEL_VERSION"
            )
        return row
    try:
        row = repo.get_model_version(session, base)
    except NotFoundError:
        raise TrainingError(
            f"--base: no model version {base!r} (see: ratchet models list)"
        ) from None
    if row.agent_id != agent_id:
        raise TrainingError(f"--base: model version {base!r} belongs to another agent")
    return row


def plan_training(ctx: TrainingContext, req: TrainRequest) -> Plan:
    """Reuse a finished model, resume an unfinished job, or write a new ``pending`` record."""
    if req.strategy not in STRATEGIES:
        raise TrainingError(f"strategy must be one of {', '.join(STRATEGIES)}")
    with ctx.sessions() as s, s.begin():
        try:
            dv = repo.get_dataset_version(s, req.dataset_version_id)
        except NotFoundError:
            raise TrainingError(
                f"--dataset: no dataset version {req.dataset_version_id!r} "
                "(see: ratchet datasets list)"
            ) from None
        if req.agent_id is not None and dv.agent_id != req.agent_id:
            raise TrainingError(
                f"--dataset: version {dv.id} belongs to another agent than {req.agent_id!r}"
            )
        kinds = STRATEGY_KINDS[req.strategy]
        if dv.kind not in kinds:
            raise TrainingError(
                f"strategy {req.strategy} needs a dataset of kind "
                f"{' or '.join(kinds)}; {dv.id} is {dv.kind}"
            )
        if (
            req.strategy == "prompt"
            and dv.kind != "eval_cases"
            and not req.params.get("system_prompt")
        ):
            raise TrainingError(
                "strategy prompt needs --param system_prompt=... or an "
                "eval_cases dataset whose regression corrections become rules"
            )
        base = resolve_base(s, dv.agent_id, req.base)
        params = _params(ctx.config, req)
        same = [
            r
            for r in repo.find_training_runs(
                s,
                agent_id=dv.agent_id,
                dataset_version_id=dv.id,
                training_type=req.strategy,
                backend=req.backend,
                base_model_version=base.id,
            )
            if r.parameters == params
        ]
        common = {"agent_id": dv.agent_id, "strategy": req.strategy, "backend": req.backend}
        for run in same:
            if run.status == "completed":
                mv = repo.model_version_of_run(s, run.id)
                if mv is not None:
                    log.info("training run %s already made model version %s: reused", run.id, mv.id)
                    return Plan(
                        "reuse",
                        run.id,
                        model_version_id=mv.id,
                        external_job_id=run.external_job_id,
                        **common,
                    )
            if run.status in ("pending", "in_progress"):
                log.info("training run %s is %s: resumed, not submitted again", run.id, run.status)
                return Plan("resume", run.id, external_job_id=run.external_job_id, **common)
        run = repo.create_training_run(
            s,
            agent_id=dv.agent_id,
            training_type=req.strategy,
            backend=req.backend,
            base_model_version=base.id,
            created_by=req.created_by,
            dataset_version_id=dv.id,
            parameters=params,
            notes=req.notes,
        )
        action = "no_job" if req.strategy in NO_JOB_STRATEGIES else "submit"
        return Plan(action, run.id, **common)


def job_spec(session: Session, run: TrainingRun) -> JobSpec:
    """The job a training record stands for, rebuilt from the database alone."""
    base = repo.get_model_version(session, run.base_model_version)
    dv = (
        repo.get_dataset_version(session, run.dataset_version_id)
        if run.dataset_version_id
        else None
    )
    data = TrainingData(
        agent_id=run.agent_id,
        dataset_version_id=dv.id if dv else "",
        kind=dv.kind if dv else "",
        train_path=dv.path if dv else "",
        validation_path=None,
        rows=dv.rows if dv else 0,
    )
    return JobSpec(
        training_run_id=run.id,
        agent_id=run.agent_id,
        strategy=run.training_type,  # type: ignore[arg-type]
        base=model_spec_of(base),
        data=data,
        params=dict(run.parameters),
    )


def model_spec_of(row: ModelVersion) -> ModelSpec:
    return ModelSpec(
        backend=row.backend,
        model_ref=row.model_ref,
        system_prompt=row.system_prompt,
        parameters=dict(row.parameters),
    )


def _fail(ctx: TrainingContext, run_id: str, status: str, reason: str) -> None:
    with ctx.sessions() as s, s.begin():
        run = repo.get_training_run(s, run_id)
        if run.status not in ("completed", "failed", "cancelled"):
            repo.update_training_run(s, run_id, status=status, error=reason[:2000])


# --- step 2: submit -----------------------------------------------------------------------------
def submit_job(ctx: TrainingContext, run_id: str) -> str:
    """Submit the record's job once and return its external id.

    A record that already has an external id (a retry, a resumed flow) returns it without
    calling the trainer. Otherwise the budgets are checked against the trainer's estimate
    (refused: the record ends ``failed`` and :class:`BudgetExceeded` is raised), and the trainer
    finds-or-creates the job tagged with ``run_id``. The estimate is recorded as the run's cost
    until the job's real spend is known, so a running job counts against the monthly budget.
    """
    with ctx.sessions() as s, s.begin():
        run = repo.get_training_run(s, run_id)
        if run.external_job_id:
            return run.external_job_id
        if run.status != "pending":
            raise TrainingError(f"training run {run_id} is {run.status}; nothing to submit")
        spec = job_spec(s, run)
        backend = run.backend
    trainer = ctx.trainer(backend)
    estimate = float(trainer.estimate_cost(spec))
    try:
        with ctx.sessions() as s, s.begin():
            check_budget(s, ctx.config, run_id, estimate)
    except BudgetExceeded as exc:
        _fail(ctx, run_id, "failed", str(exc))
        raise
    try:
        external_id = trainer.submit(spec)
    except BackendError as exc:
        if not exc.retryable:  # refused or invalid: the provider's message, as it is
            _fail(ctx, run_id, "failed", str(exc))
        raise
    with ctx.sessions() as s, s.begin():
        repo.update_training_run(
            s,
            run_id,
            status="in_progress",
            external_job_id=external_id,
            cost_usd=estimate,
            artifacts={"cost_estimate_usd": estimate, "cost_basis": "estimate"},
        )
    log.info(
        "training run %s: job %s submitted on %s (estimate %.2f USD)",
        run_id,
        external_id,
        backend,
        estimate,
    )
    return external_id


# --- step 3: wait -------------------------------------------------------------------------------
def _event_key(e: JobEvent) -> tuple[str, str, int | None]:
    return (e.at, e.message, e.step)


def wait_for_job(
    ctx: TrainingContext, run_id: str, on_status: StatusCallback | None = None
) -> JobStatus:
    """Poll the record's job until it ends; return its final (completed) status.

    Waits ``poll_interval_s``, growing by ``poll_backoff`` up to ``poll_max_interval_s``. A
    retryable poll error (rate limit, 5xx) is logged and polled again; past ``timeout_s`` the job
    is cancelled and the record ends ``failed`` (:class:`TrainingTimeout`). A failed or cancelled
    job ends the record the same way and raises :class:`TrainingFailed` /
    :class:`TrainingCancelled` with the provider's message.
    """
    with ctx.sessions() as s, s.begin():
        run = repo.get_training_run(s, run_id)
        external_id, backend = run.external_job_id, run.backend
    if not external_id:
        raise TrainingError(f"training run {run_id} has no job to wait for (submit it first)")
    trainer = ctx.trainer(backend)
    t = ctx.config.training
    seen: set[tuple[str, str, int | None]] = set()
    started = ctx.clock()
    interval = t.poll_interval_s
    while True:
        try:
            status = trainer.poll(external_id)
        except BackendError as exc:
            if not exc.retryable:
                raise
            log.warning(
                "training run %s: poll of job %s failed, retrying: %s", run_id, external_id, exc
            )
            status = None
        if status is not None:
            new = [e for e in status.events if _event_key(e) not in seen]
            seen.update(_event_key(e) for e in new)
            if status.metrics:
                with ctx.sessions() as s, s.begin():
                    repo.update_training_run(s, run_id, metrics=dict(status.metrics))
            if on_status is not None:
                on_status(status, new)
            if status.state == "completed":
                return status
            if status.state in ("failed", "cancelled"):
                reason = status.error or f"the job ended {status.state}"
                _fail(ctx, run_id, status.state, f"job {external_id}: {reason}")
                cls = TrainingFailed if status.state == "failed" else TrainingCancelled
                raise cls(f"training run {run_id}: job {external_id} {status.state}: {reason}")
        if ctx.clock() - started >= t.timeout_s:
            try:
                trainer.cancel(external_id)
            except BackendError as exc:
                log.warning("training run %s: cancel after timeout failed: %s", run_id, exc)
            reason = (
                f"job {external_id} timed out after {t.timeout_s:.0f} s "
                "(training.timeout_s); it was cancelled"
            )
            _fail(ctx, run_id, "failed", reason)
            raise TrainingTimeout(f"training run {run_id}: {reason}")
        ctx.sleep(interval)
        interval = min(interval * t.poll_backoff, t.poll_max_interval_s)


# --- step 4: collect ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Collected:
    """The candidate a run produced, its cost and where its model card is."""

    training_run_id: str
    model_version_id: str
    cost_usd: float
    cost_basis: str
    model_card_path: str
    model_card: str
    reused: bool = False


def _finish(
    ctx: TrainingContext,
    run_id: str,
    model: ModelSpec,
    cost: float,
    basis: str,
    metrics: Mapping[str, float],
) -> Collected:
    from ratchet.model_card import model_card_path, render_model_card

    with ctx.sessions() as s, s.begin():
        run = repo.get_training_run(s, run_id)
        mv = repo.model_version_of_run(s, run_id)
        if mv is None:
            mv = repo.create_model_version(
                s,
                agent_id=run.agent_id,
                backend=model.backend,
                model_ref=model.model_ref,
                system_prompt=model.system_prompt,
                parameters=dict(model.parameters),
                parent_id=run.base_model_version,
                training_run_id=run_id,
                version_id=run_id,
            )  # the run's id: one run makes one version, and models/<id>/ holds both
        path = model_card_path(mv.id)
        repo.update_training_run(
            s,
            run_id,
            metrics=dict(metrics),
            cost_usd=cost,
            artifacts={"model_version": mv.id, "model_card": path, "cost_basis": basis},
        )
        card = render_model_card(s, run, mv, run_status="completed")
        mv_id = mv.id
    ctx.store.write_bytes(path, card.encode("utf-8"))
    with ctx.sessions() as s, s.begin():  # completed only once the card is written
        repo.update_training_run(s, run_id, status="completed")
    return Collected(run_id, mv_id, cost, basis, path, card)


def collect_model(ctx: TrainingContext, run_id: str) -> Collected:
    """Make the candidate model version of a completed job (idempotent: a second call returns
    the version already made), record the job's cost, write the model card."""
    with ctx.sessions() as s, s.begin():
        run = repo.get_training_run(s, run_id)
        if not run.external_job_id:
            raise TrainingError(f"training run {run_id} has no job to collect")
        spec = job_spec(s, run)
        external_id, backend = run.external_job_id, run.backend
    trainer = ctx.trainer(backend)
    status = trainer.poll(external_id)
    if status.state != "completed":
        raise TrainingError(
            f"training run {run_id}: job {external_id} is {status.state}, "
            "not completed; nothing to collect"
        )
    try:
        model = trainer.collect(spec, status)
    except BackendError as exc:
        if not exc.retryable:
            _fail(ctx, run_id, "failed", f"collect: {exc}")
        raise
    cost, basis = job_cost(ctx.config, backend, spec.base.model_ref, status)
    return _finish(ctx, run_id, model, cost, basis, status.metrics)


def make_candidate(ctx: TrainingContext, run_id: str) -> Collected:
    """``few_shot`` and ``prompt``: the base model with retrieved examples or a new system
    prompt, as a candidate, with no job and no spend."""
    from ratchet.prompting import build_system_prompt

    with ctx.sessions() as s, s.begin():
        run = repo.get_training_run(s, run_id)
        spec = job_spec(s, run)
        repo.update_training_run(s, run_id, status="in_progress")
    base, params = spec.base, dict(spec.params)
    if spec.strategy == "few_shot":
        model = ModelSpec(
            base.backend,
            base.model_ref,
            base.system_prompt,
            {**base.parameters, "few_shot_dataset": params["few_shot_dataset"], "k": params["k"]},
        )
        metrics = {"examples": float(spec.data.rows)}
    elif spec.strategy == "prompt":
        try:
            prompt, rules = build_system_prompt(
                ctx.store, spec, base.system_prompt, ctx.config.training.prompt_max_rules
            )
        except (ValueError, OSError) as exc:
            _fail(ctx, run_id, "failed", str(exc))
            raise TrainingError(f"training run {run_id}: {exc}") from exc
        model = ModelSpec(base.backend, base.model_ref, prompt, dict(base.parameters))
        metrics = {"rules": float(rules)}
    else:
        raise TrainingError(f"strategy {spec.strategy} needs a training job")
    return _finish(ctx, run_id, model, 0.0, "no job (no spend)", metrics)


def reused(ctx: TrainingContext, plan: Plan) -> Collected:
    """What a reused run made (its card is read back from the store when it is there)."""
    from ratchet.model_card import model_card_path

    if plan.model_version_id is None:
        raise TrainingError(f"training run {plan.training_run_id} made no model version")
    path = model_card_path(plan.model_version_id)
    with ctx.sessions() as s:
        run = repo.get_training_run(s, plan.training_run_id)
        cost, basis = run.cost_usd or 0.0, str(run.artifacts.get("cost_basis", ""))
    card = ctx.store.read_bytes(path).decode("utf-8") if ctx.store.exists(path) else ""
    return Collected(
        plan.training_run_id, plan.model_version_id, cost, basis, path, card, reused=True
    )


# --- cancel and the whole lifecycle -------------------------------------------------------------
def cancel_training(ctx: TrainingContext, run_id: str) -> str:
    """Cancel a run: ask the backend to stop its job (if one was submitted) and end the record
    ``cancelled``. A finished run is left as it is; returns the record's status."""
    with ctx.sessions() as s, s.begin():
        run = repo.get_training_run(s, run_id)
        if run.status in ("completed", "failed", "cancelled"):
            return run.status
        external_id, backend = run.external_job_id, run.backend
    if external_id:
        ctx.trainer(backend).cancel(external_id)
    _fail(ctx, run_id, "cancelled", "cancelled by request (ratchet models cancel)")
    return "cancelled"


def train(
    ctx: TrainingContext, req: TrainRequest, on_status: StatusCallback | None = None
) -> Collected:
    """The whole lifecycle in one call (the flow runs the same steps as separate tasks)."""
    plan = plan_training(ctx, req)
    if plan.action == "reuse":
        return reused(ctx, plan)
    if plan.action == "no_job" or (plan.action == "resume" and req.strategy in NO_JOB_STRATEGIES):
        return make_candidate(ctx, plan.training_run_id)
    submit_job(ctx, plan.training_run_id)
    wait_for_job(ctx, plan.training_run_id, on_status)
    return collect_model(ctx, plan.training_run_id)
