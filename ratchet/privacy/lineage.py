"""Lineage for people: which interactions, feedback events and source files a version came from.

A data subject asks "was my conversation used to train this model?"; an erasure needs to know
which versions to rebuild. The database already records the chain; this module follows it:

* a **model version** → its training run → the dataset version it was trained on (a model with
  no training run: the ``logs`` backend's first production answers from the logged
  interactions its index holds, ``models/<version>/rows.parquet``; any other has none);
* a **dataset version** → its rows: ``interaction_id`` and ``feedback_ids`` where the table
  has them (eval cases, the review queue); for the training tables (SFT examples, preference
  pairs, binary feedback) through their ``case_id`` to the eval cases curated with them (the
  ``eval_cases`` version registered with the same lineage parts, i.e. by the same curate run);
  and its lineage rows (parts, earlier versions it carries forward, the flow run);
* each interaction and feedback event → its record key → the part that stores it → the source
  file that part came from, and the pseudonyms the stored record carries (``user_id``,
  ``annotator``).

What comes out is identifiers only: ids as stored (an input id that held PII was replaced by a
keyed hash at ingest), pseudonyms, part ids, and source files by their sha256 and the redacted
name the ledger keeps. Never message text.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session

from ratchet.db import NotFoundError, repo
from ratchet.db._common import IN_CHUNK, _chunks
from ratchet.db.models import DatasetVersion, ModelVersion, Part, RecordKey, SourceFile
from ratchet.store import Store


class LineageError(LookupError):
    """The version is neither a dataset version nor a model version (names the id only)."""


def _dataset_rows(store: Store, version: DatasetVersion) -> pa.Table:
    """The columns of a dataset version that name where its rows came from."""
    with store.fs.open_input_file(store.full(version.path)) as src:
        names = pq.read_schema(src).names
    wanted = [c for c in ("case_id", "interaction_id", "feedback_ids") if c in names]
    with store.fs.open_input_file(store.full(version.path)) as src:
        return pq.read_table(src, columns=wanted)


def _sibling_cases(session: Session, store: Store, version: DatasetVersion) -> pa.Table | None:
    """The eval cases curated together with ``version`` (same agent, same lineage parts)."""
    parts = {r for k, r in repo.dataset_lineage(session, version.id) if k == "part"}
    candidates = session.execute(
        select(DatasetVersion)
        .where(DatasetVersion.agent_id == version.agent_id, DatasetVersion.kind == "eval_cases")
        .order_by(DatasetVersion.created_at.desc())
    ).scalars()
    for cand in candidates:
        if {r for k, r in repo.dataset_lineage(session, cand.id) if k == "part"} == parts:
            return _dataset_rows(store, cand)
    return None


def _records(
    session: Session, kind: str, agent: str, ids: Iterable[str]
) -> dict[str, tuple[str, str | None]]:
    """``record_id -> (part id, source file id)`` from the record keys (the stored copy)."""
    out: dict[str, tuple[str, str | None]] = {}
    for chunk in _chunks(sorted(set(ids)), IN_CHUNK):
        stmt = (
            select(RecordKey.record_id, Part.id, Part.source_file_id)
            .join(Part, Part.id == RecordKey.part_id)
            .where(
                RecordKey.kind == kind, RecordKey.agent_id == agent, RecordKey.record_id.in_(chunk)
            )
        )
        out.update({rid: (pid, sf) for rid, pid, sf in session.execute(stmt).tuples()})
    return out


def _pseudonyms(
    session: Session, store: Store, part_ids: Iterable[str], id_col: str, who_col: str,
    ids: set[str],
) -> dict[str, str | None]:  # fmt: skip
    """``record id -> pseudonym`` read from the stored parts (two columns, nothing else)."""
    out: dict[str, str | None] = {}
    paths = session.execute(select(Part.path).where(Part.id.in_(sorted(set(part_ids))))).scalars()
    for path in paths:
        try:
            with store.fs.open_input_file(store.full(path)) as src:
                t = pq.read_table(src, columns=[id_col, who_col])
        except (OSError, KeyError, pa.ArrowInvalid):  # a part erased or rewritten since
            continue
        t = t.filter(pc.is_in(t.column(id_col), pa.array(sorted(ids), pa.string())))
        for rid, who in zip(
            t.column(id_col).to_pylist(), t.column(who_col).to_pylist(), strict=True
        ):
            out[rid] = who
    return out


def _source_files(session: Session, ids: Iterable[str | None]) -> list[dict[str, Any]]:
    wanted = sorted({i for i in ids if i})
    rows: list[dict[str, Any]] = []
    for chunk in _chunks(wanted, IN_CHUNK):
        for sf in session.execute(select(SourceFile).where(SourceFile.id.in_(chunk))).scalars():
            rows.append({"id": sf.id, "name": sf.name, "kind": sf.kind})
    return sorted(rows, key=lambda r: r["id"])


def _people(
    session: Session,
    store: Store,
    agent: str,
    interaction_ids: set[str],
    feedback: dict[str, str | None],
) -> dict[str, Any]:
    """Interactions and feedback events with their part, source file and pseudonym."""
    inter = _records(session, "interaction", agent, interaction_ids)
    fb = _records(session, "feedback", agent, feedback)
    users = _pseudonyms(
        session, store, {p for p, _ in inter.values()}, "interaction_id", "user_id",
        interaction_ids,
    )  # fmt: skip
    annotators = _pseudonyms(
        session, store, {p for p, _ in fb.values()}, "feedback_id", "annotator", set(feedback)
    )
    fb_interaction = _pseudonyms(
        session, store, {p for p, _ in fb.values()}, "feedback_id", "interaction_id", set(feedback)
    )
    interactions = [
        {
            "interaction_id": i,
            "user": users.get(i),
            "part": inter[i][0] if i in inter else None,
            "source_file": inter[i][1] if i in inter else None,
        }
        for i in sorted(interaction_ids)
    ]
    events = [
        {
            "feedback_id": f,
            "interaction_id": feedback[f] or fb_interaction.get(f),
            "annotator": annotators.get(f),
            "part": fb[f][0] if f in fb else None,
            "source_file": fb[f][1] if f in fb else None,
        }
        for f in sorted(feedback)
    ]
    return {
        "interactions": interactions,
        "feedback": events,
        "source_files": _source_files(session, [r["source_file"] for r in interactions + events]),
        "users": sorted({u for u in users.values() if u}),
        "not_in_store": {
            "interactions": sum(r["part"] is None for r in interactions),
            "feedback": sum(r["part"] is None for r in events),
        },
    }


def dataset_lineage(session: Session, store: Store, version: DatasetVersion) -> dict[str, Any]:
    """What one dataset version came from (see the module docstring)."""
    rows = _dataset_rows(store, version)
    unresolved = 0
    if "interaction_id" not in rows.column_names and "case_id" in rows.column_names:
        cases = _sibling_cases(session, store, version)
        wanted = set(rows.column("case_id").to_pylist())
        if cases is None:
            unresolved = len(wanted)
            rows = pa.table({"interaction_id": pa.array([], pa.string())})
        else:
            rows = cases.filter(pc.is_in(cases.column("case_id"), pa.array(sorted(wanted))))
            unresolved = len(wanted - set(rows.column("case_id").to_pylist()))
    interaction_ids = {i for i in rows.column("interaction_id").to_pylist() if i}
    feedback: dict[str, str | None] = {}
    if "feedback_ids" in rows.column_names:
        for iid, fids in zip(
            rows.column("interaction_id").to_pylist(), rows.column("feedback_ids").to_pylist(),
            strict=True,
        ):  # fmt: skip
            for f in fids or []:
                feedback[f] = iid
    refs = repo.dataset_lineage(session, version.id)
    by_kind: dict[str, list[str]] = defaultdict(list)
    for k, r in refs:
        by_kind[k].append(r)
    out: dict[str, Any] = {
        "version": version.id,
        "type": "dataset_version",
        "agent": version.agent_id,
        "kind": version.kind,
        "rows": version.rows,
        "flow_run": version.flow_run_id,
        "parts": sorted(by_kind.get("part", [])),
        "derived_from_versions": sorted(by_kind.get("dataset_version", [])),
        "unresolved_cases": unresolved,
    }
    out.update(_people(session, store, version.agent_id, interaction_ids, feedback))
    return out


def model_lineage(session: Session, store: Store, model: ModelVersion) -> dict[str, Any]:
    """What one model version came from: its training data's lineage, or its logs index."""
    out: dict[str, Any] = {
        "version": model.id,
        "type": "model_version",
        "agent": model.agent_id,
        "backend": model.backend,
        "status": model.status,
        "parent": model.parent_id,
        "training_run": model.training_run_id,
        "dataset": None,
    }
    if model.training_run_id is not None:
        run = repo.get_training_run(session, model.training_run_id)
        out["strategy"] = run.training_type
        if run.dataset_version_id is not None:
            ds = repo.get_dataset_version(session, run.dataset_version_id)
            data = dataset_lineage(session, store, ds)
            out["dataset"] = {k: data[k] for k in ("version", "kind", "rows", "parts",
                                                   "derived_from_versions", "unresolved_cases")}  # fmt: skip
            for k in ("interactions", "feedback", "source_files", "users", "not_in_store"):
                out[k] = data[k]
            return out
    ids: set[str] = set()
    if model.backend == "logs" and model.model_ref.startswith("models/"):
        rel = model.model_ref.rstrip("/") + "/rows.parquet"
        if store.exists(rel):  # the logs model answers from these logged interactions
            with store.fs.open_input_file(store.full(rel)) as src:
                ids = {i for i in pq.read_table(src, columns=["id"]).column("id").to_pylist() if i}
    out.update(_people(session, store, model.agent_id, ids, {}))
    return out


def lineage(session: Session, store: Store, version_id: str) -> dict[str, Any]:
    """Lineage of a dataset version or a model version, by its id; :class:`LineageError` if
    the id is neither."""
    ds = session.get(DatasetVersion, version_id)
    if ds is not None:
        return dataset_lineage(session, store, ds)
    try:
        model = repo.get_model_version(session, version_id)
    except NotFoundError:
        raise LineageError(
            f"no dataset version or model version {version_id!r} "
            "(see: ratchet datasets list, ratchet models list)"
        ) from None
    return model_lineage(session, store, model)
