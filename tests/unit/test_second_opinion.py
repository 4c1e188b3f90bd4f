"""The PII second opinion: finds what the redactor misses, counts only, a suite that fails above
the configured rate, and a clear skip when Presidio is not installed."""

from __future__ import annotations

import ast
import json
import logging
import math
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

import ratchet.second_opinion as so_mod
from ratchet.config import PipelineConfig, QualityConfig, RedactionConfig
from ratchet.db import open_database
from ratchet.ingest.pipeline import IngestContext, ingest_file
from ratchet.quality import DataQualityError, second_opinion_report
from ratchet.redaction import Redactor
from ratchet.schemas import INTERACTIONS, MESSAGES
from ratchet.second_opinion import (
    SKIPPED_NOT_INSTALLED,
    SecondOpinion,
    SecondOpinionConfigError,
    SecondOpinionResult,
    batch_sample_rows,
    sample_indices,
    scan_written,
    scanner_for,
    text_columns,
)
from ratchet.settings import get_settings
from ratchet.store import Store

pytest.importorskip("presidio_analyzer")

EMAIL = "jane.roe@example-mail.com"
CARD = "4539 1488 0343 6467"  # Luhn-valid
IBAN = "DE89 3704 0044 0532 0130 00"  # check digits valid
PLANTED = (EMAIL, CARD, IBAN)
QUESTIONS = [
    "Where is my parcel right now?", "Can I return shoes bought in March?",
    "Do you deliver to Norway and how long does it take?", "Which size fits a 42 foot?",
    "Is the oak table still in stock?", "How do I change the address on my account?",
]  # fmt: skip


@pytest.fixture(scope="module")
def scanner() -> SecondOpinion:
    return SecondOpinion(QualityConfig(second_opinion_sample_rows=5000))


def _chat_table(answers: list[str], user_texts: list[str] | None = None) -> pa.Table:
    user_texts = user_texts or ["Where is my order ORD-2026-100200?"] * len(answers)
    messages = [
        [{"role": "user", "content": u, "name": None, "tool_call_id": None, "tool_calls": None}]
        for u in user_texts
    ]
    return pa.table(
        {
            "example_id": [f"ex-{i}" for i in range(len(answers))],
            "messages": pa.array(messages, MESSAGES),
            "response": answers,
            "rating": list(range(len(answers))),
        }
    )


def _no_value(*texts: str) -> None:
    for text in texts:
        for value in PLANTED:
            assert value not in text
            assert value.replace(" ", "") not in text


def test_it_finds_pii_the_redactor_was_made_to_miss(scanner, caplog) -> None:
    redactor = Redactor(RedactionConfig(disabled_types=["EMAIL", "CREDIT_CARD", "IBAN"]))
    raw = [f"Send it to {EMAIL} please", f"card {CARD} expires soon", f"IBAN: {IBAN}", "fine"]
    redacted = [redactor.redact_text(t)[0] for t in raw]
    assert redacted[:3] == raw[:3]  # the redactor really missed them
    table = _chat_table(redacted)
    with caplog.at_level(logging.DEBUG):
        result = scanner.scan(table, "sft_examples")
    assert result.status == "scanned"
    assert result.rows_scanned == 4
    assert result.rows_with_hits == 3
    assert dict(result.hits_by_type) == {"EMAIL_ADDRESS": 1, "CREDIT_CARD": 1, "IBAN_CODE": 1}
    report = second_opinion_report(result, scanner.config)
    assert not report.success
    assert report.suite == "sft_examples_second_opinion"
    (failed,) = report.failed
    assert "EMAIL_ADDRESS=1" in failed and "CREDIT_CARD=1" in failed and "IBAN_CODE=1" in failed
    assert "3 of 4 sampled rows" in failed
    _no_value(failed, json.dumps(result.as_dict()), json.dumps(report.summary()), caplog.text)


def test_it_looks_inside_nested_message_content(scanner) -> None:
    table = _chat_table(["ok", "ok"], user_texts=["hello", f"mail me: {EMAIL}"])
    result = scanner.scan(table, "t")
    assert result.rows_with_hits == 1 and dict(result.hits_by_type) == {"EMAIL_ADDRESS": 1}


