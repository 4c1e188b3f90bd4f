"""``ratchet evaluate``, ``ratchet evals list|show`` and ``ratchet suites import``.

``evaluate`` starts the ``evaluate`` flow (a pipeline stage); the others read or record through
the database and the store directly, without Prefect, so they answer fast. Exit codes as
everywhere in the CLI: 0 success, 1 failure (one-line reason), 2 bad usage (an unknown version,
a bad option). Registered into the main app by :func:`register`.

``--json`` outputs (contracts):

* ``evaluate --json``: the core's report: ``agent``, ``suites``, ``cases``, ``scorers`` (name ->
  version), ``primary_metric``, ``candidate`` and ``baseline`` (``model_version_id``,
  ``eval_run_id``, ``results_path``, ``cases``, ``answered``, ``cached``, ``replayed``,
  ``errors``, ``cost_usd``; ``baseline`` null without one), ``comparison`` (rows of ``subset``,
  ``metric``, ``n``, ``baseline``/``candidate``/``difference`` each ``value``, ``ci_low``,
  ``ci_high``, ``n``), ``comparison_path``.
* ``evals list --json``: a list of runs (``eval_run``, ``agent``, ``model_version``,
  ``dataset_version``, ``status``, ``cases``, ``cost_usd``, ``started``, ``completed``,
  ``results_path``, ``error``).
* ``evals show RUN --json``: one such run plus ``metrics`` (``subset``, ``metric``, ``value``,
  ``ci_low``, ``ci_high``, ``n``) and ``comparison`` (the stored comparison document, or null).
* ``suites import --json``: ``version``, ``agent``, ``path``, ``rows``, ``created``,
  ``pii_redacted`` (counts by type).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

evals_app = typer.Typer(no_args_is_help=True, help="Evaluation runs and their metrics.")
suites_app = typer.Typer(no_args_is_help=True, help="Eval suites from files.")


def _cli() -> Any:
    from flows import cli

    return cli


def evaluate(
    candidate: Annotated[str, typer.Option("--candidate", help="Model version to evaluate.")],
    baseline: Annotated[
        str,
        typer.Option(
            help="production (the agent's production version), a model version id, or none."
        ),
    ] = "production",
    suite: Annotated[
        list[str] | None,
        typer.Option(
            "--suite",
            help="eval_cases dataset version (repeatable; default: the agent's latest "
            "curated one).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Evaluate a candidate against its baseline on the eval suites (the evaluate flow)."""
    cli = _cli()
    cli._quiet_prefect()
    cli._check_config()
    from ratchet.db import NotFoundError, repo

    factory, _ = cli._db_and_store()
    with factory() as s:
        try:
            agent = repo.get_model_version(s, candidate).agent_id
            if baseline not in ("production", "none"):
                if repo.get_model_version(s, baseline).agent_id != agent:
                    raise cli._fail("--baseline is a model version of another agent", 2)
            for v in suite or []:
                repo.get_dataset_version(s, v)
        except NotFoundError as exc:
            raise cli._fail(f"{exc} (see: ratchet models list, ratchet datasets list)", 2) from None
    from flows.evaluate import evaluate_flow

    report = cli._run_flow(
        evaluate_flow,
        candidate=candidate,
        baseline=None if baseline == "none" else baseline,
        suites=list(suite or []),
    )
    if as_json:
        cli._echo_json(report)
        return
    from flows.evaluate import comparison_table

    c = report["candidate"]
    typer.echo(f"evaluate: {report['cases']} case(s), agent {report['agent']}")
    typer.echo(f"  candidate {c['model_version_id']}: eval run {c['eval_run_id']}")
    if report["baseline"]:
        b = report["baseline"]
        typer.echo(f"  baseline  {b['model_version_id']}: eval run {b['eval_run_id']}")
        for row in comparison_table(report):
            if row["subset"] in ("holdout", "fix_check") and row["metric"] in (
                report["primary_metric"],
                "pass_rate",
            ):
                typer.echo(
                    f"  {row['subset']:<9} {row['metric']:<10} baseline {row['baseline']}"
                    f"  candidate {row['candidate']}  diff {row['difference']}"
                )
    typer.echo(f"  see: ratchet evals show {c['eval_run_id']}")


