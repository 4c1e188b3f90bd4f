"""The seeded sample generator: determinism, ground truth that matches the files, realistic PII.

The checks here parse the files independently of the generator (their own Luhn and IBAN checks,
their own classification of malformed lines), so a manifest that lies fails.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections import Counter
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from ratchet.sample import (
    MALFORMED_REASONS,
    NoiseSpec,
    SampleManifest,
    SampleSpec,
    SampleSpecError,
    generate,
    iter_interaction_lines,
    write_interactions,
)

VALID_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
REQUIRED = ("interaction_id", "agent_id", "timestamp", "messages", "response")
SMALL = SampleSpec(seed=11, interactions=240, openai_interactions=20)
ALL_NOISE = NoiseSpec(
    exact_duplicate=0.02,
    conflicting_duplicate=0.02,
    not_utf8=0.01,
    not_json=0.01,
    not_object=0.01,
    missing_field=0.01,
    wrong_type=0.01,
    bad_timestamp=0.01,
    newer_schema=0.01,
    invalid_value=0.01,
    too_large=1,
)
NOISY = replace(SMALL, noise=ALL_NOISE, max_line_bytes=30_000, pii_rate=0.5)


def _luhn(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()][::-1]
    total = sum(d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2) for i, d in enumerate(digits))
    return total % 10 == 0


def _iban_ok(iban: str) -> bool:
    s = iban.replace(" ", "")
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


CARD_RE = re.compile(
    r"(?<![\d-])(?<!\d )(?:\d{4}([ -]?)\d{6}\1\d{5}|\d{4}([ -]?)\d{4}\2\d{4}\2\d{4})(?![ -]?\d)"
)
IBAN_RE = re.compile(r"\b(?:GB|DE|FR|NL|ES)\d{2}(?: ?[A-Z0-9]{4}){3,7}(?: ?[A-Z0-9]{1,3})?\b")


@pytest.fixture(scope="module")
def noisy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SampleManifest]:
    out = tmp_path_factory.mktemp("noisy")
    return out, generate(NOISY, out)


def _classify(raw: bytes, max_bytes: int) -> tuple[str, dict[str, Any] | None]:
    """The quarantine reason ingest should give a line, or ("ok", record)."""
    if len(raw) > max_bytes:
        return "too_large", None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "not_utf8", None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return "not_json", None
    if not isinstance(obj, dict):
        return "not_object", None
    if int(str(obj.get("schema_version", "1.0")).split(".")[0]) > 1:
        return "newer_schema", None
    if any(k not in obj for k in REQUIRED):
        return "missing_field", None
    if not isinstance(obj["messages"], list) or not isinstance(obj["response"], str):
        return "wrong_type", None
    if any(m.get("role") not in VALID_ROLES for m in obj["messages"]):
        return "invalid_value", None
    try:
        datetime.fromisoformat(obj["timestamp"])
    except ValueError:
        return "bad_timestamp", None
    return "ok", obj


def _lines(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    return data.splitlines()


def _walk_interactions(out: Path, m: SampleManifest, max_bytes: int) -> dict[str, Any]:
    reasons: Counter[str] = Counter()
    first: dict[tuple[str, str], bytes] = {}
    week_of: dict[tuple[str, str], int] = {}
    records: list[dict[str, Any]] = []
    dups = conflicts = 0
    for f in m.files:
        if f.kind != "interactions":
            continue
        for raw in _lines(out / f.name):
            reason, rec = _classify(raw, max_bytes)
            if rec is None:
                reasons[reason] += 1
                continue
            key = (rec["agent_id"], rec["interaction_id"])
            if key in first:
                if first[key] == raw:
                    dups += 1
                else:
                    conflicts += 1
                continue
            first[key] = raw
            week_of[key] = f.week
            records.append(rec)
    return {
        "reasons": reasons,
        "dups": dups,
        "conflicts": conflicts,
        "records": records,
        "week_of": week_of,
    }


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    spec = replace(SMALL, noise=ALL_NOISE, max_line_bytes=30_000)
    a, b = generate(spec, tmp_path / "a"), generate(spec, tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert a == b
    c = generate(replace(spec, seed=12), tmp_path / "c")
    assert (
        c.file("interactions-week-01.jsonl").sha256 != a.file("interactions-week-01.jsonl").sha256
    )


def test_manifest_counts_match_the_files(noisy: tuple[Path, SampleManifest]) -> None:
    out, m = noisy
    assert SampleManifest.from_dict(json.loads((out / "manifest.json").read_text())) == m
    for f in m.files:
        lines = _lines(out / f.name)
        assert len(lines) == f.lines, f.name
        assert hashlib.sha256((out / f.name).read_bytes()).hexdigest() == f.sha256
    w = _walk_interactions(out, m, NOISY.max_line_bytes)
    it = m.interactions
    assert dict(w["reasons"]) == it["malformed"]
    assert w["dups"] == it["exact_duplicates"] > 0
    assert w["conflicts"] == it["conflicting_duplicates"] > 0
    assert len(w["records"]) == it["valid_distinct"] == NOISY.interactions
    assert it["lines_total"] == sum(f.lines for f in m.files if f.kind == "interactions")
    recs = w["records"]
    assert sum(r["consent"] is False for r in recs) == it["consent_false"]
    assert sum(r["schema_version"] == "1.3" for r in recs) == it["schema_minor"]
    no_zone = sum(datetime.fromisoformat(r["timestamp"]).tzinfo is None for r in recs)
    assert no_zone == it["timestamp_no_zone"] > 0
    assert Counter(r["agent_id"] for r in recs) == Counter(it["by_agent"])
    ids = Counter(r["interaction_id"] for r in recs)
    assert sum(1 for c in ids.values() if c > 1) == it["shared_id_across_agents"] == 1
    inline = [r["feedback"] for r in recs if "feedback" in r]
    assert len(inline) == it["with_inline_feedback"]
    n_inline = sum(len(x) if isinstance(x, list) else 1 for x in inline)
    assert n_inline == m.feedback["inline"]
    n_file = sum(f.lines for f in m.files if f.kind == "feedback")
    assert n_file == m.feedback["in_files"]
    assert n_inline + n_file == m.feedback["events_total"]
    assert it["expected_quarantine"]["conflicting_duplicate"] == it["conflicting_duplicates"]


def test_every_malformed_reason_is_present_when_noise_is_on(
    noisy: tuple[Path, SampleManifest],
) -> None:
    _, m = noisy
    assert set(m.interactions["malformed"]) == set(MALFORMED_REASONS)
    assert all(v >= 1 for v in m.interactions["malformed"].values())


def test_default_noise_is_small_and_off_means_off(tmp_path: Path) -> None:
    m = generate(replace(SMALL, noise=NoiseSpec.off()), tmp_path)
    it = m.interactions
    assert it["malformed_total"] == it["exact_duplicates"] == it["conflicting_duplicates"] == 0
    assert it["lines_total"] == SMALL.interactions
    assert SMALL.noise.too_large == 0  # over-size lines only when asked


def test_valid_lines_have_required_fields_with_the_right_types(
    noisy: tuple[Path, SampleManifest],
) -> None:
    out, m = noisy
    recs = _walk_interactions(out, m, NOISY.max_line_bytes)["records"]
    multi_turn = tool_calls = 0
    for r in recs:
        assert isinstance(r["interaction_id"], str) and isinstance(r["agent_id"], str)
        assert isinstance(r["response"], str) and r["response"]
        assert r["schema_version"] in ("1.0", "1.3")
        assert isinstance(r["metadata"], dict) and "topic" in r["metadata"]
        assert isinstance(r["tools_used"], list) and isinstance(r["consent"], bool)
        roles = [msg["role"] for msg in r["messages"]]
        assert roles[0] == "system" and "user" in roles
        multi_turn += roles.count("user") > 1
        open_calls: set[str] = set()
        for msg in r["messages"]:
            assert msg["content"] is None or isinstance(msg["content"], str)
            for call in msg.get("tool_calls", []):
                tool_calls += 1
                assert call["type"] == "function" and call["id"].startswith("call_")
                assert isinstance(json.loads(call["function"]["arguments"]), dict)
                assert call["function"]["name"] in r["tools_used"]
                open_calls.add(call["id"])
            if msg["role"] == "tool":
                assert msg["tool_call_id"] in open_calls
    assert multi_turn > 0 and tool_calls > 0
    assert any("ab_bucket" in r for r in recs)  # unknown extra fields ingest must keep
    assert any(r["timestamp"].endswith("Z") for r in recs)
    assert any(re.search(r"[+-]\d\d:\d\d$", r["timestamp"]) for r in recs)


def _texts(r: dict[str, Any]) -> list[str]:
    out = [m["content"] for m in r["messages"] if m.get("content")]
    out += [c["function"]["arguments"] for m in r["messages"] for c in m.get("tool_calls", [])]
    out += [str(v) for v in r["metadata"].values()]
    return [*out, r["response"]]


def test_planted_cards_are_luhn_valid_and_ibans_pass_mod97(
    noisy: tuple[Path, SampleManifest],
) -> None:
    out, m = noisy
    recs = _walk_interactions(out, m, NOISY.max_line_bytes)["records"]
    cards = [c.group(0) for r in recs for t in _texts(r) for c in CARD_RE.finditer(t)]
    ibans = [i.group(0) for r in recs for t in _texts(r) for i in IBAN_RE.finditer(t)]
    assert len(cards) == m.pii["interactions"]["CREDIT_CARD"] > 0
    assert len(ibans) == m.pii["interactions"]["IBAN"] > 0
    assert all(_luhn(c) for c in cards)
    assert any(
        c.replace(" ", "").replace("-", "")[:4] in {str(x) for x in range(2221, 2721)}
        for c in cards
    )
    assert all(_iban_ok(i) for i in ibans)
    # Look-alikes that are not PII are there too, and none of them passes for a card.
    blob = "\n".join(t for r in recs for t in _texts(r))
    assert re.search(r"ORD-20\d\d-\d{6}", blob) and re.search(r"SKU-\d{4}-[A-Z]{3}-", blob)
    assert re.search(r"1Z[A-Z0-9]{6}\d{10}", blob) and re.search(r"[£$€]\d+\.\d\d", blob)
    assert m.interactions["with_pii"] > 0 and m.pii["interactions"]["EMAIL"] > 0


def test_late_feedback_lands_in_a_later_file_than_its_interaction(
    noisy: tuple[Path, SampleManifest],
) -> None:
    out, m = noisy
    week_of = _walk_interactions(out, m, NOISY.max_line_bytes)["week_of"]
    late = 0
    sources: Counter[str] = Counter()
    chains: Counter[tuple[str, str, str, str | None]] = Counter()
    for f in m.files:
        if f.kind != "feedback":
            continue
        for raw in _lines(out / f.name):
            ev = json.loads(raw)
            assert ev["source"] in ("user", "expert", "system")
            assert "rating" in ev or "thumb" in ev
            assert ev.get("thumb", 1) in (1, -1) and 1 <= ev.get("rating", 3) <= 5
            interaction_week = week_of[(ev["agent_id"], ev["interaction_id"])]
            assert f.week >= interaction_week
            late += f.week > interaction_week
            sources[ev["source"]] += 1
            chains[(ev["agent_id"], ev["interaction_id"], ev["source"], ev.get("annotator"))] += 1
            datetime.fromisoformat(ev["timestamp"])
    assert late == m.feedback["late"] > 0
    assert (
        sources["expert"] > 0 and m.feedback["superseded"] > 0 and m.feedback["disagreements"] > 0
    )
    assert m.feedback["without_feedback_id"] > 0 and m.feedback["with_correction"] > 0


def test_openai_log_lines_have_the_documented_shape(noisy: tuple[Path, SampleManifest]) -> None:
    out, m = noisy
    lines = [json.loads(x) for x in _lines(out / "openai-chat.jsonl")]
    assert len(lines) == m.openai_chat["lines"] > NOISY.openai_interactions - 1
    where = Counter()
    for x in lines:
        req, resp = x["request"], x["response"]
        assert isinstance(req["model"], str) and req["messages"][0]["role"] == "system"
        assert all(t["type"] == "function" for t in req["tools"])
        assert resp["object"] == "chat.completion" and resp["id"].startswith("chatcmpl-")
        assert isinstance(resp["created"], int)
        choice = resp["choices"][0]
        assert choice["index"] == 0 and choice["message"]["role"] == "assistant"
        assert choice["finish_reason"] in ("stop", "tool_calls")
        if choice["finish_reason"] == "tool_calls":
            assert choice["message"]["content"] is None and choice["message"]["tool_calls"]
        u = resp["usage"]
        assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
        assert isinstance(x["latency_ms"], float)
        where["top" if "agent_id" in x else "meta"] += 1
        assert "agent_id" in x or "agent_id" in req["metadata"]
    assert (
        where["top"] == m.openai_chat["agent_id_top_level"]
        and where["meta"] == m.openai_chat["agent_id_in_metadata"]
    )


def test_gzip_output_is_deterministic_and_counted(tmp_path: Path) -> None:
    spec = replace(SMALL, interactions=60, openai_interactions=5, compress=True)
    a, b = generate(spec, tmp_path / "a"), generate(spec, tmp_path / "b")
    assert a == b
    f = a.file("interactions-week-02.jsonl.gz")
    assert len(_lines(tmp_path / "a" / f.name)) == f.lines


def test_write_interactions_streams_valid_deterministic_lines(tmp_path: Path) -> None:
    size = write_interactions(tmp_path / "a.jsonl", 300, seed=5, feedback_share=0.2)
    write_interactions(tmp_path / "b.jsonl.gz", 300, seed=5, feedback_share=0.2)
    data = (tmp_path / "a.jsonl").read_bytes()
    assert size == len(data) and gzip.decompress((tmp_path / "b.jsonl.gz").read_bytes()) == data
    assert b"".join(iter_interaction_lines(300, seed=5, feedback_share=0.2)) == data
    lines = data.splitlines()
    assert len(lines) == 300 and 700 < len(data) / 300 < 2500
    recs = [_classify(x, 1 << 20) for x in lines]
    assert all(reason == "ok" for reason, _ in recs)
    assert len({r["interaction_id"] for _, r in recs if r}) == 300


def test_bad_spec_names_the_field() -> None:
    with pytest.raises(SampleSpecError, match="pii_rate"):
        SampleSpec(pii_rate=1.5)
    with pytest.raises(SampleSpecError, match="weeks"):
        SampleSpec(weeks=0)


def test_bundled_sample_is_reproducible(tmp_path: Path) -> None:
    bundled = Path(__file__).resolve().parents[2] / "ratchet" / "data" / "sample"
    m = SampleManifest.from_dict(json.loads((bundled / "manifest.json").read_text()))
    again = generate(SampleSpec.from_dict(m.spec), tmp_path)
    assert again == m
    for f in m.files:
        assert hashlib.sha256((bundled / f.name).read_bytes()).hexdigest() == f.sha256, f.name
    assert sum(f.bytes for f in m.files) < 4_000_000  # small enough to ship in the package


def test_the_generator_plants_with_the_redactions_own_checksums(monkeypatch) -> None:
    """One implementation of Luhn and mod-97: what the sample plants is what redaction checks."""
    import random

    from ratchet import sample
    from ratchet.redaction import checksums

    calls: list[str] = []
    real_luhn, real_iban = checksums.luhn_ok, checksums.iban_check_digits
    monkeypatch.setattr(checksums, "luhn_ok", lambda d: calls.append("luhn") or real_luhn(d))
    monkeypatch.setattr(
        checksums, "iban_check_digits", lambda c, b: calls.append("iban") or real_iban(c, b)
    )
    rng = random.Random(3)
    card, iban = sample._card(rng), sample._iban(rng).replace(" ", "")
    assert "luhn" in calls and "iban" in calls
    assert checksums.luhn_ok(checksums.only_digits(card)) and checksums.iban_ok(iban)
    assert not hasattr(sample, "luhn_valid") and not hasattr(sample, "iban_valid")
