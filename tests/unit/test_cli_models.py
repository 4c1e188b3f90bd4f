"""``ratchet models list/show/register-logs`` and ``ratchet ask``: output, --json and exit codes.

Interactions are stored by the real ingest core; no command here starts a Prefect flow.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from ratchet.config import load_config
from ratchet.db import open_database, repo
from ratchet.ingest.pipeline import IngestContext, ingest_file
from ratchet.redaction import Redactor, resolve_pseudonym_key
from ratchet.settings import get_settings
from ratchet.store import Store

AGENT = "help-desk"
runner = CliRunner()


@pytest.fixture
def logged(ratchet_env: Path, tmp_path: Path) -> Path:
    rows = [
        {
            "interaction_id": f"i-{n}",
            "agent_id": AGENT,
            "timestamp": "2026-01-05T09:00:00Z",
            "messages": [{"role": "user", "content": q}],
            "response": a,
        }
        for n, (q, a) in enumerate(
            [
                ("How do I reset my router password?", "Hold reset 10 s."),
                ("Do you ship to Ireland?", "Yes, in 3-5 days."),
            ]
        )
    ]
    path = tmp_path / "i.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    settings = get_settings()
    config = load_config(settings)
    ingest_file(
        IngestContext(
            store=Store(settings.store_root),
            sessions=open_database(settings),
            config=config,
            redactor=Redactor(config.redaction),
            pseudonym_key=resolve_pseudonym_key(settings),
            now=datetime.now(UTC),
        ),
        path,
        "interactions",
    )
    return tmp_path


def _json(args: list[str]) -> object:
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def test_register_list_show_ask(logged: Path) -> None:
    reg = _json(["models", "register-logs", "--agent", AGENT, "--json"])
    assert isinstance(reg, dict)
    assert reg["created"] is True and reg["status"] == "production"
    assert reg["interactions"] == 2 and reg["questions"] == 2
    version = reg["version"]
    assert reg["model_ref"] == f"models/{version}/"
    again = _json(["models", "register-logs", "--agent", AGENT, "--json"])
    assert again == reg | {"created": False}
    text = runner.invoke(app, ["models", "register-logs", "--agent", AGENT])
    assert text.exit_code == 0 and "already registered" in text.stdout

    listed = _json(["models", "list", "--json"])
    assert isinstance(listed, list) and [r["version"] for r in listed] == [version]
    assert set(listed[0]) == {
        "version",
        "agent",
        "backend",
        "model_ref",
        "status",
        "traffic_share",
        "parent",
        "training_run",
        "created",
        "promoted",
        "retired",
    }
    assert _json(["models", "list", "--agent", "someone-else", "--json"]) == []
    assert _json(["models", "list", "--status", "candidate", "--json"]) == []
    assert version in runner.invoke(app, ["models", "list"]).stdout

    shown = _json(["models", "show", version, "--json"])
    assert isinstance(shown, dict)
    assert shown["backend"] == "logs" and shown["training"] is None
    assert shown["parameters"]["questions"] == 2
    assert "backend: logs" in runner.invoke(app, ["models", "show", version]).stdout

    asked = _json(["ask", "--model", "production", "--agent", AGENT, "--json", "ship to Ireland?"])
    assert isinstance(asked, dict)
    assert asked["answer"] == "Yes, in 3-5 days." and asked["version"] == version
    assert asked["details"]["source"] == "logged" and asked["latency_ms"] >= 0
    plain = runner.invoke(app, ["ask", "--model", version, "reset router password"])
    assert plain.exit_code == 0 and plain.stdout == "Hold reset 10 s.\n"


@pytest.mark.parametrize(
    "args",
    [
        ["models", "show", "no-such-version"],
        ["models", "list", "--status", "great"],
        ["ask", "--model", "production", "hello"],
        ["ask", "--model", "no-such-version", "hello"],
        ["ask", "--model", "production", "--agent", AGENT, "   "],
    ],
)
def test_bad_usage_exits_2(logged: Path, args: list[str]) -> None:
    out = runner.invoke(app, args)
    assert out.exit_code == 2, out.output
    assert out.stderr.startswith("error: ") and len(out.stderr.strip().splitlines()) == 1


def test_ask_with_another_agents_version_exits_2(logged: Path) -> None:
    version = _json(["models", "register-logs", "--agent", AGENT, "--json"])["version"]  # type: ignore[index]
    out = runner.invoke(app, ["ask", "--model", version, "--agent", "other", "hello"])
    assert out.exit_code == 2 and "another agent" in out.stderr


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["models", "register-logs", "--agent", "nobody"], "no ingested interaction"),
        (["ask", "--model", "production", "--agent", "nobody", "hello"], "no production"),
    ],
)
def test_failures_exit_1_with_one_line(logged: Path, args: list[str], reason: str) -> None:
    out = runner.invoke(app, args)
    assert out.exit_code == 1, out.output
    assert reason in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_show_names_the_training_run(logged: Path) -> None:
    settings = get_settings()
    sessions = open_database(settings)
    with sessions() as s, s.begin():
        run = repo.create_training_run(
            s,
            agent_id=AGENT,
            training_type="sft",
            backend="local",
            base_model_version="base",
            created_by="test",
        )
        mv = repo.create_model_version(
            s,
            agent_id=AGENT,
            backend="local",
            model_ref=f"models/{run.id}/",
            training_run_id=run.id,
            parameters={"min_similarity": 0.5},
        )
        version, run_id = mv.id, run.id
    shown = _json(["models", "show", version, "--json"])
    assert isinstance(shown, dict)
    assert shown["training"]["id"] == run_id and shown["training"]["status"] == "pending"
    assert shown["status"] == "candidate"
    out = runner.invoke(app, ["ask", "--model", version, "hello"])  # its index was never built
    assert out.exit_code == 1 and "no retrieval index" in out.stderr


def test_read_commands_do_not_create_state(ratchet_env: Path) -> None:
    out = runner.invoke(app, ["models", "list"])
    assert out.exit_code == 1
    assert not ratchet_env.exists() or not any(ratchet_env.iterdir())


def test_models_and_ask_import_no_prefect_gx_or_pandas(logged: Path, ratchet_env: Path) -> None:
    import os
    import subprocess
    import sys

    version = _json(["models", "register-logs", "--agent", AGENT, "--json"])["version"]  # type: ignore[index]
    probe = (
        "import sys\n"
        "from flows.cli import main\n"
        f"for args in (['models', 'list'], ['models', 'show', {version!r}],\n"
        f"             ['ask', '--model', 'production', '--agent', {AGENT!r}, 'ship to Ireland?']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in ('prefect', 'great_expectations', 'pandas') if m in sys.modules))\n"
    )
    env = {**os.environ, "RATCHET_HOME": str(ratchet_env)}
    repo_root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Yes, in 3-5 days." in out.stdout, out.stdout + out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr
