"""Curation end to end, through the store and the ledger, on ingested data.

``bench_curation`` times the curation core on tables already in memory. This one times what an
operator waits for: ``ratchet.curation.registry.curate_agent`` for every agent — select the
feedback window from the ledger, read the parts that hold the selected interactions, curate,
run the five quality suites, write and register the dataset versions, write the exports — after
a real ingest of the same data. Each step runs in its own process, so its peak RSS is its own.

Issue 13: curation runs twice on the same ledger state, once on the parts as ingest left them
(one per agent and day per batch: thousands of small files) and once after ``ratchet store
compact`` (the database is restored to its post-ingest copy in between, so both runs do the same
work and register the same versions); the compaction itself is timed too. Curation uses the
feedback index either way.

    python -m benchmarks.bench_curation_e2e               # 1,000,000 interactions, 15% with feedback
    python -m benchmarks.bench_curation_e2e --n 100000    # quick
    python -m benchmarks.bench_curation_e2e --home DIR    # keep (or reuse) the ingested state
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMON = """
import json, resource, sys, time
from datetime import UTC, datetime
from pathlib import Path
from ratchet.config import PipelineConfig
from ratchet.db import open_database
from ratchet.redaction import Redactor
from ratchet.settings import get_settings
from ratchet.store import Store
home = Path(sys.argv[2])
settings = get_settings(home=home)
config = PipelineConfig()
store, sessions = Store(settings.store_root), open_database(settings)
def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""

INGEST = (
    COMMON
    + """
from ratchet.ingest.pipeline import IngestContext, ingest_file
ctx = IngestContext(store=store, sessions=sessions, config=config,
    redactor=Redactor(config.redaction), pseudonym_key=b"e" * 32,
    now=datetime(2026, 11, 20, tzinfo=UTC))
t = time.perf_counter()
report = ingest_file(ctx, Path(sys.argv[1]))
print(json.dumps({"seconds": time.perf_counter() - t, "stored": dict(report.stored),
                  "peak_rss_mb": peak()}))
"""
)

CURATE = (
    COMMON
    + """
from ratchet.curation import registry
from ratchet.curation.registry import CurationContext, curate_agent
# where the time goes, stage by stage (wrappers on the names the registry calls)
spent = {}
def timed(name, fn):
    def wrapper(*a, **k):
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - t0
    return wrapper
registry.select_inputs = timed("select (ledger + parts)", registry.select_inputs)
registry.curate = timed("curate (core)", registry.curate)
registry.validate_frame = timed("quality suites (GX)", registry.validate_frame)
_scanner_for = registry.scanner_for
def scanner_for(config):
    scanner = _scanner_for(config)  # one per process: wrap it once
    if not getattr(scanner, "_timed", False):
        scanner.scan = timed("second opinion (Presidio sample)", scanner.scan)
        scanner._timed = True
    return scanner
registry.scanner_for = scanner_for
from ratchet.curation.select import Window, agents_with_feedback
ctx = CurationContext(store=store, sessions=sessions, config=config,
    redactor=Redactor(config.redaction))
until = datetime.now(UTC)  # the window is on arrival (ledger commit time): all ingested so far
t = time.perf_counter()
window = Window(None, until)
with sessions() as s:
    agents = agents_with_feedback(s)
reports = {a: curate_agent(ctx, a, window) for a in agents}
elapsed = time.perf_counter() - t
rows = {a: {v["kind"]: v["rows"] for v in r.get("versions", [])} for a, r in reports.items()}
from ratchet.db.models import Part
from sqlalchemy import func, select
with sessions() as s:
    parts = dict(s.execute(select(Part.table_name, func.count()).where(Part.retired_at.is_(None))
                           .group_by(Part.table_name)).tuples().all())
read = {a: {k: r.get("selection", {}).get(k) for k in ("feedback_parts_read",
            "interaction_parts_read")} for a, r in reports.items()}
print(json.dumps({"seconds": elapsed, "agents": len(agents), "rows": rows,
                  "peak_rss_mb": peak(), "live_parts": parts, "parts_read": read,
                  "stages": {k: round(v, 2) for k, v in spent.items()}}))
"""
)

COMPACT = (
    COMMON
    + """
from ratchet.compaction import compact
t = time.perf_counter()
report = compact(store, sessions, config.store, purge=False)
print(json.dumps({"seconds": time.perf_counter() - t, "peak_rss_mb": peak(),
                  "partitions": report.partitions, "parts_in": report.parts_in,
                  "parts_out": report.parts_out, "rows": report.rows,
                  "mb_in": report.bytes_in / 1e6, "mb_out": report.bytes_out / 1e6}))
"""
)


