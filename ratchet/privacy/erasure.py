"""Erasure: remove a person's (or some records') data from everything Ratchet derived from it.

One engine, used by ``ratchet forget`` (flows/forget.py), by consent withdrawals recorded at
ingest, and by retention (:mod:`ratchet.privacy.retention`). What it reaches, in the order it
goes (the order is the crash argument, below):

1. **discovery** (reads only): the interaction parts whose rows belong to a target user
   (``user_id`` = the keyed pseudonym) or name a target interaction; the feedback on those
   interactions, or given by the user (``annotator``), or named; the quarantine rows that
   mention them; the eval-case ids (recomputed from the erased interactions' user turns, as
   curation computes them) and every curated row of every dataset version that holds one of
   them, an erased interaction or an erased feedback event;
2. **tombstones** (forget and consent only): one per user and one per erased interaction id,
   so a later ingest of the same logs (and feedback files about those interactions) does not
   bring them back. Added before anything is rewritten: they are also what a rerun after a
   crash needs to find what is left (``tombstones.erased_at`` NULL = pending);
3. **models**: every model version trained on a dataset version that held the records is
   marked ``erased_data_at`` ("trained on erased data"); the retrieval indexes of the ``local``
   and ``logs`` backends (``models/<id>/``) are rebuilt without the erased rows at once (they
   hold examples verbatim, and the TF-IDF vocabulary holds their words); a ``prompt``
   candidate's rule that quotes an erased question is dropped from its system prompt;
4. **evaluations**: the rows of ``evals/<run>/results.parquet`` for the erased cases and the
   cached answers (``evals/cache/``) for their inputs;
5. **dataset versions and exports**: each version that held erased rows gets a *new* version
   without them (its id derives from the old id and the new content, parent = the old one);
   the old row keeps its id (training runs name it) with ``superseded_by`` set and its ``path``
   pointing at the new file; the old file and the old version's exports are deleted and the
   new version's exports written;
6. **store parts**: quarantine, then feedback, then interactions: each part with erased rows is
   rewritten without them (a new content-named part, the surviving record keys moved to it,
   the erased keys deleted, the old part retired), then the old file is deleted.

**Crash half-way, then rerun.** Every step finds its work by looking (never from a log of
what was done), and every step only needs what later steps change: parts, which tell which
interactions and cases are the person's, are rewritten last; a superseded version remembers
its original file (``stats.erasure.erased_from``) and a retired part is looked at again while
its file exists, so a file left behind by a crash between the commit and the delete is found
and deleted by the rerun. Marks and tombstones are idempotent. So a rerun of the same request
(or any later forget, which sweeps pending tombstones) leaves nothing of the person readable.

**What is matched is over-erased rather than under-erased**: a case id is a hash of the agent
and the normalised question, so another user's identical question goes with it; a retrieval
row whose question equals an erased question goes too.

The core never imports Prefect; errors and the report name ids and counts, never values.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from ratchet import schemas
from ratchet.db import repo
from ratchet.db.models import (
    DatasetVersion,
    EvalRun,
    ModelVersion,
    Part,
    RecordKey,
    Tombstone,
    TrainingRun,
    utcnow,
)
from ratchet.privacy.consent import drop_tombstoned_quarantine, record_withdrawals
from ratchet.privacy.erasure_scope import (
    ErasureContext,
    ErasureRequest,
    Scope,
    any_of,
    discover,
    feedback_mask,
    interaction_mask,
    isin,
    parts_of,
    quarantine_mask,
)
from ratchet.store import dataset_path, export_dir

logger = logging.getLogger(__name__)

PART_SCHEMAS = {
    "interactions": schemas.INTERACTIONS,
    "feedback": schemas.FEEDBACK,
    "quarantine": schemas.QUARANTINE,
}
RECORD_KIND = {"interactions": "interaction", "feedback": "feedback"}
ID_COLUMN = {"interactions": "interaction_id", "feedback": "feedback_id"}
_RULE = re.compile(r'When asked "(.*?)", answer:')


class ErasureError(RuntimeError):
    """An erasure could not finish; the message names ids and paths, never values."""


@dataclass
class ErasureReport:
    """Counts (for artifacts), and the ids of what was affected (dataset and model versions)."""

    dry_run: bool = False
    rows_removed: Counter[str] = field(default_factory=Counter)  # per table / kind
    files_rewritten: int = 0
    files_deleted: int = 0
    versions_superseded: int = 0
    exports_rewritten: int = 0
    models_marked: int = 0
    model_folders_rewritten: int = 0
    tombstones_added: int = 0
    dataset_versions: list[str] = field(default_factory=list)  # held erased rows (old ids)
    new_versions: list[str] = field(default_factory=list)
    model_versions: list[str] = field(default_factory=list)  # trained on erased data

    def counts(self) -> dict[str, Any]:
        """Counts only: what an artifact or a log line may show."""
        return {
            "dry_run": self.dry_run,
            "rows_removed": dict(sorted(self.rows_removed.items())),
            "rows_removed_total": sum(self.rows_removed.values()),
            "files_rewritten": self.files_rewritten,
            "files_deleted": self.files_deleted,
            "versions_superseded": self.versions_superseded,
            "exports_rewritten": self.exports_rewritten,
            "models_marked": self.models_marked,
            "model_folders_rewritten": self.model_folders_rewritten,
            "tombstones_added": self.tombstones_added,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.counts(),
            "dataset_versions": sorted(set(self.dataset_versions)),
            "new_versions": sorted(set(self.new_versions)),
            "model_versions": sorted(set(self.model_versions)),
        }


# --- the steps that write -----------------------------------------------------------------------
def _add_tombstones(ctx: ErasureContext, request: ErasureRequest, scope: Scope) -> int:
    added = 0
    with ctx.sessions() as s, s.begin():
        for kind, targets in (("user", scope.users), ("interaction", scope.interactions)):
            for agent, values in [(None, targets.any), *targets.by_agent.items()]:
                scoped = agent if agent is not None else None
                for value in sorted(values):
                    row, created = repo.add_tombstone(
                        s, kind=kind, value=value, agent_id=scoped, reason=request.reason
                    )
                    added += created
                    if row.erased_at is None:
                        scope.tombstone_ids.add(row.id)
    return added


def _mark_models(
    ctx: ErasureContext, scope: Scope, report: ErasureReport, dry: bool, agent: str | None
) -> None:
    """Mark what was trained on the affected versions; rebuild retrieval indexes and prompts."""
    old_ids = {vid for vid, _, _ in scope.versions}
    with ctx.sessions() as s, s.begin():
        runs = set()
        if old_ids:
            stmt = select(TrainingRun.id).where(TrainingRun.dataset_version_id.in_(sorted(old_ids)))
            runs = set(s.execute(stmt).scalars())
        now = utcnow()
        models = select(ModelVersion).order_by(ModelVersion.id)
        if agent is not None:
            models = models.where(ModelVersion.agent_id == agent)
        for mv in s.execute(models).scalars():
            touched = mv.training_run_id in runs or (
                (mv.parameters or {}).get("few_shot_dataset") in old_ids
            )
            if mv.backend in ("local", "logs") and _rewrite_index(ctx, mv.model_ref, scope, dry):
                touched = True
                report.model_folders_rewritten += 1
                report.files_rewritten += 2
            prompt = _strip_rules(mv.system_prompt, scope.questions)
            if prompt is not None:
                touched = True
                if not dry:
                    mv.system_prompt = prompt
            if touched:
                report.model_versions.append(mv.id)
                if mv.erased_data_at is None:
                    report.models_marked += 1
                    if not dry:
                        mv.erased_data_at = now


def _strip_rules(prompt: str | None, questions: set[str]) -> str | None:
    """The prompt without the rules that quote an erased question (None: nothing to strip)."""
    if not prompt or not questions:
        return None
    from ratchet.prompting import MAX_QUESTION_CHARS, _clip

    clipped = {_clip(q, MAX_QUESTION_CHARS) for q in questions}
    lines = prompt.split("\n")
    kept = [ln for ln in lines if not ((m := _RULE.search(ln)) and m.group(1) in clipped)]
    return "\n".join(kept) if len(kept) != len(lines) else None


def _rewrite_index(ctx: ErasureContext, prefix: str, scope: Scope, dry: bool) -> bool:
    """Rebuild a retrieval index without the erased rows; True when it held any."""
    from ratchet.backends.retrieval import IndexFormatError, RetrievalIndex, build_index

    if not ctx.store.exists(prefix.rstrip("/") + "/index.json"):
        return False
    try:
        index = RetrievalIndex.load(ctx.store, prefix)
    except IndexFormatError as exc:  # a crash between rows.parquet and index.json
        raise ErasureError(f"model folder {prefix}: {exc}; rebuild or delete it") from None
    rows = index.rows
    ids = scope.example_ids | scope.interactions.all()
    drop = any_of(
        [
            isin(rows["id"], ids),
            isin(rows["question"], scope.questions),
            pa.array([p in scope.pairs for p in _pairs_of(rows)], pa.bool_()),
        ],
        rows.num_rows,
    )
    n = int(pc.sum(drop.cast(pa.int64())).as_py() or 0)
    if not n:
        return False
    scope_rows = rows.filter(pc.invert(drop))
    if not dry:
        state = index.encoder.state()
        rebuilt = build_index(
            scope_rows["id"].to_pylist(),
            scope_rows["question"].to_pylist(),
            scope_rows["answer"].to_pylist(),
            scope_rows["tool_calls"].to_pylist(),
            encoder=index.encoder.name,
            ngram_max=int(state.get("ngram_max", 2)),
            max_features=state.get("max_features"),
            meta=index.meta,
        )
        rebuilt.save(ctx.store, prefix)
    return True


def _pairs_of(rows: pa.Table) -> list[tuple[str, str]]:
    return list(zip(rows["question"].to_pylist(), rows["answer"].to_pylist(), strict=True))


def _rewrite_evals(ctx: ErasureContext, scope: Scope, report: ErasureReport, dry: bool) -> None:
    cases, hashes = scope.cases.all(), scope.input_hashes
    if not cases and not hashes:
        return
    with ctx.sessions() as s:
        paths = sorted({p for p in s.execute(select(EvalRun.results_path)).scalars() if p})
    for path in paths:
        if not ctx.store.exists(path):
            continue
        t = ctx.store.read_table(path, schemas.EVAL_RESULTS)
        drop = pc.or_(isin(t["case_id"], cases), isin(t["input_hash"], hashes))
        n = int(pc.sum(drop.cast(pa.int64())).as_py() or 0)
        if n:
            report.rows_removed["eval_results"] += n
            report.files_rewritten += 1
            if not dry:
                ctx.store.write_table_at(path, t.filter(pc.invert(drop)), schemas.EVAL_RESULTS)
    from ratchet.evaluation.runner import CACHE_ROOT

    for path in ctx.store.list_files(CACHE_ROOT):
        if not path.endswith(".parquet"):
            continue
        t = ctx.store.read_table(path, schemas.EVAL_ANSWER_CACHE)
        drop = isin(t["input_hash"], hashes)
        n = int(pc.sum(drop.cast(pa.int64())).as_py() or 0)
        if not n:
            continue
        report.rows_removed["eval_answer_cache"] += n
        kept = t.filter(pc.invert(drop))
        report.files_deleted += 1
        report.files_rewritten += bool(kept.num_rows)
        if not dry:
            if kept.num_rows:
                ctx.store.write_part(path.rsplit("/", 1)[0], kept, schemas.EVAL_ANSWER_CACHE)
            ctx.store.delete(path)


def superseding_id(old_id: str, table: pa.Table) -> str:
    """The new version's id: the old id and the new content (a rerun makes the same id)."""
    from ratchet.store import parquet_bytes

    content = hashlib.sha256(parquet_bytes(table)).hexdigest()
    return hashlib.sha256(f"erasure\x1f{old_id}\x1f{content}".encode()).hexdigest()


