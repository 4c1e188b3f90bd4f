"""The ingest flow's fan-out on a Dask cluster (``runtime.task_runner: dask``).

Every file is a task, and an uncompressed JSONL file larger than ``runtime.ingest_chunk_bytes``
is cut at line boundaries into byte ranges, each a task of its own; all of them run at once on
the cluster's workers. Nothing here holds a lock while tasks parse: exactly-once is the commit's
business (:mod:`ratchet.ingest.commit`: unique keys in the ledger and a short per-agent commit
lock), so two files that hold the same interaction, two ranges of one file, or the same file
submitted twice at once store it once.

The flow owns a cut file's ledger row: it begins it before the ranges and completes it once
every range came back, with the ranges' counts summed; one failed range fails the file (the
ranges that committed stay committed, and a rerun skips their records). A worker that dies in
the middle of a task (killed, out of memory) is Dask's to handle: the scheduler runs the task
again on another worker, and the rerun skips what the dead one committed.

Inside a task, ``ingest.workers`` is forced to 1: the range is already the unit of parallelism,
and Dask's worker processes are daemonic, so they may not start process pools of their own.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from ratchet.config import PipelineConfig
from ratchet.db import repo
from ratchet.ingest.adapters import AmbiguousFormat
from ratchet.ingest.inputs import InputKind, display_name, sniff_kind
from ratchet.ingest.ranges import ByteRange, cut_ranges
from ratchet.ingest.reader import file_sha256
from ratchet.ingest.sources.detect import source_format
from ratchet.redaction import Redactor
from tasks import runtime
from tasks.ingest import ingest_file_task


def merge_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One file's report from its ranges' reports: counts summed, lists joined, per-suite
    quality merged (passed only if every range passed)."""
    out: dict[str, Any] = {}
    for report in reports:
        _merge_into(out, {k: v for k, v in report.items() if k != "quality"})
    suites: dict[str, dict[str, Any]] = {}
    for report in reports:
        for q in report.get("quality", []):
            seen = suites.setdefault(q["suite"], {**q, "rows": 0, "failed": []})
            seen["rows"] += q["rows"]
            seen["success"] = seen["success"] and q["success"]
            seen["failed"] = sorted(set(seen["failed"]) | set(q["failed"]))
    out["quality"] = list(suites.values())
    if reports:
        out["status"] = "ingested"
    return out


def _merge_into(out: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if key not in out:
            out[key] = (
                dict(value) if isinstance(value, dict)
                else list(value) if isinstance(value, list) else value
            )  # fmt: skip
        elif isinstance(value, bool) or isinstance(value, str):
            continue  # identity fields (name, kind, source_file) are the same in every range
        elif isinstance(value, int | float):
            out[key] += value
        elif isinstance(value, list):
            out[key].extend(value)
        elif isinstance(value, dict):
            if all(isinstance(v, int | float) and not isinstance(v, bool) for v in value.values()):
                out[key] = dict(Counter(out[key]) + Counter(value))
            else:
                _merge_into(out[key], value)


def ingest_parallel(
    entries: list[tuple[InputKind, Path]],
    ref: str,
    fmt: str,
    agent: str | None,
    config: PipelineConfig,
    now: datetime,
    run_id: str | None,
    redactor: Redactor,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Ingest every entry as parallel tasks on the configured Dask cluster; returns the files'
    reports and the failures (value-free), like the sequential path."""
    settings = runtime.settings()
    sessions = runtime.sessions(settings)
    task_config = config.model_copy(
        update={"ingest": config.ingest.model_copy(update={"workers": 1})}
    )
    failures: list[str] = []
    reports: list[dict[str, Any]] = []
    plans: list[tuple[str, str, str, list[ByteRange] | None]] = []  # name, source, kind, ranges
    with runtime.task_runner(config.runtime) as runner:
        futures: list[tuple[int, Any]] = []
        for index, (wanted, path) in enumerate(entries):
            name = display_name(redactor, path.name)
            try:
                source, sniffed = file_sha256(path), sniff_kind(path)
                ranges = _ranges(path, fmt, sniffed, config.runtime.ingest_chunk_bytes)
            except OSError as exc:
                failures.append(f"{name}: cannot read the file ({exc.strerror})")
                continue
            except AmbiguousFormat as exc:
                failures.append(f"{name}: {exc}")
                continue
            kind = (
                sniffed if wanted == "auto" and sniffed in ("interactions", "feedback") else wanted
            )
            if ranges is not None:
                with sessions() as s, s.begin():
                    _row, go = repo.begin_source_file(
                        s, file_id=source, kind=str(kind), name=name,
                        size_bytes=path.stat().st_size, flow_run_id=run_id,
                    )  # fmt: skip
                if not go:
                    reports.append(_already(source, name, str(kind)))
                    continue
            plan = len(plans)
            plans.append((name, source, str(kind), ranges))
            shares: list[ByteRange | None] = list(ranges) if ranges else [None]
            for r in shares:
                params = {
                    "inputs": ref, "index": index, "source": source, "kind": kind, "fmt": fmt,
                    "agent": agent, "config": task_config, "now": now, "flow_run_id": run_id,
                    "byte_range": (r.start, r.end, r.first_line) if r else None,
                }  # fmt: skip
                futures.append((plan, runner.submit(ingest_file_task, parameters=params)))
        states = runtime.wait_states([f for _, f in futures])
    by_plan: dict[int, list[Any]] = {}
    for (plan, _), state in zip(futures, states, strict=True):
        by_plan.setdefault(plan, []).append(state)
    for plan, (name, source, _kind, ranges) in enumerate(plans):
        done, errors = _collect(by_plan.get(plan, []))
        if ranges is None:
            reports.extend(done)
        else:
            merged = merge_reports(done)
            with sessions() as s, s.begin():
                if errors:
                    repo.fail_source_file(s, source, error="; ".join(errors)[:2000])
                else:
                    repo.complete_source_file(s, source, lines=merged["lines"], counts=merged)
            if done:
                reports.append(merged)
        failures.extend(f"{name}: {e}" for e in errors)
    return reports, failures


def _ranges(path: Path, fmt: str, sniffed: str, chunk: int) -> list[ByteRange] | None:
    """The file's byte ranges when it is worth cutting (None: one task for the whole file)."""
    if sniffed not in ("interactions", "feedback") or source_format(path, fmt) is not None:
        return None  # empty, a manifest, or a vendor export (not one record per line)
    ranges = cut_ranges(path, chunk)
    return ranges if len(ranges) > 1 else None


def _already(source: str, name: str, kind: str) -> dict[str, Any]:
    from ratchet.ingest.pipeline import FileReport

    return FileReport(source_file=source, name=name, kind=kind, status="already_ingested").as_dict()


def _collect(states: list[Any]) -> tuple[list[dict[str, Any]], list[str]]:
    done: list[dict[str, Any]] = []
    errors: list[str] = []
    for state in states:
        if state.is_completed():
            done.append(state.result())
            continue
        try:
            state.result()
        except Exception as exc:  # the task's own, value-free message
            errors.append(f"{type(exc).__name__}: {exc}")
    return done, errors
