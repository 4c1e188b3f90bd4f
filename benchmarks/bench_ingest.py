"""Ingest end to end against its floor, in the same run, at two input sizes.

* floor: ``pyarrow.json.read_json`` of the same file and one Parquet write, nothing else (no
  validation, no redaction, no dedupe, no ledger);
* ratchet: ``ratchet.ingest.pipeline.ingest_file`` on a fresh home (SQLite ledger, local store),
  i.e. parse + validate + redact + pseudonymise + residual scan + dedupe + write + GX + commit.

Each measurement runs in its own process, so its peak RSS (``ru_maxrss``) is its own. Two sizes
show whether memory stays flat as the input grows (it should: batches are bounded).

    python -m benchmarks.bench_ingest                 # 250k and 500k interactions
    python -m benchmarks.bench_ingest --sizes 20000   # quick
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD_FLOOR = """
import json, resource, sys, time
import pyarrow.json as pj, pyarrow.parquet as pq
src, out = sys.argv[1], sys.argv[2]
t = time.perf_counter()
table = pj.read_json(src)
pq.write_table(table, out, compression="zstd")
elapsed = time.perf_counter() - t
print(json.dumps({"seconds": elapsed, "rows": table.num_rows,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

CHILD_RATCHET = """
import json, resource, sys, time
from datetime import UTC, datetime
from pathlib import Path
from ratchet.config import PipelineConfig
from ratchet.db import open_database
from ratchet.ingest.pipeline import IngestContext, ingest_file
from ratchet.redaction import Redactor
from ratchet.settings import get_settings
from ratchet.store import Store
src, home = Path(sys.argv[1]), Path(sys.argv[2])
settings = get_settings(home=home)
config = PipelineConfig()
ctx = IngestContext(store=Store(settings.store_root), sessions=open_database(settings),
    config=config, redactor=Redactor(config.redaction), pseudonym_key=b"b" * 32,
    now=datetime(2026, 11, 20, tzinfo=UTC))
t = time.perf_counter()
report = ingest_file(ctx, src)
elapsed = time.perf_counter() - t
print(json.dumps({"seconds": elapsed, "rows": sum(report.stored.values()),
                  "quarantined": sum(report.quarantined.values()),
                  "consent_dropped": report.dropped_consent,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "worker_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def _child(code: str, *args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[250_000, 500_000])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    from ratchet.sample import write_interactions

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            src = Path(tmp) / f"interactions-{n}.jsonl"
            t = time.perf_counter()
            size = write_interactions(src, n, seed=args.seed)
            gen = time.perf_counter() - t
            mb = size / 1e6
            floor = _child(CHILD_FLOOR, str(src), str(Path(tmp) / "floor.parquet"))
            ours = _child(CHILD_RATCHET, str(src), str(Path(tmp) / f"home-{n}"))
            rows.append((n, mb, gen, floor, ours))
            src.unlink()
    print(
        "| interactions | input MB | floor s (MB/s) | ratchet s (MB/s) | speed vs floor | "
        "floor peak RSS | ratchet peak RSS (writer / largest worker) |"
    )
    print("|---|---|---|---|---|---|---|")
    for n, mb, _gen, floor, ours in rows:
        print(
            f"| {n:,} | {mb:,.0f} | {floor['seconds']:.1f} ({mb / floor['seconds']:.0f}) | "
            f"{ours['seconds']:.1f} ({mb / ours['seconds']:.0f}) | "
            f"{floor['seconds'] / ours['seconds']:.2f}x | {floor['peak_rss_mb']:,.0f} MB | "
            f"{ours['peak_rss_mb']:,.0f} MB / {ours['worker_peak_rss_mb']:,.0f} MB |"
        )
        accounted = ours["rows"] + ours["consent_dropped"] + ours["quarantined"]
        assert accounted == n, f"stored {ours['rows']} of {n}, the rest unaccounted for"
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
