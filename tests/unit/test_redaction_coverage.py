"""Redaction coverage classes of issue 8, one test per class: IPv6 in every RFC 4291/5952 text
form, IPv4 inside a longer dotted run, IBANs in any grouping, phones without separators / with a
country code and dashes / glued to a word / with extensions, SSNs with dots or spaces, 15-digit
cards of every network incl. UATP, internationalised and punycode e-mail addresses."""

from __future__ import annotations

import pyarrow as pa
import pytest

from ratchet.redaction import Redactor


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor()


def _check(redactor: Redactor, text: str, expected: str) -> None:
    out, counts = redactor.redact_text(text)
    assert out == expected
    assert sum(counts.values()) == expected.count("[") - expected.count("[[")
    col, _ = redactor.redact_array(pa.array([text], pa.string()))
    assert col.to_pylist() == [expected]


IPV6 = [
    ("fe80::1", "[IP_ADDRESS]"),
    ("2a00:1450:4001:81b::200e", "[IP_ADDRESS]"),
    ("2a03:2880:f10c:83:face:b00c:0:25de", "[IP_ADDRESS]"),
    ("2A03:2880:F10C:0083:FACE:B00C:0000:25DE", "[IP_ADDRESS]"),  # uncompressed, upper case
    ("::ffff:81.2.69.142", "[IP_ADDRESS]"),  # embedded IPv4
    ("64:ff9b::81.2.69.142", "[IP_ADDRESS]"),
    ("fe80::1%eth0", "[IP_ADDRESS]"),  # zone id
    ("fe80::a00:27ff:fe4e:66a1%en0", "[IP_ADDRESS]"),
    ("2a00:1450:4001:81b::/64", "[IP_ADDRESS]/64"),  # CIDR prefix
    ("2606:4700:4700::1111/32", "[IP_ADDRESS]/32"),
    ("[2a00:1450::1]:443", "[[IP_ADDRESS]]:443"),
]


@pytest.mark.parametrize(("value", "expected"), IPV6)
def test_ipv6_text_forms(redactor: Redactor, value: str, expected: str) -> None:
    _check(redactor, f"Traffic from {value} was dropped.", f"Traffic from {expected} was dropped.")
    # at the end of a sentence
    _check(redactor, f"It came from {value}.", f"It came from {expected}.")


def test_ipv6_compressed_loopback_and_unspecified_when_strict() -> None:
    from ratchet.config import RedactionConfig

    strict = Redactor(RedactionConfig(keep_reserved_ips=False))
    assert (
        strict.redact_text("bind ::1 and ::ffff:0.0.0.0.")[0]
        == "bind [IP_ADDRESS] and [IP_ADDRESS]."
    )
    # "::" alone is code far more often than an address (Haskell, C++, Ruby)
    assert strict.redact_text("x :: Int")[0] == "x :: Int"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "IP 81.2.69.142.52314 > 93.184.216.34.443: Flags S",
            "IP [IP_ADDRESS].52314 > [IP_ADDRESS].443: Flags S",
        ),
        ("from 10.1.2.3.22 to", "from [IP_ADDRESS].22 to"),
    ],
)
def test_ipv4_inside_a_longer_dotted_run(redactor: Redactor, text: str, expected: str) -> None:
    _check(redactor, text, expected)


@pytest.mark.parametrize(
    "value",
    [
        "DE89-3704-0044-0532-0130-00",
        "DE89 37040044 0532013000",
        "DE89 370 400 440 532 013 000",
        "GB82 WEST 123456 98765432",
        "GB82-WEST-1234-5698-7654-32",
        "FR14 2004 1010 0505 0001 3M02 606",
        "NL91ABNA0417164300",
    ],
)
def test_iban_any_grouping(redactor: Redactor, value: str) -> None:
    _check(redactor, f"wire to {value} today", "wire to [IBAN] today")


def test_iban_check_digits_still_verified(redactor: Redactor) -> None:
    text = "wire to DE89-3704-0044-0532-0130-01 today"
    assert redactor.redact_text(text) == (text, {})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("my mobile is 13812345678, thanks", "my mobile is [PHONE], thanks"),
        ("WhatsApp 9876543210 anytime", "WhatsApp [PHONE] anytime"),
        ("WhatsApp 98765 43210 anytime", "WhatsApp [PHONE] anytime"),
        ("reach me on +91-98765-43210 today", "reach me on [PHONE] today"),
        ("reach me on +86-138-1234-5678 today", "reach me on [PHONE] today"),
        ("reach me on +1-212-555-0123 today", "reach me on [PHONE] today"),
        ("call me at+1 212 555 0123 tomorrow", "call me at[PHONE] tomorrow"),
        ("call me at+44 20 7946 0958.", "call me at[PHONE]."),
        ("office (415) 555-0100 x1234, thanks", "office [PHONE], thanks"),
        ("desk +44 20 7946 0958 ext. 12 after lunch", "desk [PHONE] after lunch"),
        ("desk 020 7946 0958 ext 5 or 415-555-0100x99", "desk [PHONE] or [PHONE]"),
    ],
)
def test_phone_national_glued_and_extensions(redactor: Redactor, text: str, expected: str) -> None:
    _check(redactor, text, expected)


@pytest.mark.parametrize("value", ["123.45.6789", "123 45 6789", "536-22-1234"])
def test_ssn_with_dots_or_spaces(redactor: Redactor, value: str) -> None:
    _check(redactor, f"SSN {value} on file", "SSN [US_SSN] on file")


@pytest.mark.parametrize(
    "value",
    [
        "122000000000003",  # UATP
        "1220 0000 0000 003",
        "378282246310005",  # Amex
        "3782 822463 10005",
        "401288888888886",  # Visa prefix, 15 digits, Luhn-valid
        "555555555555558",  # Mastercard prefix
        "601100000000001",  # Discover prefix
        "353011133330001",  # JCB prefix
        "305693090259049",  # Diners
        "620000000000000",  # UnionPay prefix
    ],
)
def test_fifteen_digit_cards_of_every_network(redactor: Redactor, value: str) -> None:
    _check(redactor, f"card {value} charged", "card [CREDIT_CARD] charged")


def test_fifteen_digit_non_luhn_or_unknown_prefix_stays(redactor: Redactor) -> None:
    for text in ("card 122000000000004 x", "id 900000000000002 x"):
        assert redactor.redact_text(text) == (text, {})


@pytest.mark.parametrize(
    "value",
    [
        "jörg@müller.de",
        "info@xn--mller-kva.de",
        "admin@xn--80ak6aa92e.xn--p1ai",
        "用户@例子.广告",
        "иван@пример.рф",
        "user@example.xn--p1ai",
    ],
)
def test_international_and_punycode_email(redactor: Redactor, value: str) -> None:
    _check(redactor, f"write to {value} now", "write to [EMAIL] now")
