"""The store on a local disk and on fsspec's in-memory filesystem: same contract on both."""

from __future__ import annotations

import uuid

import pyarrow as pa
import pytest

from ratchet.schemas import QUARANTINE
from ratchet.store import SchemaMismatch, Store, StoreError, conform, valid_agent_id


def _rows(n: int, reason: str = "not_json") -> pa.Table:
    return pa.table(
        {
            "source_file": ["f" * 64] * n,
            "source_line": list(range(1, n + 1)),
            "record_kind": ["interaction"] * n,
            "reason": [reason] * n,
            "redaction_version": ["v1"] * n,
        }
    )


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path) -> Store:
    if request.param == "local":
        return Store(str(tmp_path / "store"))
    return Store(f"memory://ratchet-test-{uuid.uuid4().hex}")


def test_write_part_is_content_addressed_and_idempotent(store: Store) -> None:
    a = store.write_part("quarantine/abc", _rows(3), QUARANTINE)
    b = store.write_part("quarantine/abc", _rows(3), QUARANTINE)
    c = store.write_part("quarantine/abc", _rows(4), QUARANTINE)
    assert a == b  # same rows -> same bytes -> same name: a rerun adds nothing
    assert c.path != a.path
    assert store.list_files("quarantine") == sorted([a.path, c.path])
    back = store.read_table(a.path, QUARANTINE)
    assert back.num_rows == 3 and back.schema == QUARANTINE
    assert back.column("detail").null_count == 3  # nullable column added as nulls


def test_read_tables_concatenates_and_empty_list_gives_typed_empty(store: Store) -> None:
    a = store.write_part("q", _rows(2), QUARANTINE)
    b = store.write_part("q", _rows(5, "too_large"), QUARANTINE)
    both = store.read_tables([a.path, b.path], QUARANTINE, columns=["reason"])
    assert both.column("reason").to_pylist().count("too_large") == 5
    empty = store.read_tables([], QUARANTINE)
    assert empty.num_rows == 0 and empty.schema == QUARANTINE


def test_reading_some_columns_reads_only_those_and_conforms_them(store: Store) -> None:
    import pyarrow.parquet as pq

    # a part from an older schema: no "detail" column, and a retired one it still carries
    old = _rows(3).append_column("quarantined_at", pa.array(["2026-01-01"] * 3))
    rel = "q/part-old.parquet"
    store.fs.create_dir(store.full("q"), recursive=True)
    with store.fs.open_output_stream(store.full(rel)) as out:
        pq.write_table(old, out)
    got = store.read_table(rel, QUARANTINE, ["detail", "reason"])
    assert got.column_names == ["detail", "reason"]
    assert got.schema.field("detail").type == QUARANTINE.field("detail").type
    assert (
        got.column("detail").null_count == 3
        and got.column("reason").to_pylist() == ["not_json"] * 3
    )
    assert store.read_table(rel, QUARANTINE).schema == QUARANTINE  # retired column dropped


def test_conform_rejects_extra_missing_and_null_required() -> None:
    with pytest.raises(SchemaMismatch, match="not in the quarantine schema"):
        conform(_rows(1).append_column("surprise", pa.array([1])), QUARANTINE)
    with pytest.raises(SchemaMismatch, match="required column 'reason'"):
        conform(_rows(1).drop_columns(["reason"]), QUARANTINE)
    bad = _rows(2).set_column(3, "reason", pa.array([None, "x"], pa.string()))
    with pytest.raises(SchemaMismatch, match="must not hold nulls"):
        conform(bad, QUARANTINE)
    wrong = _rows(1).set_column(1, "source_line", pa.array(["line one"]))
    with pytest.raises(SchemaMismatch, match="source_line"):
        conform(wrong, QUARANTINE)


def test_local_write_leaves_no_temporary_files(tmp_path) -> None:
    store = Store(str(tmp_path))
    store.write_part("q", _rows(2), QUARANTINE)
    leftovers = [p for p in tmp_path.rglob("*") if p.name.startswith(".tmp-")]
    assert leftovers == []


def test_paths_cannot_escape_the_root(store: Store) -> None:
    with pytest.raises(StoreError, match="escapes"):
        store.write_bytes("../outside.bin", b"x")


def test_missing_file_is_a_store_error_naming_the_path(store: Store) -> None:
    with pytest.raises(StoreError, match=r"nope\.parquet"):
        store.read_table("nope.parquet", QUARANTINE)


@pytest.mark.parametrize(
    ("agent", "ok"),
    [("shop-assistant", True), ("a.b_c-1", True), ("", False), ("../x", False), ("a/b", False)],
)
def test_agent_ids_are_safe_path_segments(agent: str, ok: bool) -> None:
    assert valid_agent_id(agent) is ok
