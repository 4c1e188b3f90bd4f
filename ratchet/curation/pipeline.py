"""``curate``: one agent's interactions and feedback in, the five curated tables out.

The order of the stages, and why:

1. **Signals** (:mod:`~ratchet.curation.signals`): the current feedback of each interaction and
   its outcome: golden, regression, review (with a reason) or neutral.
2. **Filters** (:mod:`~ratchet.curation.filters`) on the would-be cases, before dedupe, so a
   filtered row never becomes a duplicate group's representative.
3. **Dedupe** (:mod:`~ratchet.curation.dedupe`): exact, then near (MinHash LSH), keeping the
   best-labelled row.
4. **Balance** (:mod:`~ratchet.curation.balance`): a cap per topic.
5. **Split** (:mod:`~ratchet.curation.split`) by the hash of the case id; then the **leakage
   guard**: a training row that is an exact or near duplicate of a holdout case (this run's or
   an earlier version's) is removed, and so is its eval case (the holdout case stands for it).
6. **Eval set** (:mod:`~ratchet.curation.evalset`): the previous version ∪ the new cases, with
   retirements.
7. **Tables**: training rows only from the train split; every row's ``pii_residual`` from the
   caller's residual scanner.

Nothing is dropped silently: every row that does not reach a table is in ``rejected`` with the
stage and the reason (ids only, never text), and ``stats`` holds the counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ratchet import schemas
from ratchet.config import CurationConfig
from ratchet.curation import balance, dedupe, evalset, filters, minhash, signals, split, text

ResidualScanner = Callable[[pa.Table], "pa.Array | pa.ChunkedArray"]
"""``scan(table) -> Int32Array``: residual PII hits per row of a curated table (all its text
columns). The caller passes the redaction engine's residual scan; there is no default, because a
column of zeros that nobody computed would read as "checked and clean"."""

CURATION_REJECTS = pa.schema(
    [
        pa.field("agent_id", pa.string(), nullable=False),
        pa.field("interaction_id", pa.string(), nullable=False),
        pa.field("case_id", pa.string()),
        # filter | dedupe | balance | leakage | eval | pairs
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("kept_case_id", pa.string()),  # the representative / holdout case it matched
    ],
    metadata={"table": "curation_rejects", "schema_version": schemas.SCHEMA_VERSION},
)


class CurationInputError(ValueError):
    """The inputs break curate's contract (several agents, a naive ``now``...)."""


@dataclass(frozen=True)
class CurationResult:
    """The five curated tables (exactly their ``ratchet.schemas`` schemas), the rejects, stats."""

    agent_id: str | None
    eval_cases: pa.Table
    sft_examples: pa.Table
    preference_pairs: pa.Table
    binary_feedback: pa.Table
    review_queue: pa.Table
    rejected: pa.Table
    stats: dict[str, int] = field(default_factory=dict)

    def tables(self) -> dict[str, pa.Table]:
        """The curated tables by kind (``schemas.CURATED_KINDS`` order)."""
        return {kind: getattr(self, kind) for kind in schemas.CURATED_KINDS}


def _agent(interactions: pa.Table, feedback: pa.Table, previous: pa.Table | None) -> str | None:
    agents: set[str] = set()
    for table in (interactions, feedback, previous):
        if table is not None and table.num_rows:
            agents |= set(pc.unique(table["agent_id"]).to_pylist())
    if len(agents) > 1:
        raise CurationInputError(f"curate takes one agent's data; got {len(agents)} agents")
    return next(iter(agents), None)


def _scan(table: pa.Table, scan: ResidualScanner, kind: str) -> pa.Table:
    hits = scan(table)
    if isinstance(hits, pa.ChunkedArray):
        hits = hits.combine_chunks()
    if not isinstance(hits, pa.Array) or len(hits) != table.num_rows:
        raise TypeError(f"residual scanner must return one integer per row of {kind}")
    if not pa.types.is_integer(hits.type) or hits.null_count:
        raise TypeError(f"residual scanner must return non-null integers for {kind}")
    idx = table.schema.get_field_index("pii_residual")
    return table.set_column(idx, table.schema.field(idx), hits.cast(pa.int32()))


