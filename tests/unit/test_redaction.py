"""Redaction engine: detectors (positive and negative), field kinds, config, scan, pseudonyms."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from ratchet.config import RedactionConfig
from ratchet.redaction import (
    RULESET_VERSION,
    PseudonymKeyMissing,
    RedactionConfigError,
    Redactor,
    pseudonymise,
    pseudonymise_array,
    resolve_pseudonym_key,
)
from ratchet.schemas import INTERACTIONS, PII_COUNTS
from ratchet.settings import Settings


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor()


POSITIVE = [
    ("EMAIL", "jane.doe@example.com"),
    ("EMAIL", "j.o'x+tag@sub.example.co.uk".replace("'", "")),
    ("PHONE", "+44 20 7946 0958"),
    ("PHONE", "+1-415-555-0100"),
    ("PHONE", "(415) 555-0100"),
    ("PHONE", "020 7946 0958"),
    ("PHONE", "+33 (0)1 23 45 67 89"),
    ("PHONE", "06-12345678"),
    ("CREDIT_CARD", "4111 1111 1111 1111"),
    ("CREDIT_CARD", "4111-1111-1111-1111"),
    ("CREDIT_CARD", "5500000000000004"),
    ("CREDIT_CARD", "2221 0000 0000 0009"),
    ("CREDIT_CARD", "3782 822463 10005"),
    ("CREDIT_CARD", "6011 1111 1111 1117"),
    ("IBAN", "DE89 3704 0044 0532 0130 00"),
    ("IBAN", "GB82WEST12345698765432"),
    ("IBAN", "NL91 ABNA 0417 1643 00"),
    ("US_SSN", "123-45-6789"),
    ("IP_ADDRESS", "192.168.1.20"),
    ("IP_ADDRESS", "2a00:1450::8a2e:370:7334"),
    ("IP_ADDRESS", "fe80::1"),
    ("MAC_ADDRESS", "00:1A:2B:3C:4D:5E"),
    ("MAC_ADDRESS", "00-1a-2b-3c-4d-5e"),
    ("CRYPTO_WALLET", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"),
    ("CRYPTO_WALLET", "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"),
    ("CRYPTO_WALLET", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"),
    ("CRYPTO_WALLET", "0x52908400098527886E0F7030069857D2E4169EE7"),
    ("API_KEY", "sk-abcdefghijklmnopqrstuvwxyz012345"),
    ("API_KEY", "sk-proj-abcdefghijklmnopqrstuvwx1234"),
    ("API_KEY", "sk-ant-api03-abcdefghijklmnopqrstuvwxyz"),
    ("API_KEY", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
    ("API_KEY", "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz"),
    ("API_KEY", "xoxb-1234567890-abcdefghij"),
    ("AWS_KEY", "AKIAIOSFODNN7EXAMPLE"),
    ("AWS_KEY", "ASIAIOSFODNN7EXAMPLE"),
    ("JWT", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.abcDEF123_-"),
]


@pytest.mark.parametrize(("type_", "value"), POSITIVE)
def test_detector_finds_value_in_context(redactor: Redactor, type_: str, value: str) -> None:
    text, counts = redactor.redact_text(f"Hello, it is {value}, thanks.")
    assert text == f"Hello, it is [{type_}], thanks."
    assert counts == {type_: 1}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abcdefghijklmnopqrstuvwxyz123", "Authorization: Bearer [SECRET]"),
        (
            "postgres://admin:hunter2@db.example.com:5432/x",
            "postgres://admin:[PASSWORD]@db.example.com:5432/x",
        ),
        ("Server=db;User Id=sa;Password=s3cr3t!;", "Server=db;User Id=sa;Password=[PASSWORD];"),
        ('{"password": "correcthorse"}', '{"password": "[PASSWORD]"}'),
        ("token=abcd1234efgh", "token=[SECRET]"),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nabc==\n-----END RSA PRIVATE KEY----- ok",
            "[PRIVATE_KEY] ok",
        ),
        ("email=jane%40example.com&x=1", "email=[EMAIL]&x=1"),
        ("phone=%2B44%2020%207946%200958", "phone=[PHONE]"),
    ],
)
def test_secrets_and_encodings(redactor: Redactor, text: str, expected: str) -> None:
    assert redactor.redact_text(text)[0] == expected


NOT_PII = [
    "Order ORD-2024-118842 shipped",
    "SKU-88-1234-BLK in black",
    "total $1,299.00 incl. tax",
    "delivered 2026-11-03 at 14:30:15",
    "on 11/03/2026 and 03.11.2026",
    "UPS 1Z999AA10123456784",
    "USPS 9400 1000 0000 0000 0000 00",
    "card 4111 1111 1111 1112",  # Luhn fails
    "iban DE89 3704 0044 0532 0130 01",  # mod 97 fails
    "ssn 000-12-3456 666-12-3456 900-12-3456 123-00-4567 123-45-0000",
    "version v1.2.3.4 and 1.2.3.4.5",
    "ip 999.1.1.1",
    "uuid 123e4567-e89b-12d3-a456-426614174000",
    "sha 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "btc 1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3",  # base58 checksum fails
    "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdx",  # bech32 checksum fails
    "Password: reset link sent",
    "std::vector and 12:30",
    "reference 7700-1234-5678 and INV-2026-00031",
]


@pytest.mark.parametrize("text", NOT_PII)
def test_look_alikes_stay(redactor: Redactor, text: str) -> None:
    assert redactor.redact_text(text) == (text, {})
    assert redactor.scan_text(text) == 0


def test_json_escape_before_value_is_a_boundary(redactor: Redactor) -> None:
    raw = json.dumps({"note": "line\njane@example.com\n4111 1111 1111 1111"})
    out, counts = redactor.redact_text(raw)
    assert json.loads(out) == {"note": "line\n[EMAIL]\n[CREDIT_CARD]"}
    assert counts == {"EMAIL": 1, "CREDIT_CARD": 1}


def _interactions(rows: list[dict[str, object]]) -> pa.Table:
    base = {
        "schema_version": "1.0",
        "agent_id": "shop",
        "timestamp": datetime(2026, 11, 3, tzinfo=UTC),
        "content_hash": "ab" * 32,
        "source_file": "cd" * 32,
        "source_line": 1,
        "ingested_at": datetime(2026, 11, 3, tzinfo=UTC),
        "timestamp_assumed_utc": False,
        "redaction_version": "x",
        "pii_residual": 0,
    }
    return pa.Table.from_pylist([{**base, **r} for r in rows], schema=INTERACTIONS)


def _row(i: int, **kw: object) -> dict[str, object]:
    return {
        "interaction_id": f"i{i}",
        "messages": [{"role": "user", "content": "hello"}],
        "response": "ok",
        **kw,
    }


def test_redact_table_every_field_kind(redactor: Redactor) -> None:
    args = json.dumps({"email": "jane@example.com", "phone": "+44 20 7946 0958", "n": 3})
    table = _interactions(
        [
            _row(
                0,
                user_id="u_abc",
                messages=[
                    {"role": "system", "content": "be nice"},
                    {"role": "user", "content": "my card is 4111 1111 1111 1111"},
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "lookup", "arguments": args},
                            }
                        ],
                    },
                ],
                response="Mail sent to bob@example.org",
                metadata=json.dumps({"ip": "192.168.1.20"}),
                extra=json.dumps({"ua": "x", "contact": "email=jane%40example.com"}),
            ),
            _row(1, response="Your order ORD-2024-118842 ships 2026-11-03."),
            _row(2, messages=None if False else [], response="call (415) 555-0100"),
        ]
    )
    result = redactor.redact_table(table)
    out = result.table
    assert out.schema == table.schema
    msgs = out.column("messages")[0].as_py()
    assert msgs[1]["content"] == "my card is [CREDIT_CARD]"
    assert msgs[0]["role"] == "system" and msgs[2]["tool_calls"][0]["id"] == "call_1"
    assert json.loads(msgs[2]["tool_calls"][0]["function"]["arguments"]) == {
        "email": "[EMAIL]",
        "phone": "[PHONE]",
        "n": 3,
    }
    assert out.column("response").to_pylist() == [
        "Mail sent to [EMAIL]",
        "Your order ORD-2024-118842 ships 2026-11-03.",
        "call [PHONE]",
    ]
    assert json.loads(out.column("metadata")[0].as_py()) == {"ip": "[IP_ADDRESS]"}
    assert json.loads(out.column("extra")[0].as_py())["contact"] == "email=[EMAIL]"
    assert out.column("content_hash").equals(table.column("content_hash"))
    assert result.pii_counts.type == PII_COUNTS
    assert [dict(m) for m in result.pii_counts.to_pylist()] == [
        {"CREDIT_CARD": 1, "EMAIL": 3, "IP_ADDRESS": 1, "PHONE": 1},
        {},
        {"PHONE": 1},
    ]
    assert result.totals == {"CREDIT_CARD": 1, "EMAIL": 3, "IP_ADDRESS": 1, "PHONE": 2}
    assert result.version == redactor.version
    assert redactor.scan_table(table).to_pylist() == [6, 0, 1]
    assert redactor.scan_table(out).to_pylist() == [0, 0, 0]


def test_redact_table_chunked_and_sliced(redactor: Redactor) -> None:
    rows = [_row(i, response=f"r{i} jane{i}@example.com") for i in range(6)]
    table = pa.concat_tables([_interactions(rows[:3]), _interactions(rows[3:])]).slice(1, 4)
    result = redactor.redact_table(table)
    assert result.table.column("response").to_pylist() == [f"r{i} [EMAIL]" for i in range(1, 5)]
    assert [dict(m) for m in result.pii_counts.to_pylist()] == [{"EMAIL": 1}] * 4


def test_identity_columns_not_rewritten_but_scanned(redactor: Redactor) -> None:
    table = _interactions([_row(0, user_id="jane@example.com")])
    assert redactor.redact_table(table).table.column("user_id")[0].as_py() == "jane@example.com"
    assert redactor.scan_table(table).to_pylist() == [1]


def test_placeholders_never_count(redactor: Redactor) -> None:
    text = "[EMAIL] [PHONE] [CREDIT_CARD] postgres://a:[PASSWORD]@h Bearer [SECRET] password=[PASSWORD]"
    assert redactor.scan_text(text) == 0


def test_allow_list_extra_patterns_disabled_types() -> None:
    cfg = RedactionConfig(
        allow_list=["support@shop.example"],
        extra_patterns={"EMPLOYEE_ID": r"EMP-\d{6}"},
        disabled_types=["IP_ADDRESS"],
    )
    r = Redactor(cfg)
    text = "mail support@shop.example or jane@example.com, EMP-123456 from 10.0.0.1"
    assert r.redact_text(text) == (
        "mail support@shop.example or [EMAIL], [EMPLOYEE_ID] from 10.0.0.1",
        {"EMAIL": 1, "EMPLOYEE_ID": 1},
    )
    assert "IP_ADDRESS" not in r.types and "EMPLOYEE_ID" in r.types


def test_version_changes_with_config() -> None:
    base = Redactor().version
    assert base.startswith(RULESET_VERSION + "+")
    assert Redactor(RedactionConfig()).version == base
    variants = {
        Redactor(RedactionConfig(allow_list=["a@b.co"])).version,
        Redactor(RedactionConfig(disabled_types=["MAC_ADDRESS"])).version,
        Redactor(RedactionConfig(extra_patterns={"X_ID": r"X-\d{4}"})).version,
    }
    assert base not in variants and len(variants) == 3


@pytest.mark.parametrize(
    ("cfg", "fragment"),
    [
        ({"disabled_types": ["NOPE"]}, "disabled_types"),
        ({"extra_patterns": {"bad name": "x"}}, "extra_patterns.bad name"),
        ({"extra_patterns": {"LOOKBEHIND": r"(?<=a)b"}}, "RE2"),
        ({"extra_patterns": {"EMPTY": r"x*"}}, "empty"),
    ],
)
def test_bad_config_is_a_typed_error(cfg: dict[str, object], fragment: str) -> None:
    # The Redactor's own guard (config validation may refuse some of these earlier, see below).
    with pytest.raises(RedactionConfigError, match=fragment):
        Redactor(RedactionConfig.model_construct(**cfg))  # type: ignore[arg-type]


def test_pseudonymise_stable_and_keyed() -> None:
    k1, k2 = b"k" * 32, b"j" * 32
    p = pseudonymise("jane@example.com", k1)
    assert p == pseudonymise("jane@example.com", k1)
    assert p != pseudonymise("jane@example.com", k2) != pseudonymise("bob", k1)
    assert p.startswith("u_") and len(p) == 34 and "jane" not in p
    arr = pseudonymise_array(pa.array(["jane@example.com", None, "bob", "jane@example.com"]), k1)
    assert arr.to_pylist() == [p, None, pseudonymise("bob", k1), p]


def test_key_from_env_then_block(tmp_path: object) -> None:
    s = Settings(home=tmp_path, pseudonym_key="e" * 32)  # type: ignore[arg-type]
    assert resolve_pseudonym_key(s, "b" * 32) == b"e" * 32
    s2 = Settings(home=tmp_path, store="s3://bucket/x")  # type: ignore[arg-type]
    assert resolve_pseudonym_key(s2, "b" * 32) == b"b" * 32


def test_key_file_created_once_0600(tmp_path: object) -> None:
    s = Settings(home=tmp_path)  # type: ignore[arg-type]
    key = resolve_pseudonym_key(s)
    path = s.home / "pseudonym.key"
    assert len(key) == 32 and path.read_bytes() == key
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert resolve_pseudonym_key(s) == key
    assert [p.name for p in s.home.iterdir()] == ["pseudonym.key"]


def test_remote_store_without_key_raises(tmp_path: object) -> None:
    s = Settings(home=tmp_path, store="s3://bucket/prefix")  # type: ignore[arg-type]
    with pytest.raises(PseudonymKeyMissing, match="every worker"):
        resolve_pseudonym_key(s)
    assert not (s.home / "pseudonym.key").exists()


def test_no_value_in_error_messages(tmp_path: object) -> None:
    secret = "supersecretkeyvalue-do-not-print"
    with pytest.raises(RedactionConfigError) as exc:
        Redactor(RedactionConfig.model_construct(extra_patterns={"X": r"(?<=" + secret + ")"}))
    assert secret not in str(exc.value)
    # Config validation compiles the pattern by RE2 too (since d2fafc4): same rule for its error.
    with pytest.raises(ValueError) as exc_cfg:
        RedactionConfig(extra_patterns={"X": r"(?<=" + secret + ")"})
    assert secret not in str(exc_cfg.value)
    s = Settings(home=tmp_path, pseudonym_key="short")  # type: ignore[arg-type]
    with pytest.raises(Exception) as exc2:
        resolve_pseudonym_key(s)
    assert "short" not in str(exc2.value).replace("shorter", "")
