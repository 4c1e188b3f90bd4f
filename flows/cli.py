"""The ``ratchet`` command line.

Commands that run a pipeline stage start a Prefect flow in process (a temporary Prefect server
starts unless ``PREFECT_API_URL`` points at a running one); commands that only read or record
talk to the store and the database directly, so they answer in well under a second.
Exit codes: 0 success, 1 the stage failed (the reason is printed), 2 bad usage or config.

Output: a failed command prints its one-line reason once (``--verbose`` adds the traceback and
Prefect's own console log); the core's ``ratchet`` log records show at INFO on stderr while a
flow runs, and reach the Prefect run's logs too (``PREFECT_LOGGING_EXTRA_LOGGERS=ratchet``, set
here unless the operator set it). A progress bar is drawn only when stderr is a terminal.
Prefect, Great Expectations and pandas are imported only by the commands that use them, so the
record and read commands start fast.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.split("\n")[0])
config_app = typer.Typer(no_args_is_help=True, help="Show the effective configuration.")
app.add_typer(config_app, name="config")
feedback_app = typer.Typer(
    no_args_is_help=True, help="Record feedback (labels) without starting a flow."
)
app.add_typer(feedback_app, name="feedback")
datasets_app = typer.Typer(no_args_is_help=True, help="List, show and compare dataset versions.")
app.add_typer(datasets_app, name="datasets")
store_app = typer.Typer(no_args_is_help=True, help="Maintain the store (orphan part files).")
app.add_typer(store_app, name="store")

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "ratchet" / "data" / "sample"
_state = {"verbose": False}


@app.callback()
def _options(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Tracebacks and Prefect's console log.")
    ] = False,
) -> None:
    """Turn agent conversations and feedback into a better agent, only forward."""
    _state["verbose"] = verbose


def _quiet_prefect() -> None:
    """Defaults that keep an offline, local run quiet and fast; an operator's values win.

    Set before Prefect is imported (it reads them at import). Prefect's console handler is
    muted unless ``--verbose``: it repeats a failure's traceback and message several times, and
    the CLI prints the reason once itself. The run's logs on the server keep everything.
    """
    defaults = {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "GX_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        "PREFECT_LOGGING_LEVEL": "INFO" if _state["verbose"] else "WARNING",
        "PREFECT_LOGGING_EXTRA_LOGGERS": "ratchet",
        "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
    }
    if not _state["verbose"]:
        defaults["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "CRITICAL"
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    import logging

    # GX logs a line per ephemeral context at INFO; the run's own artifacts say what matters
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    _show_core_logs()


class _StderrHandler(logging.Handler):
    """The core's records on the current ``sys.stderr`` (looked up per record: tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _clear_bar()
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # a log line must never fail the command
            self.handleError(record)


def _show_core_logs() -> None:
    """``ratchet`` records at INFO (DEBUG with ``--verbose``) on stderr, once; and a progress
    bar when stderr is a terminal."""
    logger = logging.getLogger("ratchet")
    logger.setLevel(logging.DEBUG if _state["verbose"] else logging.INFO)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler(logging.INFO)
        handler.setFormatter(logging.Formatter("%(levelname).1s %(message)s"))
        logger.addHandler(handler)
    logger.propagate = False  # the root's console handler would print each record again
    from tasks import runtime

    if sys.stderr.isatty() and _draw_bar not in runtime.progress_listeners:
        runtime.progress_listeners.append(_draw_bar)


_bar = {"drawn": False}


def _draw_bar(key: str, percent: float, label: str) -> None:
    """``[#####.....]  50% label`` on one stderr line, redrawn in place."""
    width = 30
    filled = int(width * percent / 100)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {percent:5.1f}% {label[:60]}")
    sys.stderr.flush()
    _bar["drawn"] = percent < 100
    if percent >= 100:
        sys.stderr.write("\n")


def _clear_bar() -> None:
    if _bar["drawn"]:
        sys.stderr.write("\r\033[K")
        _bar["drawn"] = False