def test_a_properly_redacted_table_scores_zero_and_placeholders_never_count(scanner) -> None:
    redactor = Redactor()
    raw = [
        f"Send it to {EMAIL} please", f"card {CARD} expires soon", f"IBAN: {IBAN}",
        "Call me on +1 212-555-0134 or at 10.20.30.40", "SSN 123-45-6789 on file",
    ]  # fmt: skip
    redacted = [redactor.redact_text(t)[0] for t in raw]
    assert all("[" in t for t in redacted)
    placeholders = ["[EMAIL] [PHONE] [CREDIT_CARD] [IBAN] [IP_ADDRESS] [US_SSN] [CRYPTO_WALLET]"]
    result = scanner.scan(_chat_table(redacted + placeholders), "interactions")
    assert result.rows_scanned == 6
    assert result.rows_with_hits == 0 and not result.hits_by_type
    assert second_opinion_report(result, scanner.config).success


def test_pii_free_look_alikes_are_not_hits(scanner) -> None:
    texts = [
        "Order ORD-2026-510375 shipped on 2026-01-04 18:42.",
        "Your parcel 4502851166 is in transit with DHL.",  # a bare 10-digit tracking number
        "USPS 9400 3885 1593 5412 3562 34 arrives 03.11.2026.",  # holds Luhn-valid windows
        "Ticket for item 04609213-ba04-4a17-a604-5faa0e3c1d2b version 3.14.2.",
        "Invoice INV-2025-00931, refund of EUR 49,99 in 3-5 days; latency 1647.6 ms.",
    ]
    result = scanner.scan(_chat_table(texts), "interactions")
    assert result.rows_with_hits == 0, dict(result.hits_by_type)


def test_addresses_nobody_owns_are_not_hits_public_ones_are(scanner) -> None:
    unowned = [
        "ping 127.0.0.1 ok",
        "bind 0.0.0.0:80",
        "docs 192.0.2.15 and 2001:db8::1",
        "netmask 255.255.255.0",
        "loopback ::1 here",
    ]
    assert scanner.scan(_chat_table(unowned), "t").rows_with_hits == 0
    result = scanner.scan(_chat_table(["client 81.2.69.142 logged in"]), "t")
    assert dict(result.hits_by_type) == {"IP_ADDRESS": 1}


def test_the_redaction_allow_list_is_honoured() -> None:
    support = "help@northwind-shop.com"
    config = PipelineConfig.model_validate({"redaction": {"allow_list": [support]}})
    table = _chat_table([f"Write to {support} for returns."])
    assert scanner_for(config).scan(table, "t").rows_with_hits == 0
    assert scanner_for(PipelineConfig()).scan(table, "t").rows_with_hits == 1


def test_hit_rate_threshold_passes_at_and_fails_above_the_limit() -> None:
    cfg = QualityConfig(second_opinion_max_hit_rate=0.01)
    at = SecondOpinionResult("t", "scanned", 1000, 1000, 10, hits_by_type=_c(PHONE_NUMBER=12))
    above = SecondOpinionResult("t", "scanned", 1000, 1000, 11, hits_by_type=_c(US_SSN=11))
    assert second_opinion_report(at, cfg).success
    report = second_opinion_report(above, cfg)
    assert not report.success
    assert "US_SSN=11" in report.failed[0] and "11 of 1000" in report.failed[0]
    zero = QualityConfig(second_opinion_max_hit_rate=0.0)
    one = SecondOpinionResult("t", "scanned", 5, 5, 1, hits_by_type=_c(EMAIL_ADDRESS=1))
    assert not second_opinion_report(one, zero).success


def _c(**counts: int):
    from collections import Counter

    return Counter(counts)


def test_sample_is_deterministic_bounded_and_seeded() -> None:
    a = sample_indices(10_000, 200, seed=0, table="interactions")
    assert len(a) == 200 and len(set(a.tolist())) == 200 and a.max() < 10_000
    assert (a == sample_indices(10_000, 200, seed=0, table="interactions")).all()
    assert not (a == sample_indices(10_000, 200, seed=1, table="interactions")).all()
    assert sample_indices(50, 200, seed=0, table="t").tolist() == list(range(50))


def test_sample_size_bounds_the_rows_scanned() -> None:
    scanner = SecondOpinion(QualityConfig(second_opinion_sample_rows=3))
    result = scanner.scan(_chat_table([f"answer {i}" for i in range(20)]), "t")
    assert result.rows_total == 20 and result.rows_scanned == 3


