"""Exact and near-duplicate removal that keeps the best-labelled representative.

*Best-labelled*, in order: an expert's label over a user's, a correction over none, the newest
interaction, then the smallest interaction id (so ties are deterministic). Exact duplicates
share a normalised input (hence a case id); near duplicates are found among the exact
representatives with MinHash LSH (:mod:`ratchet.curation.minhash`) and merged transitively
(connected components of verified pairs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from ratchet.config import CurationConfig
from ratchet.curation import minhash


def priority(
    rank: np.ndarray,
    has_correction: np.ndarray,
    timestamp_us: np.ndarray,
    interaction_id: list[str],
) -> np.ndarray:
    """Position of each row in best-labelled order (0 = best)."""
    ids = pd.Series(interaction_id, dtype=object).rank(method="first").to_numpy()
    order = np.lexsort((ids, -timestamp_us, -has_correction.astype(np.int8), -rank))
    prio = np.empty(len(order), dtype=np.int64)
    prio[order] = np.arange(len(order))
    return prio


@dataclass
class DedupeResult:
    keep: np.ndarray  # bool per row
    reason: np.ndarray  # None | "duplicate_exact" | "duplicate_near"
    kept_as: np.ndarray  # index of the representative each row merged into (itself if kept)
    signatures: np.ndarray  # MinHash signatures of every row (rows dropped as exact: copied)


def dedupe(
    case_ids: list[str], normalised: pa.StringArray, prio: np.ndarray, config: CurationConfig
) -> DedupeResult:
    n = len(case_ids)
    reason = np.full(n, None, dtype=object)
    kept_as = np.arange(n)
    codes, uniques = pd.factorize(pd.Series(case_ids, dtype=object))
    # Best row per exact group: the minimum priority.
    best = np.full(len(uniques), -1, dtype=np.int64)
    order = np.argsort(prio, kind="stable")
    first_in_order = ~pd.Series(codes[order]).duplicated().to_numpy()
    best[codes[order][first_in_order]] = order[first_in_order]
    rep = best[codes]
    exact_dup = rep != np.arange(n)
    reason[exact_dup] = "duplicate_exact"
    kept_as[exact_dup] = rep[exact_dup]

    reps = np.flatnonzero(~exact_dup)
    sig_reps = minhash.signatures(
        normalised.take(pa.array(reps)),
        k=config.shingle_chars,
        num_perm=config.minhash_permutations,
        seed=config.minhash_seed,
    )
    signatures = np.empty((n, config.minhash_permutations), dtype=np.uint32)
    signatures[reps] = sig_reps
    signatures[exact_dup] = signatures[rep[exact_dup]]
    active = (sig_reps != np.uint32(0xFFFFFFFF)).any(axis=1)
    edges = minhash.candidate_edges(
        sig_reps, config.near_duplicate_threshold, active=active, priority=prio[reps]
    )
    labels = minhash.components(len(reps), edges)
    # Per component, the member with the lowest priority represents it.
    comp = pd.DataFrame({"label": labels, "prio": prio[reps], "pos": np.arange(len(reps))})
    winner = (
        comp.sort_values("prio", kind="stable").drop_duplicates("label").set_index("label")["pos"]
    )
    win_pos = winner.reindex(labels).to_numpy()
    near_dup = win_pos != np.arange(len(reps))
    reason[reps[near_dup]] = "duplicate_near"
    kept_as[reps[near_dup]] = reps[win_pos[near_dup]]
    # An exact duplicate of a near duplicate points at the final representative.
    kept_as = kept_as[kept_as]
    keep = reason == None  # noqa: E711
    return DedupeResult(
        keep=np.asarray(keep, dtype=bool), reason=reason, kept_as=kept_as, signatures=signatures
    )