def _supersede(ctx: ErasureContext, scope: Scope, report: ErasureReport, dry: bool) -> None:
    from ratchet.curation.registry import write_exports

    for old_id, kept, removed in scope.versions:
        report.dataset_versions.append(old_id)
        report.versions_superseded += 1
        with ctx.sessions() as s:
            old = repo.get_dataset_version(s, old_id)
            agent, kind, old_path = old.agent_id, old.kind, old.path
        report.rows_removed[kind] += removed
        report.files_deleted += 1
        report.files_rewritten += 1
        new_id = superseding_id(old_id, kept)
        report.new_versions.append(new_id)
        if dry:
            continue
        schema = schemas.schema_for(kind)
        part = ctx.store.write_table_at(dataset_path(agent, kind, new_id), kept, schema)
        with ctx.sessions() as s, s.begin():
            old = repo.get_dataset_version(s, old_id)
            lineage = [*repo.dataset_lineage(s, old_id), ("dataset_version", old_id)]
            new, created = repo.register_dataset_version(
                s, version_id=new_id, agent_id=agent, kind=kind, path=part.path,
                rows=kept.num_rows, schema_fingerprint=part.schema_fingerprint,
                config_hash=old.config_hash, flow_run_id=old.flow_run_id,
                stats={**(old.stats or {}), "rows": kept.num_rows,
                       "erasure": {"supersedes": old_id, "rows_removed": removed}},
                lineage=lineage, parent_id=old_id,
            )  # fmt: skip
            if created:  # keep its place in the history (the latest stays the latest)
                new.created_at = old.created_at + timedelta(microseconds=1)
            s.execute(
                update(DatasetVersion)
                .where(DatasetVersion.path == old_path, DatasetVersion.id != new_id)
                .values(path=part.path)
            )
            old.superseded_by = new_id
            old.stats = {**(old.stats or {}), "erasure": {"superseded_by": new_id,
                         "rows_removed": removed, "erased_from": old_path}}  # fmt: skip
        written = write_exports(ctx.store, agent, new_id, kind, kept, ctx.config.export)
        report.exports_rewritten += sum(len(e["files"]) for e in written)
        _delete_old_version_files(ctx, agent, old_id, old_path, part.path, report)