def _ids(prefix: str, *parts: list[str] | np.ndarray) -> list[str]:
    joined = ["\x1f".join(str(x) for x in row) for row in zip(*parts, strict=True)]
    return text.sha256_ids(prefix, joined)


def _table(schema: pa.Schema, columns: dict[str, object], n: int) -> pa.Table:
    arrays = []
    for f in schema:
        value = columns.get(f.name)
        if f.name == "pii_residual":
            value = pa.array(np.zeros(n, dtype=np.int32))
        if value is None:
            value = pa.nulls(n, f.type)
        elif not isinstance(value, (pa.Array, pa.ChunkedArray)):
            value = pa.array(value if not isinstance(value, np.ndarray) else value.tolist(), f.type)
        arrays.append(value.cast(f.type) if value.type != f.type else value)
    return pa.Table.from_arrays(arrays, schema=schema)


def _sorted(table: pa.Table, keys: list[str]) -> pa.Table:
    return table.sort_by([(k, "ascending") for k in keys]) if table.num_rows else table


PAIR_DROP_REASONS = ("rejected_has_tool_calls", "rejected_empty", "identical_outputs")


def _pairable(
    rows: np.ndarray,
    has_calls: np.ndarray,
    response: pa.Array,
    answer: pa.Array,
    case_id: np.ndarray,
    iids: np.ndarray,
    stats: dict[str, int],
    reject: Callable[..., None],
) -> np.ndarray:
    """The regression rows that make a valid preference pair; the others are counted and
    rejected (stage ``pairs``), while their SFT example and eval case stand.

    OpenAI's DPO fine-tuning takes text outputs only, so a rejected answer that was a tool call
    cannot be expressed in the pair (its text alone would misstate what the agent did): the pair
    is dropped with ``rejected_has_tool_calls``. A blank rejected answer (``rejected_empty``) or
    one equal to the correction (``identical_outputs``) teaches nothing and breaks the format.
    """
    take = pa.array(rows, pa.int64())
    rejected = text.string_array(response.take(take)).to_pylist()
    chosen = text.string_array(answer.take(take)).to_pylist()
    why = np.full(len(rows), None, dtype=object)
    for i, (c, r) in enumerate(zip(chosen, rejected, strict=True)):
        if has_calls[rows[i]]:
            why[i] = "rejected_has_tool_calls"
        elif not (r or "").strip():
            why[i] = "rejected_empty"
        elif (c or "").strip() == r.strip():
            why[i] = "identical_outputs"
    for name in PAIR_DROP_REASONS:
        stats[f"pairs_dropped_{name}"] = int((why == name).sum())
    drop = why != None  # noqa: E711
    reject(iids[rows[drop]], case_id[rows[drop]], "pairs", why[drop])
    return rows[~drop]


