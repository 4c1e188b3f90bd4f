"""The store: every Parquet read and write goes through here, with an explicit schema.

One class over pyarrow filesystems, so the same code serves a local folder (the embedded
default), S3-compatible object storage (``s3://bucket/prefix``, pyarrow's own S3 client) and
anything fsspec speaks (``memory://``, ``gs://``...). Layout (DESIGN.md):

```
interactions/agent=<agent_id>/date=YYYY-MM-DD/part-<content-hash>.parquet
feedback/agent=<agent_id>/date=YYYY-MM-DD/part-<content-hash>.parquet
quarantine/<source-hash>/part-<content-hash>.parquet   (a folder per source file: one file
                                                        can quarantine more than a batch)
datasets/<agent_id>/<kind>/<version>/data.parquet
exports/<agent_id>/<version>/*.jsonl
evals/<eval-run-id>/results.parquet
models/<version>/
```

Atomicity: the bytes of a part are made in memory (a part is one batch), named by their own
sha256, then written. On a local disk they go to a temporary name in the same folder and are
renamed over the final name (``os.replace`` is atomic); on an object store a single PUT under the
final key is atomic by itself, and a rename would be a copy. Either way a crash leaves at most a
complete, unreferenced file that the next run overwrites with the same bytes. Readers never glob:
they read the parts the database ledger lists, so an unreferenced part is never read. Parts left
by a run that is never repeated are removed by :func:`collect_orphans` (``ratchet store gc``),
which spares files younger than a grace period (a concurrent run may be about to commit them).
"""

from __future__ import annotations

import hashlib
import io
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ratchet.schemas import RETIRED_COLUMNS, fingerprint

_AGENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
COMPRESSION = "zstd"


class StoreError(RuntimeError):
    """A store operation failed; the message names the path, never the data."""


class SchemaMismatch(StoreError):
    """A table does not conform to the schema it is written under."""


@dataclass(frozen=True)
class WrittenPart:
    """What a write produced: enough to record it in the ledger and to read it back."""

    path: str  # relative to the store root
    rows: int
    content_hash: str  # sha256 of the file's bytes
    bytes: int
    schema_fingerprint: str


def valid_agent_id(agent_id: str) -> bool:
    """Agent ids become path segments, so they are restricted to a safe alphabet."""
    return bool(_AGENT_ID.match(agent_id))


def interactions_dir(agent_id: str, day: date | str) -> str:
    return f"interactions/agent={agent_id}/date={day}"


def feedback_dir(agent_id: str, day: date | str) -> str:
    return f"feedback/agent={agent_id}/date={day}"


def quarantine_dir(source_hash: str) -> str:
    return f"quarantine/{source_hash}"


def dataset_path(agent_id: str, kind: str, version: str) -> str:
    return f"datasets/{agent_id}/{kind}/{version}/data.parquet"