def _reason(exc: BaseException) -> str:
    """The exception as one line: its type and its (value-free) message."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _run_flow(flow_fn: Any, **params: Any) -> Any:
    """Run a flow in process; on failure print the reason once and exit 1 (``--verbose``: and
    the traceback)."""
    try:
        return flow_fn(**params)
    except Exception as exc:
        raise _fail_exc(exc) from None


def _fail_exc(exc: BaseException) -> typer.Exit:
    """Exit 1 with the exception's one-line reason (``--verbose``: its traceback first)."""
    _clear_bar()
    if _state["verbose"]:
        import traceback

        traceback.print_exception(exc)
    return _fail(_reason(exc))


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def _check_config() -> None:
    """Validate settings and config before any work (exit 2 naming the key)."""
    from pydantic import ValidationError

    from ratchet.config import ConfigError, load_config
    from ratchet.settings import get_settings

    try:
        load_config(get_settings())
    except ConfigError as exc:
        raise _fail(str(exc), 2) from None
    except ValidationError as exc:
        problems = "; ".join(
            f"RATCHET_{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors(include_input=False, include_url=False)
        )
        raise _fail(f"invalid settings: {problems}", 2) from None


def _readable(value: Any) -> str:
    """A value as words: counts as ``name 3, other 1``, nothing as ``none``, never a dict."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {_readable(v)}" for k, v in sorted(value.items())) or "none"
    if isinstance(value, list | tuple):
        return ", ".join(_readable(v) for v in value) or "none"
    if value is None:
        return "-"
    return str(value)


def _print_summary(title: str, summary: dict[str, Any]) -> None:
    typer.echo(f"{title}:")
    for key, value in summary.items():
        if isinstance(value, dict) and value and all(isinstance(v, str) for v in value.values()):
            typer.echo(f"  {key.replace('_', ' ')}:")  # e.g. versions: one line each
            for k, v in sorted(value.items()):
                typer.echo(f"    {k}: {v}")
            continue
        typer.echo(f"  {key.replace('_', ' ')}: {_readable(value)}")


@config_app.command("show")
def config_show(
    describe: Annotated[bool, typer.Option(help="List every key with its description.")] = False,
) -> None:
    """Print the effective settings (secrets masked) and pipeline config."""
    from ratchet.config import describe as describe_config
    from ratchet.config import load_config
    from ratchet.settings import get_settings

    _check_config()
    if describe:
        for key, text in describe_config():
            typer.echo(f"{key}: {text}")
        return
    settings = get_settings()
    out = {
        "settings": settings.masked(),
        "state": settings.state(),
        "config": load_config(settings).model_dump(),
    }
    typer.echo(json.dumps(out, indent=2, default=str))


@app.command()
def ingest(
    paths: Annotated[list[str], typer.Argument(help="Interaction files, globs or folders.")],
    feedback: Annotated[
        list[str] | None, typer.Option("--feedback", help="Feedback-event files (repeatable).")
    ] = None,
    agent: Annotated[str | None, typer.Option(help="Agent id for lines that name none.")] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="auto | canonical | openai-chat | a source: otel-genai, openai-stored... "
            "(auto tells each file's format by its shape and refuses an ambiguous one)",
        ),
    ] = "auto",
) -> None:
    """Ingest agent logs (and feedback): redact, validate, store exactly once.

    A folder's files are told apart by their lines (interactions or feedback); a JSON document
    that is not a record (a manifest.json) is skipped, an empty file or folder counts zero.
    """
    _quiet_prefect()
    _check_config()
    from flows.ingest import ingest_flow
    from ratchet.ingest.adapters import FORMATS
    from ratchet.ingest.inputs import remove_input_list, resolve_inputs, write_input_list
    from ratchet.ingest.reader import InputError
    from ratchet.settings import get_settings

    if fmt not in ("auto", *FORMATS):
        raise _fail(f"--format must be auto or one of {', '.join(FORMATS)}", 2)
    try:
        resolved = resolve_inputs(list(paths), list(feedback or []))
    except InputError as exc:
        raise _fail(str(exc), 2) from None
    if resolved.empty_folders:
        typer.secho(f"warning: {resolved.empty_folders} folder(s) hold no input file", err=True)
    if not resolved.files:
        _print_summary("ingest", {"files": 0, "empty_folders": resolved.empty_folders})
        return
    # the flow gets a reference to the list, never a path: Prefect records parameters
    home = get_settings().home
    ref = write_input_list(home, resolved.files)
    try:
        summary = _run_flow(ingest_flow, inputs=ref, agent=agent, fmt=fmt)
    finally:
        remove_input_list(home, ref)  # it holds raw paths: kept no longer than the run
    _print_summary("ingest", summary)


@app.command()
def weekly(
    sample: Annotated[
        bool, typer.Option(help="Run on the bundled sample (ratchet/data/sample).")
    ] = False,
    logs: Annotated[
        list[str] | None, typer.Option(help="Interaction files or folders (default: inbox).")
    ] = None,
    feedback: Annotated[
        list[str] | None, typer.Option(help="Feedback files or folders (default: inbox).")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Curate feedback from this date/time (UTC if no zone).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="... up to (excluding) this date/time; default: now.")
    ] = None,
    strategy: Annotated[
        str | None, typer.Option(help="Training strategy (default: training.default_strategy).")
    ] = None,
    backend: Annotated[
        str | None, typer.Option(help="Training backend (default: training.default_backend).")
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Everything but promote: the gate decides, nothing changes."
        ),
    ] = False,
) -> None:
    """The weekly improvement flow: every stage built so far, chained.

    Reads --logs/--feedback, or else the inbox ($RATCHET_INBOX/logs and /feedback, default
    $RATCHET_HOME/inbox); curates the feedback of the 7 days before --until (default now);
    with --sample, the bundled sample, all of it.
    """
    _quiet_prefect()
    _check_config()
    from flows.weekly import weekly_flow

    if sample:
        logs = [str(p) for p in sorted(SAMPLE_DIR.glob("interactions-*.jsonl*"))]
        logs += [str(p) for p in sorted(SAMPLE_DIR.glob("openai-chat*.jsonl*"))]
        feedback = [str(p) for p in sorted(SAMPLE_DIR.glob("feedback-*.jsonl*"))]
    since_utc, until_utc = _when(since, "--since"), _when(until, "--until")
    if since_utc and until_utc and since_utc >= until_utc:
        raise _fail("--since must be before --until", 2)
    ref: str | None = None
    if logs or feedback:  # else the flow reads the inbox: RATCHET_INBOX/logs and /feedback
        from ratchet.ingest.inputs import resolve_inputs, write_input_list
        from ratchet.ingest.reader import InputError
        from ratchet.settings import get_settings

        try:  # the same rule as `ratchet ingest`: a path that matches nothing is exit 2
            resolved = resolve_inputs(list(logs or []), list(feedback or []))
        except InputError as exc:
            raise _fail(str(exc), 2) from None
        # the flow gets a reference to the list, never a path: Prefect records parameters
        ref = write_input_list(get_settings().home, resolved.files) if resolved.files else None
        if ref is None:
            typer.secho("warning: the folders given hold no input file", err=True)
    summary = _run_flow(
        weekly_flow, inputs=ref, paths=[] if (logs or feedback) and ref is None else None,
        since=since_utc, until=until_utc, all_time=sample and since_utc is None,
        strategy=strategy, backend=backend, dry_run=dry_run,
    )  # fmt: skip
    if "ingest" not in summary:
        typer.echo("ingest: nothing to ingest")
    for stage, result in summary.items():
        _print_summary(stage, {k: v for k, v in result.items() if k != "reports"})
    _print_where_to_look()


def _print_where_to_look() -> None:
    """After a weekly run, where its report and records are: an operator's next step."""
    import os

    from ratchet.settings import get_settings

    api = os.environ.get("PREFECT_API_URL", "").rstrip("/")
    ui = api[: -len("/api")] if api.endswith("/api") else api
    where = (
        f"{ui}/runs" if ui else "run `prefect server start`, then open http://127.0.0.1:4200/runs"
    )
    typer.echo("where to look:")
    typer.echo(f"  report: the weekly-improvement run's `weekly-report` artifact ({where})")
    typer.echo("  models: ratchet models list; evaluations: ratchet evals list")
    typer.echo(f"  store: {get_settings().store_root}")


