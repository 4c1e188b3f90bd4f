"""Scale-out (issue 14): the same ingest on a Dask cluster of 1 and of 2 worker processes, and
the ledger's commit rate under parallel writers on PostgreSQL.

* ingest: one file of N synthetic interactions (``ratchet.sample.write_interactions``, ~1.3 KB
  each, PII in 8 %) cut into byte ranges (``ratchet.ingest.ranges.cut_ranges``), each range a
  Dask task running the core's ``ingest_file(byte_range=...)`` exactly as a flow's task does
  (settings, store and database rebuilt on the worker from the environment). The store is a
  local folder, the ledger the PostgreSQL server this script starts (as the test suite does).
  Each worker count gets a fresh store and database. Reported: seconds, records/s, speed-up of
  2 workers over 1, and records/s per worker. Prefect is left out on purpose: its overhead is
  per task run (~10 ms, docs/ENVIRONMENT.md), noise next to a 32 MiB range.
* ledger: W writer processes (W = 1, 2, 4) each commit parts of K record keys through the same
  path as ingest (per-agent commit lock + ``record_part``, COPY of the keys), once with every
  writer on its own agent and once with all on one agent (the lock serialises them).
  Reported: record keys committed per second, all writers together.

    python -m benchmarks.bench_scale --records 50000            # quick
    python -m benchmarks.bench_scale --records 1000000          # the issue's size
    python -m benchmarks.bench_scale --skip-ingest              # ledger only
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.integration.conftest import _as_server_user, _free_port, _run


def start_postgres(root: Path) -> tuple[Any, Any]:
    """A throwaway PostgreSQL server (the suite's settings: fsync off); returns (url, stop)."""
    import psycopg

    binaries = {n: shutil.which(n) for n in ("initdb", "pg_ctl")}
    if None in binaries.values():
        raise SystemExit("PostgreSQL server binaries (initdb, pg_ctl) are not on PATH")
    data, sock = root / "data", root / "sock"
    sock.mkdir(parents=True)
    root.chmod(0o700)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(sock, "postgres", "postgres")
    port = _free_port()
    _run(_as_server_user([str(binaries["initdb"]), "-D", str(data), "-U", "postgres", "-A",
                          "trust", "-E", "UTF8", "--no-sync"]))  # fmt: skip
    options = (
        f"-k {sock} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
    )
    pg_ctl = str(binaries["pg_ctl"])
    _run(_as_server_user([pg_ctl, "-D", str(data), "-l", str(root / "log"), "-o", options,
                          "-w", "-t", "120", "start"]))  # fmt: skip

    def stop() -> None:
        subprocess.run(_as_server_user([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]),
                       capture_output=True, timeout=60, check=False)  # fmt: skip

    def create(name: str) -> str:
        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:  # fmt: skip
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{port}/{name}"

    return create, stop


# --- ingest on Dask ----------------------------------------------------------------------------
def _ingest_range(path: str, source: str, rng: tuple[int, int, int], now: str) -> dict[str, Any]:
    """One range, on a worker: services from the environment, as tasks/ingest.py does."""
    from datetime import datetime

    from ratchet.config import load_config
    from ratchet.ingest.pipeline import IngestContext, ingest_file
    from ratchet.ingest.ranges import ByteRange
    from ratchet.redaction import Redactor
    from tasks import runtime

    s = runtime.settings()
    config = load_config(s, {"ingest": {"workers": 1}})
    ctx = IngestContext(
        store=runtime.store(s), sessions=runtime.sessions(s), config=config,
        redactor=Redactor(config.redaction), pseudonym_key=runtime.pseudonym_key(s),
        now=datetime.fromisoformat(now),
    )  # fmt: skip
    report = ingest_file(ctx, Path(path), source=source, byte_range=ByteRange(*rng))
    return {"stored": sum(report.stored.values()), "lines": report.lines}


def measure_ingest(src: Path, workers: int, chunk: int, db_url: str, home: Path) -> dict[str, Any]:
    import distributed

    from ratchet.db import open_database, repo
    from ratchet.ingest.ranges import cut_ranges
    from ratchet.ingest.reader import file_sha256
    from ratchet.settings import get_settings

    env = {"RATCHET_HOME": str(home), "RATCHET_DATABASE_URL": db_url,
           "RATCHET_PSEUDONYM_KEY": "b" * 32}  # fmt: skip
    os.environ.update(env)
    source = file_sha256(src)
    sessions = open_database(get_settings())  # migrate once, before the workers start
    with sessions() as s, s.begin():
        repo.begin_source_file(s, file_id=source, kind="interactions", name="bench",
                               size_bytes=src.stat().st_size)  # fmt: skip
    ranges = cut_ranges(src, chunk)
    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:  # fmt: skip
        client.run(lambda: __import__("ratchet.ingest.pipeline"))  # imports out of the timing
        start = time.perf_counter()
        futures = [
            client.submit(
                _ingest_range,
                str(src),
                source,
                (r.start, r.end, r.first_line),
                "2026-11-20T00:00:00+00:00",
                pure=False,
            )
            for r in ranges
        ]
        results = client.gather(futures)
        seconds = time.perf_counter() - start
    stored = sum(r["stored"] for r in results)
    return {
        "workers": workers, "ranges": len(ranges), "seconds": round(seconds, 1),
        "stored": stored, "records_per_s": round(stored / seconds),
        "records_per_s_per_worker": round(stored / seconds / workers),
    }  # fmt: skip


# --- ledger commit rate ------------------------------------------------------------------------
def _writer(db_url: str, agent: str, writer: int, parts: int, keys: int, q: Any, go: Any) -> None:
    from ratchet.db import repo
    from ratchet.db.session import session_factory

    sessions = session_factory(db_url)
    with sessions() as s:  # connect before the clock starts
        repo.lookup_keys(s, "interaction", agent, ["warm-up"])
    q.put("ready")
    go.wait()
    start = time.perf_counter()
    for p in range(parts):
        with sessions() as s, s.begin():
            repo.lock_agents_for_commit(s, [agent])
            part = repo.PartRecord(
                table_name="interactions", path=f"bench/{agent}/{writer}-{p}.parquet",
                rows=keys, content_hash=f"{writer}-{p}", redaction_version="bench",
                agent_id=agent,
            )  # fmt: skip
            repo.record_part(s, part, [(f"w{writer}-p{p}-r{i}", "h" * 16) for i in range(keys)])
    q.put(time.perf_counter() - start)


def measure_ledger(
    create: Any, writers: int, same_agent: bool, parts: int, keys: int
) -> dict[str, Any]:
    from ratchet.db.session import session_factory, upgrade

    url = create(f"ledger_{writers}_{int(same_agent)}")
    engine = session_factory(url).kw["bind"]
    upgrade(engine)
    ctx = multiprocessing.get_context("spawn")
    q, go = ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(
            target=_writer,
            args=(url, "agent-0" if same_agent else f"agent-{w}", w, parts, keys, q, go),
        )
        for w in range(writers)
    ]
    for p in procs:
        p.start()
    ready = [q.get() for _ in procs]  # every writer connected: start them together
    assert ready == ["ready"] * writers
    start = time.perf_counter()
    go.set()
    busy = [q.get() for _ in procs]
    wall = time.perf_counter() - start
    for p in procs:
        p.join()
    total = writers * parts * keys
    return {
        "writers": writers, "agents": 1 if same_agent else writers, "keys": total,
        "seconds": round(max(busy), 2), "keys_per_s": round(total / max(busy)),
        "wall_s": round(wall, 2),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--chunk-mb", type=float, default=16.0, help="byte range size (MiB)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--ledger-parts", type=int, default=10)
    ap.add_argument("--ledger-keys", type=int, default=10_000, help="record keys per part")
    ap.add_argument("--skip-ingest", action="store_true")
    ap.add_argument("--skip-ledger", action="store_true")
    args = ap.parse_args(argv)

    from ratchet.sample import write_interactions

    root = Path(tempfile.mkdtemp(prefix="ratchet-bench-scale-"))
    pg_root = Path(tempfile.mkdtemp(prefix="ratchet-bench-pg-"))  # owned by the server's user
    create, stop = start_postgres(pg_root)
    out: dict[str, Any] = {"records": args.records, "cpus": os.cpu_count(),
                           "load_avg_at_start": os.getloadavg()[0]}  # fmt: skip
    try:
        if not args.skip_ingest:
            src = root / "interactions.jsonl"
            t = time.perf_counter()
            write_interactions(src, args.records, seed=14, compress=False)
            out["input_mb"] = round(src.stat().st_size / 1e6, 1)
            out["generate_s"] = round(time.perf_counter() - t, 1)
            runs = []
            for w in args.workers:
                chunk = int(args.chunk_mb * (1 << 20))
                runs.append(measure_ingest(src, w, chunk, create(f"ingest_{w}"), root / f"h{w}"))
                print(json.dumps(runs[-1]), flush=True)  # each as it ends

            out["ingest"] = runs
            if len(runs) > 1:
                out["speedup"] = round(runs[0]["seconds"] / runs[-1]["seconds"], 2)
            print(json.dumps(out["ingest"]), flush=True)
        if not args.skip_ledger:
            out["ledger"] = [
                measure_ledger(create, w, same, args.ledger_parts, args.ledger_keys)
                for w in (1, 2, 4)
                for same in (False, True)
                if not (w == 1 and same)
            ]
        out["load_avg_at_end"] = os.getloadavg()[0]
    finally:
        stop()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(pg_root, ignore_errors=True)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