def _delete_old_version_files(
    ctx: ErasureContext, agent: str, old_id: str, old_path: str, current: str, report: ErasureReport
) -> None:
    if old_path != current:
        ctx.store.delete(old_path)
    for path in ctx.store.list_files(export_dir(agent, old_id)):
        ctx.store.delete(path)
        report.files_deleted += 1


def sweep_superseded(ctx: ErasureContext, report: ErasureReport, dry: bool) -> None:
    """Files of superseded versions a crash left behind (between the commit and the delete)."""
    with ctx.sessions() as s:
        rows = [
            (v.id, v.agent_id, v.path, (v.stats or {}).get("erasure", {}).get("erased_from"))
            for v in s.execute(
                select(DatasetVersion).where(DatasetVersion.superseded_by.is_not(None))
            ).scalars()
        ]
    for vid, agent, path, erased_from in rows:
        leftovers = ctx.store.list_files(export_dir(agent, vid))
        if erased_from and erased_from != path and ctx.store.exists(erased_from):
            leftovers.append(erased_from)
        report.files_deleted += len(leftovers)
        if not dry:
            for p in leftovers:
                ctx.store.delete(p)


def _rewrite_parts(ctx: ErasureContext, scope: Scope, report: ErasureReport, dry: bool) -> None:
    agent_scope = None  # parts of every agent are checked against per-agent targets
    for table in ("quarantine", "feedback", "interactions"):
        with ctx.sessions() as s:
            parts = parts_of(s, table, agent_scope)
        for part in parts:
            if not ctx.store.exists(part.path):
                continue
            t = ctx.store.read_table(part.path, PART_SCHEMAS[table])
            if table == "quarantine":
                mask = quarantine_mask(ctx, t, part.path, scope)
            elif table == "feedback":
                mask = feedback_mask(t, part.agent_id or "", scope)
            else:
                mask = interaction_mask(t, part.agent_id or "", scope)
            n = int(pc.sum(mask.cast(pa.int64())).as_py() or 0)
            if not n:
                continue
            report.files_deleted += 1
            if part.retired_at is not None:  # a crash's leftover: its rows live elsewhere
                if not dry:
                    ctx.store.delete(part.path)
                continue
            report.rows_removed[table] += n
            kept = t.filter(pc.invert(mask))
            report.files_rewritten += bool(kept.num_rows)
            if not dry:
                _replace_part(ctx, part, table, t.filter(mask), kept)


