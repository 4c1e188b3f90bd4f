"""Compaction under SIGKILL: readers see every record exactly once at every point, and a rerun
finishes the job with the bytes the killed run had started to write.

The killed run is a real child process (``os.kill(os.getpid(), SIGKILL)``: no cleanup, no
finally blocks), as in ``test_ingest_crash.py``; the checks and the rerun run here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from ratchet import schemas
from ratchet.compaction import compact, plan_compaction
from ratchet.config import StoreConfig
from ratchet.db import open_database, repo
from ratchet.db.models import FeedbackIndex
from ratchet.settings import get_settings
from ratchet.store import Store
from tests.unit.compaction_parts import add_part, keys_resolve, live_rows

AGENT = "shop-bot"
TARGET = 16
CFG = StoreConfig(compaction_target_rows=TARGET, compaction_grace_s=0)

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from ratchet import compaction
    from ratchet.config import StoreConfig
    from ratchet.db import open_database
    from ratchet.settings import get_settings
    from ratchet.store import Store

    point, target = sys.argv[1], int(sys.argv[2])
    calls = {"n": 0}

    def die(*_a, **_k):
        os.kill(os.getpid(), signal.SIGKILL)

    def after(n, original):
        def wrapped(*a, **k):
            calls["n"] += 1
            if calls["n"] > n:
                die()
            return original(*a, **k)
        return wrapped

    if point == "mid_write":  # the first partition: two of its parts written, none committed
        Store.write_part = after(2, Store.write_part)
    elif point == "inside_commit":  # new parts recorded and keys moved in the open transaction
        compaction._move_keys = after(1, compaction._move_keys)
    elif point == "between_partitions":  # the first partition switched, the second not yet
        compaction.write_compacted = after(1, compaction.write_compacted)
    elif point == "mid_purge":  # everything switched, one retired file deleted
        Store.delete = after(1, Store.delete)
    settings = get_settings()
    config = StoreConfig(compaction_target_rows=target, compaction_grace_s=0)
    compaction.compact(Store(settings.store_root), open_database(settings), config)
    """
)


def _check_readers(store: Store, sessions) -> None:
    """Every record exactly once, through the part list and through its record key; the
    feedback index names exactly the live parts and their interactions."""
    for table, id_col, n in (
        ("interactions", "interaction_id", 60),
        ("feedback", "feedback_id", 30),
    ):
        ids = live_rows(store, sessions, table)[id_col].to_pylist()
        assert len(ids) == n and len(set(ids)) == n, table
        assert set(keys_resolve(store, sessions, table).values()) == {1}, table
    with sessions() as s:
        live = {p.id: p.path for p in repo.list_parts(s, "feedback")}
        index = Counter(s.execute(select(FeedbackIndex.part_id)).scalars())
    assert set(index) == set(live)
    for pid, path in live.items():
        iids = store.read_table(path, schemas.FEEDBACK, ["interaction_id"])["interaction_id"]
        assert index[pid] == len(set(iids.to_pylist()))


def _files(store: Store) -> set[str]:
    return set(store.list_files("interactions")) | set(store.list_files("feedback"))


@pytest.mark.parametrize("point", ["mid_write", "inside_commit", "between_partitions", "mid_purge"])
def test_killed_compaction_then_rerun(ratchet_env: Path, point: str) -> None:
    settings = get_settings()
    store, sessions = Store(settings.store_root), open_database(settings)
    for n in range(12):  # 60 interactions in 12 parts, 30 feedback events in 6
        add_part(
            store, sessions, "interactions", AGENT, "2026-11-02", [f"i{n}-{k}" for k in range(5)]
        )
    for n in range(6):
        add_part(
            store, sessions, "feedback", AGENT, "2026-11-02", [f"f{n}-{k}" for k in range(5)],
            [f"i{n}-{k}" for k in range(5)],
        )  # fmt: skip
    before = _files(store)
    _check_readers(store, sessions)

    env = {k: v for k, v in os.environ.items()}
    killed = subprocess.run(
        [sys.executable, "-c", CHILD, point, str(TARGET)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    _check_readers(store, sessions)
    left_behind = _files(store) - before  # written by the killed run

    report = compact(store, sessions, CFG)  # the rerun, grace 0: purges at once
    _check_readers(store, sessions)
    with sessions() as s:
        assert plan_compaction(s, CFG) == []  # nothing small left but remainders
        live = {p.path for t in ("interactions", "feedback") for p in repo.list_parts(s, t)}
    assert _files(store) == live  # retired files and orphans purged
    assert left_behind <= live  # the rerun wrote the same bytes under the same names
    assert len(live) == 4 + 2  # 60 rows -> 16+16+16+12, 30 -> 16+14
    assert report.conflicts == []
