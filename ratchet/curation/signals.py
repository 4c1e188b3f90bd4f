"""Current feedback per interaction: which events count, and what they say together.

The rules, in the order they apply (each one configurable in ``CurationConfig``):

1. Events stamped after the run's ``now`` are ignored (a rerun sees what the first run saw).
   ``source=system`` events are ignored or read as user feedback (``system_feedback``).
2. Each event's polarity: a thumb decides (+1 positive, −1 negative); without a thumb the rating
   does (≥ ``golden_min_rating`` positive, ≤ ``negative_max_rating`` negative, between: neutral);
   an event with only a correction is negative (the user wrote the right answer). An event with
   none of these (a bare comment) carries no signal. A thumb up whose rating is below
   ``golden_min_rating`` is marked ``low_rating`` (filtered later, with that reason).
3. The latest event per (source, annotator) supersedes that annotator's earlier ones: a changed
   vote replaces the old one (ties broken by feedback_id, so the result is deterministic).
4. Per source: positive and negative from the same rank is a conflict; neutral yields to a
   polar vote; a correction from any negative event of the source is kept (the newest).
5. Across sources (:data:`RULES`, every combination spelled out): agreement stands (the
   expert's correction preferred); a neutral source yields to a polar one, whatever the
   setting (an expert's 3 never turns a user's thumbs up neutral); between opposite polar votes
   the expert decides when ``expert_outranks_user``, otherwise it is a conflict.

The verdict then maps to an outcome: positive → golden; negative with a correction →
regression; negative without → review (``thumbs_down_no_correction``); neutral → neutral, or
review (``neutral_rating``); conflict → review (``conflict``).
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa

from ratchet.config import CurationConfig

POS, NEG, NEUTRAL, CONFLICT = "positive", "negative", "neutral", "conflict"

OUTCOMES = ("golden", "regression", "review", "neutral")
RANKS = {"user": 1, "expert": 2}


# --- rule 5, as a table ---------------------------------------------------------------------
# (user's verdict, expert's verdict) -> ((verdict, whose vote counts) when expert_outranks_user,
#                                        (verdict, whose vote counts) otherwise)
# A source's verdict is None (no current vote), positive, negative, neutral, or conflict (its
# own annotators disagree, rule 4). "both": they agree and both count; "none": a conflict that
# nobody decides (it goes to review). The expert outranks the user only between polar votes (or
# over the user's own conflict): a neutral rating never overrides a thumbs up or down.
RULES: dict[tuple[str | None, str | None], tuple[tuple[str, str], tuple[str, str]]] = {
    (POS, None): ((POS, "user"), (POS, "user")),
    (NEG, None): ((NEG, "user"), (NEG, "user")),
    (NEUTRAL, None): ((NEUTRAL, "user"), (NEUTRAL, "user")),
    (CONFLICT, None): ((CONFLICT, "none"), (CONFLICT, "none")),
    (None, POS): ((POS, "expert"), (POS, "expert")),
    (None, NEG): ((NEG, "expert"), (NEG, "expert")),
    (None, NEUTRAL): ((NEUTRAL, "expert"), (NEUTRAL, "expert")),
    (None, CONFLICT): ((CONFLICT, "none"), (CONFLICT, "none")),
    (POS, POS): ((POS, "both"), (POS, "both")),
    (NEG, NEG): ((NEG, "both"), (NEG, "both")),
    (NEUTRAL, NEUTRAL): ((NEUTRAL, "both"), (NEUTRAL, "both")),
    (CONFLICT, CONFLICT): ((CONFLICT, "none"), (CONFLICT, "none")),
    (POS, NEG): ((NEG, "expert"), (CONFLICT, "none")),
    (NEG, POS): ((POS, "expert"), (CONFLICT, "none")),
    (POS, NEUTRAL): ((POS, "user"), (POS, "user")),
    (NEG, NEUTRAL): ((NEG, "user"), (NEG, "user")),
    (NEUTRAL, POS): ((POS, "expert"), (POS, "expert")),
    (NEUTRAL, NEG): ((NEG, "expert"), (NEG, "expert")),
    (CONFLICT, POS): ((POS, "expert"), (CONFLICT, "none")),
    (CONFLICT, NEG): ((NEG, "expert"), (CONFLICT, "none")),
    (CONFLICT, NEUTRAL): ((CONFLICT, "none"), (CONFLICT, "none")),
    (POS, CONFLICT): ((CONFLICT, "none"), (CONFLICT, "none")),
    (NEG, CONFLICT): ((CONFLICT, "none"), (CONFLICT, "none")),
    (NEUTRAL, CONFLICT): ((CONFLICT, "none"), (CONFLICT, "none")),
}
_CODES = {None: 0, POS: 1, NEG: 2, NEUTRAL: 3, CONFLICT: 4}


def combine(
    user: np.ndarray, expert: np.ndarray, expert_outranks_user: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Rule 5 over arrays of per-source verdicts (None/NaN: no vote from that source): the
    verdict and whose vote counts, looked up in :data:`RULES` (vectorised through codes)."""
    pick = 0 if expert_outranks_user else 1
    verdicts = np.full(25, None, dtype=object)
    deciders = np.full(25, None, dtype=object)
    for (uv, ev), both in RULES.items():
        code = _CODES[uv] * 5 + _CODES[ev]
        verdicts[code], deciders[code] = both[pick]

    def codes(values: np.ndarray) -> np.ndarray:
        return np.array(
            [_CODES.get(v if isinstance(v, str) else None, 0) for v in values], dtype=np.int64
        )

    idx = codes(user) * 5 + codes(expert)
    return verdicts[idx], deciders[idx]


