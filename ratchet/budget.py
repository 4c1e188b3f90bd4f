"""What training costs and may cost: prices from config, a job's spend, the budgets.

A finished job's spend is the backend's own figure when it reports one, else trained tokens x
``training.price_per_1m_tokens_usd`` (backends use :func:`token_price` for their estimates), else
GPU/CPU seconds x the configured rates. Budgets are checked *before* submission against the
trainer's estimate: per run, and per calendar month (UTC) over every training run created this
month, where a job still running counts at its estimate.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session

from ratchet.backends.base import BudgetExceeded, JobStatus
from ratchet.config import PipelineConfig
from ratchet.db import repo

__all__ = ["check_budget", "job_cost", "month_start", "token_price"]


def token_price(config: PipelineConfig, backend: str, model_ref: str) -> float | None:
    """USD per 1M trained tokens for this backend and base model (its ``default`` otherwise)."""
    prices = config.training.price_per_1m_tokens_usd.get(backend, {})
    return prices.get(model_ref, prices.get("default"))


def job_cost(
    config: PipelineConfig, backend: str, base_ref: str, status: JobStatus
) -> tuple[float, str]:
    """A finished job's spend in USD and how it was reckoned (for the record and the card)."""
    if status.cost_usd is not None:
        return float(status.cost_usd), "reported by the backend"
    if status.trained_tokens:
        price = token_price(config, backend, base_ref)
        if price is None:
            return 0.0, (
                f"{status.trained_tokens} trained tokens; no price configured for "
                f"training.price_per_1m_tokens_usd.{backend}"
            )
        return (
            status.trained_tokens / 1e6 * price,
            f"{status.trained_tokens} trained tokens x {price} USD per 1M",
        )
    t = config.training
    gpu = float(status.metrics.get("gpu_seconds", 0.0) or 0.0)
    cpu = float(status.metrics.get("cpu_seconds", 0.0) or 0.0)
    if gpu or cpu:
        return (
            gpu * t.gpu_second_usd + cpu * t.cpu_second_usd,
            f"{gpu:.1f} GPU s x {t.gpu_second_usd} + {cpu:.1f} CPU s x {t.cpu_second_usd} USD",
        )
    return 0.0, "no spend reported"


def month_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def check_budget(
    session: Session,
    config: PipelineConfig,
    run_id: str,
    estimate: float,
    now: datetime | None = None,
) -> None:
    """Raise :class:`BudgetExceeded` when ``estimate`` would pass a configured budget; the
    message names the budget key, the spend so far and the estimate."""
    t = config.training
    if t.budget_per_run_usd is not None and estimate > t.budget_per_run_usd:
        raise BudgetExceeded(
            f"training run {run_id}: estimate {estimate:.2f} USD passes "
            f"training.budget_per_run_usd {t.budget_per_run_usd:.2f} USD (spent so far on this "
            "run: 0.00 USD); nothing was submitted"
        )
    if t.budget_per_month_usd is not None:
        spent = repo.training_spend_since(
            session, month_start(now or datetime.now(UTC)), exclude_run_id=run_id
        )
        if spent + estimate > t.budget_per_month_usd:
            raise BudgetExceeded(
                f"training run {run_id}: spent this month {spent:.2f} USD + estimate "
                f"{estimate:.2f} USD passes training.budget_per_month_usd "
                f"{t.budget_per_month_usd:.2f} USD; nothing was submitted"
            )