def _replace_part(
    ctx: ErasureContext, part: Part, table: str, gone: pa.Table, kept: pa.Table
) -> None:
    """Write the part without the rows, move the surviving keys, retire the old, delete it."""
    new = None
    if kept.num_rows:
        new = ctx.store.write_part(part.path.rsplit("/", 1)[0], kept, PART_SCHEMAS[table])
    with ctx.sessions() as s, s.begin():
        if table in RECORD_KIND:
            erased = gone[ID_COLUMN[table]].to_pylist()
            for i in range(0, len(erased), 500):
                s.execute(
                    delete(RecordKey).where(
                        RecordKey.part_id == part.id,
                        RecordKey.record_id.in_(erased[i : i + 500]),
                    )
                )
        if new is not None and new.path != part.path:
            fresh = s.execute(select(Part.id).where(Part.path == new.path)).first() is None
            row = repo.record_part(
                s,
                repo.PartRecord(
                    table_name=table, path=new.path, rows=new.rows,
                    content_hash=new.content_hash, redaction_version=part.redaction_version,
                    agent_id=part.agent_id, partition_date=part.partition_date,
                    source_file_id=part.source_file_id, bytes=new.bytes,
                    schema_fingerprint=new.schema_fingerprint,
                ),
            )  # fmt: skip
            s.execute(update(RecordKey).where(RecordKey.part_id == part.id).values(part_id=row.id))
            if table == "feedback" and fresh and part.agent_id is not None:
                repo.index_feedback_part(  # the new part stays findable by its interactions
                    s, part.agent_id, row.id, kept["interaction_id"].to_pylist()
                )
        repo.retire_parts(s, [part.id])
    ctx.store.delete(part.path)


