"""What an operator sees from the CLI: a failure is one line (no traceback, no repeats; the
traceback behind --verbose), exit codes follow the README's rule, summaries are words not dicts,
and the record commands do not import Prefect, GX or pandas."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

from typer.testing import CliRunner

from flows.cli import app

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _ratchet(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a subprocess, as an operator runs it, against the session's Prefect server."""
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith(("RATCHET_", "PREFECT_"))}
    (home / "prefect").mkdir(parents=True, exist_ok=True)
    env.update(
        RATCHET_HOME=str(home),
        PREFECT_HOME=str(home / "prefect"),
        PREFECT_API_URL=str(PREFECT_API_URL.value()),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
    )
    return subprocess.run(
        [sys.executable, "-c", "from flows.cli import main; main()", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )


def test_a_failed_flow_prints_its_reason_once_and_verbose_adds_the_traceback(
    prefect_harness, tmp_path
) -> None:
    bad = tmp_path / "garbage.jsonl"
    bad.write_text("not json\n" * 120)  # past ingest.min_lines_for_quarantine_share
    plain = _ratchet(tmp_path / "home", "ingest", str(bad), "--agent", "shop-assistant")
    assert plain.returncode == 1, plain.stderr[-2000:]
    errors = [line for line in plain.stderr.splitlines() if "max_quarantine_share" in line]
    assert len(errors) == 1 and errors[0].startswith("error: IngestFailed: "), plain.stderr
    assert "Traceback" not in plain.stderr + plain.stdout
    verbose = _ratchet(
        tmp_path / "home2", "--verbose", "ingest", str(bad), "--agent", "shop-assistant"
    )
    assert verbose.returncode == 1
    assert "Traceback" in verbose.stderr and "error: IngestFailed: " in verbose.stderr


def test_weekly_with_a_missing_path_is_bad_usage_like_ingest(ratchet_env) -> None:
    for args in (
        ["weekly", "--logs", "/missing/logs"],
        ["ingest", "/missing/logs"],
        ["weekly", "--feedback", "/missing/fb"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert "no input files match" in result.output


def test_summaries_are_words_not_dicts() -> None:
    from flows.cli import _print_summary, _readable

    assert _readable({"interactions": 655, "feedback": 115}) == "feedback 115, interactions 655"
    assert _readable({}) == "none" and _readable(None) == "-"

    buf = io.StringIO()
    with redirect_stdout(buf):
        _print_summary(
            "ingest",
            {
                "files": 2,
                "stored": {"interactions": 3, "feedback": 1},
                "quarantined": {},
                "versions": {"a/sft": "v1 (3 rows, new)"},
            },
        )
    text = buf.getvalue()
    assert "{" not in text and "'" not in text
    assert "  stored: feedback 1, interactions 3" in text and "  quarantined: none" in text
    assert "    a/sft: v1 (3 rows, new)" in text


def test_record_and_read_commands_do_not_import_prefect_gx_or_pandas(ratchet_env) -> None:
    probe = (
        "import sys\n"
        "from flows.cli import main\n"
        "for args in (['feedback', 'add', '--help'], ['datasets', 'list'], ['config', 'show'],\n"
        "             ['feedback', 'add', '--interaction', 'x', '--rating', '3']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in ('prefect', 'great_expectations', 'pandas') if m in sys.modules))\n"
    )
    env = {**os.environ, "RATCHET_HOME": str(ratchet_env)}
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr


def test_a_weekly_run_ends_saying_where_its_report_is(ratchet_env, monkeypatch, capsys) -> None:
    from flows import cli

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    cli._print_where_to_look()
    out = capsys.readouterr().out
    assert "`weekly-report` artifact" in out and "prefect server start" in out
    assert "ratchet models list" in out and "store: " in out
    monkeypatch.setenv("PREFECT_API_URL", "http://prefect.internal:4200/api")
    cli._print_where_to_look()
    assert "(http://prefect.internal:4200/runs)" in capsys.readouterr().out