def _interleave(src: Path, ways: int) -> None:
    """Deal the lines round-robin into ``ways`` runs and concatenate them: the generator writes
    in time order, so each ingest batch then spans every day (a shuffled input, the case that
    makes one small part per agent and day per batch). Streams; memory stays small."""
    import shutil

    runs = [src.with_name(f"{src.name}.{i}") for i in range(ways)]
    outs = [r.open("wb") for r in runs]
    with src.open("rb") as fh:
        for i, line in enumerate(fh):
            outs[i % ways].write(line)
    for out in outs:
        out.close()
    with src.open("wb") as dst:
        for r in runs:
            with r.open("rb") as fh:
                shutil.copyfileobj(fh, dst)
            r.unlink()


def _copy_db(src: Path, dst: Path) -> None:
    """A consistent copy of the SQLite ledger (the backup API, WAL included)."""
    import sqlite3

    for stale in (dst, dst.with_name(dst.name + "-wal"), dst.with_name(dst.name + "-shm")):
        stale.unlink(missing_ok=True)
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)


def _child(code: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--feedback-share", type=float, default=0.15)
    parser.add_argument("--home", type=Path, help="keep the ingested state here (reused if there)")
    parser.add_argument(
        "--interleave", type=int, default=0,
        help="shuffle the input by dealing its lines into this many runs (0: time order)",
    )  # fmt: skip
    args = parser.parse_args(argv)

    from ratchet.sample import write_interactions

    with tempfile.TemporaryDirectory() as tmp:
        home = args.home or Path(tmp) / "home"
        db, snapshot = home / "ratchet.db", home / "ratchet.db.ingested"
        ingest: dict | None = None
        if not snapshot.exists():
            src = Path(tmp) / "interactions.jsonl"
            t = time.perf_counter()
            size = write_interactions(src, args.n, seed=3, feedback_share=args.feedback_share)
            if args.interleave > 1:
                _interleave(src, args.interleave)
            generated = time.perf_counter() - t
            print(
                f"input: {args.n:,} interactions, {size / 1e6:,.0f} MB, "
                f"{args.feedback_share:.0%} with feedback, "
                f"{f'dealt into {args.interleave} runs' if args.interleave > 1 else 'time order'} "
                f"(generated in {generated:.0f} s)"
            )
            ingest = _child(INGEST, str(src), str(home))
            src.unlink()
            _copy_db(db, snapshot)
        else:
            _copy_db(snapshot, db)
        before = _child(CURATE, "-", str(home))
        _copy_db(snapshot, db)  # the same ledger state again: no version registered yet
        compacted = _child(COMPACT, "-", str(home))
        after = _child(CURATE, "-", str(home))
    print("| step | seconds | peak RSS |")
    print("|---|---|---|")
    if ingest is not None:
        print(
            f"| ingest (stored {ingest['stored']}) | {ingest['seconds']:.1f} | "
            f"{ingest['peak_rss_mb']:,.0f} MB (writer) |"
        )
    for label, run in (("as ingested", before), ("after compaction", after)):
        print(
            f"| curate, {run['agents']} agents, {label} (live parts {run['live_parts']}) | "
            f"{run['seconds']:.1f} | {run['peak_rss_mb']:,.0f} MB |"
        )
    print(
        f"| compact: {compacted['partitions']} partitions, {compacted['parts_in']:,} parts "
        f"({compacted['mb_in']:,.0f} MB) -> {compacted['parts_out']:,} ({compacted['mb_out']:,.0f} "
        f"MB), {compacted['rows']:,} rows | {compacted['seconds']:.1f} | "
        f"{compacted['peak_rss_mb']:,.0f} MB |"
    )
    for label, run in (("as ingested", before), ("after compaction", after)):
        print(f"seconds by stage, {label}:", json.dumps(run["stages"]))
    print("parts read per agent, as ingested:", json.dumps(before["parts_read"]))
    print("parts read per agent, after compaction:", json.dumps(after["parts_read"]))
    print("rows per agent and kind:", json.dumps(after["rows"]))
    if after["rows"] != before["rows"]:
        print("MISMATCH: curation made other rows after compaction:", json.dumps(before["rows"]))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
