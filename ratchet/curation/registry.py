"""One agent's curation run end to end, and the dataset-version reads the CLI needs.

:func:`curate_agent` is what the curate task calls: select the window's inputs from the ledger
(:mod:`ratchet.curation.select`), call :func:`ratchet.curation.curate`, check every table with
its data-quality suite (:mod:`ratchet.curation.quality`; all five pass before anything is
written), write each as ``datasets/<agent>/<kind>/<version>/data.parquet``, register it with its
lineage, then write its exports under ``exports/<agent>/<version>/``.

Decisions:

* **Empty tables are not registered** (reported as ``skipped_empty``). An empty version carries
  nothing, and registering one would make it the "latest" of its kind, which a training or
  evaluation stage would then pick up; the previous version stays the latest instead.
* **No feedback in the window: no curate call**: nothing could change (the eval set would be the
  previous version again), so the agent is reported as ``no_feedback``.
* **Exports are rewritten for every version the run produced**, new or already registered:
  the bytes are deterministic, so a rerun rewrites the same files, and a run that died between
  registering and exporting is repaired by the next one.
* **An invalid export is not written and does not fail the run**: it is reported with its
  violations counted per rule (never text). Typical on small data: ``too_few_examples``.
* Lineage of every version: the interaction and feedback parts read (``part``), the previous
  eval-set version (``dataset_version``: it feeds the eval set and the leakage guard of every
  table), and the flow run (``flow_run``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from sqlalchemy.orm import Session, sessionmaker

from ratchet import export as exp
from ratchet import schemas
from ratchet.config import CurationConfig, ExportConfig, PipelineConfig
from ratchet.curation import curate, dataset_version_id
from ratchet.curation import quality as cq
from ratchet.curation.select import (
    Window,
    active_holdout_cases,
    eval_case_versions,
    latest_curated_eval_cases,
    select_inputs,
)
from ratchet.db import DatasetVersion, repo
from ratchet.quality import DataQualityError, second_opinion_report, validate_frame
from ratchet.redaction import Redactor
from ratchet.review import review_files
from ratchet.second_opinion import scanner_for
from ratchet.store import Store, dataset_path, export_dir

logger = logging.getLogger(__name__)

# format name -> (kind it reads, hf kind or None)
FORMATS: dict[str, tuple[tuple[str, ...], str]] = {
    "openai-sft": (("sft_examples",), "openai_chat"),
    "openai-dpo": (("preference_pairs",), "openai_dpo"),
    "eval-jsonl": (("eval_cases",), "eval"),
    "hf": (("sft_examples", "preference_pairs", "binary_feedback"), "hf"),
}
_HF_KIND = {"sft_examples": "sft", "preference_pairs": "dpo", "binary_feedback": "kto"}
# what the curate flow exports for each kind
DEFAULT_EXPORTS: dict[str, tuple[str, ...]] = {
    "eval_cases": ("eval-jsonl",),
    "sft_examples": ("openai-sft", "hf"),
    "preference_pairs": ("openai-dpo", "hf"),
    "binary_feedback": ("hf",),
    "review_queue": ("review",),
}


class ExportFormatError(ValueError):
    """The format does not apply to the version's kind (bad usage, not bad data)."""


@dataclass(frozen=True)
class CurationContext:
    store: Store
    sessions: sessionmaker[Session]
    config: PipelineConfig
    redactor: Redactor
    flow_run_id: str | None = None


def config_hash(config: CurationConfig) -> str:
    return hashlib.sha256(
        json.dumps(config.model_dump(mode="json"), sort_keys=True).encode()
    ).hexdigest()


def read_version(store: Store, version: DatasetVersion) -> pa.Table:
    return store.read_table(version.path, schemas.schema_for(version.kind))


# --- exports ------------------------------------------------------------------------------------
SPLITS = ("train", "validation", "all")


def _splits_to_write(table: pa.Table, split: str) -> tuple[str, ...]:
    """``all``: the train file, and the validation file when the version has validation rows
    (a validation share of 0 makes none); ``train``/``validation``: that file only."""
    if split != "all":
        return (split,)
    has_validation = bool(table.num_rows) and "validation" in set(table["split"].to_pylist())
    return ("train", "validation") if has_validation else ("train",)


