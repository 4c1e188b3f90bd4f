"""Ingest end to end against its floor, in the same run, at several input sizes.

* floor: ``pyarrow.json.read_json`` of the same file and one Parquet write, nothing else (no
  validation, no redaction, no dedupe, no ledger);
* ratchet: ``ratchet.ingest.pipeline.ingest_file`` on a fresh home (SQLite ledger, local store),
  i.e. parse + validate + redact + pseudonymise + residual scan + dedupe + write + GX + commit,
  with the vectorised path (``--mode fast``, the default config), the per-line path
  (``--mode slow``: ``ingest.fast_path: false``) or both, one after the other on the same file.

Each measurement runs in its own process. Peak memory is the peak of the *sum* of the resident
sets of the measured process and all its children (worker processes included), sampled every
50 ms with psutil; CPU seconds are the process tree's user + system time, which say more than
wall time on a shared machine. ``--pii-rate`` sets the generator's share of records with PII
(issue 13 measures at 0.3).

    python -m benchmarks.bench_ingest                                  # 250k and 500k, both paths
    python -m benchmarks.bench_ingest --sizes 20000 --mode both        # quick
    python -m benchmarks.bench_ingest --sizes 2000000 --mode fast      # memory at 2M
    python -m benchmarks.bench_ingest --profile 30000 --out DIR        # pyinstrument, both paths
    python -m benchmarks.bench_ingest --redaction-runs 5               # redaction vs RE2 floor
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

CHILD_FLOOR = """
import json, resource, sys, time
import pyarrow.json as pj, pyarrow.parquet as pq
src, out = sys.argv[1], sys.argv[2]
t = time.perf_counter()
table = pj.read_json(src)
pq.write_table(table, out, compression="zstd")
elapsed = time.perf_counter() - t
print(json.dumps({"seconds": elapsed, "rows": table.num_rows, "cpu_s": sum(
    getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    for f in ("ru_utime", "ru_stime"))}))
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
src, home, fast, workers, profile = (Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "fast",
                                     int(sys.argv[4]), sys.argv[5])
settings = get_settings(home=home)
config = PipelineConfig.model_validate({"ingest": {"fast_path": fast, "workers": workers},
                                        "quality": {"second_opinion_enabled": sys.argv[6] == "on"}})
ctx = IngestContext(store=Store(settings.store_root), sessions=open_database(settings),
    config=config, redactor=Redactor(config.redaction), pseudonym_key=b"b" * 32,
    now=datetime(2026, 11, 20, tzinfo=UTC))
profiler = None
if profile != "-":
    from pyinstrument import Profiler
    profiler = Profiler(interval=0.005)
    profiler.start()
t = time.perf_counter()
report = ingest_file(ctx, src)
elapsed = time.perf_counter() - t
if profiler is not None:
    profiler.stop()
    Path(profile).write_text(profiler.output_text(unicode=True, color=False, show_all=False))
print(json.dumps({"seconds": elapsed, "rows": sum(report.stored.values()),
                  "quarantined": sum(report.quarantined.values()),
                  "consent_dropped": report.dropped_consent, "cpu_s": sum(
    getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    for f in ("ru_utime", "ru_stime"))}))
