"""Seeded sample generator: the logs and feedback of a simulated deployed shop agent.

It writes what Ratchet's ingest reads (DESIGN.md, "Inputs"), with ground truth, so tests of ingest,
redaction and curation can check exact numbers, and benchmarks can make a million lines quickly.
The simulated deployment is a shop with several agents (``shop-assistant``, ``returns-bot``,
``billing-helper``) answering customers over several weeks with tools (``lookup_order``,
``track_shipment``, ``search_products``, ``create_return``, ``issue_refund``, ``send_invoice``).

Files made by :func:`generate` (one folder):

``interactions-week-NN.jsonl`` (NN = 01.., one per week, ``.gz`` when ``compress``)
    Canonical interaction records, one JSON object per line. ``messages`` is the history the
    model saw (system, user, assistant tool calls, tool results; multi-turn on a share) and
    excludes the final answer, which is ``response``. A share of lines carry inline
    ``feedback`` (one event object, or a list); inline events omit ``interaction_id`` and
    ``agent_id``, which are those of the enclosing record. Noise at controlled rates: exact
    duplicate lines, conflicting duplicates (same ``agent_id``/``interaction_id``, other
    content; always after the original), and malformed lines named by the quarantine reason
    ingest should give them (:data:`ratchet.schemas.QUARANTINE_REASONS`).
``feedback-week-NN.jsonl``
    Feedback events, in the file of the week in which they were *given*: late feedback lands in a
    later week's file than its interaction. Changed votes (same source and annotator, later
    event supersedes), user/expert disagreements, ``feedback_id`` omitted on a share (ingest
    derives it from the content).
``openai-chat.jsonl``
    OpenAI chat-completions request/response logs, as people log them (one call per line; a
    tool-using conversation may log its tool-call step too). ``agent_id`` is top-level or in
    ``request.metadata``.
``manifest.json``
    :class:`SampleManifest`: the spec and the ground truth counts.

Guarantees: the same spec gives byte-identical files (gzip with a zero mtime); only the standard
library is used (no faker), so it is fast: :func:`write_interactions` streams well over 20k
records per second on one core. PII is planted at a controlled rate and counted by type
(``EMAIL``, ``PHONE``, ``CREDIT_CARD`` Luhn-valid, ``IBAN`` with a valid mod-97 checksum,
``US_SSN``, ``IP_ADDRESS``, ``API_KEY``) next to many look-alikes that are *not* PII and must
survive redaction (order ids ``ORD-2026-118842``, SKUs, prices, dates, tracking numbers, RMA and
invoice numbers, 10-digit DHL waybills, EAN barcodes).

Run ``python -m ratchet.sample --help``; the bundled sample in ``ratchet/data/sample`` was made by
the command in its README.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from ratchet.redaction import checksums

GENERATOR_VERSION = "1.1"
DEFAULT_AGENTS: tuple[str, ...] = ("shop-assistant", "returns-bot", "billing-helper")
WEEK_S = 7 * 86400

# Malformed-line reasons, named as ingest's quarantine reasons (ratchet.schemas).
MALFORMED_REASONS: tuple[str, ...] = (
    "not_utf8",
    "not_json",
    "not_object",
    "missing_field",
    "wrong_type",
    "bad_timestamp",
    "newer_schema",
    "too_large",
    "invalid_value",
)
PII_TYPES: tuple[str, ...] = (
    "EMAIL",
    "PHONE",
    "CREDIT_CARD",
    "IBAN",
    "US_SSN",
    "IP_ADDRESS",
    "API_KEY",
)
REQUIRED_FIELDS: tuple[str, ...] = (
    "interaction_id",
    "agent_id",
    "timestamp",
    "messages",
    "response",
)


class SampleSpecError(ValueError):
    """A sample spec value is out of range; the message names the field."""


# --------------------------------------------------------------------------------------------
# Spec and manifest
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NoiseSpec:
    """Rates of noise lines, as a share of the valid interactions.

    A positive rate always yields at least one line, so a small sample with noise on contains
    every reason. ``too_large`` is a count (off by default): such a line exceeds
    ``SampleSpec.max_line_bytes``. ``invalid_value`` (a message with an unknown role) is off by
    default.
    """

    exact_duplicate: float = 0.01
    conflicting_duplicate: float = 0.005
    not_utf8: float = 0.003
    not_json: float = 0.003
    not_object: float = 0.002
    missing_field: float = 0.003
    wrong_type: float = 0.002
    bad_timestamp: float = 0.003
    newer_schema: float = 0.002
    invalid_value: float = 0.0
    too_large: int = 0

    @classmethod
    def off(cls) -> NoiseSpec:
        return cls(**{f.name: 0 for f in fields(cls)})

    def count(self, name: str, n: int) -> int:
        """Lines of one kind for ``n`` valid interactions."""
        value = getattr(self, name)
        if name == "too_large":
            return int(value)
        return 0 if value <= 0 else max(1, round(value * n))


@dataclass(frozen=True)
class SampleSpec:
    """What to simulate. Every share is a probability in [0, 1]."""

    seed: int = 7
    agents: tuple[str, ...] = DEFAULT_AGENTS
    start: date = date(2026, 1, 5)  # a Monday; weeks are [start + 7k days, start + 7(k+1) days)
    weeks: int = 4
    interactions: int = 2400  # distinct valid interactions, all weeks and agents
    openai_interactions: int = 60  # conversations logged in OpenAI format (own ids)
    feedback_share: float = 0.4  # interactions that get any feedback
    inline_feedback_share: float = 0.25  # of those, first event inline on the record
    late_feedback_share: float = 0.2  # user events given in a later week
    changed_vote_share: float = 0.12  # user events followed by a changed vote
    expert_review_share: float = 0.15  # feedback interactions an expert also rates
    expert_disagree_share: float = 0.5  # of expert reviews, opposite verdict to the user's
    correction_share: float = 0.6  # user thumbs-down with a correction (experts: 0.8)
    wrong_answer_rate: float = 0.15  # the agent answered wrongly (drives thumbs-down)
    pii_rate: float = 0.08  # records (and feedback comments) with planted PII
    consent_false_rate: float = 0.02
    no_zone_rate: float = 0.03  # timestamps without a zone (meant as UTC)
    offset_zone_rate: float = 0.17  # timestamps with a numeric offset, e.g. +01:00
    minor_schema_rate: float = 0.03  # schema_version "1.3" (newer minor, extra fields)
    extra_field_rate: float = 0.05  # unknown top-level fields (ab_bucket, trace_id...)
    faq_share: float = 0.35  # repeated questions with small wording variations
    agent_faq_shares: tuple[tuple[str, float], ...] = (("returns-bot", 0.6),)  # per-agent override
    # FAQ topics ("agent/topic") whose answers are out of date: answered wrongly at
    # stale_wrong_rate, every week. Corrections fix them: what a trained candidate should learn.
    stale_topics: tuple[str, ...] = ("returns-bot/returns", "shop-assistant/shipping")
    stale_wrong_rate: float = 0.9
    # FAQ topics whose right answer some users dispute: on disputed_share of their feedback they
    # vote it down and "correct" it to the wrong answer. A candidate that learns those
    # corrections forgets golden cases; the gate must refuse it.
    disputed_topics: tuple[str, ...] = ("shop-assistant/sizing",)
    disputed_share: float = 0.6
    shared_ids_across_agents: int = 1  # same interaction_id under two agents (not duplicates)
    noise: NoiseSpec = field(default_factory=NoiseSpec)
    max_line_bytes: int = 1 << 20  # a too_large line is longer than this
    compress: bool = False  # write .jsonl.gz

    def __post_init__(self) -> None:
        if not self.agents:
            raise SampleSpecError("agents: at least one agent is needed")
        if self.weeks < 1:
            raise SampleSpecError("weeks: must be >= 1")
        if self.interactions < 1:
            raise SampleSpecError("interactions: must be >= 1")
        if self.openai_interactions < 0:
            raise SampleSpecError("openai_interactions: must be >= 0")
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name.endswith(("_share", "_rate")) and not 0.0 <= v <= 1.0:
                raise SampleSpecError(f"{f.name}: must be within [0, 1]")
        if len(set(self.agents)) != len(self.agents):
            raise SampleSpecError("agents: names must be distinct")
        for agent, share in self.agent_faq_shares:
            if not 0.0 <= share <= 1.0:
                raise SampleSpecError(f"agent_faq_shares: {agent}: must be within [0, 1]")
        for name in ("stale_topics", "disputed_topics"):
            for topic in getattr(self, name):
                if topic.count("/") != 1:
                    raise SampleSpecError(f"{name}: {topic!r} must be 'agent/topic'")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["agents"] = list(self.agents)
        d["start"] = self.start.isoformat()
        d["agent_faq_shares"] = [list(p) for p in self.agent_faq_shares]
        d["stale_topics"] = list(self.stale_topics)
        d["disputed_topics"] = list(self.disputed_topics)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SampleSpec:
        """The inverse of :meth:`to_dict` (a manifest's ``spec`` rebuilds its sample)."""
        return cls(
            **{
                **d,
                "agents": tuple(d["agents"]),
                "start": date.fromisoformat(d["start"]),
                "agent_faq_shares": tuple(
                    (str(a), float(x)) for a, x in d.get("agent_faq_shares", ())
                ),
                "stale_topics": tuple(d.get("stale_topics", ())),
                "disputed_topics": tuple(d.get("disputed_topics", ())),
                "noise": NoiseSpec(**d["noise"]),
            }
        )


@dataclass
class FileStats:
    name: str
    kind: str  # interactions | feedback | openai_chat
    week: int | None  # 1-based week, None for openai-chat
    lines: int
    bytes: int  # uncompressed
    sha256: str  # of the file as written (compressed if .gz)


@dataclass
class SampleManifest:
    """Ground truth for a generated sample (also written as ``manifest.json``).

    ``interactions``: ``lines_total`` = ``valid_distinct`` + ``exact_duplicates`` +
    ``conflicting_duplicates`` + ``malformed_total``; ``expected_quarantine`` is what ingest
    should quarantine, by reason (malformed lines plus conflicting duplicates). Every other
    interaction count (consent, zones, schema minor, PII...) is over the ``valid_distinct``
    records. ``feedback``: counts of events (inline and in files); ``late`` = events whose file
    week is after their interaction's week; ``superseded`` = events that a later event from
    the same source and annotator on the same interaction replaces. ``pii``: planted
    occurrences by type, per place (``interactions`` = valid distinct records only).
    """

    generator_version: str
    spec: dict[str, Any]
    files: list[FileStats]
    interactions: dict[str, Any]
    feedback: dict[str, Any]
    openai_chat: dict[str, Any]
    pii: dict[str, dict[str, int]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SampleManifest:
        return cls(**{**d, "files": [FileStats(**f) for f in d["files"]]})

    def file(self, name: str) -> FileStats:
        for f in self.files:
            if f.name == name:
                return f
        raise KeyError(name)


# --------------------------------------------------------------------------------------------
# PII and look-alikes (standard library only)
# --------------------------------------------------------------------------------------------
_FIRST = (
    "jane",
    "john",
    "maria",
    "ahmed",
    "li",
    "sofia",
    "lukas",
    "chloe",
    "omar",
    "emma",
    "noah",
    "ines",
    "tom",
    "priya",
    "jose",
    "anna",
    "mehmet",
    "olivia",
    "raj",
    "zoe",
)
_LAST = (
    "smith",
    "doe",
    "garcia",
    "khan",
    "wang",
    "rossi",
    "muller",
    "martin",
    "haddad",
    "jones",
    "brown",
    "silva",
    "kowalski",
    "patel",
    "dubois",
    "nguyen",
    "oconnor",
    "ali",
)
_DOMAINS = (
    "gmail.com",
    "outlook.com",
    "yahoo.co.uk",
    "icloud.com",
    "proton.me",
    "web.de",
    "hotmail.fr",
    "example.com",
)
_B62 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_UPPER_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _pick(rng: random.Random, seq: Sequence[Any]) -> Any:
    """``rng.choice`` without its rejection sampling: one ``random()`` draw, several times faster."""
    return seq[int(rng.random() * len(seq))]


def _int(rng: random.Random, lo: int, hi: int) -> int:
    """Uniform integer in [lo, hi] (like ``randint``) from one ``random()`` draw."""
    return lo + int(rng.random() * (hi - lo + 1))


def _range(rng: random.Random, lo: int, hi: int | None = None) -> int:
    """Uniform integer in [lo, hi) (like ``randrange``) from one ``random()`` draw."""
    if hi is None:
        lo, hi = 0, lo
    return lo + int(rng.random() * (hi - lo))


def _digits(rng: random.Random, n: int) -> str:
    return "%0*d" % (n, rng.getrandbits(4 * n + 8) % 10**n)


def _alnum(rng: random.Random, n: int) -> str:
    """``n`` random base-62-ish characters (letters and digits), fast."""
    return base64.b64encode(rng.randbytes(n * 3 // 4 + 3), b"xQ").decode()[:n]


def _card(rng: random.Random) -> str:
    brand = rng.random()
    if brand < 0.4:
        prefix, length = "4", 16  # Visa
    elif brand < 0.6:
        prefix, length = str(_int(rng, 51, 55)), 16  # Mastercard classic
    elif brand < 0.85:
        prefix, length = str(_int(rng, 2221, 2720)), 16  # Mastercard 2-series
    else:
        prefix, length = _pick(rng, ("34", "37")), 15  # Amex
    body = prefix + _digits(rng, length - 1 - len(prefix))
    for check in "0123456789":
        if checksums.luhn_ok(body + check):  # the redaction's own check: planted = detected
            number = body + check
            break
    sep = _pick(rng, (" ", "-", ""))
    if length == 15:
        return sep.join((number[:4], number[4:10], number[10:]))
    return sep.join(number[i : i + 4] for i in range(0, 16, 4))


def _iban(rng: random.Random) -> str:
    country = _pick(rng, ("GB", "DE", "FR", "NL", "ES"))
    if country == "GB":
        bban = _pick(rng, ("NWBK", "BARC", "LOYD", "MIDL")) + _digits(rng, 14)
    elif country == "NL":
        bban = _pick(rng, ("ABNA", "INGB", "RABO")) + _digits(rng, 10)
    elif country == "DE":
        bban = _digits(rng, 18)
    elif country == "FR":
        bban = _digits(rng, 23)
    else:
        bban = _digits(rng, 20)
    iban = f"{country}{checksums.iban_check_digits(country, bban)}{bban}"
    if rng.random() < 0.6:
        return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    return iban


def _email(rng: random.Random) -> str:
    first, last = _pick(rng, _FIRST), _pick(rng, _LAST)
    local = _pick(
        rng,
        (
            f"{first}.{last}",
            f"{first}{last}{_int(rng, 1, 99)}",
            f"{first[0]}{last}",
            f"{first}+orders",
        ),
    )
    return f"{local}@{_pick(rng, _DOMAINS)}"


def _phone(rng: random.Random) -> str:
    kind = _range(rng, 8)
    n3 = _int(rng, 100, 999)
    if kind == 0:
        return f"+44 7700 900{n3}"
    if kind == 1:
        return f"07700 900{n3}"
    if kind == 2:
        return f"+447700900{n3}"
    if kind == 3:
        return f"({_int(rng, 201, 989)}) 555-0{_int(rng, 100, 199)}"
    if kind == 4:
        return f"+1 {_int(rng, 201, 989)}-555-0{_int(rng, 100, 199)}"
    if kind == 5:
        return f"{_int(rng, 201, 989)}.555.0{_int(rng, 100, 199)}"
    if kind == 6:
        return f"+49 30 {_digits(rng, 8)}"
    return f"+33 6 {' '.join(_digits(rng, 2) for _ in range(4))}"


def _ssn(rng: random.Random) -> str:
    area = _pick(rng, [a for a in range(1, 900) if a != 666])
    sep = "-" if rng.random() < 0.8 else " "
    return f"{area:03d}{sep}{_int(rng, 1, 99):02d}{sep}{_int(rng, 1, 9999):04d}"


def _ip(rng: random.Random) -> str:
    if rng.random() < 0.15:
        return "2a02:" + ":".join(f"{_range(rng, 1, 0xFFFF):x}" for _ in range(7))
    first = _pick(rng, [a for a in range(11, 224) if a not in (127, 172, 192)])
    return f"{first}.{_int(rng, 0, 255)}.{_int(rng, 0, 255)}.{_int(rng, 1, 254)}"


def _api_key(rng: random.Random) -> str:
    kind = _range(rng, 3)
    if kind == 0:
        return "sk-proj-" + "".join(_pick(rng, _B62 + "-_") for _ in range(64))
    if kind == 1:
        return "sk-" + "".join(_pick(rng, _B62) for _ in range(48))
    return "AKIA" + "".join(_pick(rng, _UPPER_ALNUM[:26] + "234567") for _ in range(16))


_PII_MAKERS = {
    "EMAIL": _email,
    "PHONE": _phone,
    "CREDIT_CARD": _card,
    "IBAN": _iban,
    "US_SSN": _ssn,
    "IP_ADDRESS": _ip,
    "API_KEY": _api_key,
}
_PII_WEIGHTS = (
    ("EMAIL", 34),
    ("PHONE", 24),
    ("CREDIT_CARD", 12),
    ("IBAN", 8),
    ("IP_ADDRESS", 10),
    ("US_SSN", 6),
    ("API_KEY", 6),
)
_PII_TYPES_W = [t for t, w in _PII_WEIGHTS for _ in range(w)]
_PII_SENTENCES = {
    "EMAIL": ("You can reach me at {v}.", "my email is {v}", "please send it to {v}"),
    "PHONE": ("Call me on {v} if easier.", "my number is {v}", "text {v} when it ships"),
    "CREDIT_CARD": ("I paid with card {v} and it was charged twice.", "card number {v}"),
    "IBAN": ("Please refund to my IBAN {v}.", "bank account {v} instead of the card"),
    "US_SSN": ("my SSN is {v} if you need it to verify me", "SSN {v}"),
    "IP_ADDRESS": ("the site blocks me, my IP is {v}", "I'm connecting from {v}"),
    "API_KEY": ("your API returns 401 with my key {v}", "key: {v} (is it revoked?)"),
}


# --------------------------------------------------------------------------------------------
# The simulated agents
# --------------------------------------------------------------------------------------------
_PRODUCTS = (
    ("Merino crew jumper", 79.0, "knitwear"),
    ("Trail running shoes", 119.0, "footwear"),
    ("Waterproof parka", 189.0, "outerwear"),
    ("Organic cotton tee", 19.5, "tops"),
    ("Leather ankle boots", 149.0, "footwear"),
    ("Slim chinos", 49.99, "trousers"),
    ("Down gilet", 99.0, "outerwear"),
    ("Linen shirt", 45.0, "tops"),
    ("Wool beanie", 15.0, "accessories"),
    ("Canvas backpack", 65.0, "bags"),
)
_COLOURS = ("BLK", "NVY", "GRN", "RED", "WHT", "GRY")
_SIZES = ("XS", "S", "M", "L", "XL", "42", "43", "44")
_LOCALES = (("en-GB", "£", 0.45), ("en-US", "$", 0.3), ("de-DE", "€", 0.15), ("fr-FR", "€", 0.1))
_CHANNELS = ("web", "web", "web", "app", "app", "email")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_SYSTEM = {
    "shop-assistant": "You are Northwind Outfitters' shopping assistant. Help customers find "
    "products and check orders. Use the tools to look up orders and shipments; never guess an "
    "order's status. Be concise and friendly. Prices include VAT in the UK and EU.",
    "returns-bot": "You are the returns assistant for Northwind Outfitters. Policy: unworn items "
    "may be returned within 30 days of delivery for a full refund; sale items within 14 days "
    "for store credit. Always look the order up before starting a return.",
    "billing-helper": "You are Northwind Outfitters' billing helper. Explain charges, issue "
    "refunds up to the order total after checking the order, and send invoices. Never ask for "
    "full card numbers.",
}
_TOOL_SCHEMAS = {
    name: {
        "type": "function",
        "function": {
            "name": name,
            "description": desc,
            "parameters": {
                "type": "object",
                "properties": {p: {"type": "string"} for p in params},
                "required": list(params[:1]),
            },
        },
    }
    for name, desc, params in (
        ("lookup_order", "Look an order up by id.", ("order_id", "customer_email")),
        ("track_shipment", "Track a parcel.", ("tracking_number", "carrier")),
        ("search_products", "Search the catalogue.", ("query", "max_price", "size")),
        ("create_return", "Start a return and make a label.", ("order_id", "sku", "reason")),
        (
            "issue_refund",
            "Refund (part of) an order.",
            ("order_id", "amount", "currency", "reason"),
        ),
        ("send_invoice", "Email an invoice.", ("order_id", "email", "callback_url")),
    )
}
_AGENT_TOOLS = {
    "shop-assistant": ("lookup_order", "track_shipment", "search_products"),
    "returns-bot": ("lookup_order", "create_return", "issue_refund"),
    "billing-helper": ("lookup_order", "issue_refund", "send_invoice"),
}

# FAQ intents: the same question asked again and again, with small wording variations.
_FAQ: dict[str, tuple[tuple[str, tuple[str, ...], str, str, str], ...]] = {
    "shop-assistant": (
        (
            "shipping",
            (
                "Do you ship to Ireland?",
                "do you deliver to ireland",
                "Can I get delivery to Ireland?",
                "Do you ship to Ireland",
                "Can you send my order to Dublin?",
                "is delivery to the Republic of Ireland possible",
                "I live in Cork, can I order from you?",
                "What does shipping to Ireland cost?",
                "Will you post to an Irish address?",
            ),
            "Yes, we ship to Ireland. Standard delivery takes 3-5 working days and costs €4.99; "
            "it is free on orders over €60.",
            "Sorry, we only deliver within the UK at the moment.",
            "kb://shipping/international",
        ),
        (
            "payment",
            ("Can I pay with PayPal?", "do you take paypal", "Is PayPal accepted?"),
            "Yes, we accept PayPal, Apple Pay and all major cards at checkout.",
            "We only accept card payments.",
            "kb://payments/methods",
        ),
        (
            "sizing",
            (
                "Do your shoes run small?",
                "do the shoes run small or true to size",
                "Are your shoes true to size?",
            ),
            "Our shoes run true to size; if you are between sizes we suggest the larger one.",
            "Our shoes run a full size small, so order one size up.",
            "kb://products/size-guide",
        ),
    ),
    "returns-bot": (
        (
            "returns",
            (
                "What is your return policy?",
                "what's your returns policy",
                "How long do I have to return something?",
                "whats the return policy?",
                "Can I still send back the jacket I got three weeks ago?",
                "how many days do i have to return an item",
                "Is there a time limit on returns?",
                "I bought something in the sale, can I return it?",
                "What happens if I want my money back for an unworn item?",
            ),
            "You can return unworn items within 30 days of delivery for a full refund. Sale "
            "items can be returned within 14 days for store credit.",
            "You can return items within 14 days of purchase for a full refund.",
            "kb://returns/policy-v3",
        ),
        (
            "returns",
            (
                "Is return shipping free?",
                "do I have to pay for return postage",
                "Are returns free?",
                "How much does it cost to send something back?",
                "Do I need to pay for the return label?",
                "Is there a fee for returning from France?",
                "who pays the postage when I return an order",
            ),
            "Returns are free in the UK with the prepaid label; from the EU a return costs €5.95, "
            "taken from the refund.",
            "Returns are free everywhere.",
            "kb://returns/shipping",
        ),
        (
            "exchange",
            (
                "Can I exchange for a different size?",
                "can i swap for another size",
                "How do I exchange an item?",
            ),
            "Yes: start a return for the item and choose 'exchange'; we ship the new size as soon "
            "as the return is scanned.",
            "We don't offer exchanges, only refunds.",
            "kb://returns/exchanges",
        ),
    ),
    "billing-helper": (
        (
            "vat",
            ("Do your prices include VAT?", "are prices inc vat", "Is VAT included in the price?"),
            "Yes, prices in the UK and EU include VAT; US prices exclude sales tax, which is added "
            "at checkout.",
            "No, VAT is added at checkout.",
            "kb://billing/vat",
        ),
        (
            "payment",
            (
                "How do I change my card?",
                "how can i update my payment card",
                "How do I update my payment details?",
            ),
            "Go to Account > Payment methods, add the new card and set it as default. We never "
            "need your card number in chat.",
            "Send us the new card number here and we'll update it.",
            "kb://billing/payment-methods",
        ),
        (
            "refunds",
            (
                "How long do refunds take?",
                "when will i get my refund",
                "How long until my refund arrives?",
            ),
            "Refunds are issued within 2 working days of approval and take 3-5 working days to "
            "show on your statement.",
            "Refunds take up to 30 days.",
            "kb://billing/refunds",
        ),
    ),
}
_GREETINGS = ("", "", "", "Hi, ", "hello ", "Hey! ", "Hi there. ", "quick question: ")


def _question_variant(rng: random.Random, q: str) -> str:
    r = rng.random()
    if r < 0.15:
        q = q.lower()
    elif r < 0.25:
        q = q.rstrip("?")
    elif r < 0.3:
        q = q + "?"
    elif r < 0.35:
        q = q.replace("you", "u")
    return _pick(rng, _GREETINGS) + q


# Built once: json.dumps with non-default options builds a new encoder on every call.
_encode = json.JSONEncoder(ensure_ascii=False, check_circular=False).encode
_encode_ascii = json.JSONEncoder(check_circular=False).encode
_META_PII_KEYS = {"EMAIL": "contact_email", "PHONE": "contact_phone", "IP_ADDRESS": "client_ip"}
# Where planted PII sits in a record: user text, tool-call arguments, tool results, metadata, answer.
_PII_GROUPS = ("user", "args", "tool", "metadata", "response")


def _pii_groups() -> dict[str, Counter[str]]:
    return {g: Counter() for g in _PII_GROUPS}


class _Built:
    """One simulated interaction before serialisation."""

    __slots__ = (
        "agent",
        "correct",
        "dispute",
        "pii",
        "record",
        "stale",
        "topic",
        "ts",
        "week",
        "wrong",
    )

    def __init__(
        self,
        record: dict[str, Any],
        pii: dict[str, Counter[str]] | None,
        correct: str,
        wrong: bool,
        ts: float,
        week: int,
        agent: str,
        topic: str,
        dispute: str | None = None,
        stale: bool = False,
    ) -> None:
        self.record = record
        self.stale = stale  # an out-of-date FAQ answer (SampleSpec.stale_topics)
        self.dispute = dispute  # the wrong "correction" a disputing user would give
        self.pii = pii
        self.correct = correct
        self.wrong = wrong
        self.ts = ts
        self.week = week
        self.agent = agent
        self.topic = topic


def _fmt_utc(ts: float, millis: bool) -> str:
    t = time.gmtime(ts)
    s = "%04d-%02d-%02dT%02d:%02d:%02d" % t[:6]
    if millis:
        s += ".%03d" % int((ts % 1) * 1000)
    return s


_OFFSETS = (3600, 3600, 7200, -18000, -28800, 19800, 0)


class _Simulator:
    """Builds interaction records. All randomness comes from the one ``rng`` given."""

    def __init__(self, rng: random.Random, spec: SampleSpec) -> None:
        self.rng = rng
        self.spec = spec
        self.start_ts = datetime(
            spec.start.year, spec.start.month, spec.start.day, tzinfo=UTC
        ).timestamp()
        self.n_users = max(50, spec.interactions // 6)
        self.recent_convs: dict[str, str] = {}
        self.faq_share = dict(spec.agent_faq_shares)
        self._days: dict[tuple[int, int], str] = {}

    # -- small pieces ------------------------------------------------------------------------
    def uid(self) -> str:
        h = "%032x" % self.rng.getrandbits(128)
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"

    def call_id(self) -> str:
        return "call_" + _alnum(self.rng, 24)

    def order_id(self, ts: float) -> str:
        return f"ORD-{self.day(ts, 0)[:4]}-{_range(self.rng, 100000, 999999)}"

    def sku(self) -> str:
        return f"SKU-{_range(self.rng, 1000, 9999)}-{_pick(self.rng, _COLOURS)}-{_pick(self.rng, _SIZES)}"

    def tracking(self) -> tuple[str, str]:
        rng = self.rng
        k = _range(rng, 4)
        if k == 0:
            return "UPS", "1Z" + "".join(_pick(rng, _UPPER_ALNUM) for _ in range(6)) + _digits(
                rng, 10
            )
        if k == 1:
            return "USPS", "9400" + _digits(rng, 18)
        if k == 2:
            return "Royal Mail", "".join(_pick(rng, _UPPER_ALNUM[:26]) for _ in range(2)) + _digits(
                rng, 9
            ) + "GB"
        return "DHL", _digits(rng, 10)  # a 10-digit waybill: looks like a phone number, is not

    def day(self, ts: float, style: int) -> str:
        key = (int(ts // 86400), style)
        got = self._days.get(key)
        if got is None:
            t = time.gmtime(ts)
            if style == 0:
                got = "%04d-%02d-%02d" % t[:3]
            elif style == 1:
                got = f"{t.tm_mday} {_MONTHS[t.tm_mon - 1]}"
            else:
                got = "%02d/%02d/%04d" % (t.tm_mday, t.tm_mon, t.tm_year)
            self._days[key] = got
        return got

    def timestamp(self, ts: float) -> str:
        r = self.rng.random()
        millis = self.rng.random() < 0.5
        if r < self.spec.no_zone_rate:
            return _fmt_utc(ts, millis)
        if r < self.spec.no_zone_rate + self.spec.offset_zone_rate:
            off = _pick(self.rng, _OFFSETS)
            sign = "+" if off >= 0 else "-"
            a = abs(off)
            return _fmt_utc(ts + off, millis) + f"{sign}{a // 3600:02d}:{a % 3600 // 60:02d}"
        return _fmt_utc(ts, millis) + "Z"

    def tool_call(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": self.call_id(),
            "type": "function",
            "function": {"name": name, "arguments": _encode_ascii(args)},
        }

    # -- one interaction ---------------------------------------------------------------------
    def build(
        self,
        agent: str,
        ts: float,
        week: int,
        *,
        pii: bool | None = None,
        wrong: bool | None = None,
        pad_to: int = 0,
    ) -> _Built:
        rng = self.rng
        spec = self.spec
        if pii is None:
            pii = rng.random() < spec.pii_rate
        if wrong is None:
            wrong = rng.random() < spec.wrong_answer_rate
        r = rng.random()
        loc, cur, _ = _LOCALES[0 if r < 0.45 else 1 if r < 0.75 else 2 if r < 0.9 else 3]
        counts = _pii_groups() if pii else None
        # PII slots: where the planted values go (user text, tool args, tool result, metadata).
        slots: list[tuple[str, str]] = []
        if pii:
            for _ in range(1 if rng.random() < 0.75 else 2):
                slots.append(
                    (
                        _pick(rng, ("user", "user", "user", "args", "tool", "meta")),
                        _pick(rng, _PII_TYPES_W),
                    )
                )

        messages: list[dict[str, Any]] = [
            {"role": "system", "content": _SYSTEM.get(agent, _SYSTEM["shop-assistant"])}
        ]
        tools_used: list[str] = []
        sources: list[str] = []
        faq_pool = _FAQ.get(agent, _FAQ["shop-assistant"])
        dispute: str | None = None
        stale = False
        if rng.random() < self.faq_share.get(agent, spec.faq_share):
            topic, qs, correct, bad, src = _pick(rng, faq_pool)
            messages.append({"role": "user", "content": _question_variant(rng, _pick(rng, qs))})
            sources.append(src)
            if f"{agent}/{topic}" in spec.stale_topics:
                wrong = rng.random() < spec.stale_wrong_rate
                stale = wrong
            if f"{agent}/{topic}" in spec.disputed_topics:
                dispute = bad
            response = bad if wrong else correct
        else:
            topic, correct, response = self._tool_flow(
                agent, ts, messages, tools_used, cur, wrong, slots, counts
            )
        # Remaining PII slots: user text, metadata.
        metadata: dict[str, Any] = {"topic": topic, "locale": loc, "channel": _pick(rng, _CHANNELS)}
        user_msg = next(m for m in messages if m["role"] == "user")
        for where, kind in slots:  # what the tool flow did not take
            assert counts is not None
            value = _PII_MAKERS[kind](rng)
            if where == "meta":
                key = _META_PII_KEYS.get(kind)
                if key is None or key in metadata:
                    metadata["note"] = f"customer said: {value}"
                else:
                    metadata[key] = value
                counts["metadata"][kind] += 1
            else:
                user_msg["content"] += " " + _pick(rng, _PII_SENTENCES[kind]).format(v=value)
                counts["user"][kind] += 1
        if pad_to:
            blob = "\n".join(f"{self.sku()} {p[0]} {cur}{p[1]:.2f}" for p in _PRODUCTS)
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": self.call_id(),
                    "content": (blob + "\n") * (pad_to // (len(blob) + 1) + 1),
                }
            )
        # A bijection of [0, 9e7) keeps user ids distinct without a list of them.
        uid = f"cust_{10**7 + (_range(rng, self.n_users) * 48271 + spec.seed) % 90_000_000}"
        conv = self.recent_convs.get(uid + agent)
        if conv is None or rng.random() < 0.7:
            conv = "conv_" + "%016x" % rng.getrandbits(64)
            self.recent_convs[uid + agent] = conv
        prompt_tokens = sum(len(m["content"] or "") for m in messages) // 4 + 30 * len(tools_used)
        completion_tokens = len(response) // 4 + 1
        half = spec.weeks // 2
        rec: dict[str, Any] = {
            "schema_version": "1.0",
            "interaction_id": self.uid(),
            "agent_id": agent,
            "timestamp": self.timestamp(ts),
            "conversation_id": conv,
            "user_id": uid,
            "model_version": f"{agent}@v{14 if week < half else 15}",
            "messages": messages,
            "response": response,
            "tools_used": tools_used,
            "sources": sources,
            "latency_ms": round(rng.lognormvariate(6.6, 0.45) + 400 * len(tools_used), 1),
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "cost_usd": round(prompt_tokens * 0.15e-6 + completion_tokens * 0.6e-6, 7),
            "consent": rng.random() >= spec.consent_false_rate,
            "metadata": metadata,
        }
        if rng.random() < spec.minor_schema_rate:
            rec["schema_version"] = "1.3"
            rec["safety"] = {"flagged": False, "categories": []}
        if rng.random() < spec.extra_field_rate:
            rec["ab_bucket"] = _pick(rng, ("A", "B"))
            rec["trace_id"] = "%032x" % rng.getrandbits(128)
        return _Built(rec, counts, correct, wrong, ts, week, agent, topic, dispute, stale)

    def _tool_flow(
        self,
        agent: str,
        ts: float,
        messages: list[dict[str, Any]],
        tools_used: list[str],
        cur: str,
        wrong: bool,
        slots: list[tuple[str, str]],
        counts: dict[str, Counter[str]] | None,
    ) -> tuple[str, str, str]:
        """A tool-using conversation; returns (topic, correct answer, given answer)."""
        rng = self.rng
        tools = _AGENT_TOOLS.get(agent, _AGENT_TOOLS["shop-assistant"])
        oid = self.order_id(ts - 86400 * _int(rng, 1, 20))
        pname, price, _cat = _pick(rng, _PRODUCTS)
        sku = self.sku()
        qty = _int(rng, 1, 3)
        total = f"{cur}{price * qty:,.2f}"
        placed = self.day(ts - 86400 * _int(rng, 2, 12), _range(rng, 3))
        eta_ts = ts + 86400 * _int(rng, 1, 6)
        eta = self.day(eta_ts, _range(rng, 3))
        # PII destined for tool arguments / results is taken here.
        args_pii: list[tuple[str, str]] = []
        tool_pii: list[tuple[str, str]] = []
        for where, kind in list(slots):
            if (
                where == "args"
                and kind in ("EMAIL", "PHONE")
                and not any(k == kind for k, _ in args_pii)
            ):
                args_pii.append((kind, _PII_MAKERS[kind](rng)))
                slots.remove((where, kind))
            elif (
                where == "tool"
                and kind in ("EMAIL", "PHONE", "IP_ADDRESS")
                and not any(k == kind for k, _ in tool_pii)
            ):
                tool_pii.append((kind, _PII_MAKERS[kind](rng)))
                slots.remove((where, kind))

        tool = _pick(rng, tools[1:] + tools[:1])
        multi = rng.random() < 0.3
        if tool == "search_products":
            size = _pick(rng, _SIZES)
            q = _pick(
                rng,
                (
                    f"Do you have {pname.lower()} in size {size} under {cur}{int(price) + 20}?",
                    f"looking for a {pname.lower()}, size {size}",
                    f"Any {pname.lower()} in {size}? budget {cur}{int(price) + 20}",
                ),
            )
            args: dict[str, Any] = {
                "query": pname.lower(),
                "max_price": int(price) + 20,
                "size": size,
            }
            hits = [
                {"sku": sku, "name": pname, "price": f"{cur}{price:.2f}", "in_stock": True},
                {
                    "sku": self.sku(),
                    "name": pname + " (recycled)",
                    "price": f"{cur}{price + 10:.2f}",
                    "in_stock": rng.random() < 0.5,
                },
            ]
            result: dict[str, Any] = {"results": hits, "ean": "50" + _digits(rng, 11)}
            correct = f"Yes: the {pname} ({sku}) is {cur}{price:.2f} and in stock in size {size}."
            given = f"Sorry, the {pname} is out of stock in size {size}." if wrong else correct
            topic = "products"
        elif tool == "track_shipment":
            carrier, tn = self.tracking()
            q = _pick(
                rng,
                (
                    f"Where is my parcel? Tracking {tn}",
                    f"can you track {tn} for me",
                    f"My {carrier} tracking number is {tn}, when will it arrive?",
                ),
            )
            args = {"tracking_number": tn, "carrier": carrier}
            result = {
                "status": "in_transit",
                "last_scan": self.day(ts - 3600 * 20, 0) + " 18:42",
                "location": _pick(rng, ("Leeds hub", "Koeln depot", "Memphis TN", "Dublin")),
                "eta": self.day(eta_ts, 0),
            }
            correct = f"Your parcel {tn} is in transit with {carrier} and should arrive by {eta}."
            given = f"Your parcel {tn} was delivered yesterday." if wrong else correct
            topic = "shipping"
        elif tool == "create_return":
            q = _pick(
                rng,
                (
                    f"I want to return the {pname.lower()} from order {oid}",
                    f"how do I send back {sku} from {oid}? it doesn't fit",
                    f"Return request for {oid}, item {pname}",
                ),
            )
            args = {
                "order_id": oid,
                "sku": sku,
                "reason": _pick(rng, ("too_small", "too_large", "faulty", "changed_mind")),
            }
            rma = f"RMA-{_range(rng, 100000, 999999)}"
            result = {
                "rma": rma,
                "label_url": f"https://returns.northwind.example/label/{rma}",
                "refund_amount": total,
                "deadline": self.day(ts + 86400 * 30, 0),
            }
            correct = (
                f"Your return {rma} for {pname} ({sku}) is open. Print the label and drop the "
                f"parcel off by {self.day(ts + 86400 * 30, 1)}; {total} will be refunded once it arrives."
            )
            given = (
                f"Your return {rma} is open; you will get store credit of {total}."
                if wrong
                else correct
            )
            topic = "returns"
        elif tool == "issue_refund":
            amount = f"{price:.2f}"
            q = _pick(
                rng,
                (
                    f"I was charged twice for order {oid}, {cur}{amount} each time",
                    f"double charge on {oid}?? please refund",
                    f"Order {oid} charged {cur}{amount} twice on {placed}",
                ),
            )
            args = {
                "order_id": oid,
                "amount": amount,
                "currency": {"£": "GBP", "$": "USD"}.get(cur, "EUR"),
                "reason": "duplicate_charge",
            }
            result = {
                "refund_id": f"RF-{_range(rng, 10**7, 10**8)}",
                "status": "approved",
                "amount": f"{cur}{amount}",
                "expected_by": self.day(ts + 86400 * 5, 0),
            }
            correct = (
                f"Sorry about that. I've refunded the duplicate charge of {cur}{amount} on {oid}; "
                f"it should reach your account within 3-5 working days."
            )
            given = (
                f"I can see only one charge of {cur}{amount} on {oid}, so no refund is due."
                if wrong
                else correct
            )
            topic = "billing"
        elif tool == "send_invoice":
            q = _pick(
                rng,
                (
                    f"Can I get a VAT invoice for {oid}?",
                    f"need an invoice for order {oid} please",
                    f"Please send the invoice for {oid} (placed {placed})",
                ),
            )
            args = {"order_id": oid}
            inv = f"INV-{self.day(ts, 0)[:4]}-{_range(rng, 1000, 99999):05d}"
            result = {"invoice": inv, "sent": True, "total": total}
            correct = f"Done: invoice {inv} for {oid} ({total}) has been emailed to the address on your account."
            given = "Invoices are only available for business accounts." if wrong else correct
            topic = "billing"
        else:  # lookup_order
            q = _pick(
                rng,
                (
                    f"Where is my order {oid}?",
                    f"Can you check the status of order {oid}?",
                    f"hi, any update on {oid}",
                    f"my order {oid} hasn't arrived yet, placed {placed}",
                ),
            )
            args = {"order_id": oid}
            result = {
                "order_id": oid,
                "status": "shipped",
                "placed": placed,
                "items": [{"sku": sku, "name": pname, "qty": qty, "price": f"{cur}{price:.2f}"}],
                "total": total,
                "eta": self.day(eta_ts, 0),
            }
            correct = f"Your order {oid} ({qty} x {pname}, {total}) has shipped and should arrive by {eta}."
            given = (
                f"Your order {oid} hasn't shipped yet; it should leave our warehouse next week."
                if wrong
                else correct
            )
            topic = "orders"
        for kind, value in args_pii:
            assert counts is not None
            if kind == "EMAIL" and rng.random() < 0.3:  # URL-encoded, inside a URL
                args["callback_url"] = (
                    "https://shop.northwind.example/notify?email="
                    + value.replace("@", "%40").replace("+", "%2B")
                )
            else:
                args["customer_email" if kind == "EMAIL" else "phone"] = value
            counts["args"][kind] += 1
        for kind, value in tool_pii:
            assert counts is not None
            result[
                {"EMAIL": "customer_email", "PHONE": "customer_phone", "IP_ADDRESS": "order_ip"}[
                    kind
                ]
            ] = value
            counts["tool"][kind] += 1

        if multi and tool in ("lookup_order", "create_return", "issue_refund", "send_invoice"):
            messages.append(
                {
                    "role": "user",
                    "content": _pick(
                        rng,
                        (
                            "where is my order??",
                            "I need help with an order",
                            "Hi, I have a problem with my order",
                        ),
                    ),
                }
            )
            messages.append(
                {"role": "assistant", "content": "Happy to help. What's your order number?"}
            )
            messages.append(
                {"role": "user", "content": _pick(rng, (oid, f"it's {oid}", f"{oid} - {q}"))}
            )
        else:
            messages.append({"role": "user", "content": q})
        call = self.tool_call(tool, args)
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        messages.append({"role": "tool", "tool_call_id": call["id"], "content": _encode(result)})
        tools_used.append(tool)
        return topic, correct, given


# --------------------------------------------------------------------------------------------
# Feedback
# --------------------------------------------------------------------------------------------
_UP_COMMENTS = ("great, thanks!", "quick and helpful", "perfect", "thank you, sorted", "")
_DOWN_COMMENTS = (
    "that's wrong",
    "not what the website says",
    "useless",
    "wrong answer, check the policy",
    "didn't solve my problem",
    "",
)


def _verdict(ev: dict[str, Any]) -> int:
    if "thumb" in ev:
        return int(ev["thumb"])
    r = ev.get("rating", 3)
    return 1 if r >= 4 else -1 if r <= 2 else 0


class _FeedbackPlanner:
    def __init__(
        self, rng: random.Random, spec: SampleSpec, start_ts: float, pii: Counter[str]
    ) -> None:
        self.rng = rng
        self.spec = spec
        self.start_ts = start_ts
        self.end_ts = start_ts + spec.weeks * WEEK_S
        self.pii = pii

    def _ts(self, ts: float) -> str:
        t = _fmt_utc(ts, False)
        if self.rng.random() < 0.1:
            return _fmt_utc(ts + 3600, False) + "+01:00"
        return t + "Z"

    def _event(
        self,
        b: _Built,
        source: str,
        annotator: str | None,
        verdict: int,
        ts: float,
        style: str,
        correction_p: float,
    ) -> dict[str, Any]:
        rng = self.rng
        ev: dict[str, Any] = {}
        if rng.random() < 0.8:
            ev["feedback_id"] = "fb_" + "%016x" % rng.getrandbits(64)
        ev["interaction_id"] = b.record["interaction_id"]
        ev["agent_id"] = b.agent
        ev["timestamp"] = self._ts(ts)
        ev["source"] = source
        if annotator is not None:
            ev["annotator"] = annotator
        if style in ("rating", "both"):
            ev["rating"] = (
                _pick(rng, (4, 5)) if verdict > 0 else _pick(rng, (1, 2)) if verdict < 0 else 3
            )
        if style in ("thumb", "both"):
            ev["thumb"] = 1 if verdict > 0 else -1
        if verdict < 0 and rng.random() < correction_p:
            ev["correction"] = (
                b.correct if b.wrong else b.correct + " Let me know if you need anything else."
            )
        if source == "user" and rng.random() < 0.3:
            c = _pick(rng, _UP_COMMENTS if verdict > 0 else _DOWN_COMMENTS)
            if rng.random() < self.spec.pii_rate * 1.5:
                kind = _pick(rng, ("EMAIL", "PHONE", "PHONE", "EMAIL", "CREDIT_CARD"))
                c = (c + " " if c else "") + _pick(rng, _PII_SENTENCES[kind]).format(
                    v=_PII_MAKERS[kind](rng)
                )
                self.pii[kind] += 1
            if c:
                ev["comment"] = c
        if source == "expert":
            good = verdict > 0
            ev["aspects"] = {
                "accuracy": _int(rng, 4, 5) if good else _int(rng, 1, 2),
                "helpfulness": _int(rng, 3, 5),
                "tool_use": _pick(rng, ("correct", "correct", "missing", "wrong_args")),
            }
        return ev

    def plan(self, b: _Built) -> list[tuple[dict[str, Any], float]]:
        """Events for one interaction, each with the time it was given."""
        rng, spec = self.rng, self.spec
        events: list[tuple[dict[str, Any], float]] = []
        # An out-of-date answer contradicts the website: everyone who votes on it votes it down.
        p_down = (1.0 if b.stale else 0.8) if b.wrong else 0.2
        verdict = -1 if rng.random() < p_down else 1
        last_week_end = self.end_ts - 60
        if rng.random() < 0.05:  # a system signal (escalation detector / resolution)
            ts = min(b.ts + rng.uniform(60, 1800), last_week_end)
            ev = self._event(b, "system", "escalation-detector", verdict, ts, "thumb", 0.0)
            ev["aspects"] = {"signal": "escalated" if verdict < 0 else "resolved"}
            events.append((ev, ts))
            return events
        style = rng.choices(("thumb", "rating", "both"), (0.6, 0.25, 0.15))[0]
        if style == "rating" and rng.random() < 0.1:
            verdict = 0
        disputed = b.dispute is not None and not b.wrong and rng.random() < spec.disputed_share
        if disputed:
            verdict = -1
        if b.week < spec.weeks - 1 and rng.random() < spec.late_feedback_share:
            w = _int(rng, b.week + 1, spec.weeks - 1)
            ts = self.start_ts + w * WEEK_S + rng.uniform(0, WEEK_S - 120)
        else:
            week_end = self.start_ts + (b.week + 1) * WEEK_S - 60
            ts = min(b.ts + rng.uniform(20, 7200), week_end)
        first = self._event(b, "user", None, verdict, ts, style, spec.correction_share)
        if disputed and b.dispute is not None:
            first["correction"] = b.dispute  # sure of it, and wrong
        events.append((first, ts))
        if disputed:
            return events
        if verdict != 0 and not b.stale and rng.random() < spec.changed_vote_share:
            ts2 = min(ts + rng.uniform(300, 4 * 86400), self.end_ts - 1)
            events.append(
                (self._event(b, "user", None, -verdict, ts2, "thumb", spec.correction_share), ts2)
            )
            verdict = -verdict
        if rng.random() < spec.expert_review_share:
            ev_verdict = (
                -verdict
                if (verdict != 0 and not b.stale and rng.random() < spec.expert_disagree_share)
                else (verdict or _pick(rng, (-1, 1)))
            )
            ts3 = min(b.ts + rng.uniform(86400, 12 * 86400), self.end_ts - 1)
            events.append(
                (
                    self._event(
                        b, "expert", f"expert-{_int(rng, 1, 6):02d}", ev_verdict, ts3, "both", 0.8
                    ),
                    ts3,
                )
            )
        return events


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------
def _dumps(obj: Any) -> bytes:
    return _encode(obj).encode() + b"\n"


class _Out:
    """Writes one file deterministically and keeps its stats."""

    def __init__(self, path: Path, kind: str, week: int | None, compress: bool) -> None:
        self.path = path
        self.kind = kind
        self.week = week
        self.compress = compress
        self.chunks: list[bytes] = []

    def add(self, line: bytes) -> None:
        self.chunks.append(line)

    def close(self) -> FileStats:
        data = b"".join(self.chunks)
        raw = gzip.compress(data, mtime=0) if self.compress else data
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_bytes(raw)
        tmp.replace(self.path)
        return FileStats(
            self.path.name,
            self.kind,
            self.week,
            len(self.chunks),
            len(data),
            hashlib.sha256(raw).hexdigest(),
        )


def _week_of(start_ts: float, ts: float, weeks: int) -> int:
    return min(max(int((ts - start_ts) // WEEK_S), 0), weeks - 1)


def _zone_kind(t: str) -> str:
    if t.endswith("Z"):
        return "utc"
    return "offset" if len(t) > 6 and t[-6] in "+-" else "none"


def _sum_counters(*cs: Counter[str]) -> Counter[str]:
    out: Counter[str] = Counter()
    for c in cs:
        out.update(c)
    return out


def _malformed(
    rng: random.Random, reason: str, b: _Built, spec: SampleSpec
) -> tuple[bytes, Counter[str]]:
    """A noise line for ``reason`` and the PII it still carries."""
    rec = b.record
    pii = b.pii or _pii_groups()
    keep = _sum_counters(*pii.values())
    if reason == "not_utf8":
        line = _dumps(rec)
        if rng.random() < 0.5:
            i = line.index(b'"response": "') + len(b'"response": "')
            line = (
                line[:i] + _pick(rng, (b"\xff\xfe", b"\xc3(", b"\xed\xa0\x80", b"\x80")) + line[i:]
            )
        else:  # a legacy writer that encoded as Latin-1
            rec = dict(rec, response=rec["response"] + " Merci, à bientôt!")
            line = json.dumps(rec, ensure_ascii=False).encode("utf-8")
            line = line.replace("à bientôt".encode(), "à bientôt".encode("latin-1")) + b"\n"
        return line, keep
    if reason == "not_json":
        k = _range(rng, 3)
        if k == 0:
            return _dumps(rec)[:-2] + b"\n", keep  # lost its closing brace
        if k == 1:
            return repr(rec).encode() + b"\n", keep  # Python repr, not JSON
        return (
            f"{_fmt_utc(b.ts, True)} INFO agent={b.agent} handled request in 812ms\n"
        ).encode(), Counter()
    if reason == "not_object":
        return _dumps([rec]), keep
    if reason == "missing_field":
        missing = _pick(rng, REQUIRED_FIELDS)
        rec = {k: v for k, v in rec.items() if k != missing}
        if missing in ("messages", "response"):
            gone = ("user", "args", "tool") if missing == "messages" else ("response",)
            keep = _sum_counters(*(c for g, c in pii.items() if g not in gone))
        return _dumps(rec), keep
    if reason == "wrong_type":
        if rng.random() < 0.7:
            return _dumps(dict(rec, messages=json.dumps(rec["messages"], ensure_ascii=False))), keep
        return _dumps(dict(rec, response={"text": rec["response"]})), keep
    if reason == "bad_timestamp":
        bad = _pick(
            rng,
            ("yesterday 10:14", "2026-13-45T25:61:00Z", "1736070000abc", "", "05/01/26 noonish"),
        )
        return _dumps(dict(rec, timestamp=bad)), keep
    if reason == "newer_schema":
        return _dumps(dict(rec, schema_version="2.0", turns=len(rec["messages"]))), keep
    if reason == "invalid_value":
        msgs = [dict(m) for m in rec["messages"]]
        msgs[1]["role"] = "customer"
        return _dumps(dict(rec, messages=msgs)), keep
    if reason == "too_large":
        return _dumps(rec), keep  # built padded by the caller
    raise ValueError(f"unknown malformed reason {reason!r}")


def generate(spec: SampleSpec, out_dir: Path) -> SampleManifest:
    """Write a sample (see the module docstring) into ``out_dir`` and return its manifest.

    Deterministic: the same spec writes byte-identical files. Files of a previous run with other
    names are left alone; ``manifest.json`` lists the files of this run.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(spec.seed)
    sim = _Simulator(rng, spec)
    start_ts = sim.start_ts
    agents = spec.agents
    n = spec.interactions

    # 1. Valid interactions: spread evenly over the weeks, at random daytime-weighted times.
    built: list[_Built] = []
    per_week = [n // spec.weeks + (1 if w < n % spec.weeks else 0) for w in range(spec.weeks)]
    agent_w = [1.0 / (i + 1.5) for i in range(len(agents))]
    for w, count in enumerate(per_week):
        times = sorted(
            start_ts + w * WEEK_S + _range(rng, 7) * 86400 + rng.triangular(6, 23, 15) * 3600
            for _ in range(count)
        )
        for ts in times:
            agent = rng.choices(agents, agent_w)[0]
            built.append(sim.build(agent, ts, w))
    # The same id under two agents: not a duplicate, since identity is (agent_id, interaction_id).
    shared = 0
    if len(agents) > 1:
        used: set[int] = set()
        for _ in range(50 * spec.shared_ids_across_agents):  # bounded: agents may be lopsided
            if shared == spec.shared_ids_across_agents or n < 2:
                break
            a, c = rng.sample(range(n), 2)
            if built[a].agent != built[c].agent and not used & {a, c}:
                built[c].record["interaction_id"] = built[a].record["interaction_id"]
                used.update((a, c))
                shared += 1

    # 2. Feedback.
    fb_pii: Counter[str] = Counter()
    planner = _FeedbackPlanner(rng, spec, start_ts, fb_pii)
    fb_idx = sorted(rng.sample(range(n), round(spec.feedback_share * n)))
    file_events: list[list[tuple[float, int, dict[str, Any]]]] = [[] for _ in range(spec.weeks)]
    all_events: list[
        tuple[_Built, dict[str, Any], int, bool]
    ] = []  # (interaction, event, week, inline)
    seq = 0
    for i in fb_idx:
        b = built[i]
        events = planner.plan(b)
        inline_ok = rng.random() < spec.inline_feedback_share
        inline: list[dict[str, Any]] = []
        for k, (ev, ts) in enumerate(events):
            w = _week_of(start_ts, ts, spec.weeks)
            if inline_ok and w == b.week and ev["source"] == "user" and (k == 0 or inline):
                inline.append(
                    {key: v for key, v in ev.items() if key not in ("interaction_id", "agent_id")}
                )
                all_events.append((b, ev, w, True))
            else:
                file_events[w].append((ts, seq, ev))
                all_events.append((b, ev, w, False))
            seq += 1
        if inline:
            b.record["feedback"] = inline[0] if len(inline) == 1 and rng.random() < 0.5 else inline

    # 3. Lines: valid records, then noise placed after its original.
    week_lines: list[list[tuple[float, int, bytes]]] = [[] for _ in range(spec.weeks)]
    lines_of: list[bytes] = []
    for b in built:
        line = _dumps(b.record)
        lines_of.append(line)
        week_lines[b.week].append((b.ts, seq, line))
        seq += 1
    noise = spec.noise
    pii_dup: Counter[str] = Counter()
    pii_quar: Counter[str] = Counter()
    id_counts = Counter(b.record["interaction_id"] for b in built)
    plain = [
        i
        for i, b in enumerate(built)
        if "feedback" not in b.record
        and id_counts[b.record["interaction_id"]] == 1
        and b.record["consent"]  # a consent-false copy is dropped, never quarantined
    ]
    n_dup = min(noise.count("exact_duplicate", n), len(plain))
    n_conf = min(noise.count("conflicting_duplicate", n), len(plain))
    picks = rng.sample(plain, min(len(plain), n_dup + n_conf))
    for j, i in enumerate(picks):
        b = built[i]
        w = b.week if (b.week == spec.weeks - 1 or rng.random() < 0.6) else b.week + 1
        lo = b.ts if w == b.week else start_ts + w * WEEK_S
        ts = rng.uniform(lo, start_ts + (w + 1) * WEEK_S - 1)
        if j < n_dup:
            week_lines[w].append((ts, seq, lines_of[i]))
            if b.pii:
                pii_dup.update(_sum_counters(*b.pii.values()))
        else:
            other = dict(
                b.record,
                response=b.record["response"] + " Is there anything else I can help with?",
                latency_ms=round(b.record["latency_ms"] + 250.0, 1),
            )
            week_lines[w].append((ts, seq, _dumps(other)))
            if b.pii:
                pii_quar.update(_sum_counters(*b.pii.values()))
        seq += 1
    malformed: dict[str, int] = {}
    for reason in MALFORMED_REASONS:
        k = noise.count(reason, n)
        if k:
            malformed[reason] = k
        for _ in range(k):
            w = _range(rng, spec.weeks)
            ts = start_ts + w * WEEK_S + rng.uniform(0, WEEK_S - 1)
            pad = spec.max_line_bytes + 1024 if reason == "too_large" else 0
            b = sim.build(_pick(rng, agents), ts, w, pad_to=pad)
            b.record["consent"] = True  # consent false would drop the line before its checks
            line, kept = _malformed(rng, reason, b, spec)
            pii_quar.update(kept)
            week_lines[w].append((ts, seq, line))
            seq += 1

    # 4. Files.
    ext = ".jsonl.gz" if spec.compress else ".jsonl"
    stats: list[FileStats] = []
    for w in range(spec.weeks):
        out = _Out(
            out_dir / f"interactions-week-{w + 1:02d}{ext}", "interactions", w + 1, spec.compress
        )
        for _, _, line in sorted(week_lines[w], key=lambda t: (t[0], t[1])):
            out.add(line)
        stats.append(out.close())
    for w in range(spec.weeks):
        out = _Out(out_dir / f"feedback-week-{w + 1:02d}{ext}", "feedback", w + 1, spec.compress)
        for _, _, ev in sorted(file_events[w], key=lambda t: (t[0], t[1])):
            out.add(_dumps(ev))
        stats.append(out.close())
    openai_counts, pii_openai = _write_openai(rng, sim, spec, out_dir / f"openai-chat{ext}", stats)

    # 5. Manifest.
    valid_pii: Counter[str] = Counter()
    for b in built:
        if b.pii:
            valid_pii.update(_sum_counters(*b.pii.values()))
    recs = [b.record for b in built]
    ts_kinds = Counter(_zone_kind(r["timestamp"]) for r in recs)
    malformed_total = sum(malformed.values())
    interactions = {
        "lines_total": n + n_dup + n_conf + malformed_total,
        "valid_distinct": n,
        "valid_lines": n + n_dup,
        "exact_duplicates": n_dup,
        "conflicting_duplicates": n_conf,
        "malformed": malformed,
        "malformed_total": malformed_total,
        "expected_quarantine": {**malformed, "conflicting_duplicate": n_conf}
        if n_conf
        else dict(malformed),
        "consent_false": sum(1 for r in recs if r["consent"] is False),
        "timestamp_utc": ts_kinds["utc"],
        "timestamp_offset": ts_kinds["offset"],
        "timestamp_no_zone": ts_kinds["none"],
        "schema_minor": sum(1 for r in recs if r["schema_version"] != "1.0"),
        "with_extra_fields": sum(1 for r in recs if "ab_bucket" in r or "safety" in r),
        "with_inline_feedback": sum(1 for r in recs if "feedback" in r),
        "with_pii": sum(1 for b in built if b.pii and any(_sum_counters(*b.pii.values()).values())),
        "with_tool_calls": sum(1 for r in recs if r["tools_used"]),
        "faq_questions": sum(1 for r in recs if r["sources"]),
        "wrong_answers": sum(1 for b in built if b.wrong),
        "shared_id_across_agents": shared,
        "by_agent": dict(sorted(Counter(r["agent_id"] for r in recs).items())),
        "by_week": {f"{w + 1:02d}": c for w, c in enumerate(per_week)},
    }
    feedback = _feedback_counts(all_events, spec.weeks)
    pii = {
        "interactions": _pii_dict(valid_pii),
        "exact_duplicate_lines": _pii_dict(pii_dup),
        "quarantine_lines": _pii_dict(pii_quar),
        "feedback": _pii_dict(fb_pii),
        "openai_chat": _pii_dict(pii_openai),
    }
    manifest = SampleManifest(
        GENERATOR_VERSION, spec.to_dict(), stats, interactions, feedback, openai_counts, pii
    )
    (out_dir / "manifest.json").write_text(manifest.to_json(), encoding="utf-8")
    return manifest


def _pii_dict(c: Counter[str]) -> dict[str, int]:
    return {t: c[t] for t in PII_TYPES}


def _feedback_counts(
    all_events: list[tuple[_Built, dict[str, Any], int, bool]], weeks: int
) -> dict[str, Any]:
    ratings: Counter[str] = Counter()
    by_source: Counter[str] = Counter()
    chains: dict[tuple[str, str, str, str | None], int] = {}
    c = Counter[str]()
    verdicts: dict[tuple[str, str], dict[str, int]] = {}
    for b, ev, w, inline in all_events:
        c["events_total"] += 1
        c["inline" if inline else "in_files"] += 1
        by_source[ev["source"]] += 1
        if "feedback_id" not in ev:
            c["without_feedback_id"] += 1
        if ev.get("thumb") == 1:
            c["thumb_up"] += 1
        elif ev.get("thumb") == -1:
            c["thumb_down"] += 1
        if "rating" in ev:
            ratings[str(ev["rating"])] += 1
        for k in ("correction", "comment", "aspects"):
            if k in ev:
                c[f"with_{k}"] += 1
        if w > b.week:
            c["late"] += 1
        key = (b.agent, ev["interaction_id"], ev["source"], ev.get("annotator"))
        chains[key] = chains.get(key, 0) + 1
        verdicts.setdefault((b.agent, ev["interaction_id"]), {})[ev["source"]] = _verdict(ev)
    c["superseded"] = sum(k - 1 for k in chains.values())
    c["disagreements"] = sum(
        1
        for v in verdicts.values()
        if "user" in v and "expert" in v and v["user"] * v["expert"] < 0
    )
    out: dict[str, Any] = {
        k: c[k]
        for k in (
            "events_total",
            "in_files",
            "inline",
            "without_feedback_id",
            "thumb_up",
            "thumb_down",
            "with_correction",
            "with_comment",
            "with_aspects",
            "late",
            "superseded",
            "disagreements",
        )
    }
    out["interactions_with_feedback"] = len(verdicts)
    out["by_source"] = {s: by_source[s] for s in ("user", "expert", "system")}
    out["ratings"] = {str(r): ratings[str(r)] for r in range(1, 6)}
    return out


def _write_openai(
    rng: random.Random, sim: _Simulator, spec: SampleSpec, path: Path, stats: list[FileStats]
) -> tuple[dict[str, Any], Counter[str]]:
    out = _Out(path, "openai_chat", None, spec.compress)
    pii: Counter[str] = Counter()
    c: Counter[str] = Counter()
    rows: list[tuple[float, int, dict[str, Any]]] = []
    seq = 0
    for _ in range(spec.openai_interactions):
        w = _range(rng, spec.weeks)
        ts = sim.start_ts + w * WEEK_S + rng.uniform(0, WEEK_S - 60)
        b = sim.build(_pick(rng, spec.agents), ts, w)
        rec = b.record
        if b.pii:  # the record's metadata is not logged in this format
            pii.update(
                _sum_counters(b.pii["user"], b.pii["args"], b.pii["tool"], b.pii["response"])
            )
        msgs = rec["messages"]
        tools = [
            _TOOL_SCHEMAS[t] for t in _AGENT_TOOLS.get(b.agent, _AGENT_TOOLS["shop-assistant"])
        ]
        in_meta = rng.random() < 0.4
        steps: list[tuple[list[dict[str, Any]], dict[str, Any], str]] = []
        call_at = next((i for i, m in enumerate(msgs) if m.get("tool_calls")), None)
        if call_at is not None and rng.random() < 0.5:
            steps.append((msgs[:call_at], msgs[call_at], "tool_calls"))
        steps.append((msgs, {"role": "assistant", "content": rec["response"]}, "stop"))
        for k, (req_msgs, message, finish) in enumerate(steps):
            created = int(ts) - (len(steps) - 1 - k) * 2
            p_tok = sum(len(m.get("content") or "") for m in req_msgs) // 4 + 12
            c_tok = len(message.get("content") or "") // 4 + (20 if finish == "tool_calls" else 1)
            meta: dict[str, Any] = {
                "conversation_id": rec["conversation_id"],
                "topic": rec["metadata"]["topic"],
            }
            line: dict[str, Any] = {
                "request": {
                    "model": "gpt-4o-mini",
                    "messages": req_msgs,
                    "tools": tools,
                    "user": rec["user_id"],
                    "metadata": meta,
                },
                "response": {
                    "id": "chatcmpl-" + _alnum(rng, 29),
                    "object": "chat.completion",
                    "created": created,
                    "model": "gpt-4o-mini-2024-07-18",
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": {
                        "prompt_tokens": p_tok,
                        "completion_tokens": c_tok,
                        "total_tokens": p_tok + c_tok,
                    },
                },
            }
            if in_meta:
                meta["agent_id"] = b.agent
            else:
                line["agent_id"] = b.agent
            line["latency_ms"] = round(rng.lognormvariate(6.4, 0.4), 1)
            rows.append((float(created), seq, line))
            seq += 1
            c["lines"] += 1
            c["finish_" + finish] += 1
            c["agent_id_in_metadata" if in_meta else "agent_id_top_level"] += 1
        if (
            len(steps) == 2 and b.pii
        ):  # the tool-call step: the user's text and the call's arguments again
            pii.update(_sum_counters(b.pii["user"], b.pii["args"]))
    for _, _, line in sorted(rows, key=lambda t: (t[0], t[1])):
        out.add(_dumps(line))
    stats.append(out.close())
    counts = {
        "interactions": spec.openai_interactions,
        "lines": c["lines"],
        "finish_stop": c["finish_stop"],
        "finish_tool_calls": c["finish_tool_calls"],
        "agent_id_top_level": c["agent_id_top_level"],
        "agent_id_in_metadata": c["agent_id_in_metadata"],
    }
    return counts, pii


# --------------------------------------------------------------------------------------------
# Streaming, for benchmarks
# --------------------------------------------------------------------------------------------
_STREAM_CHUNK = 10_000


@dataclass(frozen=True)
class _StreamJob:
    seed: int
    chunk: int
    n: int
    agents: tuple[str, ...]
    start: date
    days: int
    pii_rate: float
    feedback_share: float


def _stream_chunk(job: _StreamJob) -> bytes:
    """Lines ``[chunk * _STREAM_CHUNK, ...)`` of a stream. Each chunk has its own seed, so the
    output does not depend on how many processes made it."""
    spec = SampleSpec(
        seed=job.seed,
        agents=job.agents,
        start=job.start,
        weeks=max(1, -(-job.days // 7)),
        interactions=max(1, job.n),
        pii_rate=job.pii_rate,
        noise=NoiseSpec.off(),
    )
    rng = random.Random(job.seed * 1_000_003 + job.chunk)
    sim = _Simulator(rng, spec)
    step = job.days * 86400 / max(job.n, 1)
    lo = job.chunk * _STREAM_CHUNK
    out: list[bytes] = []
    for i in range(lo, min(job.n, lo + _STREAM_CHUNK)):
        ts = sim.start_ts + i * step + rng.random() * step
        b = sim.build(_pick(rng, job.agents), ts, int((ts - sim.start_ts) // WEEK_S))
        if job.feedback_share and rng.random() < job.feedback_share:
            up = not b.wrong if rng.random() < 0.8 else b.wrong
            b.record["feedback"] = {
                "timestamp": _fmt_utc(ts + 60, False) + "Z",
                "source": "user",
                "thumb": 1 if up else -1,
            }
        out.append(_encode(b.record).encode())
    out.append(b"")
    return b"\n".join(out)


def _stream_jobs(
    n: int,
    seed: int,
    agents: Sequence[str],
    start: date,
    days: int,
    pii_rate: float,
    feedback_share: float,
) -> list[_StreamJob]:
    if n < 0 or days < 1 or not agents:
        raise SampleSpecError("n must be >= 0, days >= 1, and agents not empty")
    return [
        _StreamJob(seed, c, n, tuple(agents), start, days, pii_rate, feedback_share)
        for c in range(-(-n // _STREAM_CHUNK))
    ]


def iter_interaction_lines(
    n: int,
    seed: int = 0,
    *,
    agents: Sequence[str] = DEFAULT_AGENTS,
    start: date = date(2026, 1, 5),
    days: int = 28,
    pii_rate: float = 0.08,
    feedback_share: float = 0.0,
) -> Iterator[bytes]:
    """Yield ``n`` valid canonical interaction lines (bytes, ``\\n``-terminated), ~1.3 KB each.

    Timestamps rise through ``days`` days from ``start``; no noise and no duplicates; PII at
    ``pii_rate``. With ``feedback_share`` > 0 a share of lines carry one inline thumbs event.
    Same arguments, same lines (as :func:`write_interactions` writes them).
    """
    for job in _stream_jobs(n, seed, agents, start, days, pii_rate, feedback_share):
        yield from _stream_chunk(job).splitlines(keepends=True)


def write_interactions(
    path: Path,
    n: int,
    seed: int = 0,
    *,
    agents: Sequence[str] = DEFAULT_AGENTS,
    start: date = date(2026, 1, 5),
    days: int = 28,
    pii_rate: float = 0.08,
    feedback_share: float = 0.0,
    compress: bool | None = None,
    workers: int | None = None,
) -> int:
    """Stream ``n`` valid interactions (~1.3 KB each) into one JSONL file; return the bytes written
    (uncompressed).

    Byte-identical for the same arguments whatever ``workers`` is (chunks of 10,000 lines are
    seeded apart and written in order). ``workers`` defaults to the CPU count (at most 8), and 1
    below 20,000 lines. ``compress`` defaults to ``path`` ending in ``.gz``. Written aside and
    renamed, so a reader never sees a half-written file.
    """
    path = Path(path)
    if compress is None:
        compress = path.name.endswith(".gz")
    jobs = _stream_jobs(n, seed, agents, start, days, pii_rate, feedback_share)
    if workers is None:
        workers = 1 if n < 2 * _STREAM_CHUNK else min(8, os.cpu_count() or 1)
    tmp = path.with_name(path.name + ".tmp")
    total = 0
    with open(tmp, "wb") as raw:
        fh: Any = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) if compress else raw
        if workers > 1:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                chunks: Iterator[bytes] = pool.map(_stream_chunk, jobs)
                for chunk in chunks:
                    total += len(chunk)
                    fh.write(chunk)
        else:
            for job in jobs:
                chunk = _stream_chunk(job)
                total += len(chunk)
                fh.write(chunk)
        if compress:
            fh.close()
    tmp.replace(path)
    return total


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ratchet.sample --out DIR [options]``: write a sample and print its counts."""
    d = SampleSpec()
    p = argparse.ArgumentParser(
        prog="ratchet sample", description="Write a seeded sample of agent logs and feedback."
    )
    p.add_argument("--out", type=Path, required=True, help="output folder (or file with --stream)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--agents", default=",".join(d.agents), help="comma-separated agent ids")
    p.add_argument(
        "--start", type=date.fromisoformat, default=d.start, help="first day (YYYY-MM-DD)"
    )
    p.add_argument("--weeks", type=int, default=d.weeks)
    p.add_argument(
        "--interactions", type=int, default=d.interactions, help="distinct valid interactions"
    )
    p.add_argument(
        "--openai",
        type=int,
        default=d.openai_interactions,
        help="conversations in openai-chat.jsonl",
    )
    p.add_argument("--feedback-share", type=float, default=d.feedback_share)
    p.add_argument("--pii-rate", type=float, default=d.pii_rate)
    p.add_argument("--no-noise", action="store_true", help="no duplicates and no malformed lines")
    p.add_argument("--too-large", type=int, default=0, help="lines over --max-line-bytes")
    p.add_argument("--max-line-bytes", type=int, default=d.max_line_bytes)
    p.add_argument("--gzip", action="store_true", help="write .jsonl.gz")
    p.add_argument(
        "--stream",
        type=int,
        metavar="N",
        default=0,
        help="instead: write N valid interactions to the single file --out",
    )
    p.add_argument(
        "--workers", type=int, default=None, help="processes for --stream (default: CPUs)"
    )
    a = p.parse_args(argv)
    agents = tuple(x.strip() for x in a.agents.split(",") if x.strip())
    try:
        if a.stream:
            t0 = time.perf_counter()
            size = write_interactions(
                a.out,
                a.stream,
                a.seed,
                agents=agents,
                start=a.start,
                days=7 * a.weeks,
                pii_rate=a.pii_rate,
                compress=a.gzip or None,
                workers=a.workers,
            )
            dt = time.perf_counter() - t0
            print(
                json.dumps(
                    {
                        "file": str(a.out),
                        "lines": a.stream,
                        "bytes": size,
                        "seconds": round(dt, 2),
                        "per_second": round(a.stream / dt),
                    }
                )
            )
            return 0
        noise = NoiseSpec.off() if a.no_noise else NoiseSpec()
        noise = NoiseSpec(**{**asdict(noise), "too_large": a.too_large})
        spec = SampleSpec(
            seed=a.seed,
            agents=agents,
            start=a.start,
            weeks=a.weeks,
            interactions=a.interactions,
            openai_interactions=a.openai,
            feedback_share=a.feedback_share,
            pii_rate=a.pii_rate,
            noise=noise,
            max_line_bytes=a.max_line_bytes,
            compress=a.gzip,
        )
    except SampleSpecError as e:
        p.error(str(e))
    m = generate(spec, a.out)
    print(
        json.dumps(
            {
                "out": str(a.out),
                "files": {f.name: f.lines for f in m.files},
                "interactions": {
                    k: m.interactions[k]
                    for k in (
                        "lines_total",
                        "valid_distinct",
                        "exact_duplicates",
                        "conflicting_duplicates",
                        "malformed_total",
                    )
                },
                "feedback_events": m.feedback["events_total"],
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