def export_table(
    table: pa.Table, kind: str, fmt: str, out_dir: Path, config: ExportConfig, *, split: str = "all"
) -> list[exp.ExportResult]:
    """Validate and write one format of a curated table into a local folder (nothing on error).

    Training formats write one file per split (``openai_chat.train.jsonl`` and
    ``openai_chat.validation.jsonl``...; ``split`` picks them, see :func:`_splits_to_write`);
    the eval format writes ``eval.jsonl`` (every active case) and takes no split. When one file
    of the set is invalid, none is left behind. Raises :class:`ExportFormatError` when ``fmt``
    does not apply to ``kind`` and :class:`ratchet.export.ExportValidationError` when the data
    breaks the format's rules.
    """
    if fmt not in FORMATS:
        raise ExportFormatError(f"unknown format {fmt!r}; known: {sorted(FORMATS)}")
    if split not in SPLITS:
        raise ExportFormatError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    kinds, name = FORMATS[fmt]
    if kind not in kinds:
        raise ExportFormatError(f"format {fmt} exports {' or '.join(kinds)}, not {kind}")
    if name == "eval":
        if split != "all":
            raise ExportFormatError(
                "--split applies to training formats; eval-jsonl exports every active eval case"
            )
        return [exp.export_eval(table, out_dir, config)]
    results: list[exp.ExportResult] = []
    try:
        for one in _splits_to_write(table, split):
            if name == "openai_chat":
                results.append(exp.export_openai_chat(table, out_dir, config, split=one))
            elif name == "openai_dpo":
                results.append(exp.export_openai_dpo(table, out_dir, config, split=one))
            else:
                results.append(
                    exp.export_hf_parquet(table, _HF_KIND[kind], out_dir, config, split=one)
                )
    except exp.ExportValidationError:
        for r in results:
            r.path.unlink(missing_ok=True)
        raise
    return results


def violation_counts(err: exp.ExportValidationError) -> dict[str, int]:
    return dict(sorted(Counter(v.rule for v in err.violations).items()))


def refusal_reason(err: exp.ExportValidationError) -> str:
    """Why an export was refused, in words an operator reads, with the numbers behind it and
    the rule's name: ``8 examples, export.min_examples is 10 (too_few_examples)`` or
    ``content_not_string on 2 lines (first: 4)``."""
    parts: list[str] = []
    by_rule: dict[str, list[int]] = {}
    for v in err.violations:
        if v.line == 0:
            parts.append(f"{v.detail} ({v.rule})" if v.detail else v.rule)
        else:
            by_rule.setdefault(v.rule, []).append(v.line)
    for rule, lines in sorted(by_rule.items()):
        n = len(set(lines))
        parts.append(f"{rule} on {n} line{'s' if n != 1 else ''} (first: {min(lines)})")
    return "; ".join(parts)


def write_exports(
    store: Store, agent_id: str, version: str, kind: str, table: pa.Table, config: ExportConfig
) -> list[dict[str, Any]]:
    """The default exports of one version, into ``exports/<agent>/<version>/`` on the store.

    Each file is made in a local temporary folder (the export functions validate and write
    locally) and then written to the store with ``Store.write_bytes``, so object stores work.
    """
    out: list[dict[str, Any]] = []
    target = export_dir(agent_id, version)
    for fmt in DEFAULT_EXPORTS[kind]:
        entry: dict[str, Any] = {"kind": kind, "version": version, "format": fmt}
        if fmt == "review":
            files = review_files(table)
            for name, data in files.items():
                store.write_bytes(f"{target}/{name}", data)
            out.append(
                {
                    **entry,
                    "status": "written",
                    "files": sorted(files),
                    "rows": table.num_rows,
                    "violations": {},
                    "reason": "",
                    "skipped": {},
                }
            )
            continue
        with tempfile.TemporaryDirectory(prefix="ratchet-export-") as tmp:
            try:
                results = export_table(table, kind, fmt, Path(tmp), config)
            except exp.ExportValidationError as err:
                out.append(
                    {
                        **entry,
                        "status": "refused",
                        "files": [],
                        "rows": 0,
                        "violations": violation_counts(err),
                        "reason": f"{err.format}: {refusal_reason(err)}",
                        "skipped": {},
                    }
                )
                continue
            names = []
            skipped: Counter[str] = Counter()
            for r in results:
                store.write_bytes(f"{target}/{r.path.name}", r.path.read_bytes())
                names.append(r.path.name)
                skipped.update(r.skipped)
            out.append(
                {
                    **entry,
                    "status": "written",
                    "files": names,
                    "rows": sum(r.rows for r in results),
                    "violations": {},
                    "reason": "",
                    "skipped": dict(sorted(skipped.items())),
                }
            )
    return out