def _events(feedback: pa.Table, config: CurationConfig, now: datetime, stats: dict) -> pd.DataFrame:
    cols = [
        "feedback_id",
        "interaction_id",
        "timestamp",
        "source",
        "annotator",
        "rating",
        "thumb",
        "correction",
    ]
    df = feedback.select(cols).to_pandas()
    stats["feedback_events"] = len(df)
    ts = pd.to_datetime(df["timestamp"], utc=True)
    future = ts > pd.Timestamp(now)
    stats["feedback_ignored_future"] = int(future.sum())
    df = df[~future.to_numpy()]
    system = df["source"] == "system"
    if config.system_feedback == "ignore":
        stats["feedback_ignored_system"] = int(system.sum())
        df = df[~system.to_numpy()]
    else:
        stats["feedback_ignored_system"] = 0
        df = df.assign(source=np.where(system, "user", df["source"]))
    unknown = ~df["source"].isin(list(RANKS))
    stats["feedback_ignored_unknown_source"] = int(unknown.sum())
    df = df[~unknown.to_numpy()].copy()

    thumb = df["thumb"].astype("float64").to_numpy()
    rating = df["rating"].astype("float64").to_numpy()
    corr = df["correction"].astype(object).where(df["correction"].notna(), None)
    has_corr = np.array([isinstance(c, str) and c.strip() != "" for c in corr], dtype=bool)
    pol = np.full(len(df), None, dtype=object)
    by_rating = np.isnan(thumb) & ~np.isnan(rating)
    pol[by_rating & (rating >= config.golden_min_rating)] = POS
    pol[by_rating & (rating <= config.negative_max_rating)] = NEG
    pol[by_rating & (rating > config.negative_max_rating) & (rating < config.golden_min_rating)] = (
        NEUTRAL
    )
    pol[thumb > 0] = POS
    pol[thumb < 0] = NEG
    pol[(pol == None) & has_corr] = NEG  # noqa: E711 (elementwise on an object array)
    df["polarity"] = pol
    df["has_correction"] = has_corr & (pol == NEG)
    df["correction"] = np.where(df["has_correction"], corr, None)
    df["low_rating"] = (thumb > 0) & ~np.isnan(rating) & (rating < config.golden_min_rating)
    no_signal = df["polarity"].isna()
    stats["feedback_ignored_no_signal"] = int(no_signal.sum())
    df = df[~no_signal.to_numpy()]
    df["annotator"] = df["annotator"].fillna("")
    df["ts"] = pd.to_datetime(df["timestamp"], utc=True)
    df = df.sort_values(
        ["interaction_id", "source", "annotator", "ts", "feedback_id"], kind="stable"
    )
    before = len(df)
    df = df.drop_duplicates(["interaction_id", "source", "annotator"], keep="last")
    stats["feedback_superseded"] = before - len(df)
    return df


def _per_source(df: pd.DataFrame) -> pd.DataFrame:
    df = df.assign(is_pos=(df["polarity"] == POS), is_neg=(df["polarity"] == NEG))
    g = df.groupby(["interaction_id", "source"], sort=False)
    agg = g.agg(
        n_pos=("is_pos", "sum"),
        n_neg=("is_neg", "sum"),
        low_rating=("low_rating", "any"),
        first_ts=("ts", "min"),
        last_ts=("ts", "max"),
    )
    agg["feedback_ids"] = g["feedback_id"].agg(list)
    corr = (
        df[df["has_correction"]]
        .sort_values("ts", kind="stable")
        .groupby(["interaction_id", "source"], sort=False)["correction"]
        .last()
    )
    agg["correction"] = corr.reindex(agg.index)
    verdict = np.where(
        (agg["n_pos"] > 0) & (agg["n_neg"] > 0),
        CONFLICT,
        np.where(agg["n_pos"] > 0, POS, np.where(agg["n_neg"] > 0, NEG, NEUTRAL)),
    )
    agg["verdict"] = verdict
    return agg.reset_index()


