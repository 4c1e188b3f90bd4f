"""The model card: what a candidate is, what it was made from, what it cost.

Written next to the model (``models/<version>/model_card.md`` in the store) and published by the
train flow as a markdown artifact. It holds ids, counts, parameters and metrics only: never a
training example, so it can be shown anywhere (a dataset's rows stay in the store, redacted).
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from sqlalchemy.orm import Session

from ratchet.db import repo
from ratchet.db.models import ModelVersion, TrainingRun

#: Lineage references listed per kind before the rest is only counted.
MAX_REFS = 20
_SECRET_HINTS = ("key", "token", "secret", "password")


def model_card_path(model_version_id: str) -> str:
    """Store-relative path of a model version's card."""
    return f"models/{model_version_id}/model_card.md"


def _value(key: str, value: Any) -> str:
    if any(h in key.lower() for h in _SECRET_HINTS):
        return "(hidden)"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= 200 else text[:197] + "..."


def _table(rows: dict[str, Any]) -> list[str]:
    if not rows:
        return ["(none)", ""]
    return [
        "| | |",
        "|---|---|",
        *[f"| {k} | {_value(k, v)} |" for k, v in sorted(rows.items())],
        "",
    ]


def render_model_card(
    session: Session, run: TrainingRun, model: ModelVersion, run_status: str | None = None
) -> str:
    """The card of ``model``, made by ``run``: lineage (dataset version, what it was curated
    from: feedback files, stored parts, earlier versions), parameters, metrics and cost.
    ``run_status``: the status the run ends with once the card is written (it is rendered
    just before the record is marked completed)."""
    prompt = f"its own, {len(model.system_prompt)} characters" if model.system_prompt else "none"
    lines = [
        f"# Model card: {model.id}",
        "",
        f"Agent: `{model.agent_id}`  ",
        f"Status: {model.status}  ",
        f"Backend: `{model.backend}`, model reference `{model.model_ref}`  ",
        f"Base (parent) model version: `{model.parent_id or '-'}`  ",
        (
            f"Training run: `{run.id}` ({run.training_type} on {run.backend}, {run_status or run.status}), "
            f"created by {run.created_by} at {run.created_at:%Y-%m-%d %H:%M} UTC  "
        ),
        f"External job: `{run.external_job_id or 'none (no training job)'}`  ",
        f"System prompt: {prompt}",
        "",
        "## Dataset and lineage",
        "",
    ]
    if run.dataset_version_id:
        dv = repo.get_dataset_version(session, run.dataset_version_id)
        lines += [
            (
                f"Dataset version `{dv.id}`: {dv.kind}, {dv.rows} rows, made "
                f"{dv.created_at:%Y-%m-%d %H:%M} UTC by flow run `{dv.flow_run_id or '-'}`, "
                f"parent version `{dv.parent_id or '-'}`."
            ),
            "",
        ]
        counts = {
            k: v
            for k, v in (dv.stats or {}).items()
            if isinstance(v, int | float) and (k.startswith(("signal_", "rows_")))
        }
        if counts:
            lines += ["Curation counts behind it (feedback signals, rows):", "", *_table(counts)]
        refs: dict[str, list[str]] = defaultdict(list)
        for kind, ref in repo.dataset_lineage(session, dv.id):
            refs[kind].append(ref)
        lines += ["Made from (the feedback and logs behind it):", ""]
        for kind, items in sorted(refs.items()):
            shown = ", ".join(f"`{r}`" for r in items[:MAX_REFS])
            more = f" and {len(items) - MAX_REFS} more" if len(items) > MAX_REFS else ""
            lines.append(f"- {kind} ({len(items)}): {shown}{more}")
        if not refs:
            lines.append("- (no lineage recorded)")
        lines.append("")
    else:
        lines += ["No dataset version.", ""]
    lines += [
        "## Parameters",
        "",
        *_table(dict(run.parameters)),
        "## Model parameters",
        "",
        *_table(dict(model.parameters)),
        "## Metrics",
        "",
        *_table(dict(run.metrics)),
    ]
    cost = run.cost_usd if run.cost_usd is not None else 0.0
    basis = run.artifacts.get("cost_basis", "")
    lines += ["## Cost", "", f"{cost:.4f} USD ({basis or 'not reported'})", ""]
    return "\n".join(lines)
