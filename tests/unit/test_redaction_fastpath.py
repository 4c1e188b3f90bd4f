"""The engine's fast paths change speed, never results.

* the clean-window memo (a token without hits, remembered with its context) must not hide a value
  that the same token is in another context, and a warm ``Redactor`` answers as a fresh one;
* the per-window routing (family, needles, "needs a digit") runs a subset of the rules: it must
  give the same hits as running every rule on every window;
* the prefilter and marker passes on two threads give the same column as one pass;
* the table-driven bech32 checksum equals the reference polymod.
"""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from ratchet.redaction import Redactor, checksums, engine
from tests.unit.test_redaction_pairs import SAMPLES

SHOP = [
    "Order ORD-2024-118842 shipped on 11/03/2026 via UPS, tracking 1Z999AA10123456784.",
    "USPS tracking 9400 1000 0000 0000 0000 00 shows it left the hub at 14:30.",
    "You can track it with reference 7700-1234-5678 on 2026-10-28, total $1,299.00.",
]


def _texts() -> list[str]:
    rng = random.Random(5)
    out = []
    for i in range(400):
        parts = [rng.choice(SHOP) for _ in range(3)]
        _, value = SAMPLES[i % len(SAMPLES)]
        parts.insert(rng.randrange(4), f"mine: {value}")
        out.append(" ".join(parts))
    return out


def test_memo_keeps_context_apart() -> None:
    r = Redactor()
    # The same token glued to a word (not a value) and free-standing (a value), in both orders.
    glued, free = "ref-536-22-1234 ok", "ssn 536-22-1234 ok"
    assert r.redact_text(glued) == Redactor().redact_text(glued)
    assert r.redact_text(free)[0] == "ssn [US_SSN] ok"
    r2 = Redactor()
    assert r2.redact_text(free)[0] == "ssn [US_SSN] ok"
    assert r2.redact_text(glued) == Redactor().redact_text(glued)


def test_warm_redactor_equals_fresh() -> None:
    arr = pa.array(_texts())
    warm = Redactor()
    first = warm.redact_array(arr)
    again = warm.redact_array(arr)
    fresh = Redactor().redact_array(arr)
    assert first[0].equals(fresh[0]) and again[0].equals(fresh[0])
    assert first[1] == fresh[1] == again[1]
    assert warm._memo  # the shop tokens were remembered


def _brute_hits(r: Redactor, text: str, a: int, b: int, endpos: int) -> list[tuple]:
    hits = []
    for priority, rule in r._all_rules:
        for m in rule.regex.finditer(text, a, endpos):
            s, e = m.span("v") if rule.has_value_group else m.span()
            if e > b or e <= s:
                continue
            keep = r._keep(rule, text, s, e)
            if not keep and rule.right is not None:
                s, keep = r._back_off(rule, text, m.start(), s, e)
            if keep:
                hits.append((s, s + keep, priority, rule.detector.type))
    return sorted(hits)


def test_routing_runs_every_rule_that_could_hit() -> None:
    r = Redactor()
    texts = _texts() + [f"{v1} {v2}" for (_, v1) in SAMPLES for (_, v2) in SAMPLES]
    checked = 0
    for text in texts:
        n = len(text)
        for a, b in r._windows(text):
            endpos = min(n, b + 3)
            assert sorted(r._window_hits(text, a, b, endpos)) == _brute_hits(r, text, a, b, endpos)
            checked += 1
    assert checked > 1000


@pytest.mark.parametrize("min_bytes", [1, 1 << 40])
def test_parallel_passes_equal_serial(monkeypatch: pytest.MonkeyPatch, min_bytes: int) -> None:
    arr = pa.array(_texts() * 3)
    expected = [Redactor().redact_text(t)[0] for t in arr.to_pylist()]
    monkeypatch.setattr(engine, "_PARALLEL_MIN_BYTES", min_bytes)
    # force the pool even on a one-core machine (else the threaded path never runs here)
    monkeypatch.setattr(engine, "_WORKERS", 2)
    monkeypatch.setattr(engine, "_POOL", None)
    used: list[object] = []
    real_pool = engine._pool
    monkeypatch.setattr(engine, "_pool", lambda: used.append(1) or real_pool())
    out, counts = Redactor().redact_array(arr)
    assert bool(used) == (min_bytes == 1)  # the threaded passes ran (or not) as asked
    assert out.to_pylist() == expected
    assert len(counts) == len(arr)


def test_bech32_table_equals_reference() -> None:
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)

    def ref(values: list[int]) -> int:
        chk = 1
        for v in values:
            top = chk >> 25
            chk = (chk & 0x1FFFFFF) << 5 ^ v
            for i in range(5):
                chk ^= gen[i] if (top >> i) & 1 else 0
        return chk

    rng = random.Random(1)
    for _ in range(2000):
        values = [rng.randrange(32) for _ in range(rng.randrange(90))]
        assert checksums._bech32_polymod(values) == ref(values)


def test_forked_child_gets_its_own_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    import multiprocessing as mp

    monkeypatch.setattr(engine, "_WORKERS", 2)  # a pool even on one core: the case under test
    pool0 = engine._pool()
    assert pool0 is not None
    pool0.submit(int).result()  # the parent's pool has running threads before the fork
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        out = pool.apply_async(_redact_in_child, ()).get(timeout=60)
    assert out == Redactor().redact_array(pa.array(_texts()))[0].to_pylist()


def _redact_in_child() -> list[str]:
    engine._PARALLEL_MIN_BYTES = 1  # force the threaded passes in the child
    assert engine._pool() is not None  # _WORKERS=2 is inherited: the child starts its own pool
    return Redactor().redact_array(pa.array(_texts()))[0].to_pylist()