# --- the run ------------------------------------------------------------------------------------
def _rejected_counts(rejected: pa.Table) -> dict[str, int]:
    c = Counter(
        f"{s}:{r}"
        for s, r in zip(rejected["stage"].to_pylist(), rejected["reason"].to_pylist(), strict=True)
    )
    return dict(sorted(c.items()))


def curate_agent(ctx: CurationContext, agent_id: str, window: Window) -> dict[str, Any]:
    """Curate one agent's window; returns a value-free report (counts, ids, paths).

    Raises :class:`DataQualityError` (nothing written or registered) when a table fails its
    suite.
    """
    cfg = ctx.config.curation
    report: dict[str, Any] = {
        "agent": agent_id,
        "window": window.label(),
        "status": "curated",
        "selection": {},
        "stats": {},
        "rejected": {},
        "quality": [],
        "versions": [],
        "skipped_empty": [],
        "exports": [],
    }
    with ctx.sessions() as s:
        sel = select_inputs(s, ctx.store, agent_id, window)
        prev = latest_curated_eval_cases(s, agent_id)
        prev_id = prev.id if prev is not None else None
        prev_table = read_version(ctx.store, prev) if prev is not None else None
        # the leakage guard's reference: every active holdout case of the agent, not only the
        # previous version's (curate lets the previous version decide the cases it holds)
        older = [v for v in eval_case_versions(s, agent_id) if v[0] != prev_id]
    reference, reference_ids = active_holdout_cases(ctx.store, older)
    report["selection"] = dict(sel.stats)
    report["previous_eval_cases"] = prev_id
    if sel.feedback.num_rows == 0 or sel.stats.get("feedback_in_window", 0) == 0:
        report["status"] = "no_feedback"
        logger.info("%s: no feedback in %s, nothing to curate", agent_id, window.label())
        return report
    logger.info(
        "%s: curating %d feedback event(s) on %d interaction(s)",
        agent_id,
        sel.stats.get("feedback_in_window", 0),
        sel.interactions.num_rows,
    )

    result = curate(
        sel.interactions,
        sel.feedback,
        prev_table,
        cfg,
        now=window.until,
        scan_residual=ctx.redactor.scan_table,
        holdout_reference=reference,
    )
    stats = dict(result.stats)
    tables = result.tables()
    holdout = cq.holdout_case_ids(tables["eval_cases"])
    failures = []
    for kind, table in tables.items():
        check = cq.check_frame(kind, table, cfg, holdout)
        if kind in cq.TRAINING_KINDS:
            stats[f"holdout_overlap_{kind}"] = cq.holdout_overlap_count(check)
        if not table.num_rows:
            continue
        q = validate_frame(kind, check)
        report["quality"].append(q.summary())
        if not q.success:
            failures.append(q)
        so = scanner_for(ctx.config).scan(table, kind)  # a sample of the text columns
        report.setdefault("second_opinion", {})[kind] = so.as_dict()
        q = second_opinion_report(so, ctx.config.quality)
        report["quality"].append(q.summary())
        if not q.success:
            failures.append(q)
    report["stats"] = stats
    report["rejected"] = _rejected_counts(result.rejected)
    if failures:
        first = failures[0]
        detail = "; ".join(f"{q.suite}: {', '.join(q.failed)}" for q in failures)
        raise DataQualityError(f"agent {agent_id}: curated data failed quality: {detail}", first)

    made: list[tuple[str, str, pa.Table, Any]] = []
    for kind, table in tables.items():
        if not table.num_rows:
            report["skipped_empty"].append(kind)
            continue
        version = dataset_version_id(table, kind, cfg)
        part = ctx.store.write_table_at(
            dataset_path(agent_id, kind, version), table, schemas.schema_for(kind)
        )
        made.append((kind, version, table, part))

    lineage = sel.lineage()
    if prev_id:
        lineage.append(("dataset_version", prev_id))
    if result.stats.get("leakage_reference_older_holdout_cases"):
        lineage += [("dataset_version", v) for v in reference_ids]
    if ctx.flow_run_id:
        lineage.append(("flow_run", ctx.flow_run_id))
    chash = config_hash(cfg)
    with ctx.sessions() as s, s.begin():
        for kind, version, table, part in made:
            kind_stats = {k: v for k, v in stats.items() if not k.startswith("rows_")}
            kind_stats.update(
                window=window.label(),
                rows=table.num_rows,
                quality=next((q for q in report["quality"] if q["suite"] == f"{kind}_suite"), None),
            )
            _, created = repo.register_dataset_version(
                s,
                version_id=version,
                agent_id=agent_id,
                kind=kind,
                path=part.path,
                rows=table.num_rows,
                schema_fingerprint=part.schema_fingerprint,
                config_hash=chash,
                flow_run_id=ctx.flow_run_id,
                stats=kind_stats,
                lineage=lineage,
            )
            report["versions"].append(
                {
                    "kind": kind,
                    "version": version,
                    "rows": table.num_rows,
                    "created": created,
                    "path": part.path,
                }
            )
    for kind, version, table, _ in made:
        report["exports"] += write_exports(
            ctx.store, agent_id, version, kind, table, ctx.config.export
        )
    logger.info(
        "%s: %d dataset version(s) (%s); exports written %d, refused %d", agent_id,
        len(report["versions"]), ", ".join(f"{v['kind']} {v['rows']} rows"
                                           for v in report["versions"]) or "none",
        sum(e["status"] == "written" for e in report["exports"]),
        sum(e["status"] == "refused" for e in report["exports"]),
    )  # fmt: skip
    return report