def export_dir(agent_id: str, version: str) -> str:
    return f"exports/{agent_id}/{version}"


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """The table with exactly the schema's columns, order and types, or SchemaMismatch.

    Missing nullable columns are added as nulls (so a producer need not know columns added
    later); a missing non-nullable column, an extra column, or an impossible cast is an error.
    """
    extra = set(table.column_names) - set(schema.names)
    if extra:
        raise SchemaMismatch(f"columns not in the {_name(schema)} schema: {sorted(extra)}")
    columns = []
    for field in schema:
        if field.name in table.column_names:
            col = table.column(field.name)
            if col.type != field.type:
                try:
                    col = col.cast(field.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise SchemaMismatch(
                        f"column {field.name!r} of type {col.type} cannot be {field.type}"
                    ) from exc
            if not field.nullable and col.null_count:
                raise SchemaMismatch(f"column {field.name!r} must not hold nulls")
        elif field.nullable:
            col = pa.nulls(table.num_rows, field.type)
        else:
            raise SchemaMismatch(f"required column {field.name!r} is missing")
        columns.append(col)
    return pa.Table.from_arrays(columns, schema=schema)


def _name(schema: pa.Schema) -> str:
    meta = schema.metadata or {}
    return meta.get(b"table", b"?").decode()


def parquet_bytes(table: pa.Table) -> bytes:
    """Serialise deterministically: same table and library version, same bytes, same name."""
    sink = io.BytesIO()
    pq.write_table(table, sink, compression=COMPRESSION, write_statistics=True)
    return sink.getvalue()


class Store:
    """A store root on some filesystem; all paths given to it are relative to the root."""

    def __init__(
        self,
        root: str,
        *,
        s3_endpoint_url: str | None = None,
        filesystem: pafs.FileSystem | None = None,
    ) -> None:
        self.root_url = root
        if filesystem is not None:
            self.fs, self.base = filesystem, root.rstrip("/")
        else:
            self.fs, self.base = _resolve(root, s3_endpoint_url)
        self.is_local = isinstance(self.fs, pafs.LocalFileSystem)
        if self.is_local:
            self.fs.create_dir(self.base, recursive=True)

    # --- paths -----------------------------------------------------------------------------
    def full(self, rel: str) -> str:
        rel = rel.strip("/")
        if ".." in rel.split("/"):
            raise StoreError(f"path escapes the store root: {rel}")
        return f"{self.base}/{rel}" if self.base else rel

    def exists(self, rel: str) -> bool:
        return self.fs.get_file_info(self.full(rel)).type != pafs.FileType.NotFound

    def list_files(self, prefix: str) -> list[str]:
        """Relative paths of the files under a prefix (for tooling; readers use the ledger)."""
        selector = pafs.FileSelector(self.full(prefix), recursive=True, allow_not_found=True)
        base = self.full("")
        return sorted(
            info.path[len(base) :].lstrip("/")
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.File
        )

    # --- writes ----------------------------------------------------------------------------
    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write a whole object atomically (rename on a local disk, single PUT elsewhere)."""
        target = self.full(rel)
        parent = target.rsplit("/", 1)[0]
        try:
            self.fs.create_dir(parent, recursive=True)
            if self.is_local:
                tmp = f"{parent}/.tmp-{uuid.uuid4().hex}"
                try:
                    with self.fs.open_output_stream(tmp) as out:
                        out.write(data)
                    self.fs.move(tmp, target)
                finally:
                    if self.fs.get_file_info(tmp).type != pafs.FileType.NotFound:
                        self.fs.delete_file(tmp)
            else:
                with self.fs.open_output_stream(target) as out:
                    out.write(data)
        except OSError as exc:
            raise StoreError(f"cannot write {rel}: {exc}") from exc

    def write_part(
        self, directory: str, table: pa.Table, schema: pa.Schema, prefix: str = "part"
    ) -> WrittenPart:
        """Write a table as ``<directory>/<prefix>-<content-hash>.parquet``.

        The name derives from the bytes, so writing the same rows again rewrites the same file
        and adds nothing.
        """
        table = conform(table, schema)
        data = parquet_bytes(table)
        digest = hashlib.sha256(data).hexdigest()
        rel = f"{directory.strip('/')}/{prefix}-{digest[:24]}.parquet"
        self.write_bytes(rel, data)
        return WrittenPart(rel, table.num_rows, digest, len(data), fingerprint(schema))

    def write_table_at(self, rel: str, table: pa.Table, schema: pa.Schema) -> WrittenPart:
        """Write a table under a fixed name whose folder is already content-addressed
        (a dataset version's ``data.parquet``)."""
        table = conform(table, schema)
        data = parquet_bytes(table)
        self.write_bytes(rel, data)
        return WrittenPart(
            rel, table.num_rows, hashlib.sha256(data).hexdigest(), len(data), fingerprint(schema)
        )

    def delete(self, rel: str) -> None:
        if self.exists(rel):
            self.fs.delete_file(self.full(rel))

    def remove_empty_dir(self, rel: str) -> None:
        """Remove a folder that holds no file any more (a local disk keeps empty folders; an
        object store has none, so there it is a no-op)."""
        if self.is_local and self.exists(rel) and not self.list_files(rel):
            self.fs.delete_dir(self.full(rel))

    # --- reads -----------------------------------------------------------------------------
    def read_bytes(self, rel: str) -> bytes:
        try:
            with self.fs.open_input_stream(self.full(rel)) as src:
                return src.read()
        except OSError as exc:
            raise StoreError(f"cannot read {rel}: {exc}") from exc

    def read_table(self, rel: str, schema: pa.Schema, columns: list[str] | None = None) -> pa.Table:
        """Read one Parquet file and conform it to the schema (older files gain new columns).

        With ``columns``, only those are read from the file (the others are never decoded: a
        read-back of the text columns, a scan of ids, skip the rest of the bytes)."""
        try:
            with self.fs.open_input_file(self.full(rel)) as src:
                if columns:
                    part = pq.ParquetFile(src)
                    present = set(part.schema_arrow.names)
                    table = part.read(columns=[c for c in columns if c in present])
                else:
                    table = pq.read_table(src)
        except OSError as exc:
            raise StoreError(f"cannot read {rel}: {exc}") from exc
        if columns:
            return conform(table, pa.schema([schema.field(c) for c in columns]))
        retired = [c for c in table.column_names if c in RETIRED_COLUMNS and c not in schema.names]
        return conform(table.drop_columns(retired) if retired else table, schema)

    def read_tables(
        self, rels: list[str], schema: pa.Schema, columns: list[str] | None = None
    ) -> pa.Table:
        """Concatenate several parts; an empty list gives an empty table of the schema."""
        if not rels:
            empty = schema.empty_table()
            return empty.select(columns) if columns else empty
        return pa.concat_tables([self.read_table(r, schema, columns) for r in rels])


# --- orphan cleanup ---------------------------------------------------------------------------
PART_PREFIXES = ("interactions", "feedback", "quarantine")
DEFAULT_GC_GRACE = timedelta(hours=1)


@dataclass
class GcReport:
    """What :func:`collect_orphans` found and did (paths relative to the store root)."""

    scanned: int = 0  # part files (and leftover temporaries) under the part prefixes
    referenced: int = 0  # of them, listed in the ledger
    young: int = 0  # unreferenced but younger than the grace period (or of unknown age): kept
    orphans: list[str] = dc_field(default_factory=list)  # unreferenced and old enough
    deleted: list[str] = dc_field(default_factory=list)  # empty on a dry run
    bytes: int = 0  # size of the orphans
    dry_run: bool = False

    def as_dict(self) -> dict[str, object]:
        return {
            "scanned": self.scanned, "referenced": self.referenced, "young": self.young,
            "orphans": list(self.orphans), "deleted": list(self.deleted), "bytes": self.bytes,
            "dry_run": self.dry_run,
        }  # fmt: skip


def collect_orphans(
    store: Store,
    referenced: Callable[[], set[str]],
    *,
    grace: timedelta = DEFAULT_GC_GRACE,
    dry_run: bool = False,
    now: datetime | None = None,
) -> GcReport:
    """Delete part files that no ledger row references, older than ``grace``.

    Why: a crash between writing a part and committing it (or a file never retried) leaves a
    complete file nobody reads. Only the part prefixes (:data:`PART_PREFIXES`) are looked at;
    datasets, exports and models are addressed by their own tables and left alone.

    Safety against a concurrent run: the files are listed *before* ``referenced()`` is asked,
    so a part committed in between is seen as referenced; and a file younger than ``grace``
    (modification time) is never deleted, since a running ingest writes its parts before it
    commits them. Keep ``grace`` longer than the longest batch takes to write and commit. A
    file whose age the filesystem does not report is kept unless ``grace`` is zero.
    """
    now = now or datetime.now(UTC)
    base = store.full("")
    found: list[pafs.FileInfo] = []
    for prefix in PART_PREFIXES:
        selector = pafs.FileSelector(store.full(prefix), recursive=True, allow_not_found=True)
        found += [i for i in store.fs.get_file_info(selector) if i.type == pafs.FileType.File]
    keep = referenced()
    report = GcReport(scanned=len(found), dry_run=dry_run)
    for info in sorted(found, key=lambda i: i.path):
        rel = info.path[len(base) :].lstrip("/")
        if rel in keep:
            report.referenced += 1
            continue
        mtime = info.mtime
        if mtime is not None and mtime.tzinfo is None:
            mtime = mtime.replace(tzinfo=UTC)
        if grace > timedelta(0) and (mtime is None or now - mtime < grace):
            report.young += 1
            continue
        report.orphans.append(rel)
        report.bytes += info.size or 0
        if not dry_run:
            store.delete(rel)
            report.deleted.append(rel)
    return report


def _resolve(root: str, s3_endpoint_url: str | None) -> tuple[pafs.FileSystem, str]:
    """Pick a filesystem for a root URL: local, pyarrow's S3, or fsspec for the rest."""
    if "://" not in root or root.startswith("file://"):
        import os

        path = root.removeprefix("file://")
        return pafs.LocalFileSystem(), os.path.abspath(path)
    scheme, rest = root.split("://", 1)
    if scheme == "s3":
        kwargs: dict[str, object] = {}
        if s3_endpoint_url:
            scheme_part, host = s3_endpoint_url.split("://", 1)
            kwargs = {"endpoint_override": host, "scheme": scheme_part}
        return pafs.S3FileSystem(**kwargs), rest.rstrip("/")
    import fsspec
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    fs = fsspec.filesystem(scheme)
    base = rest.rstrip("/")
    if scheme == "memory":
        base = "/" + base.lstrip("/")
    return PyFileSystem(FSSpecHandler(fs)), base
