"""The PII audit: everything Ratchet keeps, read back and scanned, reported without a value.

Redaction runs before anything is written, and each written table gets a residual scan and a
sampled second opinion at that moment. This module is the after-the-fact check an operator (or
a data-protection officer) runs over what is *kept*: it proves the store holds no PII, or says
exactly where some is, by table, file and column, never by value.

What is read (``store`` prefixes, bytes on disk, not the ledger: an unreferenced or retired file
still holds data):

* ``interactions/``, ``feedback/``, ``quarantine/`` parts, ``datasets/`` (curated tables),
  ``evals/`` (results and the answer cache), ``models/`` (the local backends' indexes hold
  examples verbatim): Parquet, every string leaf the residual scan reads
  (:func:`ratchet.redaction.scannable_columns`: hashes, enums and opaque ids are left out);
* ``exports/`` (and any ``.jsonl``/``.json``/``.csv`` under the prefixes above): every string
  value of every JSON line, by its key path (``messages.content``), every CSV cell by its header;
* the training database: every text and JSON column of every table (file names as stored,
  run parameters, error messages, system prompts).

Two detectors, as at ingest:

* **the rules**: the redactor's own engine (:meth:`ratchet.redaction.Redactor.redact_array`),
  so the audit finds exactly what redaction would replace, with its code-aware literal rules
  (issue 15: ``token = await f()`` is code, not a secret) and its escape decoding. Placeholders
  (``[EMAIL]``) and pseudonyms (``u_`` + 32 hex) never match a rule. Every row is read.
* **the second opinion** (:mod:`ratchet.second_opinion`, Presidio's pattern recognizers, no
  shared code): a deterministic sample of ``quality.second_opinion_sample_rows`` rows per column
  of each file (Presidio runs at ~4.5 ms a row; a full pass over a large store would take
  hours). Without the ``privacy`` extra it is skipped and the report says so
  (``second_opinion: "skipped: presidio not installed"``). It runs whether or not
  ``quality.second_opinion_enabled`` is set: that switch trades ingest time, an audit is asked for.

Scope: ``agent`` keeps one agent's files and rows (its partitions, dataset and export folders,
the eval runs, answer caches and model folders the database gives to it, its quarantine and
database rows; database tables without an agent column are left out); ``since`` keeps only
files modified and database rows created at or after that time (the weekly flow audits what its
own run wrote that way).

Exit rule: a finding or an unreadable file makes the audit fail (``clean`` is False): a file
that cannot be read cannot be shown to be clean. Reports hold counts, types, paths and column
names only, so they are safe in a log, an artifact or an exception.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from sqlalchemy import JSON, MetaData, String, Text, select
from sqlalchemy.orm import Session, sessionmaker

from ratchet.config import PipelineConfig
from ratchet.redaction import Redactor, scannable_columns
from ratchet.redaction.arrow import collect_leaf
from ratchet.second_opinion import (
    SKIPPED_NOT_INSTALLED,
    presidio_available,
    sample_indices,
    scanner_for,
)
from ratchet.store import Store

log = logging.getLogger(__name__)

#: Store prefixes the audit reads, with the table name reported for their files.
PREFIXES: tuple[str, ...] = (
    "interactions",
    "feedback",
    "quarantine",
    "datasets",
    "exports",
    "evals",
    "models",
)
#: File kinds read; anything else (vectors, model weights) is counted as not scanned.
JSON_SUFFIXES = (".jsonl", ".json")
#: A single ``.json`` document larger than this (a tokenizer's vocabulary) is not parsed.
MAX_JSON_BYTES = 8 << 20
#: Filesystems stamp modification times coarsely; ``since`` is widened by this much.
MTIME_SLACK = timedelta(seconds=2)
#: Text gathered before the rules run over it in one pass (see ``_Scan.column``).
FLUSH_BYTES = 32 << 20
RULES = "rules"
SECOND_OPINION = "presidio"
# Database columns that hold timestamps of creation, in the order they are looked for.
_TIME_COLUMNS = ("created_at", "first_seen_at", "started_at", "decided_at")


@dataclass
class Finding:
    """PII found in one column of one file (or database table) by one detector: no value."""

    table: str  # interactions | feedback | quarantine | <dataset kind> | export | db:<table> ...
    file: str  # path relative to the store root, or "database"
    column: str  # dotted leaf path (messages.content), JSON key path, or database column
    detector: str  # rules | presidio
    types: Counter[str] = field(default_factory=Counter)  # PII type -> matches
    rows: int = 0  # rows (lines) holding at least one match

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "file": self.file,
            "column": self.column,
            "detector": self.detector,
            "types": dict(sorted(self.types.items())),
            "rows": self.rows,
        }


@dataclass
class AuditReport:
    """What an audit read and found; counts, paths and names only."""

    agent: str | None = None
    since: datetime | None = None
    files_scanned: int = 0
    rows_scanned: int = 0
    db_tables_scanned: int = 0
    files_not_scanned: Counter[str] = field(default_factory=Counter)  # by file suffix
    unreadable: list[dict[str, str]] = field(default_factory=list)  # file, error class
    findings: list[Finding] = field(default_factory=list)
    second_opinion: str = "scanned"  # scanned | skipped: <why>
    second_opinion_rows: int = 0
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return not self.findings and not self.unreadable

    def hits_by_type(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for f in self.findings:
            total.update(f.types)
        return dict(sorted(total.items()))

    def as_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "agent": self.agent,
            "since": self.since.isoformat() if self.since else None,
            "files_scanned": self.files_scanned,
            "rows_scanned": self.rows_scanned,
            "db_tables_scanned": self.db_tables_scanned,
            "files_not_scanned": dict(sorted(self.files_not_scanned.items())),
            "unreadable": list(self.unreadable),
            "second_opinion": self.second_opinion,
            "second_opinion_rows": self.second_opinion_rows,
            "hits_by_type": self.hits_by_type(),
            "findings": [f.as_dict() for f in self.findings],
            "seconds": round(self.seconds, 3),
        }

    def summary(self) -> str:
        """One line for a log or an exception: where, never what."""
        if self.clean:
            return (
                f"PII audit clean: {self.files_scanned} file(s), {self.rows_scanned} row(s), "
                f"{self.db_tables_scanned} database table(s); second opinion {self.second_opinion}"
            )
        where = sorted({f"{f.file}:{f.column}" for f in self.findings})
        parts = []
        if self.findings:
            parts.append(
                f"PII found ({', '.join(f'{k} {v}' for k, v in self.hits_by_type().items())}) "
                f"in {len(where)} column(s): {', '.join(where[:10])}"
                + (f" and {len(where) - 10} more" if len(where) > 10 else "")
            )
        if self.unreadable:
            parts.append(
                f"{len(self.unreadable)} file(s) unreadable: "
                + ", ".join(u["file"] for u in self.unreadable[:5])
            )
        return "PII audit failed: " + "; ".join(parts)


# --- what a file is ----------------------------------------------------------------------------
def table_of(path: str) -> str:
    """The table a store file belongs to, from its path (the store layout of DESIGN.md)."""
    parts = path.split("/")
    head = parts[0]
    if head == "datasets" and len(parts) >= 4:
        return parts[2]  # datasets/<agent>/<kind>/<version>/data.parquet
    if head == "evals":
        return "eval_answer_cache" if len(parts) > 1 and parts[1] == "cache" else "eval_results"
    if head == "exports":
        return "export"
    if head == "models":
        return "model"
    return head


def _agent_of_path(path: str) -> str | None:
    """The agent a file belongs to when its path says so (None: ask the database)."""
    parts = path.split("/")
    if parts[0] in ("interactions", "feedback") and len(parts) > 1:
        return parts[1].removeprefix("agent=")
    if parts[0] in ("datasets", "exports") and len(parts) > 1:
        return parts[1]
    return None


def _db_owners(sessions: sessionmaker[Session]) -> dict[tuple[str, str], str]:
    """``(prefix, key) -> agent`` for the folders whose agent only the database knows: eval runs,
    answer caches (by model version) and model folders (by training run)."""
    from ratchet.db.models import EvalRun, ModelVersion, TrainingRun

    out: dict[tuple[str, str], str] = {}
    with sessions() as s:
        for run_id, agent in s.execute(select(EvalRun.id, EvalRun.agent_id)).tuples():
            out[("evals", run_id)] = agent
        for mv_id, agent in s.execute(select(ModelVersion.id, ModelVersion.agent_id)).tuples():
            out[("cache", mv_id)] = agent
        for tr_id, agent in s.execute(select(TrainingRun.id, TrainingRun.agent_id)).tuples():
            out[("models", tr_id)] = agent
    return out


def _owner(path: str, owners: dict[tuple[str, str], str]) -> str | None:
    parts = path.split("/")
    if len(parts) < 2:
        return None
    if parts[0] == "evals":
        if parts[1] == "cache":
            return owners.get(("cache", parts[2])) if len(parts) > 2 else None
        return owners.get(("evals", parts[1]))
    if parts[0] == "models":
        return owners.get(("models", parts[1]))
    return _agent_of_path(path)


# --- the scanners ------------------------------------------------------------------------------
class _Scan:
    """One audit in progress: the detectors, the report, and how each column is judged."""

    def __init__(self, config: PipelineConfig, report: AuditReport) -> None:
        self.redactor = Redactor(config.redaction)
        self.report = report
        self.config = config
        self.presidio = presidio_available()
        self.scanner = scanner_for(config) if self.presidio else None
        if not self.presidio:
            report.second_opinion = SKIPPED_NOT_INSTALLED
        # The rules run over many columns and files at once: each call into the engine compiles
        # its prefilter (~15 ms), which per column of a small part cost more than the scan.
        self._keys: list[tuple[str, str, str]] = []
        self._pending: list[tuple[pa.Array, int, np.ndarray]] = []
        self._pending_bytes = 0

        # The second opinion reads a sample of each file's (or database table's) rows: the one
        # being read now, its sampled row numbers, and their strings by column.
        self._unit: tuple[str, str] | None = None
        self._sampled: set[int] = set()
        self._texts: dict[int, list[tuple[str, str]]] = {}

    def begin(self, table: str, file: str, rows: int) -> None:
        """Start reading a file (or a database table) of ``rows`` rows: pick its sample."""
        self.end()
        if self.scanner is None or rows == 0:
            return
        q = self.config.quality
        idx = sample_indices(
            rows, q.second_opinion_sample_rows, q.second_opinion_seed, f"{table}:{file}"
        )
        self._unit, self._sampled = (table, file), set(idx.tolist())

    def column(
        self, table: str, file: str, column: str, values: pa.Array, rows: np.ndarray
    ) -> None:
        """Judge one flat string leaf; ``rows`` maps each element to its row (line) number."""
        if len(values) == 0:
            return
        self._keys.append((table, file, column))
        self._pending.append((values, len(self._keys) - 1, rows))
        self._pending_bytes += values.nbytes
        if self._pending_bytes >= FLUSH_BYTES:
            self.flush()
        if self._unit is not None:
            mask = np.isin(
                rows, np.fromiter(self._sampled, dtype=np.int64, count=len(self._sampled))
            )
            picked = np.flatnonzero(mask)
            if len(picked):
                texts = values.take(pa.array(picked)).to_pylist()
                for i, text in zip(picked.tolist(), texts, strict=True):
                    if text:
                        self._texts.setdefault(int(rows[i]), []).append((column, text))

    def end(self) -> None:
        """Finish the second opinion of the current file: one Presidio call per sampled row
        (all its strings together), then, only for rows with a hit, one per column of the row,
        so a finding names its column."""
        unit, texts = self._unit, self._texts
        self._unit, self._sampled, self._texts = None, set(), {}
        if unit is None or self.scanner is None or not texts:
            return
        rows = sorted(texts)
        self.report.second_opinion_rows += len(rows)
        for r in rows:
            if not self.scanner.scan_texts([[t for _, t in texts[r]]])[0]:
                continue
            by_column: dict[str, list[str]] = {}
            for column, text in texts[r]:
                by_column.setdefault(column, []).append(text)
            for column, strings in by_column.items():
                hit, types = self.scanner.scan_texts([strings])
                if hit:
                    self._presidio_hit(unit, column, types)

    def _presidio_hit(self, unit: tuple[str, str], column: str, types: Counter[str]) -> None:
        for f in self.report.findings:
            if (f.table, f.file, f.column, f.detector) == (*unit, column, SECOND_OPINION):
                f.types.update(types)
                f.rows += 1
                return
        self.report.findings.append(Finding(*unit, column, SECOND_OPINION, Counter(types), 1))

    def flush(self) -> None:
        """Run the rules over everything pending, as one array; record findings by column."""
        if not self._pending:
            return
        values = pa.concat_arrays([v.cast(pa.string()) for v, _, _ in self._pending])
        key_of = np.concatenate([np.full(len(v), k) for v, k, _ in self._pending])
        row_of = np.concatenate([r for _, _, r in self._pending])
        self._pending, self._pending_bytes = [], 0
        found: dict[int, tuple[Counter[str], set[int]]] = {}
        for i, c in self.redactor.redact_array(values)[1].items():
            types, hit_rows = found.setdefault(int(key_of[i]), (Counter(), set()))
            types.update(c)
            hit_rows.add(int(row_of[i]))
        for k, (types, hit_rows) in found.items():
            table, file, column = self._keys[k]
            self.report.findings.append(Finding(table, file, column, RULES, types, len(hit_rows)))

    # --- Parquet ---------------------------------------------------------------------------
    def parquet(self, store: Store, path: str, agent: str | None) -> None:
        with store.fs.open_input_file(store.full(path)) as src:
            pf = pq.ParquetFile(src)
            wanted = {c.split(".")[0] for c in scannable_columns(pf.schema_arrow)}
            if agent is not None and "agent_id" in pf.schema_arrow.names:
                wanted.add("agent_id")
            table = pf.read(columns=[n for n in pf.schema_arrow.names if n in wanted])
            rows_total = pf.metadata.num_rows
        if agent is not None and table_of(path) == "quarantine":
            if "agent_id" not in table.column_names:
                return
            table = table.filter(pc.equal(table.column("agent_id"), agent))
        name = table_of(path)
        self.report.rows_scanned += table.num_rows if table.num_columns else rows_total
        self.begin(name, path, table.num_rows)
        for col in scannable_columns(table.schema):
            head, *rest = col.split(".")
            base = 0
            leaves: list[pa.Array] = []
            row_idx: list[np.ndarray] = []
            for chunk in table.column(head).chunks:
                for leaf, rows in collect_leaf(chunk, rest, np.arange(base, base + len(chunk))):
                    leaves.append(leaf)
                    row_idx.append(rows)
                base += len(chunk)
            if leaves:
                values = pa.concat_arrays(leaves) if len(leaves) > 1 else leaves[0]
                self.column(name, path, col, values, np.concatenate(row_idx))

    # --- JSON ------------------------------------------------------------------------------
    def json_lines(self, path: str, data: bytes) -> None:
        """Every string of every line, by key path; a line that is not JSON is scanned whole."""
        name = table_of(path)
        columns: dict[str, tuple[list[str], list[int]]] = {}

        def add(key: str, value: str, line: int) -> None:
            vals, rows = columns.setdefault(key or "(value)", ([], []))
            vals.append(value)
            rows.append(line)

        text = data.decode("utf-8", errors="replace")
        lines = text.splitlines() if path.endswith(".jsonl") else [text]
        for n, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except ValueError:
                add("(line)", line, n)
                continue
            for key, value in _json_strings(doc, ""):
                add(key, value, n)
            self.report.rows_scanned += 1
        self.begin(name, path, len(lines))
        for key, (vals, rows) in sorted(columns.items()):
            self.column(name, path, key, pa.array(vals, pa.string()), np.array(rows))

    # --- CSV (the review queue's export for people) -----------------------------------------
    def csv_rows(self, path: str, data: bytes) -> None:
        """Every cell, by its header; a row is a line of the table."""
        reader = csv.reader(io.StringIO(data.decode("utf-8", errors="replace")))
        header = next(reader, None) or []
        columns: dict[str, tuple[list[str], list[int]]] = {}
        n = -1
        for n, row in enumerate(reader):
            self.report.rows_scanned += 1
            for k, cell in enumerate(row):
                if cell:
                    key = header[k] if k < len(header) and header[k] else f"column {k + 1}"
                    vals, rows = columns.setdefault(key, ([], []))
                    vals.append(cell)
                    rows.append(n)
        self.begin(table_of(path), path, n + 1)
        for key, (vals, rows) in sorted(columns.items()):
            self.column(table_of(path), path, key, pa.array(vals, pa.string()), np.array(rows))


def _json_strings(value: Any, prefix: str) -> Iterator[tuple[str, str]]:
    """``(key path, string)`` for every string in a JSON value (list levels are transparent)."""
    if isinstance(value, str):
        yield prefix, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _json_strings(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, list):
        for v in value:
            yield from _json_strings(v, prefix)


def _files(store: Store, since: datetime | None) -> Iterator[tuple[str, pafs.FileInfo]]:
    base = store.full("")
    for prefix in PREFIXES:
        selector = pafs.FileSelector(store.full(prefix), recursive=True, allow_not_found=True)
        for info in sorted(store.fs.get_file_info(selector), key=lambda i: i.path):
            if info.type != pafs.FileType.File:
                continue
            rel = info.path[len(base) :].lstrip("/")
            if rel.rsplit("/", 1)[-1].startswith(".tmp-"):
                continue  # a write in flight (or a crash's leftover) is not kept data yet
            if since is not None and info.mtime is not None:
                mtime = info.mtime if info.mtime.tzinfo else info.mtime.replace(tzinfo=UTC)
                if mtime < since - MTIME_SLACK:
                    continue
            yield rel, info


def _scan_store(
    scan: _Scan,
    store: Store,
    agent: str | None,
    since: datetime | None,
    owners: Callable[[], dict[tuple[str, str], str]],
) -> None:
    owner_map: dict[tuple[str, str], str] | None = None
    for rel, info in _files(store, since):
        if agent is not None and table_of(rel) != "quarantine":
            if rel.startswith(("evals/", "models/")) and owner_map is None:
                owner_map = owners()
            if _owner(rel, owner_map or {}) != agent:
                continue
        suffix = "." + rel.rsplit(".", 1)[-1] if "." in rel.rsplit("/", 1)[-1] else "(none)"
        try:
            if suffix == ".parquet":
                scan.parquet(store, rel, agent)
            elif suffix == ".csv":
                scan.csv_rows(rel, store.read_bytes(rel))
            elif suffix in JSON_SUFFIXES and (
                suffix == ".jsonl" or (info.size or 0) <= MAX_JSON_BYTES
            ):
                scan.json_lines(rel, store.read_bytes(rel))
            else:
                scan.report.files_not_scanned[suffix] += 1
                continue
        except Exception as exc:  # a corrupt or foreign file: named, and the audit fails
            log.warning("PII audit: cannot read %s (%s)", rel, type(exc).__name__)
            scan.report.unreadable.append({"file": rel, "error": type(exc).__name__})
            continue
        scan.report.files_scanned += 1


def _scan_database(
    scan: _Scan, sessions: sessionmaker[Session], agent: str | None, since: datetime | None
) -> None:
    """Every text and JSON column of every table of the training database, as the database
    has them (reflected, not the ORM's view: a table or column the code does not know is read
    too)."""
    with sessions() as s:
        meta = MetaData()
        meta.reflect(bind=s.connection())
        for table in meta.sorted_tables:
            cols = [c for c in table.columns if isinstance(c.type, (String, Text, JSON))]
            if not cols:
                continue
            stmt = select(*cols)
            if agent is not None:
                if "agent_id" not in table.columns:
                    continue
                stmt = stmt.where(table.columns["agent_id"] == agent)
            if since is not None:
                tcol = next((table.columns[c] for c in _TIME_COLUMNS if c in table.columns), None)
                if tcol is None:
                    continue
                stmt = stmt.where(tcol >= since)
            rows = s.execute(stmt).all()
            scan.report.db_tables_scanned += 1
            scan.report.rows_scanned += len(rows)
            scan.begin(f"db:{table.name}", "database", len(rows))
            for j, c in enumerate(cols):
                vals: list[str] = []
                idx: list[int] = []
                for i, row in enumerate(rows):
                    value = row[j]
                    if value is None:
                        continue
                    if isinstance(c.type, JSON):
                        for _, text in _json_strings(value, ""):
                            vals.append(text)
                            idx.append(i)
                    else:
                        vals.append(str(value))
                        idx.append(i)
                if vals:
                    scan.column(
                        f"db:{table.name}", "database", c.name, pa.array(vals, pa.string()),
                        np.array(idx),
                    )  # fmt: skip


def audit_pii(
    store: Store,
    sessions: sessionmaker[Session] | None,
    config: PipelineConfig,
    *,
    agent: str | None = None,
    since: datetime | None = None,
) -> AuditReport:
    """Scan what Ratchet keeps (see the module docstring); ``sessions`` None skips the database.

    Never raises for what it finds or cannot read: the report says so, and ``clean`` is False.
    """
    started = time.perf_counter()
    report = AuditReport(agent=agent, since=since)
    scan = _Scan(config, report)

    def owners() -> dict[tuple[str, str], str]:
        return _db_owners(sessions) if sessions is not None else {}

    _scan_store(scan, store, agent, since, owners)
    if sessions is not None:
        _scan_database(scan, sessions, agent, since)
    scan.end()
    scan.flush()
    report.findings.sort(key=lambda f: (f.table, f.file, f.column, f.detector))
    report.seconds = time.perf_counter() - started
    log.info("%s (%.1f s)", report.summary(), report.seconds)
    return report