def _run_row(r: Any) -> dict[str, Any]:
    return {
        "eval_run": r.id,
        "agent": r.agent_id,
        "model_version": r.model_version_id,
        "dataset_version": r.dataset_version_id,
        "status": r.status,
        "cases": r.n_cases,
        "cost_usd": r.cost_usd,
        "started": r.started_at.isoformat(),
        "completed": r.completed_at.isoformat() if r.completed_at else None,
        "results_path": r.results_path,
        "error": r.error,
    }


@evals_app.command("list")
def evals_list(
    agent: Annotated[str | None, typer.Option(help="Only this agent.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Eval runs, newest first."""
    from ratchet.db import repo

    factory, _ = _cli()._db_and_store()
    with factory() as s:
        rows = [_run_row(r) for r in repo.list_eval_runs(s, agent_id=agent)]
    if as_json:
        _cli()._echo_json(rows)
        return
    if not rows:
        typer.echo("no eval runs")
    for r in rows:
        typer.echo(
            f"{r['eval_run']}  {r['agent']}  {r['model_version']}  {r['status']}  "
            f"{r['cases']} case(s)  {r['started']}"
        )


@evals_app.command("show")
def evals_show(
    run: Annotated[str, typer.Argument(help="Eval run id.")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """One eval run: its metrics with their intervals and, for a candidate, the comparison."""
    from ratchet.db import NotFoundError, repo
    from ratchet.evaluation.evaluate import comparison_path

    cli = _cli()
    factory, store = cli._db_and_store()
    with factory() as s:
        try:
            out = _run_row(repo.get_eval_run(s, run))
        except NotFoundError:
            raise cli._fail(f"no eval run {run!r} (see: ratchet evals list)", 2) from None
        out["metrics"] = [m._asdict() for m in repo.eval_metrics(s, run)]
    path = comparison_path(run)
    out["comparison"] = json.loads(store.read_bytes(path)) if store.exists(path) else None
    if as_json:
        cli._echo_json(out)
        return
    typer.echo(
        f"eval run {out['eval_run']}: {out['status']}, {out['cases']} case(s), model "
        f"{out['model_version']}, cost {out['cost_usd']}"
    )
    typer.echo(f"  results: {out['results_path']}")
    for m in out["metrics"]:
        ci = "" if m["ci_low"] is None else f" [{m['ci_low']:.3f}, {m['ci_high']:.3f}]"
        typer.echo(f"  {m['subset']:<28} {m['metric']:<24} {m['value']:.3f}{ci} (n={m['n']})")


@suites_app.command("import")
def suites_import(
    file: Annotated[Path, typer.Argument(help="The suite file (JSON lines).")],
    agent: Annotated[str, typer.Option("--agent", help="The agent the suite evaluates.")],
    fmt: Annotated[
        str, typer.Option("--format", help="openai-evals ({input, ideal} per line) or canonical.")
    ] = "canonical",
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Register an eval suite as an eval_cases dataset version (redacted before it is stored)."""
    cli = _cli()
    from ratchet.evaluation.suites import FORMATS, SuiteFormatError, import_suite

    if fmt not in FORMATS:
        raise cli._fail(f"--format must be one of {', '.join(FORMATS)}", 2)
    if not file.is_file():
        raise cli._fail(f"{file}: no such file", 2)
    cli._check_config()
    from ratchet.config import load_config
    from ratchet.db import open_database
    from ratchet.redaction import Redactor
    from ratchet.settings import get_settings
    from ratchet.store import Store, valid_agent_id

    if not valid_agent_id(agent):
        raise cli._fail("--agent is not a valid agent id", 2)
    settings = get_settings()
    config = load_config(settings)
    store = Store(settings.store_root, s3_endpoint_url=settings.s3_endpoint_url)
    try:
        got = import_suite(
            store, open_database(settings), Redactor(config.redaction), file, agent, fmt
        )
    except SuiteFormatError as exc:
        raise cli._fail(f"{file.name}: {exc}", 1) from None
    if as_json:
        cli._echo_json(got.as_dict())
    else:
        typer.echo(
            f"suite {got.version_id}: {got.rows} case(s) for {agent}"
            f"{'' if got.created else ' (already registered)'}; use: ratchet evaluate "
            f"--candidate VERSION --suite {got.version_id}"
        )


def register(app: typer.Typer) -> None:
    """Add ``evaluate``, ``evals`` and ``suites`` to the ``ratchet`` app."""
    app.command("evaluate")(evaluate)
    app.add_typer(evals_app, name="evals")
    app.add_typer(suites_app, name="suites")