def _settle_tombstones(ctx: ErasureContext, scope: Scope) -> None:
    if not scope.tombstone_ids:
        return
    with ctx.sessions() as s, s.begin():
        s.execute(
            update(Tombstone)
            .where(Tombstone.id.in_(sorted(scope.tombstone_ids)), Tombstone.erased_at.is_(None))
            .values(erased_at=utcnow())
        )


def erase(ctx: ErasureContext, request: ErasureRequest, *, dry_run: bool = False) -> ErasureReport:
    """Run one erasure (see the module docstring for the reach and the order); idempotent."""
    report = ErasureReport(dry_run=dry_run)
    scope = discover(ctx, request)
    if request.tombstone and not dry_run:
        report.tombstones_added = _add_tombstones(ctx, request, scope)
    elif request.tombstone:
        report.tombstones_added = len(scope.users.all()) + len(scope.interactions.all())
    _mark_models(ctx, scope, report, dry_run, request.agent_id)
    _rewrite_evals(ctx, scope, report, dry_run)
    _supersede(ctx, scope, report, dry_run)
    sweep_superseded(ctx, report, dry_run)
    _rewrite_parts(ctx, scope, report, dry_run)
    if not dry_run:
        _settle_tombstones(ctx, scope)
    logger.info("erasure%s: %s", " (dry run)" if dry_run else "", report.counts())
    return report


def trained_on_erased(session: Session, version_ids: Iterable[str]) -> dict[str, datetime]:
    """``model version id -> erased_data_at`` for the given versions that carry the mark."""
    stmt = select(ModelVersion.id, ModelVersion.erased_data_at).where(
        ModelVersion.id.in_(sorted(set(version_ids))), ModelVersion.erased_data_at.is_not(None)
    )
    return {vid: at for vid, at in session.execute(stmt).tuples() if at is not None}


__all__ = [
    "ErasureContext",
    "ErasureError",
    "ErasureReport",
    "ErasureRequest",
    "discover",
    "drop_tombstoned_quarantine",
    "erase",
    "record_withdrawals",
    "superseding_id",
    "sweep_superseded",
    "trained_on_erased",
]
