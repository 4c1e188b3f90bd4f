"""Parallel ingest in the core, without Prefect or Dask: byte ranges cut at line boundaries, and
exactly-once commits when two writers race (SQLite; the PostgreSQL/Dask case is in
tests/integration/test_dask_ingest.py)."""

from __future__ import annotations

import dataclasses
import itertools
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from ratchet.db import repo
from ratchet.ingest.pipeline import IngestContext, ingest_file
from ratchet.ingest.ranges import ByteRange, cut_ranges
from ratchet.ingest.reader import iter_lines
from ratchet.store import Store, WrittenPart
from tests.unit.test_ingest import ctx, interaction, stored, write_jsonl  # noqa: F401

pytestmark = pytest.mark.usefixtures("ratchet_env")


@pytest.mark.parametrize("chunk", [1, 7, 50, 64, 1000, 10_000])
def test_ranges_cover_every_line_once_with_the_files_line_numbers(
    tmp_path: Path, chunk: int
) -> None:
    lines = [b"", b"a" * 120, b"bb", b"", b"c" * 3, b"d" * 70, b"e"]
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"\n".join(lines))  # the last line has no newline
    whole = list(iter_lines(path, 1 << 20))
    ranges = cut_ranges(path, chunk)
    assert ranges[0].start == 0 and ranges[-1].end == path.stat().st_size
    assert all(a.end == b.start for a, b in itertools.pairwise(ranges))
    got = [
        line
        for r in ranges
        for line in iter_lines(path, 1 << 20, start=r.start, end=r.end, first_line=r.first_line)
    ]
    assert got == whole
    if chunk < 50:
        assert len(ranges) > 1


def test_a_gzipped_or_small_file_is_one_range(tmp_path: Path) -> None:
    import gzip

    gz = tmp_path / "f.jsonl.gz"
    gz.write_bytes(gzip.compress(b"x\n" * 1000))
    assert cut_ranges(gz, 16) == [ByteRange(0, gz.stat().st_size, 1)]
    small = tmp_path / "s.jsonl"
    small.write_bytes(b"x\n")
    assert cut_ranges(small, 16) == [ByteRange(0, 2, 1)]


def test_ranges_of_one_file_store_each_record_once(
    ctx: IngestContext,  # noqa: F811
    tmp_path: Path,
) -> None:
    recs = [interaction(i) for i in range(40)] + [interaction(3)]  # a duplicate across ranges
    path = write_jsonl(tmp_path / "big.jsonl", [*recs, "{not json"])
    ranges = cut_ranges(path, 1500)
    assert len(ranges) > 3
    source = "f" * 64
    with ctx.sessions() as s, s.begin():
        repo.begin_source_file(s, file_id=source, kind="interactions", name="big", size_bytes=1)
    for r in ranges:
        ingest_file(ctx, path, source=source, byte_range=r)
    ids = stored(ctx, "interactions").column("interaction_id").to_pylist()
    assert sorted(ids) == sorted(f"int-{i}" for i in range(40))
    q = stored(ctx, "quarantine")
    assert q.column("source_line").to_pylist() == [42]  # the file's own line number
    # a range run again (a retried task) adds nothing, not even its quarantine row twice
    ingest_file(ctx, path, source=source, byte_range=ranges[-1])
    assert stored(ctx, "interactions").num_rows == 40
    assert stored(ctx, "quarantine").num_rows == 1


class _RacingStore(Store):
    """Holds every interactions write until both writers have looked their keys up and written:
    both then commit records the other also wrote, the race the commit lock must settle."""

    def __init__(self, root: str, barrier: threading.Barrier) -> None:
        super().__init__(root)
        self.barrier = barrier

    def write_part(
        self, directory: str, table: pa.Table, schema: Any, prefix: str = "part"
    ) -> WrittenPart:
        part = super().write_part(directory, table, schema, prefix)
        if directory.startswith("interactions/"):
            try:
                self.barrier.wait(timeout=20)
            except threading.BrokenBarrierError:
                pass  # a rewrite after the lost race: nobody to wait for
        return part


def test_two_writers_racing_on_overlapping_files_store_each_record_once(
    ctx: IngestContext,  # noqa: F811
    tmp_path: Path,
) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", [interaction(i) for i in range(0, 30)])
    b = write_jsonl(
        tmp_path / "b.jsonl",
        [interaction(i) for i in range(20, 50)]
        + [interaction(55, response="other"), interaction(25, response="changed")],
    )
    barrier = threading.Barrier(2)
    racing = dataclasses.replace(ctx, store=_RacingStore(ctx.store.root_url, barrier))
    reports: dict[str, Any] = {}
    errors: list[BaseException] = []

    def run(path: Path) -> None:
        try:
            reports[path.name] = ingest_file(racing, path)
        except BaseException as exc:
            errors.append(exc)
        finally:
            barrier.abort()  # the second writer's rewrite has no partner to wait for

    threads = [threading.Thread(target=run, args=(p,)) for p in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    ids = stored(ctx, "interactions").column("interaction_id").to_pylist()
    assert sorted(ids) == sorted({f"int-{i}" for i in [*range(50), 55]})  # each exactly once
    with ctx.sessions() as s:
        assert len(repo.lookup_keys(s, "interaction", "shop-assistant", ids)) == len(ids)
    ra, rb = reports["a.jsonl"], reports["b.jsonl"]
    stored_total = ra.stored["interactions"] + rb.stored["interactions"]
    assert stored_total == 51
    # the overlap (20-29) is stored by one writer and skipped by the other; int-25's changed
    # copy is a conflicting duplicate, quarantined whichever writer won
    skipped = ra.skipped_stored["interactions"] + rb.skipped_stored["interactions"]
    conflicts = ra.quarantined["conflicting_duplicate"] + rb.quarantined["conflicting_duplicate"]
    assert skipped + conflicts == 10 + 1
    assert stored(ctx, "quarantine").num_rows == conflicts