"""


def _child(code: str, *args: str) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; its JSON line, plus the tree's peak RSS and CPU."""
    import psutil

    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            rss = 0
            for p in tree:
                try:
                    rss += p.memory_info().rss
                except psutil.Error:
                    pass
            peak[0] = max(peak[0], rss)
            done.wait(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, err = proc.communicate()
    done.set()
    thread.join()
    if proc.returncode:
        raise RuntimeError(f"benchmark child failed ({proc.returncode}):\n{err[-4000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_tree_rss_mb"] = peak[0] / 2**20
    return result


def _input(tmp: Path, n: int, seed: int, pii_rate: float) -> tuple[Path, float]:
    from ratchet.sample import write_interactions

    src = tmp / f"interactions-{n}.jsonl"
    size = write_interactions(src, n, seed=seed, pii_rate=pii_rate)
    return src, size / 1e6


def run_sizes(args: argparse.Namespace) -> None:
    modes = ["fast", "slow"] if args.mode == "both" else [args.mode]
    print(
        "| interactions | input MB | floor s (MB/s) | path | ratchet s (MB/s) | speed vs floor | "
        "CPU s, process tree | floor peak RSS | ratchet peak RSS (process tree) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for n in args.sizes:
            src, mb = _input(tmp, n, args.seed, args.pii_rate)
            floor = _child(CHILD_FLOOR, str(src), str(tmp / "floor.parquet"))
            (tmp / "floor.parquet").unlink()
            for mode in modes:
                home = tmp / f"home-{n}-{mode}"
                ours = _child(
                    CHILD_RATCHET, str(src), str(home), mode, str(args.workers), "-",
                    args.second_opinion,
                )  # fmt: skip
                subprocess.run(["rm", "-rf", str(home)], check=True)
                print(
                    f"| {n:,} | {mb:,.0f} | {floor['seconds']:.1f} ({mb / floor['seconds']:.0f}) "
                    f"| {mode} | {ours['seconds']:.1f} ({mb / ours['seconds']:.0f}) | "
                    f"{floor['seconds'] / ours['seconds']:.2f}x | {ours['cpu_s']:.0f} "
                    f"(floor {floor['cpu_s']:.0f}) | "
                    f"{floor['peak_tree_rss_mb']:,.0f} MB | {ours['peak_tree_rss_mb']:,.0f} MB |",
                    flush=True,
                )
                accounted = ours["rows"] + ours["consent_dropped"] + ours["quarantined"]
                assert accounted == n, f"stored {ours['rows']} of {n}, the rest unaccounted for"
            src.unlink()


def run_profile(args: argparse.Namespace) -> None:
    """Both paths in process (one worker: the profiler sees everything), pyinstrument text."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        src, mb = _input(tmp, args.profile, args.seed, args.pii_rate)
        for mode in ("slow", "fast"):
            target = out / f"profile-{mode}-{args.profile}.txt"
            result = _child(
                CHILD_RATCHET, str(src), str(tmp / mode), mode, "1", str(target),
                args.second_opinion,
            )  # fmt: skip
            print(f"{mode}: {result['seconds']:.1f} s, {mb:.0f} MB, profile in {target}")


def run_redaction(args: argparse.Namespace) -> None:
    """Redaction alone against the RE2 column-scan floor (benchmarks.bench_redaction), several
    runs in one process on the same column: min, median, max of the ratio."""
    from benchmarks.bench_redaction import bench_floor, bench_ratchet, make_texts

    arr = make_texts(args.redaction_records)
    mb = arr.nbytes / 1e6
    ratios, floors, ours = [], [], []
    for _ in range(args.redaction_runs):
        t_floor = bench_floor(arr)
        t_redact, _, _ = bench_ratchet(arr)
        floors.append(mb / t_floor)
        ours.append(mb / t_redact)
        ratios.append(t_floor / t_redact)
    print(f"{args.redaction_records:,} records, {mb:.0f} MB, {args.redaction_runs} runs")
    for name, values in (("floor MB/s", floors), ("ratchet MB/s", ours), ("ratio", ratios)):
        print(
            f"{name:14s} min {min(values):.2f}  median {statistics.median(values):.2f}  "
            f"max {max(values):.2f}  ({', '.join(f'{v:.2f}' for v in values)})"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[250_000, 500_000])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pii-rate", type=float, default=0.3)
    parser.add_argument("--mode", choices=["fast", "slow", "both"], default="both")
    parser.add_argument(
        "--second-opinion", choices=["on", "off"], default="on",
        help="quality.second_opinion_enabled (Presidio on a sample of every batch's tables)",
    )  # fmt: skip
    parser.add_argument("--workers", type=int, default=0, help="ingest.workers (0: default)")
    parser.add_argument("--profile", type=int, default=0, help="profile both paths at N records")
    parser.add_argument("--out", default="benchmarks/profiles", help="where profiles go")
    parser.add_argument("--redaction-runs", type=int, default=0)
    parser.add_argument("--redaction-records", type=int, default=500_000)
    args = parser.parse_args(argv)
    if args.profile:
        run_profile(args)
    elif args.redaction_runs:
        run_redaction(args)
    else:
        run_sizes(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