def test_a_file_budget_sizes_each_batch_sample_by_its_share_of_the_file() -> None:
    q = QualityConfig()  # 95% to see a leak at 0.1%: 2,995 rows a file, at most 200 a batch
    budget = math.log(1 - 0.95) / math.log(1 - 0.001)
    assert batch_sample_rows(q, 1.0) == 200 and batch_sample_rows(q, None) == 200
    assert batch_sample_rows(q, 0.02) == math.ceil(budget * 0.02) == 60
    # fifty equal batches sample the whole budget between them, two hundred still at least one
    assert sum(batch_sample_rows(q, 1 / 50) for _ in range(50)) >= budget
    assert batch_sample_rows(q, 1e-9) == 1
    # a larger share than the file (a gzip's compressed size) is capped, not inflated
    assert batch_sample_rows(q, 40.0) == 200
    assert batch_sample_rows(QualityConfig(second_opinion_confidence=1.0), 0.001) == 200
    assert batch_sample_rows(QualityConfig(second_opinion_max_hit_rate=0.0), 0.001) == 200
    strict = QualityConfig(second_opinion_confidence=0.999, second_opinion_sample_rows=10_000)
    assert batch_sample_rows(strict, 0.5) > batch_sample_rows(q, 0.5)


def test_read_back_reads_only_the_parts_holding_a_sampled_row(tmp_path, monkeypatch) -> None:
    store = Store(str(tmp_path))
    answers = [f"answer {i}" for i in range(60)]
    answers[7] = answers[45] = f"Write to {EMAIL}."
    table = _chat_table(answers)
    parts = []
    for start in range(0, 60, 10):
        part = store.write_part("interactions", table.slice(start, 10), table.schema)
        parts.append(("interactions", part.path, 10))
    monkeypatch.setattr(so_mod, "schema_for", lambda name: table.schema)
    read: list[str] = []
    real = Store.read_table
    monkeypatch.setattr(
        Store,
        "read_table",
        lambda self, rel, *a, **kw: read.append(rel) or real(self, rel, *a, **kw),
    )
    config = PipelineConfig.model_validate({"quality": {"second_opinion_sample_rows": 5000}})
    whole = scanner_for(config).scan(table, "interactions", rows=4)
    got = scan_written(store, config, parts, rows=4)["interactions"]
    idx = sample_indices(60, 4, 0, "interactions")
    assert len(read) == len({int(i) // 10 for i in idx}) < 6  # not every part was read
    assert (got.rows_total, got.rows_scanned, got.rows_with_hits, got.hits_by_type) == (
        whole.rows_total, whole.rows_scanned, whole.rows_with_hits, whole.hits_by_type
    )  # fmt: skip
    read.clear()
    every = scan_written(store, config, parts, rows=60)["interactions"]  # all rows: all parts
    assert len(read) == 6 and every.rows_scanned == 60 and every.rows_with_hits == 2


def test_phone_windows_without_a_match_are_remembered_and_matches_never() -> None:
    scanner = SecondOpinion(QualityConfig())
    phones = [r for r in scanner._engine().registry.recognizers if hasattr(r, "clean")]
    assert len(phones) == 1
    texts = [["Order ORD-2026-118842 of 2026-11-03 left on 2026-11-04.", "Call +44 20 7946 0958."]]
    first = scanner.scan_texts(texts)
    assert first == (1, Counter({"PHONE_NUMBER": 1}))
    remembered = set(phones[0].clean)
    assert any("2026-11-03" in w for w in remembered)
    assert not any("7946" in w for w in remembered)  # a window with a match is never kept
    assert scanner.scan_texts(texts) == first  # the same answer from the memo


def test_only_text_columns_are_scanned() -> None:
    cols = text_columns(INTERACTIONS)
    assert {"messages", "response", "metadata", "extra", "interaction_id"} <= set(cols)
    assert not {"timestamp", "latency_ms", "pii_counts", "pii_residual", "consent"} & set(cols)


def test_presidio_missing_is_a_clear_skip_and_required_makes_it_a_failure(monkeypatch) -> None:
    for name in [m for m in sys.modules if m.startswith("presidio_analyzer")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "presidio_analyzer", None)  # import raises ImportError
    table = _chat_table([f"mail {EMAIL}"])
    result = SecondOpinion(QualityConfig()).scan(table, "interactions")
    assert result.status == "skipped" and result.reason == SKIPPED_NOT_INSTALLED
    assert result.as_dict()["reason"] == "skipped: presidio not installed"
    assert second_opinion_report(result, QualityConfig()).success
    required = QualityConfig(second_opinion_required=True)
    report = second_opinion_report(result, required)
    assert not report.success and "presidio not installed" in report.failed[0]


def test_unknown_entity_in_config_names_the_key() -> None:
    scanner = SecondOpinion(QualityConfig(second_opinion_min_scores={"US_DRIVER_LICENSE": 0.5}))
    with pytest.raises(SecondOpinionConfigError, match=r"quality\.second_opinion_min_scores"):
        scanner.scan(_chat_table(["x"]), "t")


def test_the_module_shares_no_code_with_the_redactor() -> None:
    tree = ast.parse(Path(so_mod.__file__).read_text())
    imported = {
        n.module if isinstance(n, ast.ImportFrom) else a.name
        for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)
        for a in n.names
    }  # fmt: skip
    assert not {m for m in imported if m and m.startswith("ratchet.redaction")}


# --- wired into ingest ------------------------------------------------------------------------
def _ctx(disabled: list[str]) -> IngestContext:
    settings = get_settings()
    config = PipelineConfig.model_validate(
        {"ingest": {"batch_size": 100, "workers": 1}, "redaction": {"disabled_types": disabled}}
    )
    return IngestContext(
        store=Store(settings.store_root), sessions=open_database(settings), config=config,
        redactor=Redactor(config.redaction), pseudonym_key=b"k" * 32,
        now=datetime(2026, 11, 20, tzinfo=UTC),
    )  # fmt: skip


def _file(path: Path, answers: list[str]) -> Path:
    lines = [
        {
            "interaction_id": f"int-{i}", "agent_id": "shop-assistant",
            "timestamp": "2026-11-02T10:00:00Z",
            "messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
            "response": a,
        }
        for i, a in enumerate(answers)
    ]  # fmt: skip
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_ingest_fails_the_batch_when_the_redactor_misses_an_email(ratchet_env, tmp_path) -> None:
    ctx = _ctx(disabled=["EMAIL"])
    f = _file(tmp_path / "a.jsonl", ["It ships tomorrow."] * 3 + [f"Write to {EMAIL}."])
    with pytest.raises(DataQualityError) as err:
        ingest_file(ctx, f)
    message = str(err.value)
    assert "interactions_second_opinion" in message and "EMAIL_ADDRESS=1" in message
    _no_value(message)


def test_ingest_report_carries_hits_by_type_and_rows_scanned(ratchet_env, tmp_path) -> None:
    ctx = _ctx(disabled=[])
    f = _file(tmp_path / "b.jsonl", ["It ships tomorrow."] * 3 + [f"Write to {EMAIL}."])
    report = ingest_file(ctx, f).as_dict()
    scan = report["second_opinion"]["interactions"]
    assert scan["status"] == "scanned" and scan["rows_scanned"] == 4 and scan["hits_by_type"] == {}
    suites = {q["suite"]: q for q in report["quality"]}
    assert suites["interactions_second_opinion"]["success"]
    _no_value(json.dumps(report))


def test_ingest_samples_a_large_file_by_its_budget_and_a_small_one_whole(ratchet_env, tmp_path):
    ctx = _ctx(disabled=[])  # batches of 100 lines
    # 5% fails the suite, 95% to see it: a budget of 59 rows for the file, whatever its size
    quality = QualityConfig(second_opinion_max_hit_rate=0.05, second_opinion_sample_rows=40)
    ctx = IngestContext(
        **{**ctx.__dict__, "config": ctx.config.model_copy(update={"quality": quality})}
    )
    big = ingest_file(
        ctx, _file(tmp_path / "big.jsonl", [f"It ships in {i} days." for i in range(800)])
    )
    scanned = big.second_opinion["interactions"].rows_scanned
    budget = math.log(1 - 0.95) / math.log(1 - 0.05)
    assert budget <= scanned <= budget + 8  # eight batches, each its share rounded up
    small_file = _file(tmp_path / "small.jsonl", ["It ships tomorrow."] * 30)
    small_file.write_text(small_file.read_text().replace('"int-', '"small-'))  # new ids
    small = ingest_file(ctx, small_file)
    assert small.second_opinion["interactions"].rows_scanned == 30  # one batch: scanned whole


# --- wired into curation ----------------------------------------------------------------------
def _curate(ctx: IngestContext, config: PipelineConfig) -> dict:
    from datetime import timedelta

    from ratchet.curation.registry import CurationContext, curate_agent
    from ratchet.curation.select import Window

    cctx = CurationContext(
        store=ctx.store, sessions=ctx.sessions, config=config, redactor=Redactor(config.redaction)
    )
    return curate_agent(
        cctx, "shop-assistant", Window(None, datetime.now(UTC) + timedelta(seconds=1))
    )


def _ingest_for_curation(tmp_path: Path, answers: list[str]) -> IngestContext:
    ctx = _ctx(disabled=["EMAIL"])
    # what the redactor let through is stored: only the curated tables are checked here
    ctx = IngestContext(
        **{
            **ctx.__dict__,
            "config": ctx.config.model_copy(
                update={"quality": QualityConfig(second_opinion_enabled=False)}
            ),
        }
    )
    ingest_file(ctx, _file(tmp_path / "i.jsonl", answers))
    fb = [{"interaction_id": f"int-{i}", "agent_id": "shop-assistant",
           "timestamp": "2026-11-03T10:00:00Z", "source": "user", "rating": 5}
          for i in range(len(answers))]  # fmt: skip
    (tmp_path / "f.jsonl").write_text("".join(json.dumps(x) + "\n" for x in fb))
    ingest_file(ctx, tmp_path / "f.jsonl", kind="feedback")
    return ctx


def test_curation_fails_when_a_curated_table_holds_pii(ratchet_env, tmp_path) -> None:
    answers = [
        "It ships tomorrow.",
        "Yes, within 30 days.",
        "Yes, in five days.",
        "Take a 43.",
        "Two are left.",
        f"Send the new address to {EMAIL} and we update it.",
    ]
    ctx = _ingest_for_curation(tmp_path, answers)
    missing = PipelineConfig.model_validate({"redaction": {"disabled_types": ["EMAIL"]}})
    with pytest.raises(DataQualityError) as err:
        _curate(ctx, missing)  # curation's own residual scan misses it too
    message = str(err.value)
    assert "_second_opinion" in message and "EMAIL_ADDRESS=" in message
    _no_value(message)
    with ctx.sessions() as s:
        from ratchet.db import repo

        assert repo.list_dataset_versions(s, agent_id="shop-assistant") == []


def test_curation_report_carries_the_scan_per_table(ratchet_env, tmp_path) -> None:
    answers = [
        "It ships tomorrow.",
        "Yes, within 30 days.",
        "Yes, in five days.",
        "Take a 43.",
        "Two are left.",
        "Under Settings, then Addresses.",
    ]
    ctx = _ingest_for_curation(tmp_path, answers)
    report = _curate(ctx, PipelineConfig())
    scans = report["second_opinion"]
    assert scans["eval_cases"]["status"] == "scanned" and scans["eval_cases"]["rows_scanned"] > 0
    assert all(s["hits_by_type"] == {} for s in scans.values())
    assert any(q["suite"] == "eval_cases_second_opinion" for q in report["quality"])


def test_the_scan_does_not_load_pytorch_or_transformers() -> None:
    """Presidio's NLP modules import PyTorch and transformers when installed (the train extra):
    ~330 MB in every ingest process, for model back ends this scan never uses. A fresh
    interpreter builds the scanner and finds PII without loading either; importing torch
    afterwards still works (what the scan hid is unhidden)."""
    import subprocess

    code = (
        "import importlib.util, sys\n"
        "from ratchet.second_opinion import _build_analyzer\n"
        "hits = _build_analyzer(['EMAIL_ADDRESS']).analyze('mail bob.smith@gmail.com',"
        " language='en')\n"
        "print(len(hits), 'torch' in sys.modules, 'transformers' in sys.modules)\n"
        "if importlib.util.find_spec('torch'):\n"
        "    import torch\n"
        "    print('torch', torch.__name__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    ).stdout.split("\n")
    assert out[0] == "1 False False"
    assert out[1] in ("torch torch", "")
