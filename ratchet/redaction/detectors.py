"""The built-in detectors: one entry per rule, in priority order, and the documented type list.

Each detector carries three regexes, because the engine works in three passes of falling cost:

* ``shape`` (RE2, run by pyarrow over the whole column): a tight approximation of the rule, so
  that only rows that could hold this PII go further. Order ids, prices and dates must not
  match it, or every shop-talk row becomes a candidate and the speed is gone.
* ``marker`` (RE2, run by pyarrow on candidate rows only): a loose, *maximal* token that contains
  every match of the rule whole (a digit run, a hex-and-colon run, an e-mail-like token). The
  engine cuts candidate rows into these pieces with sentinels, so Python never scans whole rows.
* ``pattern`` (Python ``re``): the precise rule, run only inside marker pieces, with
  look-behind/look-ahead boundaries that see the real text around the piece (RE2 has no
  look-around). A named group ``v`` is the value replaced; without it the whole match is.

``validate`` (checksums, ranges) gets the value and returns how much of it to redact (0: leave
it). ``validate_at`` does the same with the value's text around it (the assignment rules ask
whether the value was quoted); it may look one character before the value, no further. Rule
names (``Detector.rule``) are what errors and logs may show; values never.

Placeholder types (``[TYPE]``), the documented list:

======================  ===========================================================================
``EMAIL``               addresses, also URL-encoded (``jane%40example.com``), with internationalised
                        (``jörg@müller.de``, ``用户@例子.广告``) or punycode (``xn--…``) domains and TLDs
``PHONE``               international (``+44 20 7946 0958``, ``+91-98765-43210``, ``%2B44…``, also glued
                        to a word: ``at+1 212 555 0123``), national with trunk 0 (``020 7946 0958``),
                        North American (``(415) 555-0100``), compact mobiles (11-digit Chinese
                        ``1[3-9]…``, 10-digit Indian ``[6-9]…``); an extension (``x1234``, ``ext. 12``)
                        is part of the value. Never a date or time (``03/03/2023 19:56``)
``CREDIT_CARD``         12-19 digits, known issuer prefix/length, Luhn; space or dash separators; any
                        15-digit Luhn-valid number with a network's prefix, UATP (``1…``) included
``IBAN``                registered country length + mod-97; compact, or spaces/dashes in any grouping
``US_SSN``              ``123-45-6789`` / ``123 45 6789`` / ``123.45.6789``; area 000/666/9xx, group 00,
                        serial 0000 rejected
``IP_ADDRESS``          IPv4 (octets 0-255; also the address of tcpdump's ``a.b.c.d.port``) and IPv6 in
                        every RFC 4291/5952 form (``fe80::1%eth0``, ``::ffff:1.2.3.4``; a ``/64`` suffix
                        stays). Loopback, unspecified, documentation (RFC 5737/3849) and 240/4 addresses
                        are kept unless ``redaction.keep_reserved_ips`` is false
``MAC_ADDRESS``         ``00:1A:2B:3C:4D:5E``, ``00-1a-…``, ``001a.2b3c.4d5e``
``CRYPTO_WALLET``       BTC base58check (``1…``/``3…``), bech32/bech32m (``bc1…``), ETH ``0x`` + 40 hex
``PRIVATE_KEY``         PEM private-key blocks (also truncated ones, and inside JSON strings)
``API_KEY``             OpenAI ``sk-``/``sk-proj-``, Anthropic ``sk-ant-``, GitHub ``ghp_``/``gho_``/
                        ``ghu_``/``ghs_``/``ghr_``/``github_pat_``, Slack ``xox[abposr]-``
``AWS_KEY``             AWS access key ids (``AKIA``, ``ASIA``, … + 16)
``JWT``                 ``eyJ….eyJ….sig``
``PASSWORD``            the password of ``scheme://user:pass@host`` (user may be empty) and the
                        *literal* of ``password=…``/``DB_PASSWORD: …``/``"pwd": "…"``/SQL
                        ``PASSWORD '…'`` (see :mod:`ratchet.redaction.literals`: code, references,
                        templates and placeholders after the key are kept)
``SECRET``              ``Bearer <token>`` and the literal of ``secret=``/``token:``/``api_key :=``/
                        ``clientSecret = …``-style assignments (same rules as ``PASSWORD``)
======================  ===========================================================================

Every rule also sees through escapes (Markdown ``\\_``, HTML ``&#64;``/``&commat;``, JSON
``\\u0040``, URL ``%40``): the engine runs the rules over a decoded view as well
(:mod:`ratchet.redaction.escapes`) and the placeholder covers the whole escaped value.

Not PII and left alone by design: order ids, SKUs, prices, dates, times, tracking numbers, UUIDs,
hex digests, version strings written ``v1.2.3.4`` (a bare ``1.2.3.4`` is a valid IPv4 address and
is redacted). Known cost of the compact-mobile rule: a free-standing 10-digit number starting
6-9 or an 11-digit one starting 13-19 (an order number) is replaced as a phone.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from ratchet.redaction import checksums, literals

# Every placeholder the engine writes matches this; a detector hit equal to one is ignored, so the
# residual scan never counts the engine's own output.
PLACEHOLDER_RE = re.compile(r"\[[A-Z][A-Z0-9_]*\]")


def _lb(blocked: str) -> str:
    """A left boundary: not preceded by one of ``blocked`` (a char-class body), except that a JSON
    escape (``\\n``, ``\\t``, ``\\r``) before the value counts as a boundary, so values inside
    JSON-encoded strings are found as they are in plain text."""
    return rf"(?:(?<=\\[nrt])|(?<![{blocked}\\]))"


LB_WORD = _lb(r"\w")
LB_TOKEN = _lb(r"\w\-")
LB_IPV4 = _lb(r"\w.")
LB_AWS = _lb("A-Z0-9")
LB_EMAIL = _lb(r"\w.%+\-")
LB_MAC = _lb(r"\w:\-.")
LB_IPV6 = _lb(r"\w:")
# A keyword's left boundary (``\b`` that also accepts a JSON escape such as ``\n`` before it).
KW_B = r"(?:(?<=\\[nrt])|\b)"
# Digits: not glued to a word, an amount or a path, and not the middle of a longer digit run
# ("9400 1000 0000 …" is a tracking number, not a phone or card that starts at "0000").
LB_DIGIT = _lb(r"\w@$%&+./,\-") + r"(?:(?=[+(%])|(?<!\d[ .\-:]))"
# Right boundary for digits: a trailing extension ("x123") is allowed, more digits are not.
RB_DIGIT = r"(?![0-9A-Za-wyz_@]|x(?!\d)|[.,\-/:]\d)"
_SEP = r"(?:[ .\-]|%20)"
_B = r"(?:\b|\\[nrt])"  # RE2 stand-in for the left boundary

Validator = Callable[[str], int]
# A validator that sees the value in its text (``text, start, end``): the assignment rules ask
# whether the value was quoted.
ContextValidator = Callable[[str, int, int], int]


@dataclass(frozen=True)
class Detector:
    """One rule. ``type`` is the placeholder; ``rule`` names it in errors, logs and tests."""

    type: str
    rule: str
    pattern: str
    shape: str
    marker: str
    validate: Validator | None = None
    # Cheap gates on a marker piece before the regex runs (most pieces are prices and dates):
    # the piece must be at least ``min_len`` long and, lowercased, contain one of ``needles``.
    min_len: int = 1
    needles: tuple[str, ...] = ()
    # The rule's right boundary (a look-ahead, seen against the real text). When the greedy match
    # fails its validator, the engine retries the same start cut at each earlier group end where
    # this boundary holds: "+44 20 7946 0958 536-22-1234" is a phone, then an SSN, not one
    # 21-digit non-phone.
    right: str | None = None
    validate_at: ContextValidator | None = None

    def compiled(self) -> re.Pattern[str]:
        return re.compile(self.pattern)


def _whole(ok: Callable[[str], bool]) -> Validator:
    return lambda value: len(value) if ok(value) else 0


_DATE_LIKE = re.compile(r"^\d{1,4}[./\-]\d{1,2}[./\-]\d{1,4}$")
# A date anywhere in a phone candidate (``03/03/2023 19``, ``2023-03-03 1956``): not a phone.
_HAS_DATE = re.compile(
    r"(?<!\d)(?:\d{1,2}([./\-])\d{1,2}\1(?:\d{4}|\d{2})|\d{4}([./\-])\d{1,2}\2\d{1,2})(?!\d)"
)
# An extension written after the number ("x1234", "ext. 12"): part of the value, not its digits.
EXT = r"(?:[ \t]?(?i:x|ext\.?|extn\.?|extension)[ \t]?\d{1,6})"
_EXT_TAIL = re.compile(EXT + "$")


def _number_part(value: str) -> str:
    if value[-1:].isdigit() and ("x" in value or "X" in value or "t" in value or "T" in value):
        return _EXT_TAIL.sub("", value)
    return value


def _phone_digits(lo: int, hi: int) -> Validator:
    def check(value: str) -> int:
        number = _number_part(value)
        digits = checksums.only_digits(number.replace("%2B", "+"))
        if not lo <= len(digits) <= hi or _DATE_LIKE.match(number):
            return 0
        if ("/" in number or "." in number or "-" in number) and _HAS_DATE.search(number):
            return 0
        return len(value)

    return check


def _national_ok(value: str) -> int:
    number = _number_part(value)
    digits = checksums.only_digits(number)
    if digits.startswith("00") or not 9 <= len(digits) <= 12 or _DATE_LIKE.match(number):
        return 0
    if ("/" in number or "." in number or "-" in number) and _HAS_DATE.search(number):
        return 0
    return len(value)


def _nanp_ok(value: str) -> int:
    digits = checksums.only_digits(_number_part(value))
    if len(digits) == 11 and digits[0] == "1":
        digits = digits[1:]
    elif len(digits) == 13 and digits.startswith("001"):
        digits = digits[3:]
    if len(digits) != 10 or digits[0] in "01" or digits[3] in "01":
        return 0
    return len(value)


def _assignment_ok(text: str, start: int, end: int) -> int:
    """A value after a secret-named key: a quoted literal or a secret-shaped bare token only."""
    value = text[start:end]
    # Backticks quote commands (shell) and templates (JS), not literals: judged as bare tokens.
    quoted = start > 0 and text[start - 1] in "\"'"
    if quoted:
        return end - start if literals.quoted_secret(value) else 0
    return literals.bare_secret_len(value)


# Loopback, unspecified, documentation (RFC 5737, RFC 3849) and IPv4 "reserved" (240/4, which
# holds the netmasks 255.x.x.x): kept by default (``redaction.keep_reserved_ips``).
_DOC_NETS = tuple(
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)


def reserved_ip(value: str) -> bool:
    """Whether an address (IPv4, IPv6, with or without ``%zone``) is one nobody owns."""
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback or ip.is_unspecified:
        return True
    if isinstance(ip, ipaddress.IPv4Address) and ip.is_reserved:
        return True
    return any(ip in net for net in _DOC_NETS)


def _ip_validator(ok: Callable[[str], bool], keep_reserved: bool) -> Validator:
    def check(value: str) -> int:
        if not ok(value) or (keep_reserved and reserved_ip(value)):
            return 0
        return len(value)

    return check


# --- loose markers (shared); order in the combined marker matters: RE2 takes the first
# alternative that matches at the leftmost position, so the wider tokens come first.
# Non-ASCII letters (internationalised addresses) in a syntax both RE2 and Python read.
_U = r"[^\x00-\x7f]"
M_EMAIL = (
    rf"(?:[A-Za-z0-9._%+\-]|{_U})+(?:@|%40)(?:[A-Za-z0-9\-]|{_U})+(?:\.(?:[A-Za-z0-9\-]|{_U})+)+"
)
M_IBAN = r"[A-Z]{2}\d{2}(?:[ \-]?[A-Z0-9]){11,30}"
M_HEXCOLON = (
    r"[0-9A-Fa-f]{0,4}(?:::?[0-9A-Fa-f]{1,4}){2,7}(?:::)?|[0-9A-Fa-f]{1,4}::[0-9A-Fa-f]{1,4}"
    r"|::[0-9A-Fa-f]{1,4}"
)
M_MACDOT = r"[0-9A-Fa-f]{2}(?:-[0-9A-Fa-f]{2}){5}|[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}"
# At least 8 digits: every phone, card and SSN has that many, most prices and ids do not.
M_DIGITS = rf"(?:\+|%2B|00)?\(?\d(?:\)?(?:[ .\-/]|%20)?\(?\d){{7,}}\)?{EXT}?"
M_IPV4 = r"\d{1,3}(?:\.\d{1,3}){3}"
M_CRYPTO = r"[13][1-9A-HJ-NP-Za-km-z]{25,34}|(?:bc|BC)1[0-9A-Za-z]{8,87}|0x[0-9a-fA-F]{40}"

_MARKER_RANKS = {
    M_CRYPTO: 1,
    M_HEXCOLON + "|" + M_MACDOT: 2,
    M_HEXCOLON: 3,
    M_IPV4: 4,
    M_DIGITS: 5,
}


def marker_rank(marker: str) -> int:
    """Sort key of a marker in the combined alternation: specific tokens (secrets, e-mail, IBAN,
    operator patterns) first, then wallets, then hex-and-colon runs, digit runs last."""
    return _MARKER_RANKS.get(marker, 0)


_PW_WORDS = r"password|passwd|pwd|passphrase"
# Key names the rule looks for, not secrets.
_SECRET_WORDS = (
    r"client_secret|secret_key|secret|api_key|apikey|access_token|auth_token|refresh_token"  # noqa: S105
    r"|aws_secret_access_key|token"
)
# The key: the word on a word boundary, after ``_`` (``DB_PASSWORD``, ``stripe_secret_key``) or
# at a camelCase hump (``dbPassword``, ``clientSecret``); a JSON escape before it counts too.
_KV_KEY_B = r"(?:(?<=\\[nrt])|\b|(?<=_)|(?<=[a-z0-9])(?=[A-Z]))"
# After the key, on the same line: ``=``, ``:=``, ``=>``, ``:`` (possibly after the key's closing
# quote, as in JSON and PHP arrays), or whitespace before a quote (SQL ``PASSWORD 'x'``). Then
# a quoted literal (the quote kind must close it) or a bare token; :func:`_assignment_ok`
# decides which of those are values (see :mod:`ratchet.redaction.literals`).
_KV_SEP = r"""(?:(?:\\?["'])?[ \t]*(?::=|=>|=|:)[ \t]*|[ \t]+(?=\\?["']))"""
_KV_VALUE = (
    r"""(?P<q>\\?["'`])?(?P<v>(?(q)[^\s"'`\\]+|[^\s"'`&;,<>\\]+))"""
    r"""(?(q)(?=(?P=q))|(?=[\s"'`&;,<>\\]|$))"""
)
_KV_SEP_RE2 = r"""(?:\\?["'])?(?:[ \t]*(?::=|=>|=|:)[ \t]*|[ \t]+\\?["'])(?:\\?["'`])?"""


def _kv(type_: str, rule: str, words: str, needles: tuple[str, ...]) -> Detector:
    return Detector(
        type=type_,
        rule=rule,
        pattern=rf"{_KV_KEY_B}(?i:{words}){_KV_SEP}{_KV_VALUE}",
        shape=rf"(?i:{words}){_KV_SEP_RE2}[^\s\\]{{4}}",
        marker=rf"(?i:{words}){_KV_SEP_RE2}[^\s\\]+",
        min_len=7,
        needles=needles,
        validate_at=_assignment_ok,
    )


_PEM = (
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----"
    r"(?:[\s\S]*?-----END [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----|(?:[A-Za-z0-9+/=\s]|\\[nr])*)"
)
# The user may be empty (``redis://:pass@host``).
_URL_CRED = r"""[A-Za-z][A-Za-z0-9+.\-]{1,20}://[^\s:/@"'\\]{0,256}:(?P<v>[^\s@/"'\\]{1,256})@"""
# Unbounded on purpose: RE2 expands a counted repetition into that many states, and ``{1,256}``
# made the DFA thrash on every hex id (ids, pseudonyms: 10x slower scans). A superset of the rule.
_URL_CRED_RE2 = r"""[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@"'\\]*:[^\s@/"'\\]+@"""
_SK = r"sk-(?:ant-|proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}"
_GH = r"(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})"
_SLACK = r"xox[abposr]-[A-Za-z0-9\-]{10,}"
_AWS = r"(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z0-9]{16}"
_JWT = r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*"
_BEARER_RE2 = r"(?i:bearer)\s+[A-Za-z0-9._~+/\-]{16,}"


BUILTIN_DETECTORS: tuple[Detector, ...] = (
    # Secrets first: they are the most specific and may contain e-mail- or digit-like parts.
    Detector(
        "PRIVATE_KEY",
        "pem_private_key",
        _PEM,
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY",
        _PEM,
        min_len=20,
        needles=("-----begin",),
    ),
    Detector(
        "PASSWORD",
        "url_credentials",
        _URL_CRED,
        _URL_CRED_RE2,
        _URL_CRED_RE2,
        min_len=8,
        needles=("://",),
    ),
    Detector("JWT", "jwt", rf"{LB_TOKEN}(?P<v>{_JWT})", _JWT, _JWT, min_len=24, needles=("eyj",)),
    Detector(
        "API_KEY",
        "openai_anthropic_key",
        rf"{LB_TOKEN}(?P<v>{_SK})",
        _SK,
        _SK,
        min_len=23,
        needles=("sk-",),
    ),
    Detector(
        "API_KEY",
        "github_token",
        rf"{LB_WORD}(?P<v>{_GH})(?!\w)",
        _GH,
        _GH,
        min_len=34,
        needles=("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    ),
    Detector(
        "API_KEY",
        "slack_token",
        rf"{LB_WORD}(?P<v>{_SLACK})",
        _SLACK,
        _SLACK,
        min_len=15,
        needles=("xox",),
    ),
    Detector(
        "AWS_KEY",
        "aws_access_key_id",
        rf"{LB_AWS}(?P<v>{_AWS})(?![A-Z0-9])",
        _AWS,
        _AWS,
        min_len=20,
    ),
    Detector(
        "SECRET",
        "bearer_token",
        rf"(?i:{KW_B}bearer)\s+(?P<v>[A-Za-z0-9._~+/\-]{{16,}}=*)",
        _BEARER_RE2,
        _BEARER_RE2,
        min_len=22,
        needles=("bearer",),
    ),
    _kv("PASSWORD", "password_assignment", _PW_WORDS, ("pass", "pwd")),
    _kv("SECRET", "secret_assignment", _SECRET_WORDS, ("secret", "key", "token")),
    Detector(
        "EMAIL",
        "email",
        # Unicode letters (``jörg@müller.de``, ``用户@例子.广告``) and punycode labels and TLDs
        # (``xn--p1ai``) included.
        rf"{LB_EMAIL}(?P<v>[\w.%+\-]+(?:@|%40)[^\W_](?:[\w\-]*[^\W_])?"
        r"(?:\.[^\W_](?:[\w\-]*[^\W_])?)*\.(?:[^\W\d_]{2,}|xn--[A-Za-z0-9\-]{2,}))(?![\w\-])",
        rf"(?:[A-Za-z0-9._%+\-]|{_U})(?:@|%40)(?:[A-Za-z0-9\-]|{_U})+\.(?:[A-Za-z]|{_U})",
        M_EMAIL,
        min_len=6,
        needles=("@", "%40"),
    ),
    Detector(
        "IBAN",
        "iban_mod97",
        # Any grouping, spaces or dashes (``DE89-3704-…``, ``DE89 37040044 0532013000``).
        rf"{LB_WORD}(?P<v>[A-Z]{{2}}\d{{2}}(?:[ \-]?[A-Z0-9]){{11,30}})(?![A-Za-z0-9])",
        rf"{_B}[A-Z]{{2}}\d{{2}}(?:[ \-]?[A-Z0-9]){{10}}",
        M_IBAN,
        checksums.iban_prefix_len,
        min_len=15,
    ),
    Detector(
        "CREDIT_CARD",
        "card_luhn",
        # 4-4-4-4(-3) with one separator kind, Amex/Diners 4-6-5/4-6-4, or compact 12-19.
        rf"{LB_DIGIT}(?P<v>\d{{4}}(?P<cs>[ \-]|%20)\d{{4}}(?P=cs)\d{{4}}(?P=cs)\d{{1,4}}"
        rf"(?:(?P=cs)\d{{1,3}})?|\d{{4}}(?P<cs2>[ \-]|%20)\d{{6}}(?P=cs2)\d{{4,5}}|\d{{12,19}})"
        rf"{RB_DIGIT}",
        # Issuers start with 2-6: USPS/UPS tracking numbers (9…, 1Z…) never become candidates.
        rf"{_B}[2-6]\d{{3}}(?:[ \-]|%20)?\d{{4}}(?:[ \-]|%20)?\d{{4}}(?:[ \-]|%20)?\d"
        rf"|{_B}3\d{{3}}(?:[ \-]|%20)?\d{{6}}(?:[ \-]|%20)?\d{{4}}"
        # UATP (prefix 1, 15 digits)
        rf"|{_B}1\d{{3}}(?:[ \-]|%20)?\d{{4}}(?:[ \-]|%20)?\d{{4}}(?:[ \-]|%20)?\d{{3}}\b",
        M_DIGITS,
        checksums.card_prefix_len,
        min_len=12,
        right=RB_DIGIT,
    ),
    Detector(
        "US_SSN",
        "us_ssn",
        rf"{LB_DIGIT}(?P<v>\d{{3}}(?P<s>[ \-.])\d{{2}}(?P=s)\d{{4}}){RB_DIGIT}",
        rf"{_B}\d{{3}}[ \-.]\d{{2}}[ \-.]\d{{4}}\b",
        M_DIGITS,
        _whole(checksums.ssn_ok),
        min_len=11,
        needles=("-", " ", "."),
        right=RB_DIGIT,
    ),
    Detector(
        "CRYPTO_WALLET",
        "btc_base58check",
        rf"{LB_WORD}(?P<v>[13][1-9A-HJ-NP-Za-km-z]{{25,34}})(?!\w)",
        _B + r"[13][1-9A-HJ-NP-Za-km-z]{25,34}\b",
        M_CRYPTO,
        _whole(checksums.base58check_ok),
        min_len=26,
    ),
    Detector(
        "CRYPTO_WALLET",
        "btc_bech32",
        rf"{LB_WORD}(?P<v>(?:bc|BC)1[02-9ac-hj-np-zAC-HJ-NP-Z]{{8,87}})(?!\w)",
        _B + r"(?:bc|BC)1[02-9ac-hj-np-zAC-HJ-NP-Z]{8,87}\b",
        M_CRYPTO,
        _whole(checksums.bech32_ok),
        min_len=14,
        needles=("bc1",),
    ),
    Detector(
        "CRYPTO_WALLET",
        "eth_address",
        rf"{LB_WORD}(?P<v>0x[0-9a-fA-F]{{40}})(?!\w)",
        r"0x[0-9a-fA-F]{40}",
        M_CRYPTO,
        min_len=42,
        needles=("0x",),
    ),
    Detector(
        "MAC_ADDRESS",
        "mac_address",
        LB_MAC + r"(?P<v>[0-9A-Fa-f]{2}(?P<s>[:\-])[0-9A-Fa-f]{2}(?:(?P=s)[0-9A-Fa-f]{2}){4}"
        r"|[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4})(?![\w:\-]|\.\w)",
        r"[0-9A-Fa-f]{2}[:\-][0-9A-Fa-f]{2}[:\-][0-9A-Fa-f]{2}[:\-][0-9A-Fa-f]{2}[:\-]"
        r"[0-9A-Fa-f]{2}[:\-][0-9A-Fa-f]{2}|[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}",
        M_HEXCOLON + "|" + M_MACDOT,
        min_len=14,
        needles=(":", "-", "."),  # every MAC has one of its separators
    ),
    Detector(
        "IP_ADDRESS",
        "ipv6",
        # Every RFC 4291/5952 text form: compressed, embedded IPv4, a zone id; the validator
        # (``ipaddress``) decides. A CIDR suffix stays (``[IP_ADDRESS]/64``).
        LB_IPV6 + r"(?P<v>(?=[0-9A-Fa-f]*:[0-9A-Fa-f]*:)[0-9A-Fa-f:]{2,39}"
        r"(?:(?<=:)\d{1,3}(?:\.\d{1,3}){3})?(?:%[A-Za-z0-9_]+(?:[.\-][A-Za-z0-9_]+)*)?)"
        r"(?![\w:%]|\.\w)",
        r"[0-9A-Fa-f]{0,4}::[0-9A-Fa-f]{1,4}|[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){5,7}"
        r"|[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){1,6}::",
        M_HEXCOLON,
        _ip_validator(checksums.ipv6_ok, True),
        min_len=3,
        needles=(":",),
    ),
    Detector(
        "IP_ADDRESS",
        "ipv4",
        # Also the address in ``81.2.69.142.443`` (tcpdump's address.port): a fifth number of
        # 2-5 digits ends the run. Longer runs (OIDs) and ``1.2.3.4.5`` stay.
        # Not a pinned version (``pkg==1.2.3.4``, ``~=``, ``>=``, ``<=``, ``!=``).
        rf"{LB_IPV4}(?<![=~<>!]=)(?P<v>\d{{1,3}}(?:\.\d{{1,3}}){{3}})(?:(?!\w|\.\d)|(?=\.\d{{2,5}}(?![\w.]|\.\d)))",
        rf"{_B}\d{{1,3}}\.\d{{1,3}}\.\d{{1,3}}\.\d{{1,3}}\b",
        M_IPV4,
        _ip_validator(checksums.ipv4_ok, True),
        min_len=7,
        needles=(".",),
    ),
    Detector(
        "PHONE",
        "phone_international",
        # Also glued to the word before it ("at+1 212 555 0123", with a separator inside).
        rf"(?:{LB_DIGIT}|(?<=[A-Za-z])(?=(?:\+|%2B)\d{{1,3}}{_SEP}))"
        rf"(?P<v>(?:\+|%2B)\d{{1,3}}(?:{_SEP}?\(?\d{{1,5}}\)?){{1,7}}{EXT}?){RB_DIGIT}",
        r"(?:\+|%2B)\d(?:\d|[ .\-(])",
        M_DIGITS,
        _phone_digits(8, 15),
        min_len=8,
        needles=("+", "%2b"),
        right=RB_DIGIT,
    ),
    Detector(
        "PHONE",
        "phone_nanp",
        rf"{LB_DIGIT}(?P<v>(?:(?:\+?1|001)[ .\-]?)?(?:\([2-9]\d\d\)[ .\-]?|[2-9]\d\d[ .\-])"
        rf"\d{{3}}[ .\-]\d{{4}}{EXT}?){RB_DIGIT}",
        r"\(\d{3}\) ?\d{3}|\b\d{3}[ .\-]\d{3}[ .\-]\d{4}",
        M_DIGITS,
        _nanp_ok,
        min_len=12,
        needles=(" ", ".", "-"),  # the 3-4 split always has one
        right=RB_DIGIT,
    ),
    Detector(
        "PHONE",
        "phone_national",
        rf"{LB_DIGIT}(?P<v>(?:\(0\d{{1,4}}\)|0\d{{1,4}})(?:(?:[ .\-/]|%20)?\d{{2,8}}){{1,4}}{EXT}?)"
        rf"{RB_DIGIT}",
        # 0, a non-zero digit, then 7-10 more digits (any single separators): dates, times and
        # zero-padded ids have too few digits to qualify.
        rf"\(0\d{{1,4}}\)|{_B}0[1-9](?:(?:[ .\-/]|%20)?\d){{7,10}}\b",
        M_DIGITS,
        _national_ok,
        min_len=9,
        right=RB_DIGIT,
    ),
    Detector(
        "PHONE",
        "phone_mobile_compact",
        # National mobiles written without a trunk 0 or a country code: 11-digit Chinese
        # (1[3-9]…), 10-digit Indian ([6-9]…, also 5-5). Not after '#' (ticket numbers).
        rf"(?<!#){LB_DIGIT}(?P<v>(?:1[3-9]\d{{9}}|[6-9]\d{{9}}|[6-9]\d{{4}}[ \-]\d{{5}}){EXT}?)"
        rf"{RB_DIGIT}",
        rf"{_B}(?:1[3-9]\d{{9}}|[6-9]\d{{9}}|[6-9]\d{{4}}[ \-]\d{{5}})\b",
        M_DIGITS,
        _phone_digits(10, 11),
        min_len=10,
        right=RB_DIGIT,
    ),
)

TYPES: tuple[str, ...] = tuple(dict.fromkeys(d.type for d in BUILTIN_DETECTORS))


def builtin_detectors(keep_reserved_ips: bool = True) -> tuple[Detector, ...]:
    """The built-in rules; with ``keep_reserved_ips=False`` loopback, unspecified and
    documentation addresses are redacted like any other (``redaction.keep_reserved_ips``)."""
    if keep_reserved_ips:
        return BUILTIN_DETECTORS
    checks = {"ipv4": checksums.ipv4_ok, "ipv6": checksums.ipv6_ok}
    return tuple(
        replace(d, validate=_ip_validator(checks[d.rule], False)) if d.rule in checks else d
        for d in BUILTIN_DETECTORS
    )