def resolve_feedback(
    feedback: pa.Table, config: CurationConfig, *, now: datetime, stats: dict
) -> pd.DataFrame:
    """One row per interaction with current feedback: ``interaction_id``, ``outcome`` (golden |
    regression | review | neutral), ``reason`` (review reason), ``verdict``, ``correction``,
    ``rank`` (2 when an expert's vote counted), ``low_rating``, ``feedback_ids`` (the current
    events), ``first_feedback``/``last_feedback`` timestamps. Counts go into ``stats``."""
    events = _events(feedback, config, now, stats)
    src = _per_source(events)
    user = src[src["source"] == "user"].set_index("interaction_id")
    expert = src[src["source"] == "expert"].set_index("interaction_id")
    ids = pd.Index(sorted(set(src["interaction_id"])), name="interaction_id")
    u = user.reindex(ids)
    e = expert.reindex(ids)
    uv = u["verdict"].to_numpy(dtype=object)
    ev = e["verdict"].to_numpy(dtype=object)
    verdict, decider = combine(uv, ev, config.expert_outranks_user)
    expert_decides = np.isin(decider, ("expert", "both"))
    user_counts = np.isin(decider, ("user", "both"))
    polar = {POS, NEG}
    u_polar = np.array([v in polar for v in uv], dtype=bool)
    e_polar = np.array([v in polar for v in ev], dtype=bool)
    opposed = u_polar & e_polar & (uv != ev)
    stats["conflicts_user_vs_expert"] = int(opposed.sum() if not config.expert_outranks_user else 0)
    stats["expert_overrode_user"] = int(opposed.sum() if config.expert_outranks_user else 0)
    e_corr = e["correction"].to_numpy(dtype=object)
    u_corr = u["correction"].to_numpy(dtype=object)
    e_ok = np.array([isinstance(c, str) for c in e_corr], dtype=bool)
    u_ok = np.array([isinstance(c, str) for c in u_corr], dtype=bool)
    # The expert's correction when the expert's vote counts; the user's when theirs does.
    correction = np.where(e_ok & expert_decides, e_corr, np.where(u_ok & user_counts, u_corr, None))
    correction = np.where(
        np.asarray(verdict == NEG, dtype=bool), correction, np.full(len(ids), None, dtype=object)
    )
    has_u = np.asarray(pd.notna(uv), dtype=bool)
    has_e = np.asarray(pd.notna(ev), dtype=bool)

    outcome = np.full(len(ids), "neutral", dtype=object)
    reason = np.full(len(ids), None, dtype=object)
    has_corr = np.array([isinstance(c, str) for c in correction], dtype=bool)
    outcome[verdict == POS] = "golden"
    outcome[(verdict == NEG) & has_corr] = "regression"
    nocorr = (verdict == NEG) & ~has_corr
    outcome[nocorr] = "review"
    reason[nocorr] = "thumbs_down_no_correction"
    conflict = verdict == CONFLICT
    outcome[conflict] = "review"
    reason[conflict] = "conflict"
    if config.neutral_rating_to == "review":
        neutral = verdict == NEUTRAL
        outcome[neutral] = "review"
        reason[neutral] = "neutral_rating"

    def col(frame: pd.DataFrame, name: str) -> np.ndarray:
        return frame[name].to_numpy(dtype=object)

    fid = [
        sorted((a if isinstance(a, list) else []) + (b if isinstance(b, list) else []))
        for a, b in zip(col(u, "feedback_ids"), col(e, "feedback_ids"), strict=True)
    ]
    low = np.where(has_u, u["low_rating"].fillna(False).astype(bool), False) & user_counts | (
        np.where(has_e, e["low_rating"].fillna(False).astype(bool), False) & expert_decides
    )
    first = pd.concat([u["first_ts"], e["first_ts"]], axis=1).min(axis=1)
    last = pd.concat([u["last_ts"], e["last_ts"]], axis=1).max(axis=1)
    out = pd.DataFrame(
        {
            "interaction_id": ids.to_numpy(dtype=object),
            "verdict": verdict,
            "outcome": outcome,
            "reason": reason,
            "correction": correction,
            "rank": np.where(expert_decides, 2, 1),
            "low_rating": low & (verdict == POS),
            "feedback_ids": fid,
            "first_feedback": first.to_numpy(),
            "last_feedback": last.to_numpy(),
        }
    )
    for name in ("golden", "regression", "neutral"):
        stats[f"signal_{name}"] = int((outcome == name).sum())
    for name in ("thumbs_down_no_correction", "conflict", "neutral_rating"):
        stats[f"signal_review_{name}"] = int((reason == name).sum())
    return out