# --- reads for the CLI --------------------------------------------------------------------------
def describe_version(session: Session, version: DatasetVersion) -> dict[str, Any]:
    return {
        "version": version.id,
        "agent": version.agent_id,
        "kind": version.kind,
        "rows": version.rows,
        "path": version.path,
        "created": version.created_at.isoformat() if version.created_at else None,
        "parent": version.parent_id,
        "config_hash": version.config_hash,
        "schema_fingerprint": version.schema_fingerprint,
        "flow_run": version.flow_run_id,
        "lineage": [{"kind": k, "ref": r} for k, r in repo.dataset_lineage(session, version.id)],
        "stats": version.stats,
    }


def _row_key(kind: str, row: dict[str, Any]) -> str:
    if kind == "eval_cases":
        return f"{row['case_id']}|{row['interaction_id']}|{row['kind']}"
    return str(
        row[
            {
                "sft_examples": "example_id",
                "preference_pairs": "pair_id",
                "binary_feedback": "example_id",
                "review_queue": "review_id",
            }[kind]
        ]
    )


def _default(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def diff_tables(kind: str, a: pa.Table, b: pa.Table) -> dict[str, Any]:
    """Rows added / removed / changed from ``a`` to ``b`` (by row id), and for eval cases the
    status changes (``active->retired``...). Counts and ids only, never text."""
    ra = {_row_key(kind, r): r for r in a.to_pylist()}
    rb = {_row_key(kind, r): r for r in b.to_pylist()}
    added = sorted(set(rb) - set(ra))
    removed = sorted(set(ra) - set(rb))
    changed = sorted(
        k
        for k in set(ra) & set(rb)
        if json.dumps(ra[k], sort_keys=True, default=_default)
        != json.dumps(rb[k], sort_keys=True, default=_default)
    )
    out: dict[str, Any] = {
        "kind": kind,
        "rows_a": a.num_rows,
        "rows_b": b.num_rows,
        "added": len(added),
        "removed": len(removed),
        "changed": len(changed),
        "added_ids": added[:50],
        "removed_ids": removed[:50],
        "changed_ids": changed[:50],
    }
    if kind == "eval_cases":
        moves = Counter(
            f"{ra[k]['status']}->{rb[k]['status']}"
            for k in changed
            if ra[k]["status"] != rb[k]["status"]
        )
        out["status_changes"] = dict(sorted(moves.items()))
        out["retired"] = sorted(
            k.split("|")[0]
            for k in changed
            if ra[k]["status"] == "active" and rb[k]["status"] == "retired"
        )[:50]
    return out
