"""Property-style guard: two PII values side by side are both redacted, whatever their types.

A value's detection must not depend on what PII stands next to it (a long secret token, a digit
run that merges with the next number, a JSON quote). For every ordered pair of detector rules,
each with a sample value, a handful of joinings are redacted through ``redact_text`` and through
``redact_table``; both values must be gone, both placeholders present, the counts exact, and the
residual scan of the result 0.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter

import pyarrow as pa
import pytest

from ratchet.redaction import Redactor
from ratchet.schemas import INTERACTIONS

# One sample per built-in rule (type, value). Values are chosen valid (checksums pass).
SAMPLES: list[tuple[str, str]] = [
    (
        "PRIVATE_KEY",
        "-----BEGIN PRIVATE KEY-----\nMIIBVgIBADANBgkqhkiG9w0BAQEFAASCAUAwggE8\n-----END PRIVATE KEY-----",
    ),
    ("PASSWORD", "postgres://admin:hunter22@db.internal:5432/shop"),
    ("JWT", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.abcDEF123_-"),
    ("API_KEY", "sk-proj-Abc123XyZAbc123XyZAbc123XyZAbc123XyZAbc123XyZ"),
    ("API_KEY", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
    ("API_KEY", "xoxb-1234567890-abcdefghij"),
    ("AWS_KEY", "AKIAIOSFODNN7EXAMPLE"),
    ("SECRET", "Bearer abcdefghijklmnopqrstuvwxyz0123"),
    ("PASSWORD", "password=Hunter2Hunter2"),
    ("SECRET", "api_key=ab12cd34ef56gh78"),
    ("EMAIL", "jane.doe@example.com"),
    ("IBAN", "GB82 WEST 1234 5698 7654 32"),
    ("IBAN", "DE89370400440532013000"),
    ("CREDIT_CARD", "4111 1111 1111 1111"),
    ("CREDIT_CARD", "5500000000000004"),
    ("US_SSN", "536-22-1234"),
    ("CRYPTO_WALLET", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"),
    ("CRYPTO_WALLET", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"),
    ("CRYPTO_WALLET", "0x52908400098527886E0F7030069857D2E4169EE7"),
    ("MAC_ADDRESS", "00:1A:2B:3C:4D:5E"),
    ("IP_ADDRESS", "2a00:1450::8a2e:370:7334"),
    ("IP_ADDRESS", "192.168.1.20"),
    ("PHONE", "+44 20 7946 0958"),
    ("PHONE", "(415) 555-0100"),
    ("PHONE", "020 7946 0958"),
]
# The part of a sample that is replaced, when it is not the whole sample.
REPLACED = {
    "postgres://admin:hunter22@db.internal:5432/shop": (
        "hunter22",
        "postgres://admin:[PASSWORD]@db.internal:5432/shop",
    ),
    "Bearer abcdefghijklmnopqrstuvwxyz0123": ("abcdefghijklmnopqrstuvwxyz0123", "Bearer [SECRET]"),
    "password=Hunter2Hunter2": ("Hunter2Hunter2", "password=[PASSWORD]"),
    "api_key=ab12cd34ef56gh78": ("ab12cd34ef56gh78", "api_key=[SECRET]"),
}
JOINS = ["{a} {b}", "{a}, {b}", "{b} {a}", "{a}\n{b}", "x {a} y {b} z"]
PAIRS = list(itertools.product(range(len(SAMPLES)), repeat=2))


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor()


def _expected(text: str) -> str:
    for value, (_, replaced) in REPLACED.items():
        text = text.replace(value, replaced)
    for type_, value in SAMPLES:
        if value not in REPLACED:
            text = text.replace(value, f"[{type_}]")
    return text


def _secret_part(value: str) -> str:
    return REPLACED[value][0] if value in REPLACED else value


def _cases() -> list[tuple[str, str, Counter[str]]]:
    cases = []
    for i, j in PAIRS:
        (ta, a), (tb, b) = SAMPLES[i], SAMPLES[j]
        for join in JOINS:
            text = join.format(a=a, b=b)
            cases.append((text, _expected(text), Counter({ta: 1}) + Counter({tb: 1})))
    return cases


CASES = _cases()


def test_every_pair_every_join_redact_text(redactor: Redactor) -> None:
    failures = []
    for text, expected, counts in CASES:
        out, got = redactor.redact_text(text)
        if out != expected or Counter(got) != counts or redactor.scan_text(out) != 0:
            failures.append((text, out, got))
    assert not failures, f"{len(failures)} of {len(CASES)} failed, e.g. {failures[:5]}"


def test_every_pair_in_a_messages_column(redactor: Redactor) -> None:
    rows = []
    for k, (text, _, _) in enumerate(CASES):
        rows.append(
            {
                "agent_id": "a",
                "interaction_id": f"i{k}",
                "timestamp": 0,
                "messages": [
                    {"role": "system", "content": "Be helpful."},
                    {"role": "user", "content": text},
                ],
                "response": "ok",
            }
        )
    table = pa.Table.from_pylist(rows, schema=INTERACTIONS)
    result = redactor.redact_table(table)
    contents = [m[1]["content"] for m in result.table.column("messages").to_pylist()]
    counts = result.pii_counts.to_pylist()
    failures = []
    for k, (text, expected, want) in enumerate(CASES):
        if contents[k] != expected or Counter(dict(counts[k])) != want:
            failures.append((text, contents[k], counts[k]))
    assert not failures, f"{len(failures)} of {len(CASES)} failed, e.g. {failures[:5]}"
    assert sum(redactor.scan_table(result.table).to_pylist()) == 0
    # The scan counts exactly what the redaction replaced.
    scanned = redactor.scan_table(table).to_pylist()
    assert scanned == [sum(want.values()) for _, _, want in CASES]


@pytest.mark.parametrize(
    "wrap",
    ["({v})", "{v}.", "{v};", "'{v}'", '"{v}"', "<{v}>", "[{v}]", "{v}!", "={v}", "\\n{v}\\n"],
)
def test_values_next_to_punctuation(redactor: Redactor, wrap: str) -> None:
    failures = []
    for type_, value in SAMPLES:
        if value in REPLACED or "\n" in value:
            continue
        text = "see " + wrap.format(v=value) + " ok"
        out, got = redactor.redact_text(text)
        if _secret_part(value) in out or got != {type_: 1}:
            failures.append((text, out, got))
    assert not failures, failures


def test_pairs_inside_json_tool_arguments(redactor: Redactor) -> None:
    failures = []
    for i, j in PAIRS:
        (ta, a), (tb, b) = SAMPLES[i], SAMPLES[j]
        for args in (
            json.dumps({"first": a, "second": b}),
            json.dumps({"note": f"{a} {b}"}),
            json.dumps({"note": f"{a}\n{b}"}),
        ):
            out, got = redactor.redact_text(args)
            gone = _secret_part(a) not in out and _secret_part(b) not in out
            if not gone or Counter(got) != Counter({ta: 1}) + Counter({tb: 1}):
                failures.append((args, out, got))
            elif redactor.scan_text(out) != 0:
                failures.append((args, out, "residual"))
    assert not failures, f"{len(failures)} failed, e.g. {failures[:5]}"
