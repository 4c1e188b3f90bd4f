"""The store against a real S3-compatible server on loopback (moto in server mode).

This is the object-store path of DESIGN.md: single PUTs under content-hashed keys, no renames.
"""

from __future__ import annotations

import pyarrow as pa
import pytest

from ratchet.schemas import QUARANTINE
from ratchet.settings import get_settings
from ratchet.store import Store

moto_server = pytest.importorskip("moto.server")


@pytest.fixture(scope="module")
def s3_endpoint():
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_store(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Store:
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(
        Bucket="ratchet-it"
    )
    monkeypatch.setenv("RATCHET_STORE", "s3://ratchet-it/prod")
    monkeypatch.setenv("RATCHET_S3_ENDPOINT_URL", s3_endpoint)
    settings = get_settings()
    assert not settings.store_is_local
    return Store(settings.store_root, s3_endpoint_url=settings.s3_endpoint_url)


def _rows(n: int) -> pa.Table:
    return pa.table(
        {
            "source_file": ["a" * 64] * n,
            "source_line": list(range(n)),
            "record_kind": ["feedback"] * n,
            "reason": ["missing_field"] * n,
            "redaction_version": ["v1"] * n,
        }
    )


def test_parts_round_trip_under_content_hashed_keys(s3_store: Store) -> None:
    assert not s3_store.is_local
    first = s3_store.write_part("quarantine/src", _rows(3), QUARANTINE)
    again = s3_store.write_part("quarantine/src", _rows(3), QUARANTINE)
    assert first == again
    assert s3_store.list_files("quarantine") == [first.path]
    table = s3_store.read_table(first.path, QUARANTINE)
    assert table.num_rows == 3
    assert table.column("reason").to_pylist() == ["missing_field"] * 3


def test_fixed_name_writes_overwrite_in_place(s3_store: Store) -> None:
    rel = "datasets/agent-a/eval_cases/v1/data.parquet"
    s3_store.write_table_at(rel, _rows(2), QUARANTINE)
    s3_store.write_table_at(rel, _rows(2), QUARANTINE)
    assert s3_store.list_files("datasets") == [rel]
    assert s3_store.exists(rel) and not s3_store.exists(rel + ".missing")