def _when(value: str | None, option: str) -> Any:
    """A UTC datetime from YYYY-MM-DD or an ISO date-time (no zone: UTC); exit 2 if invalid."""
    from ratchet.curation.select import to_utc

    try:
        return to_utc(value)
    except ValueError:
        raise _fail(f"{option} must be YYYY-MM-DD or an ISO 8601 date-time", 2) from None


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str, sort_keys=True))


@app.command()
def curate(
    agent: Annotated[str | None, typer.Option(help="Only this agent (default: all).")] = None,
    since: Annotated[
        str | None, typer.Option(help="Feedback received from (UTC if no zone; default: ever).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="... up to, excluding (default: now).")] = None,
) -> None:
    """Curate stored feedback into dataset versions (eval cases, SFT, pairs...) and exports."""
    _quiet_prefect()
    _check_config()
    since_utc, until_utc = _when(since, "--since"), _when(until, "--until")
    if since_utc and until_utc and since_utc >= until_utc:
        raise _fail("--since must be before --until", 2)
    from flows.curate import curate_flow

    summary = _run_flow(curate_flow, agent=agent, since=since_utc, until=until_utc)
    _print_summary("curate", {k: v for k, v in summary.items() if k != "reports"})


# --- feedback: record commands (no flow) -------------------------------------------------------
def _record_feedback_file(path: Path, agent: str | None) -> dict[str, Any]:
    """Ingest a feedback JSONL through the ingest core: same redaction, validation and
    exactly-once path as the ingest flow, without starting Prefect."""
    from datetime import UTC, datetime

    from ratchet.config import load_config
    from ratchet.db import open_database
    from ratchet.ingest.pipeline import IngestContext, ingest_file
    from ratchet.redaction import Redactor, resolve_pseudonym_key
    from ratchet.settings import get_settings
    from ratchet.store import Store

    settings = get_settings()
    config = load_config(settings)
    if settings.pseudonym_key is None and os.environ.get("PREFECT_API_URL"):
        # a running Prefect server may hold the key as a Secret block (a fast lookup)
        from tasks import runtime

        key = runtime.pseudonym_key(settings)
    else:
        key = resolve_pseudonym_key(settings)
    ctx = IngestContext(
        store=Store(settings.store_root, s3_endpoint_url=settings.s3_endpoint_url),
        sessions=open_database(settings),
        config=config,
        redactor=Redactor(config.redaction),
        pseudonym_key=key,
        now=datetime.now(UTC),
    )
    return ingest_file(ctx, path, kind="feedback", default_agent=agent).as_dict()


def _recorded_feedback_ids(agent: str, ids: set[str]) -> set[str]:
    from ratchet.db import open_database, repo
    from ratchet.settings import get_settings

    with open_database(get_settings())() as s:
        return set(repo.lookup_keys(s, "feedback", agent, ids))


def _resolve_agent(interaction_id: str, agent: str | None) -> str:
    from ratchet.curation.select import agents_of_interaction
    from ratchet.db import open_database
    from ratchet.settings import get_settings

    with open_database(get_settings())() as s:
        owners = agents_of_interaction(s, interaction_id)
    if agent is not None:
        if agent not in owners:
            raise _fail(f"interaction {interaction_id!r} is not stored for agent {agent!r}", 2)
        return agent
    if not owners:
        raise _fail(f"interaction {interaction_id!r} is not stored (ingest it first)", 2)
    if len(owners) > 1:
        raise _fail(f"interaction {interaction_id!r} exists for several agents: give --agent", 2)
    return owners[0]


def _report_recorded(report: dict[str, Any], unlabelled: int = 0) -> None:
    stored = report["stored"].get("feedback", 0)
    if report["status"] == "already_ingested":
        typer.echo("already recorded (the same file was imported before): nothing new")
        return
    typer.echo(
        f"recorded {stored} feedback event(s); already stored {sum(report['skipped_stored'].values())}; "
        f"quarantined {sum(report['quarantined'].values())}"
        + (f" ({_readable(report['quarantined'])})" if report["quarantined"] else "")
        + (f"; rows without a label skipped: {unlabelled}" if unlabelled else "")
    )
    typer.echo("the next curate run whose window includes now will use them")


@feedback_app.command("add")
def feedback_add(
    interaction: Annotated[str, typer.Option("--interaction", help="The interaction's id.")],
    rating: Annotated[int | None, typer.Option(min=1, max=5, help="Rating 1-5.")] = None,
    thumb: Annotated[str | None, typer.Option(help="+1 (good) or -1 (bad).")] = None,
    correction: Annotated[str | None, typer.Option(help="The right answer.")] = None,
    comment: Annotated[str | None, typer.Option(help="A free-text comment.")] = None,
    agent: Annotated[
        str | None, typer.Option(help="Agent id (default: the one that has the interaction).")
    ] = None,
    source: Annotated[
        str, typer.Option(help="user | expert | system (a person labelling: expert).")
    ] = "expert",
    annotator: Annotated[str | None, typer.Option(help="Who labels (pseudonymised).")] = None,
) -> None:
    """Record one feedback event now (no flow); the next curate run uses it."""
    import tempfile
    from datetime import UTC, datetime

    from ratchet.review import feedback_event, write_jsonl
    from ratchet.schemas import FEEDBACK_SOURCES

    _check_config()
    if source not in FEEDBACK_SOURCES:
        raise _fail(f"--source must be one of {', '.join(FEEDBACK_SOURCES)}", 2)
    thumb_value = None
    if thumb is not None:
        if thumb.strip() not in ("+1", "1", "-1"):
            raise _fail("--thumb must be +1 or -1", 2)
        thumb_value = -1 if thumb.strip() == "-1" else 1
    if rating is None and thumb_value is None and not (correction or "").strip():
        raise _fail("give --rating, --thumb or --correction", 2)
    owner = _resolve_agent(interaction, agent)
    event = feedback_event(
        agent_id=owner,
        interaction_id=interaction,
        timestamp=datetime.now(UTC),
        source=source,
        annotator=annotator,
        rating=rating,
        thumb=thumb_value,
        correction=correction,
        comment=comment,
    )
    with tempfile.TemporaryDirectory(prefix="ratchet-feedback-") as tmp:
        path = write_jsonl([event], Path(tmp) / "feedback-add.jsonl")
        try:
            report = _record_feedback_file(path, owner)
        except Exception as exc:
            raise _fail_exc(exc) from None
    _report_recorded(report)


@feedback_app.command("import")
def feedback_import(
    file: Annotated[
        Path,
        typer.Argument(
            help="A filled review CSV, or a feedback JSONL/JSON: canonical events, Langfuse "
            "scores, LangSmith feedback, mixed in one file if need be."
        ),
    ],
    agent: Annotated[
        str | None, typer.Option(help="Agent id for rows/lines that name none.")
    ] = None,
    source: Annotated[
        str, typer.Option(help="Source of CSV labels (JSONL lines carry their own).")
    ] = "expert",
    annotator: Annotated[str | None, typer.Option(help="Who labelled the CSV.")] = None,
) -> None:
    """Import labels (no flow): a review CSV's filled rows become expert feedback events.

    Any other file is read as feedback records, each line (or array item) by its own shape:
    canonical events, Langfuse scores and LangSmith feedback may be mixed (sources.* in the
    pipeline config says what their values mean); what cannot be mapped is quarantined.
    """
    import tempfile
    from datetime import UTC, datetime

    from ratchet.review import LabelError, labels_from_csv, split_recorded, write_jsonl
    from ratchet.schemas import FEEDBACK_SOURCES

    _check_config()
    if not file.is_file():
        raise _fail(f"{file} is not a file", 2)
    if source not in FEEDBACK_SOURCES:
        raise _fail(f"--source must be one of {', '.join(FEEDBACK_SOURCES)}", 2)
    if file.suffix.lower() != ".csv":
        try:
            report = _record_feedback_file(file, agent)
        except Exception as exc:
            raise _fail_exc(exc) from None
        _report_recorded(report)
        return
    try:
        labels = labels_from_csv(
            file, now=datetime.now(UTC), source=source, annotator=annotator, default_agent=agent
        )
    except LabelError as exc:
        raise _fail(str(exc), 2) from None
    if not labels.events:
        typer.echo(f"no labelled rows (rows without a label: {labels.unlabelled}): nothing to do")
        return
    for e in labels.events:
        e["agent_id"] = _resolve_agent(e["interaction_id"], e.get("agent_id"))
    labels.events, already = split_recorded(labels.events, _recorded_feedback_ids)
    if not labels.events:
        typer.echo(f"already recorded ({already} labelled row(s) imported before): nothing new")
        return
    with tempfile.TemporaryDirectory(prefix="ratchet-labels-") as tmp:
        path = write_jsonl(labels.events, Path(tmp) / "review-labels.jsonl")
        try:
            report = _record_feedback_file(path, agent)
        except Exception as exc:
            raise _fail_exc(exc) from None
    _report_recorded(report, labels.unlabelled)


# --- datasets: read-only (no flow) --------------------------------------------------------------
def _db_and_store() -> tuple[Any, Any]:
    from ratchet.db import open_database
    from ratchet.settings import get_settings
    from ratchet.store import Store

    settings = get_settings()
    missing = settings.missing_state()  # read commands never create state where they stand
    if missing:
        raise _fail(missing, 1)
    return open_database(settings), Store(
        settings.store_root, s3_endpoint_url=settings.s3_endpoint_url
    )


def _get_version(session: Any, version: str) -> Any:
    from ratchet.db import NotFoundError, repo

    try:
        return repo.get_dataset_version(session, version)
    except NotFoundError:
        raise _fail(f"no dataset version {version!r} (see: ratchet datasets list)", 2) from None


@datasets_app.command("list")
def datasets_list(
    agent: Annotated[str | None, typer.Option(help="Only this agent.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only this kind (eval_cases, ...).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 100,
) -> None:
    """Registered dataset versions, newest first."""
    from ratchet.db import repo
    from ratchet.schemas import CURATED_KINDS

    _check_config()
    if kind is not None and kind not in CURATED_KINDS:
        raise _fail(f"--kind must be one of {', '.join(CURATED_KINDS)}", 2)
    factory, _ = _db_and_store()
    with factory() as s:
        rows: list[dict[str, Any]] = [
            {
                "version": v.id,
                "agent": v.agent_id,
                "kind": v.kind,
                "rows": v.rows,
                "created": v.created_at.isoformat(),
                "parent": v.parent_id,
                "path": v.path,
            }
            for v in repo.list_dataset_versions(s, agent_id=agent, kind=kind, limit=limit)
        ]
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        typer.echo("no dataset versions")
        return
    typer.echo(f"{'version':<26}{'agent':<20}{'kind':<18}{'rows':>7}  created")
    for r in rows:
        typer.echo(
            f"{r['version']:<26}{r['agent']:<20}{r['kind']:<18}{r['rows']:>7}  {r['created'][:19]}"
        )


@datasets_app.command("show")
def datasets_show(
    version: Annotated[str, typer.Argument(help="A dataset version id.")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """One version: rows, path, kind, agent, created, lineage, stats."""
    from ratchet.curation.registry import describe_version

    _check_config()
    factory, _ = _db_and_store()
    with factory() as s:
        info = describe_version(s, _get_version(s, version))
    if as_json:
        _echo_json(info)
        return
    for key in (
        "version",
        "agent",
        "kind",
        "rows",
        "path",
        "created",
        "parent",
        "config_hash",
        "flow_run",
    ):
        typer.echo(f"{key}: {info[key]}")
    typer.echo("lineage:")
    for ref in info["lineage"]:
        typer.echo(f"  {ref['kind']}: {ref['ref']}")
    typer.echo("stats:")
    for key, value in sorted((info["stats"] or {}).items()):
        typer.echo(
            f"  {key}: {json.dumps(value, default=str) if isinstance(value, dict) else value}"
        )


@datasets_app.command("diff")
def datasets_diff(
    a: Annotated[str, typer.Argument(help="The older version.")],
    b: Annotated[str, typer.Argument(help="The newer version (same kind).")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Rows added / removed / changed from A to B; for eval cases, status changes too."""
    from ratchet.curation.registry import diff_tables, read_version

    _check_config()
    factory, store = _db_and_store()
    with factory() as s:
        va, vb = _get_version(s, a), _get_version(s, b)
        if va.kind != vb.kind:
            raise _fail(f"{a} is {va.kind} and {b} is {vb.kind}: diff needs the same kind", 2)
        result = diff_tables(va.kind, read_version(store, va), read_version(store, vb))
    result = {"a": a, "b": b, **result}
    if as_json:
        _echo_json(result)
        return
    typer.echo(f"{result['kind']}: {a} ({result['rows_a']} rows) -> {b} ({result['rows_b']} rows)")
    typer.echo(
        f"  added: {result['added']}  removed: {result['removed']}  changed: {result['changed']}"
    )
    if "status_changes" in result:
        moves = ", ".join(f"{k}: {v}" for k, v in result["status_changes"].items()) or "none"
        typer.echo(f"  status changes: {moves}")
        for cid in result["retired"]:
            typer.echo(f"    retired: {cid}")


@app.command("export")
def export_version(
    version: Annotated[str, typer.Argument(help="A dataset version id.")],
    fmt: Annotated[str, typer.Option("--format", help="openai-sft | openai-dpo | eval-jsonl | hf")],
    out: Annotated[
        Path | None, typer.Option(help="Folder (default ./exports/<agent>/<version>/).")
    ] = None,
    split: Annotated[
        str,
        typer.Option(
            help="train | validation | all (the train file, and the validation "
            "file when the version has validation rows). Training formats only."
        ),
    ] = "all",
) -> None:
    """Validate a registered version in a format and write it (nothing is written if invalid)."""
    from ratchet.config import load_config
    from ratchet.curation.registry import ExportFormatError, export_table, read_version
    from ratchet.export import ExportValidationError
    from ratchet.settings import get_settings

    _check_config()
    config = load_config(get_settings())
    factory, store = _db_and_store()
    with factory() as s:
        v = _get_version(s, version)
        agent, kind = v.agent_id, v.kind
        table = read_version(store, v)
    target = out or Path("exports") / agent / version
    try:
        results = export_table(table, kind, fmt, target, config.export, split=split)
    except ExportFormatError as exc:
        raise _fail(str(exc), 2) from None
    except ExportValidationError as exc:
        typer.secho(
            f"error: {exc.format} export of {version} is invalid; nothing written",
            fg=typer.colors.RED,
            err=True,
        )
        for v_ in exc.violations:
            typer.echo(f"  {v_.describe()}", err=True)
        raise typer.Exit(1) from None
    for r in results:
        typer.echo(
            f"wrote {r.path} ({r.rows} examples, {r.bytes} bytes, sha256 {r.sha256[:12]}, "
            f"largest example {r.max_example_tokens} tokens by {r.token_estimator})"
        )
        for reason, n in r.skipped.items():
            typer.echo(f"  left out {n} row(s) of {r.path.name}: {reason}")


@store_app.command("gc")
def store_gc(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List orphans, delete nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
    grace: Annotated[
        str, typer.Option(help="Keep files younger than this (30m, 1h, 2d, or seconds).")
    ] = "1h",
) -> None:
    """Delete part files no ledger row references (left by a crashed run), older than --grace."""
    import re
    from datetime import timedelta

    from ratchet.db import repo
    from ratchet.store import collect_orphans

    match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", grace)
    if match is None:
        raise _fail("--grace must be a number of seconds or like 30m, 1h, 2d", 2)
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    sessions, store = _db_and_store()

    def referenced() -> set[str]:
        with sessions() as s:
            return repo.referenced_part_paths(s)

    report = collect_orphans(
        store, referenced, grace=timedelta(seconds=int(match.group(1)) * unit), dry_run=dry_run
    )
    if as_json:
        _echo_json(report.as_dict())
        return
    verb = "would delete" if dry_run else "deleted"
    typer.echo(
        f"{verb} {len(report.orphans)} orphan part file(s), {report.bytes} bytes; "
        f"referenced {report.referenced}, younger than --grace {report.young}"
    )


@app.command("sample")
def sample(
    out: Annotated[Path, typer.Option(help="Folder to write the sample into.")],
    args: Annotated[list[str] | None, typer.Argument(help="Options for the generator.")] = None,
) -> None:
    """Generate a seeded synthetic sample (see ratchet/data/sample/README.md)."""
    from ratchet import sample as sample_mod

    code = sample_mod.main(["--out", str(out), *(args or [])])
    raise typer.Exit(code or 0)


from flows import cli_train as _cli_train  # noqa: E402  (train, models cancel)

_cli_train.register(app)


from flows.cli_models import register_models_commands  # noqa: E402  (models ..., ask)

register_models_commands(app)


from flows.cli_evals import register as _register_evals  # noqa: E402  (evaluate, evals, suites)

_register_evals(app)

from flows import cli_promote as _cli_promote  # noqa: E402  (promote, rollback, models route)

_cli_promote.register(app)

from flows import cli_audit as _cli_audit  # noqa: E402  (audit pii, audit lineage)

_cli_audit.register(app)

from flows import cli_privacy as _cli_privacy  # noqa: E402  (forget, retention)

_cli_privacy.register(app)

from flows import cli_store as _cli_store  # noqa: E402  (store compact)

_cli_store.register(store_app)


def main(argv: list[str] | None = None) -> None:
    app(args=argv if argv is not None else sys.argv[1:], prog_name="ratchet")


if __name__ == "__main__":
    main()
