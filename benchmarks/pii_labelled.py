"""Measured detection quality on a labelled set the detectors had no part in.

Sentences are templates filled with faker values (seeded; phones and IBANs from en_US, en_GB,
de_DE, fr_FR, nl_NL). The filler knows the value and its type, so labels never come from the
redactor. For each type: recall (the value is gone and ``[TYPE]`` took its place), recall-any
(the value is gone under any placeholder). False positives: placeholders that appear in PII-free
shop text full of order ids, SKUs, prices, dates, times and tracking numbers.

Run ``python -m benchmarks.pii_labelled`` (1,000 per type) or ``--quick`` (150 per type).
"""

from __future__ import annotations

import argparse
import hashlib
import random
import re
from collections import Counter

from faker import Faker

from ratchet.redaction import Redactor

LOCALES = ["en_US", "en_GB", "de_DE", "fr_FR", "nl_NL"]
TEMPLATES = [
    "Hi, please contact me at {v} about my order.",
    "My details: {v}. Thanks!",
    "{v} is what I gave at checkout",
    'tool args: {{"value": "{v}", "n": 2}}',
    "Can you update it to {v} before 2026-11-03?",
]
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _base58check(payload: bytes) -> str:
    """A BTC legacy address from a 21-byte payload (filler's own implementation)."""
    check = hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    raw = payload + check
    num = int.from_bytes(raw, "big")
    out = ""
    while num:
        num, rem = divmod(num, 58)
        out = _B58[rem] + out
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + out


def generators(seed: int) -> dict[str, object]:
    fakers = {loc: Faker(loc) for loc in LOCALES}
    for i, f in enumerate(fakers.values()):
        f.seed_instance(seed + i)
    rnd = random.Random(seed)
    us = fakers["en_US"]

    def any_locale() -> Faker:
        return fakers[rnd.choice(LOCALES)]

    def card() -> str:
        number = us.credit_card_number(
            card_type=rnd.choice(["visa16", "mastercard", "amex", "discover"])
        )
        style = rnd.choice(["compact", "space", "dash"])
        if style == "compact":
            return number
        groups = (
            [number[:4], number[4:10], number[10:]]
            if len(number) == 15
            else [number[i : i + 4] for i in range(0, len(number), 4)]
        )
        return (" " if style == "space" else "-").join(groups)

    def iban() -> str:
        f = fakers[rnd.choice(["en_GB", "de_DE", "fr_FR", "nl_NL"])]
        value = f.iban()
        if rnd.random() < 0.5:
            value = " ".join(value[i : i + 4] for i in range(0, len(value), 4))
        return value

    return {
        "EMAIL": lambda: any_locale().email(),
        "PHONE": lambda: any_locale().phone_number(),
        "CREDIT_CARD": card,
        "IBAN": iban,
        "US_SSN": us.ssn,
        "IP_ADDRESS": lambda: us.ipv4() if rnd.random() < 0.6 else us.ipv6(),
        "MAC_ADDRESS": us.mac_address,
        "CRYPTO_WALLET": lambda: (
            _base58check(b"\0" + rnd.randbytes(20))
            if rnd.random() < 0.5
            else "0x" + rnd.randbytes(20).hex()
        ),
        "API_KEY": lambda: "sk-proj-" + us.pystr(min_chars=32, max_chars=48),
        "AWS_KEY": lambda: "AKIA" + "".join(rnd.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", k=16)),
    }


def shop_text(n: int, seed: int) -> list[str]:
    """PII-free support talk dense with the look-alikes the detectors must leave alone."""
    rnd = random.Random(seed)
    f = Faker("en_US")
    f.seed_instance(seed)
    out = []
    for _ in range(n):
        out.append(
            rnd.choice(
                [
                    f"Order ORD-{rnd.randint(2019, 2026)}-{rnd.randint(0, 999999):06d} shipped on {f.date()}.",
                    f"SKU-{rnd.randint(10, 99)}-{rnd.randint(0, 9999):04d}-{rnd.choice(['BLK', 'WHT', 'OAK'])} costs ${rnd.randint(1, 9999):,}.{rnd.randint(0, 99):02d}.",
                    f"Delivered {f.date(pattern='%m/%d/%Y')} at {f.time()}, tracking 1Z{rnd.randint(0, 999):03d}AA1{rnd.randint(0, 10**10):010d}.",
                    f"USPS 9400 {rnd.randint(1000, 9999)} {rnd.randint(1000, 9999)} {rnd.randint(1000, 9999)} {rnd.randint(1000, 9999)} {rnd.randint(10, 99)} arrives {f.date(pattern='%d.%m.%Y')}.",
                    f"Invoice INV-{rnd.randint(2019, 2026)}-{rnd.randint(0, 99999):05d}, refund of EUR {rnd.randint(1, 999)},{rnd.randint(0, 99):02d} in 3-5 days.",
                    f"Ticket #{rnd.randint(10**7, 10**8)} for item {f.uuid4()} version {rnd.randint(1, 9)}.{rnd.randint(0, 20)}.{rnd.randint(0, 50)}.",
                    f"Model X{rnd.randint(100, 999)} weighs {rnd.randint(1, 90)}.{rnd.randint(0, 9)} kg, {rnd.randint(10, 300)} x {rnd.randint(10, 300)} cm.",
                ]
            )
        )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="150 samples per type")
    parser.add_argument("--per-type", type=int, default=None)
    parser.add_argument("--seed", type=int, default=20261122)
    args = parser.parse_args(argv)
    per_type = args.per_type or (150 if args.quick else 1000)
    redactor = Redactor()
    rnd = random.Random(args.seed)
    gens = generators(args.seed)

    print(f"rule set {redactor.version}; {per_type} labelled values per type, locales {LOCALES}")
    print(f"{'type':<15}{'recall':>8}{'any-type':>10}   misses (examples)")
    for type_, gen in gens.items():
        typed = anyhit = 0
        misses: list[str] = []
        for _ in range(per_type):
            value = gen()  # type: ignore[operator]
            template = rnd.choice(TEMPLATES)
            text = template.format(v=value)
            out, _ = redactor.redact_text(text)
            gone = value not in out and not any(
                part in out for part in re.split(r"[ \-.]", value) if len(part) >= 6
            )
            if out == template.format(v=f"[{type_}]"):
                typed += 1
            if gone:
                anyhit += 1
            elif len(misses) < 3:
                misses.append(value)
        print(f"{type_:<15}{typed / per_type:>8.1%}{anyhit / per_type:>10.1%}   {misses}")

    clean = shop_text(per_type * 5, args.seed)
    fp: Counter[str] = Counter()
    fp_rows = 0
    examples: list[str] = []
    for text in clean:
        _, counts = redactor.redact_text(text)
        if counts:
            fp_rows += 1
            fp.update(counts)
            if len(examples) < 3:
                examples.append(text)
    print(
        f"false positives on {len(clean):,} PII-free shop sentences: {fp_rows} sentences "
        f"({fp_rows / len(clean):.2%}); by type {dict(fp)}; examples {examples}"
    )


if __name__ == "__main__":
    main()
