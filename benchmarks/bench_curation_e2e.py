"""Curation end to end, through the store and the ledger, on ingested data.

``bench_curation`` times the curation core on tables already in memory. This one times what an
operator waits for: ``ratchet.curation.registry.curate_agent`` for every agent — select the
feedback window from the ledger, read the parts that hold the selected interactions, curate,
run the five quality suites, write and register the dataset versions, write the exports — after
a real ingest of the same data. Each step runs in its own process, so its peak RSS is its own.

    python -m benchmarks.bench_curation_e2e               # 1,000,000 interactions, 15% with feedback
    python -m benchmarks.bench_curation_e2e --n 100000    # quick
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
from ratchet.curation.registry import CurationContext, curate_agent
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
print(json.dumps({"seconds": elapsed, "agents": len(agents), "rows": rows,
                  "peak_rss_mb": peak()}))
"""
)


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
    args = parser.parse_args(argv)

    from ratchet.sample import write_interactions

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "interactions.jsonl"
        home = Path(tmp) / "home"
        t = time.perf_counter()
        size = write_interactions(src, args.n, seed=3, feedback_share=args.feedback_share)
        generated = time.perf_counter() - t
        ingest = _child(INGEST, str(src), str(home))
        src.unlink()
        curate = _child(CURATE, "-", str(home))
    print(
        f"input: {args.n:,} interactions, {size / 1e6:,.0f} MB, "
        f"{args.feedback_share:.0%} with feedback (generated in {generated:.0f} s)"
    )
    print("| step | seconds | peak RSS |")
    print("|---|---|---|")
    print(
        f"| ingest (stored {ingest['stored']}) | {ingest['seconds']:.1f} | "
        f"{ingest['peak_rss_mb']:,.0f} MB (writer) |"
    )
    print(
        f"| curate, {curate['agents']} agents, through store and ledger | "
        f"{curate['seconds']:.1f} | {curate['peak_rss_mb']:,.0f} MB |"
    )
    print("rows per agent and kind:", json.dumps(curate["rows"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