def curate(
    interactions: pa.Table,
    feedback: pa.Table,
    previous_eval_cases: pa.Table | None,
    config: CurationConfig,
    *,
    now: datetime,
    scan_residual: ResidualScanner,
    holdout_reference: pa.Table | None = None,
) -> CurationResult:
    """Curate one agent's feedback into eval cases, training data and the review queue.

    ``interactions`` and ``feedback`` follow ``schemas.INTERACTIONS`` / ``schemas.FEEDBACK`` for
    one agent: the feedback events of the window plus every earlier event of the same
    interactions (so the current vote is right), and the interactions they point at (others are
    ignored). ``previous_eval_cases`` is the last eval-set version (``schemas.EVAL_CASES``) or
    None. ``now`` (timezone-aware, the run's scheduled time) hides later feedback, so a rerun
    gives the same result. ``holdout_reference`` (``schemas.EVAL_CASES`` rows, optional) adds
    the agent's other active holdout cases to the leakage guard's reference: those of older
    eval-cases versions that the previous version does not hold (the previous version decides
    the state of every case it holds). The output depends only on these inputs, never on row
    order.
    """
    if now.tzinfo is None:
        raise CurationInputError("now must be timezone-aware (UTC)")
    agent = _agent(interactions, feedback, previous_eval_cases) or ""
    stats: dict[str, int] = {"interactions_in": interactions.num_rows}
    rejects: list[pd.DataFrame] = []

    def reject(iids: Any, cids: Any, stage: str, reasons: Any, kept: Any = None) -> None:
        if len(iids):
            rejects.append(
                pd.DataFrame(
                    {
                        "interaction_id": list(iids),
                        "case_id": list(cids),
                        "stage": stage,
                        "reason": list(reasons) if not isinstance(reasons, str) else reasons,
                        "kept_case_id": list(kept) if kept is not None else None,
                    }
                )
            )

    resolved = signals.resolve_feedback(feedback, config, now=now, stats=stats)

    # -- join the interactions that have current feedback --------------------------------------
    all_ids = interactions["interaction_id"]
    stats["interactions_duplicate_id"] = interactions.num_rows - int(
        pc.count_distinct(all_ids).as_py() or 0
    )
    # index_in finds each id's first occurrence, vectorised (no Python objects per interaction).
    found = pc.index_in(
        pa.array(resolved["interaction_id"].tolist(), pa.string()),
        value_set=all_ids.combine_chunks() if isinstance(all_ids, pa.ChunkedArray) else all_ids,
    )
    orphan = np.asarray(pc.is_null(found).to_numpy(zero_copy_only=False), dtype=bool)
    pos = np.asarray(pc.fill_null(found, 0).to_numpy(zero_copy_only=False), dtype=np.int64)
    stats["feedback_orphaned_interactions"] = int(orphan.sum())
    resolved = resolved[~orphan].reset_index(drop=True)
    sel = interactions.select(
        ["interaction_id", "timestamp", "messages", "response", "response_tool_calls", "metadata"]
    ).take(pa.array(pos[~orphan]))
    sel = sel.combine_chunks()
    n = sel.num_rows
    stats["interactions_with_feedback"] = n

    user_input = text.user_text(sel["messages"])
    normalised = text.normalise(user_input)
    case_id = np.array(text.case_ids(agent or "", normalised), dtype=object)
    outcome = resolved["outcome"].to_numpy(dtype=object)
    reason = resolved["reason"].to_numpy(dtype=object)
    response = text.string_array(sel["response"])
    tool_calls = text.list_array(sel["response_tool_calls"])
    has_calls = np.asarray(
        pc.fill_null(pc.greater(pc.list_value_length(tool_calls), 0), False).to_numpy(
            zero_copy_only=False
        ),
        dtype=bool,
    )
    ts_us = np.asarray(pc.cast(sel["timestamp"], pa.int64()).to_numpy(), dtype=np.int64)
    correction = resolved["correction"].to_numpy(dtype=object)
    is_reg = outcome == "regression"
    answer = pa.array(
        np.where(is_reg, correction, response.to_numpy(zero_copy_only=False)).tolist(), pa.string()
    )
    answer_calls = has_calls & ~is_reg
    iids = resolved["interaction_id"].to_numpy(dtype=object)

    # -- review queue ----------------------------------------------------------------------------
    rq = np.flatnonzero(outcome == "review")
    review = _table(
        schemas.REVIEW_QUEUE,
        {
            "review_id": _ids("review", [agent] * len(rq), iids[rq], reason[rq]),
            "agent_id": [agent] * len(rq),
            "interaction_id": iids[rq].tolist(),
            "reason": reason[rq].tolist(),
            "input": sel["messages"].take(pa.array(rq, pa.int64())),
            "response": response.take(pa.array(rq, pa.int64())),
            "feedback_ids": resolved["feedback_ids"].to_numpy(dtype=object)[rq].tolist(),
        },
        len(rq),
    )

    # -- filters -------------------------------------------------------------------------------
    cand = np.flatnonzero((outcome == "golden") | (outcome == "regression"))
    neg = np.flatnonzero(reason == "thumbs_down_no_correction")
    both = np.concatenate([cand, neg])
    take = pa.array(both, pa.int64())
    why = filters.filter_reasons(
        user_input=user_input.take(take),
        messages=sel["messages"].take(take),
        answer=answer.take(take),
        answer_has_tool_calls=answer_calls[both],
        low_rating=resolved["low_rating"].to_numpy(dtype=bool)[both],
        check_refusal=np.isin(both, cand),
        config=config,
    )
    for name in filters.FILTER_REASONS:
        stats[f"filtered_{name}"] = int((why == name).sum())
    failed = why != None  # noqa: E711
    reject(iids[both[failed]], case_id[both[failed]], "filter", why[failed])
    n_cand = len(cand)
    cand = cand[~failed[:n_cand]]
    neg = neg[~failed[n_cand:]]

    # -- dedupe (cases) ----------------------------------------------------------------------------
    rank = resolved["rank"].to_numpy(dtype=np.int64)
    prio_all = dedupe.priority(rank, is_reg, ts_us, iids.tolist())
    d = dedupe.dedupe(
        case_id[cand].tolist(), normalised.take(pa.array(cand, pa.int64())), prio_all[cand], config
    )
    stats["removed_duplicate_exact"] = int((d.reason == "duplicate_exact").sum())
    stats["removed_duplicate_near"] = int((d.reason == "duplicate_near").sum())
    dropped = ~d.keep
    reject(
        iids[cand[dropped]],
        case_id[cand[dropped]],
        "dedupe",
        d.reason[dropped],
        case_id[cand[d.kept_as[dropped]]],
    )
    sig_cand = d.signatures[d.keep]
    cand = cand[d.keep]

    # -- balance -------------------------------------------------------------------------------
    topic_all = np.full(n, None, dtype=object)
    topic_all[cand] = balance.topics(
        sel["metadata"].take(pa.array(cand, pa.int64())), sig_cand, config.topic_cluster_rows
    )
    capped = ~balance.cap_per_topic(topic_all[cand], prio_all[cand], config.max_per_topic)
    stats["capped_by_balance"] = int(capped.sum())
    reject(iids[cand[capped]], case_id[cand[capped]], "balance", "max_per_topic")
    sig_cand = sig_cand[~capped]
    cand = cand[~capped]

    # -- split and leakage guard -------------------------------------------------------------------
    holdout = split.holdout_mask(case_id[cand].tolist(), config.holdout_share)
    neg_holdout = split.holdout_mask(case_id[neg].tolist(), config.holdout_share)
    stats["binary_negatives_holdout"] = int(neg_holdout.sum())
    neg = neg[~neg_holdout]
    prev = evalset.conform(previous_eval_cases)
    prev_ref = evalset.active_holdout(prev)
    older = (
        evalset.active_holdout(evalset.conform(holdout_reference))
        if holdout_reference is not None
        else prev_ref.slice(0, 0)
    )
    held = pa.array(sorted(set(prev["case_id"].to_pylist())), pa.string())
    older = older.filter(pc.invert(pc.is_in(older["case_id"], value_set=held)))
    prev_ref = pa.concat_tables([prev_ref, older])
    stats["leakage_reference_older_holdout_cases"] = older.num_rows
    stats["leakage_reference_holdout_cases"] = prev_ref.num_rows
    prev_norm = text.normalise(text.user_text(prev_ref["input"]))
    train_rows = np.concatenate([cand[~holdout], neg])
    ref_norm = pa.concat_arrays([normalised.take(pa.array(cand[holdout], pa.int64())), prev_norm])
    ref_ids = np.concatenate(
        [case_id[cand[holdout]], np.array(prev_ref["case_id"].to_pylist(), dtype=object)]
    )
    train_norm = normalised.take(pa.array(train_rows, pa.int64()))
    ref_set = dict(zip(ref_norm.to_pylist(), ref_ids, strict=True))
    leak = np.full(len(train_rows), None, dtype=object)
    leak_to = np.full(len(train_rows), None, dtype=object)
    for i, t in enumerate(train_norm.to_pylist()):
        if t in ref_set and t:
            leak[i], leak_to[i] = "leakage_exact", ref_set[t]
    sig_parts = [sig_cand[~holdout]]
    k, perms, seed = config.shingle_chars, config.minhash_permutations, config.minhash_seed
    sig_parts.append(
        minhash.signatures(
            normalised.take(pa.array(neg, pa.int64())), k=k, num_perm=perms, seed=seed
        )
    )
    sig_parts.append(sig_cand[holdout])
    sig_parts.append(minhash.signatures(prev_norm, k=k, num_perm=perms, seed=seed))
    sig = (
        np.concatenate(sig_parts)
        if len(train_rows) + len(ref_ids)
        else np.zeros((0, perms), np.uint32)
    )
    is_ref = np.concatenate([np.zeros(len(train_rows), bool), np.ones(len(ref_ids), bool)])
    if len(ref_ids) and len(train_rows):
        edges = minhash.candidate_edges(
            sig,
            config.near_duplicate_threshold,
            active=(sig != np.uint32(0xFFFFFFFF)).any(axis=1),
            priority=np.where(is_ref, 0, 1),
        )
        cross = is_ref[edges.left] != is_ref[edges.right]
        tr = np.where(is_ref[edges.left[cross]], edges.right[cross], edges.left[cross])
        rf = np.where(is_ref[edges.left[cross]], edges.left[cross], edges.right[cross])
        for t_i, r_i in zip(tr, rf, strict=True):
            if leak[t_i] is None:
                leak[t_i], leak_to[t_i] = "leakage_near", ref_ids[r_i - len(train_rows)]
    stats["leakage_removed_exact"] = int((leak == "leakage_exact").sum())
    stats["leakage_removed_near"] = int((leak == "leakage_near").sum())
    leaked = leak != None  # noqa: E711
    reject(
        iids[train_rows[leaked]],
        case_id[train_rows[leaked]],
        "leakage",
        leak[leaked],
        leak_to[leaked],
    )
    leaked_rows = set(train_rows[leaked].tolist())
    keep_case = np.array([r not in leaked_rows for r in cand], dtype=bool)
    cand, holdout = cand[keep_case], holdout[keep_case]
    neg = np.array([r for r in neg if r not in leaked_rows], dtype=np.int64)

    # -- eval cases --------------------------------------------------------------------------------
    ct = pa.array(cand, pa.int64())
    kinds = np.where(is_reg[cand], "regression", "golden")
    splits = np.where(holdout, split.HOLDOUT, split.TRAIN)
    new_cases = _table(
        schemas.EVAL_CASES,
        {
            "case_id": case_id[cand].tolist(),
            "agent_id": [agent] * len(cand),
            "interaction_id": iids[cand].tolist(),
            "kind": kinds.tolist(),
            "split": splits.tolist(),
            "fix_check": ((kinds == "regression") & ~holdout).tolist(),
            "input": sel["messages"].take(ct),
            "expected": answer.take(ct),
            "expected_tool_calls": pc.if_else(
                pa.array(is_reg[cand]), pa.nulls(len(cand), tool_calls.type), tool_calls.take(ct)
            )
            if len(cand)
            else None,
            "production_answer": response.take(ct),
            "status": ["active"] * len(cand),
            "feedback_ids": resolved["feedback_ids"].to_numpy(dtype=object)[cand].tolist(),
            "topic": topic_all[cand].tolist(),
            "first_seen": pa.array(resolved["first_feedback"].to_numpy()[cand]).cast(
                schemas.UTC_TS
            ),
        },
        len(cand),
    )
    eval_cases, skipped = evalset.merge(prev, new_cases, resolved, stats)
    reject(
        skipped["interaction_id"].to_pylist(),
        skipped["case_id"].to_pylist(),
        "eval",
        "case_already_active",
        skipped["case_id"].to_pylist(),
    )

    # -- training tables (train split only) ---------------------------------------------------------
    tr = cand[~holdout]
    tt = pa.array(tr, pa.int64())
    tr_split = split.training_splits(case_id[tr].tolist(), config.validation_share)
    origin = np.where(is_reg[tr], "correction", "golden")
    sft = _table(
        schemas.SFT_EXAMPLES,
        {
            "example_id": _ids("sft", case_id[tr], iids[tr], origin),
            "agent_id": [agent] * len(tr),
            "case_id": case_id[tr].tolist(),
            "origin": origin.tolist(),
            "split": tr_split.tolist(),
            "messages": text.append_assistant(
                sel["messages"].take(tt),
                answer.take(tt),
                pc.if_else(
                    pa.array(is_reg[tr]), pa.nulls(len(tr), tool_calls.type), tool_calls.take(tt)
                )
                if len(tr)
                else None,
            ),
            "topic": topic_all[tr].tolist(),
        },
        len(tr),
    )
    rg = tr[is_reg[tr]]
    rg = _pairable(rg, has_calls, response, answer, case_id, iids, stats, reject)
    rt = pa.array(rg, pa.int64())
    pairs = _table(
        schemas.PREFERENCE_PAIRS,
        {
            "pair_id": _ids("pair", case_id[rg], iids[rg]),
            "agent_id": [agent] * len(rg),
            "case_id": case_id[rg].tolist(),
            "split": split.training_splits(case_id[rg].tolist(), config.validation_share).tolist(),
            "input": sel["messages"].take(rt),
            "chosen": answer.take(rt),
            "rejected": response.take(rt),
            "topic": topic_all[rg].tolist(),
        },
        len(rg),
    )
    gd = tr[~is_reg[tr]]
    bin_rows = np.concatenate([gd, neg]).astype(np.int64)
    label = np.concatenate([np.ones(len(gd), bool), np.zeros(len(neg), bool)])
    nonempty = text.char_lengths(response.take(pa.array(bin_rows, pa.int64()))) > 0
    stats["binary_skipped_tool_call_only"] = int((~nonempty).sum())
    bin_rows, label = bin_rows[nonempty], label[nonempty]
    bid = np.array(_ids("binary", case_id[bin_rows], iids[bin_rows]), dtype=object)
    bt = pa.array(bin_rows, pa.int64())
    binary = _table(
        schemas.BINARY_FEEDBACK,
        {
            "example_id": bid.tolist(),
            "agent_id": [agent] * len(bin_rows),
            "case_id": case_id[bin_rows].tolist(),
            "split": split.training_splits(
                case_id[bin_rows].tolist(), config.validation_share
            ).tolist(),
            "prompt": sel["messages"].take(bt),
            "completion": response.take(bt),
            "label": label.tolist(),
        },
        len(bin_rows),
    )

    result_tables = {
        "eval_cases": _sorted(eval_cases, ["case_id", "status", "kind", "interaction_id"]),
        "sft_examples": _sorted(sft, ["example_id"]),
        "preference_pairs": _sorted(pairs, ["pair_id"]),
        "binary_feedback": _sorted(binary, ["example_id"]),
        "review_queue": _sorted(review, ["review_id"]),
    }
    for kind, table in result_tables.items():
        result_tables[kind] = _scan(table, scan_residual, kind)
        stats[f"rows_{kind}"] = table.num_rows
        stats[f"pii_residual_{kind}"] = int(
            pc.sum(result_tables[kind]["pii_residual"]).as_py() or 0
        )
    rej = (
        pd.concat(rejects, ignore_index=True)
        if rejects
        else pd.DataFrame(columns=["interaction_id", "case_id", "stage", "reason", "kept_case_id"])
    )
    rej.insert(0, "agent_id", agent)
    rejected = pa.Table.from_pandas(rej, schema=CURATION_REJECTS, preserve_index=False)
    rejected = _sorted(rejected, ["stage", "interaction_id", "reason"])
    return CurationResult(agent_id=agent, rejected=rejected, stats=stats, **result_tables)
