"""Recall through escapes (issue 15): every detector finds its value when the text carries
Markdown backslash escapes, HTML numeric (decimal, hex) or named character references, JSON
``\\uXXXX`` escapes or URL ``%XX`` escapes, and the placeholder replaces the whole escaped span.

One test per (escape kind, type). A Markdown escape only exists before punctuation, so the types
whose sample values have none (an AWS key id, a base58 wallet) have no Markdown case."""

from __future__ import annotations

import pyarrow as pa
import pytest

from ratchet.redaction import Redactor
from ratchet.redaction.escapes import decode, to_original

# (type, text before the value that stays, the value). The kept prefix is escaped too.
SAMPLES = [
    ("EMAIL", "", "first_last@provider.com"),
    ("PHONE", "", "+44 20 7946-0958"),
    ("CREDIT_CARD", "", "4111-1111-1111-1111"),
    ("IBAN", "", "DE89-3704-0044-0532-0130-00"),
    ("US_SSN", "", "123-45-6789"),
    ("IP_ADDRESS", "", "81.2.69.142"),
    ("IP_ADDRESS", "", "2a00:1450::8a2e:370:7334"),
    ("MAC_ADDRESS", "", "00:1A:2B:3C:4D:5E"),
    ("CRYPTO_WALLET", "", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"),
    ("CRYPTO_WALLET", "", "0x52908400098527886E0F7030069857D2E4169EE7"),
    ("API_KEY", "", "sk-proj-abcdefghijklmnopqrstuvwx1234"),
    ("API_KEY", "", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
    ("AWS_KEY", "", "AKIAIOSFODNN7EXAMPLE"),
    (
        "JWT",
        "",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ),
    ("PASSWORD", "password=", "Hunter2-Hunter2"),
    ("SECRET", "api_key=", "ab12cd34-ef56gh78"),
    ("SECRET", "Bearer ", "abcdefghijklmnop.qrstuvwxyz0123"),
]
_MD = "_.-+*#!"
_NAMED = {
    "@": "&commat;",
    ".": "&period;",
    "_": "&lowbar;",
    "+": "&plus;",
    ":": "&colon;",
    "=": "&equals;",
    "-": "&#45;",
    "/": "&sol;",
}
_PUNCT = "@.-+:_="


def _per_char(s: str, fn, fallback: bool) -> str | None:  # type: ignore[no-untyped-def]
    hit = [i for i, ch in enumerate(s) if ch in _PUNCT]
    if not hit:
        if not fallback:
            return None
        hit = [0]
    return "".join(fn(ch) if i in hit else ch for i, ch in enumerate(s))


ESCAPES = {
    "markdown": lambda s: (
        "".join("\\" + ch if ch in _MD else ch for ch in s) if any(ch in _MD for ch in s) else None
    ),
    "html_decimal": lambda s: _per_char(s, lambda ch: f"&#{ord(ch)};", True),
    "html_hex": lambda s: _per_char(s, lambda ch: f"&#x{ord(ch):X};", True),
    "html_named": lambda s: _per_char(s, lambda ch: _NAMED.get(ch, ch), False),
    "json_unicode": lambda s: _per_char(s, lambda ch: f"\\u{ord(ch):04x}", True),
    "url": lambda s: _per_char(s, lambda ch: f"%{ord(ch):02X}", True),
}

CASES = []
for kind, esc in ESCAPES.items():
    for type_, prefix, value in SAMPLES:
        escaped = esc(prefix + value)
        if escaped is None or escaped == prefix + value:
            continue
        kept = esc(prefix) if prefix and esc(prefix) else prefix
        if not escaped.startswith(kept):
            kept = prefix
        CASES.append(pytest.param(kind, type_, escaped, kept, id=f"{kind}-{type_}-{value[:10]}"))


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor()


@pytest.mark.parametrize(("kind", "type_", "escaped", "kept"), CASES)
def test_escaped_value_is_found_whole(
    redactor: Redactor, kind: str, type_: str, escaped: str, kept: str
) -> None:
    out, counts = redactor.redact_text(f"Hello, it is {escaped} thanks.")
    assert out == f"Hello, it is {kept}[{type_}] thanks."
    assert counts == {type_: 1}


@pytest.mark.parametrize("kind", sorted(ESCAPES))
def test_escaped_values_found_in_columns_and_by_the_scan(redactor: Redactor, kind: str) -> None:
    texts = [f"x {c.values[2]} y" for c in CASES if c.values[0] == kind] + ["nothing here"]
    out, counts = redactor.redact_array(pa.array(texts, pa.string()))
    assert sum(sum(c.values()) for c in counts.values()) == len(texts) - 1
    assert sum(redactor.scan_array(pa.array(texts, pa.string())).values()) == len(texts) - 1
    assert redactor.scan_array(out) == {}


def test_issue_15_markdown_email_leak(redactor: Redactor) -> None:
    text = "Contact John Smith at first\\_last@provider.com"
    assert redactor.redact_text(text) == ("Contact John Smith at [EMAIL]", {"EMAIL": 1})


def test_decode_maps_back_to_whole_escapes() -> None:
    text = "a&#64;b\\_c%40d&amp;e"
    decoded, src = decode(text)
    assert decoded == "a@b_c@d&e"
    assert to_original(src, 1, 2) == (1, 6)  # "&#64;"
    assert text[slice(*to_original(src, 0, len(decoded)))] == text
    assert decode("plain text, \\n and \\\\_ stay") == ("plain text, \\n and \\\\_ stay", [])


def test_unknown_entities_and_bad_references_are_left_alone(redactor: Redactor) -> None:
    text = "&notanentity; &#0; &#xD800; \\u12 %zz 100% done"
    assert redactor.redact_text(text) == (text, {})


# --- property: any mix of escapes over a value's punctuation hides nothing ----------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_KIND_FNS = [
    lambda ch: "\\" + ch if ch in _MD else ch,
    lambda ch: f"&#{ord(ch)};",
    lambda ch: f"&#x{ord(ch):x};",
    lambda ch: _NAMED.get(ch, ch),
    lambda ch: f"\\u{ord(ch):04X}",
    lambda ch: f"%{ord(ch):02x}",
]


@st.composite
def _escaped_sample(draw: st.DrawFn) -> tuple[str, str, str]:
    type_, prefix, value = draw(st.sampled_from(SAMPLES))
    raw = prefix + value
    out = "".join(
        draw(st.sampled_from(_KIND_FNS))(ch) if ch in _PUNCT and draw(st.booleans()) else ch
        for ch in raw
    )
    return type_, value, out


@settings(max_examples=150, deadline=None)
@given(
    _escaped_sample(),
    st.sampled_from(["", "Hi ", "see: ", "(", "<b>"]),
    st.sampled_from(["", ".", " ok", ")", "</b>"]),
)
def test_property_mixed_escapes_hide_no_value(
    sample: tuple[str, str, str], before: str, after: str
) -> None:
    type_, value, escaped = sample
    out, counts = _REDACTOR.redact_text(before + escaped + after)
    assert counts.get(type_, 0) >= 1
    core = [part for part in __import__("re").split(r"[^A-Za-z0-9]+", value) if len(part) >= 5]
    assert not any(part in out for part in core), out


_REDACTOR = Redactor()
