"""Exactly once under SIGKILL: kill ingest at each dangerous point, run again, count rows.

The killed run is a real child process (``os.kill(os.getpid(), SIGKILL)``: no cleanup, no
finally blocks, no atexit), so what it leaves behind is what a crashed worker would leave. The
runs after it (recovery, an overlapping file) are ordinary ingests in this process, with the same
settings and config as the child: a fresh process each would only add its imports (seconds).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from datetime import UTC, datetime
    from pathlib import Path
    from ratchet.config import PipelineConfig
    from ratchet.db import open_database, repo
    from ratchet.ingest.pipeline import IngestContext, ingest_file
    from ratchet.redaction import Redactor
    from ratchet.settings import get_settings
    from ratchet.store import Store

    point, path, kind = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    calls = {"n": 0}

    def die(*_a, **_k):
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "mid_file":  # after the first batch's parts are written
        original = Store.write_part
        def write_then_maybe_die(self, *a, **k):
            calls["n"] += 1
            if calls["n"] > 2:
                die()
            return original(self, *a, **k)
        Store.write_part = write_then_maybe_die
    elif point == "before_commit":  # every part written, ledger not committed
        repo.record_part = die
    elif point == "inside_commit":  # some parts recorded in the open transaction
        original_record = repo.record_part
        def record_then_maybe_die(*a, **k):
            calls["n"] += 1
            if calls["n"] > 1:
                die()
            return original_record(*a, **k)
        repo.record_part = record_then_maybe_die

    settings = get_settings()
    # worker processes only where the kill lands mid-file (they must not outlive their parent)
    workers = 2 if point == "mid_file" else 1
    # the second opinion (Presidio, its own tests) is off: this is about commits, not detection
    config = PipelineConfig.model_validate({"ingest": {"batch_size": 100, "workers": workers},
                                            "quality": {"second_opinion_enabled": False}})
    ctx = IngestContext(
        store=Store(settings.store_root), sessions=open_database(settings), config=config,
        redactor=Redactor(config.redaction), pseudonym_key=b"k" * 32,
        now=datetime(2026, 11, 20, tzinfo=UTC),
    )
    print(ingest_file(ctx, path, kind=kind).stored)
    """
)


def _ingest(home: Path, path: Path) -> None:
    """An ordinary run (what ``CHILD`` does without a kill point), here in the test process."""
    from datetime import UTC, datetime

    from ratchet.config import PipelineConfig
    from ratchet.db import open_database
    from ratchet.ingest.pipeline import IngestContext, ingest_file
    from ratchet.redaction import Redactor
    from ratchet.settings import get_settings
    from ratchet.store import Store

    settings = get_settings(home=home)
    config = PipelineConfig.model_validate(
        {"ingest": {"batch_size": 100, "workers": 1}, "quality": {"second_opinion_enabled": False}}
    )
    ctx = IngestContext(
        store=Store(settings.store_root),
        sessions=open_database(settings),
        config=config,
        redactor=Redactor(config.redaction),
        pseudonym_key=b"k" * 32,
        now=datetime(2026, 11, 20, tzinfo=UTC),
    )
    ingest_file(ctx, path, kind="interactions")


def _lines(n: int, start: int = 0) -> list[str]:
    out = []
    for i in range(start, start + n):
        out.append(
            json.dumps(
                {
                    "interaction_id": f"i-{i}",
                    "agent_id": "shop-assistant",
                    "timestamp": f"2026-11-0{1 + i % 5}T10:00:00Z",
                    "messages": [{"role": "user", "content": f"question {i}"}],
                    "response": f"answer {i}",
                    "feedback": {"thumb": 1 if i % 2 else -1, "timestamp": "2026-11-10T00:00:00Z"},
                }
            )
        )
    return out


def _run(
    home: Path, point: str, path: Path, kind: str = "interactions"
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
    env["RATCHET_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-c", CHILD, point, str(path), kind],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _stored_ids(home: Path, table: str, column: str) -> list[str]:
    from ratchet.db import open_database, repo
    from ratchet.schemas import FEEDBACK, INTERACTIONS
    from ratchet.settings import get_settings
    from ratchet.store import Store

    settings = get_settings(home=home)
    with open_database(settings)() as s:
        paths = [p.path for p in repo.list_parts(s, table)]
    schema = INTERACTIONS if table == "interactions" else FEEDBACK
    return (
        Store(settings.store_root).read_tables(paths, schema, [column]).column(column).to_pylist()
    )


@pytest.mark.parametrize("point", ["mid_file", "before_commit", "inside_commit"])
def test_killed_run_then_rerun_stores_everything_once(
    tmp_path: Path, ratchet_env: Path, point: str
) -> None:
    home = ratchet_env  # this process's RATCHET_* say only this home, as the child's do
    f = tmp_path / "week.jsonl"
    f.write_text("\n".join(_lines(350)) + "\n")

    killed = _run(home, point, f)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    if home.joinpath("ratchet.db").exists():  # batches commit one by one: a prefix, no dupes
        before = _stored_ids(home, "interactions", "interaction_id")
        assert len(before) == len(set(before)) < 350

    _ingest(home, f)  # the rerun: raises if it fails
    ids = _stored_ids(home, "interactions", "interaction_id")
    assert len(ids) == 350 and len(set(ids)) == 350
    feedback = _stored_ids(home, "feedback", "interaction_id")
    assert sorted(feedback) == sorted(f"i-{i}" for i in range(350))

    # an overlapping file after recovery adds only its new records
    g = tmp_path / "overlap.jsonl"
    g.write_text("\n".join(_lines(100, start=300)) + "\n")
    _ingest(home, g)
    ids = _stored_ids(home, "interactions", "interaction_id")
    assert len(ids) == 400 and len(set(ids)) == 400


def test_gc_after_a_kill_leaves_exactly_the_ledgers_files(
    tmp_path: Path, ratchet_env: Path
) -> None:
    """A kill between writing and committing leaves parts nobody references (here the killed
    file is never retried); after other runs, ``store gc`` leaves exactly the ledger's files."""
    from datetime import timedelta

    from ratchet.db import open_database, repo
    from ratchet.settings import get_settings
    from ratchet.store import Store, collect_orphans

    home = ratchet_env
    f = tmp_path / "week.jsonl"
    f.write_text("\n".join(_lines(350) + ["not json"] * 3) + "\n")
    killed = _run(home, "before_commit", f)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    g = tmp_path / "other.jsonl"
    g.write_text("\n".join(_lines(50, start=1000)) + "\n")
    _ingest(home, g)

    settings = get_settings(home=home)
    store = Store(settings.store_root)

    def referenced() -> set[str]:
        with open_database(settings)() as s:
            return repo.referenced_part_paths(s)

    on_disk = {p for t in ("interactions", "feedback", "quarantine") for p in store.list_files(t)}
    assert on_disk > referenced()  # the killed run's parts
    report = collect_orphans(store, referenced, grace=timedelta(0))
    after = {p for t in ("interactions", "feedback", "quarantine") for p in store.list_files(t)}
    assert after == referenced()
    assert set(report.deleted) == on_disk - after
