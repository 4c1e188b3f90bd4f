"""Rule 5 of ``ratchet.curation.signals``, every combination: user × expert × the setting.

The expected verdicts are written out here by hand (not read from ``signals.RULES``), so the
test checks the table rather than repeating it.
"""

from __future__ import annotations

import pytest

from ratchet.config import CurationConfig
from ratchet.curation import signals
from tests.unit.test_curation import NOW, fb, ftab

VOTES = {"up": {"thumb": 1}, "down": {"thumb": -1}, "neutral": {"rating": 3}}
P, N, Z, C = "positive", "negative", "neutral", "conflict"
# (user, expert) -> (verdict when expert_outranks_user, verdict otherwise); None: no row at all
EXPECTED: dict[tuple[str | None, str | None], tuple[str, str] | None] = {
    (None, None): None,
    (None, "up"): (P, P),
    (None, "down"): (N, N),
    (None, "neutral"): (Z, Z),
    ("up", None): (P, P),
    ("down", None): (N, N),
    ("neutral", None): (Z, Z),
    ("up", "up"): (P, P),
    ("down", "down"): (N, N),
    ("neutral", "neutral"): (Z, Z),
    ("up", "down"): (N, C),
    ("down", "up"): (P, C),
    # a neutral expert rating never overrides a polar user vote (the defect of issue 9)
    ("up", "neutral"): (P, P),
    ("down", "neutral"): (N, N),
    ("neutral", "up"): (P, P),
    ("neutral", "down"): (N, N),
}
OUTCOME = {
    P: ("golden", None),
    N: ("review", "thumbs_down_no_correction"),
    Z: ("neutral", None),
    C: ("review", "conflict"),
}
# whose vote counts (rank 2: the expert's)
EXPERT_COUNTS = {
    (None, "up"),
    (None, "down"),
    (None, "neutral"),
    ("up", "up"),
    ("down", "down"),
    ("neutral", "neutral"),
    ("neutral", "up"),
    ("neutral", "down"),
}


@pytest.mark.parametrize("outranks", [True, False], ids=["outranks", "equal"])
@pytest.mark.parametrize("expert", [None, "up", "down", "neutral"])
@pytest.mark.parametrize("user", [None, "up", "down", "neutral"])
def test_user_and_expert_votes_combine_by_the_rule_table(
    user: str | None, expert: str | None, outranks: bool
) -> None:
    rows = []
    if user:
        rows.append(fb("i1", source="user", annotator="u1", **VOTES[user]))
    if expert:
        rows.append(fb("i1", source="expert", annotator="e1", minutes=20, **VOTES[expert]))
    config = CurationConfig(expert_outranks_user=outranks)
    stats: dict[str, int] = {}
    out = signals.resolve_feedback(ftab(rows), config, now=NOW, stats=stats)
    expected = EXPECTED[(user, expert)]
    if expected is None:
        assert len(out) == 0
        return
    verdict = expected[0 if outranks else 1]
    row = out.iloc[0]
    assert row["verdict"] == verdict
    assert (row["outcome"], row["reason"]) == OUTCOME[verdict]
    expert_counts = (user, expert) in EXPERT_COUNTS or (
        outranks and (user, expert) in {("up", "down"), ("down", "up")}
    )
    assert row["rank"] == (2 if expert_counts else 1)
    opposed = {user, expert} == {"up", "down"}
    assert stats["expert_overrode_user"] == int(opposed and outranks)
    assert stats["conflicts_user_vs_expert"] == int(opposed and not outranks)


@pytest.mark.parametrize("outranks", [True, False])
def test_the_rule_table_covers_every_pair_of_source_verdicts(outranks: bool) -> None:
    verdicts = [None, P, N, Z, C]
    pairs = {(u, e) for u in verdicts for e in verdicts if (u, e) != (None, None)}
    assert set(signals.RULES) == pairs
    for u, e in pairs:
        verdict, _ = signals.RULES[(u, e)][0 if outranks else 1]
        if Z in (u, e) and ({u, e} & {P, N}):
            assert verdict in (P, N)  # neutral yields to a polar vote under either setting


def test_user_correction_kept_when_expert_rating_is_neutral() -> None:
    rows = [
        fb("i1", source="user", thumb=-1, correction="Use the reset link instead."),
        fb("i1", source="expert", annotator="e1", rating=3, minutes=20),
    ]
    out = signals.resolve_feedback(ftab(rows), CurationConfig(), now=NOW, stats={})
    assert out.iloc[0]["outcome"] == "regression"
    assert out.iloc[0]["correction"] == "Use the reset link instead."
