"""Redaction throughput against its peers, in one run on the same column.

Generates N synthetic interaction texts (about 1 KB each, shop support talk full of order ids,
SKUs, prices, dates and tracking numbers; a share of records carries PII), then measures:

* ``ratchet``: :meth:`Redactor.redact_array` over the column (prefilter + mark + checksums +
  replace), MB/s and records/s; and the residual scan (``scan_array``) over the redacted column;
* ``re2 floor``: one ``pyarrow.compute.replace_substring_regex`` pass with one combined pattern of
  the same PII shapes (no checksums) — the speed floor the issue compares against;
* ``presidio``: AnalyzerEngine (pattern recognizers only, ``NoOpNlpEngine``) + AnonymizerEngine on
  a sample, per record.

Run ``python -m benchmarks.bench_redaction`` (500k records) or with ``--quick`` (50k).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

CLEAN = [
    "Hi, I ordered the walnut desk (SKU-88-1234-BLK) on 2026-11-03 and it has not arrived yet.",
    "Your order ORD-2024-118842 shipped on 11/03/2026 via UPS, tracking 1Z999AA10123456784.",
    "The total was $1,299.00 including $49.99 shipping and a 10% discount code WINTER26.",
    "USPS tracking 9400 1000 0000 0000 0000 00 shows it left the Memphis hub at 14:30.",
    "I can offer a replacement or a refund of $249.50 to the original payment method.",
    "Returns are accepted within 30 days; print the label from your account page.",
    "The chair comes in three colours (black, oak, white) and ships flat-packed in 2 boxes.",
    "Delivery windows are 8:00-12:00 or 13:00-18:00 on weekdays; Saturday costs $15 extra.",
    "Thanks for waiting! I checked with the warehouse and your parcel is in transit.",
    "Order ORD-2025-004417 contains 2 x SKU-12-0042-WHT and 1 x SKU-77-9001-OAK.",
    "Our version 3.14.2 app shows the status under Orders > Details > Shipment.",
    "The invoice INV-2026-00031 is attached; the VAT amount is EUR 212.35.",
    "Model X200 weighs 23.5 kg and measures 120 x 60 x 75 cm, assembly takes 45 minutes.",
    "Please allow 3-5 business days for the refund to appear on your statement.",
    "I'm sorry about the delay, the courier lost the scan at the depot on 2026-10-28.",
    "You can track it any time with reference 7700-1234-5678 on the carrier's site.",
]
PII = [
    "You can reach me at jane.doe{n}@example.com or on +44 20 7946 0958.",
    "My card 4111 1111 1111 1111 was charged twice, please refund it.",
    "Call me back on (415) 555-0100 after 5pm, or at 020 7946 0958.",
    "Please wire it to DE89 3704 0044 0532 0130 00, thanks.",
    "My SSN is 123-45-6789, do you need it for the warranty?",
    "The router at 192.168.1.{n} with MAC 00:1A:2B:3C:4D:5E keeps dropping.",
    "Debug: Authorization: Bearer abcdefghijklmnopqrstu{n}vwxyz0123",
    "my api key is sk-proj-abcdefghijklmnopqrstuvwx{n}yz and it leaked",
    "Send the refund to bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq please.",
    "connect with postgres://admin:hunter{n}@db.internal:5432/shop",
]
PATTERN_FLOOR = "|".join(
    [
        r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+",
        r"\+\d{1,3}[ \-]?\(?\d{1,4}\)?(?:[ \-]?\d{2,4}){2,4}",
        r"\(\d{3}\) ?\d{3}[\-. ]\d{4}",
        r"\b0\d{2,4}[ \-]?\d{3,4}[ \-]?\d{3,4}\b",
        r"\b\d{4}[ \-]?\d{4}[ \-]?\d{4}[ \-]?\d{1,4}\b",
        r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,7}(?: ?[A-Z0-9]{1,3})?\b",
        r"\b\d{3}-\d{2}-\d{4}\b",
        r"\b\d{1,3}(?:\.\d{1,3}){3}\b",
        r"\b[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}\b",
        r"\bbc1[0-9a-z]{20,80}\b|\b0x[0-9a-fA-F]{40}\b",
        r"sk-[A-Za-z0-9_\-]{20,}|AKIA[A-Z0-9]{16}|gh[pousr]_[A-Za-z0-9]{30,}",
        r"(?i:bearer)\s+[A-Za-z0-9._\-]{16,}",
        r"://[^\s:/@]+:[^\s@/]+@",
    ]
)


def make_texts(n: int, pii_rate: float = 0.07, seed: int = 7) -> pa.Array:
    """``n`` texts of about 1 KB: 11 clean sentences each, one PII sentence in ``pii_rate`` of
    them. Seeded and vectorised enough to build 500k records in a few seconds."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(CLEAN), size=(n, 11))
    has_pii = rng.random(n) < pii_rate
    pii_pick = rng.integers(0, len(PII), size=n)
    out: list[str] = []
    for i in range(n):
        parts = [CLEAN[j] for j in picks[i]]
        if has_pii[i]:
            parts[5] = PII[pii_pick[i]].format(n=i % 250)
        out.append(" ".join(parts))
    return pa.array(out, pa.string())


def _chunked(arr: pa.Array, size: int = 50_000) -> list[pa.Array]:
    return [arr.slice(i, size) for i in range(0, len(arr), size)]


def bench_ratchet(arr: pa.Array) -> tuple[float, float, pa.Array]:
    from ratchet.redaction import Redactor

    r = Redactor()
    t = time.perf_counter()
    out = [r.redact_array(c)[0] for c in _chunked(arr)]
    t_redact = time.perf_counter() - t
    redacted = pa.chunked_array(out).combine_chunks()
    t = time.perf_counter()
    residual = sum(sum(r.scan_array(c).values()) for c in _chunked(redacted))
    t_scan = time.perf_counter() - t
    if residual:
        print(f"WARNING: residual scan found {residual} hits after redaction")
    return t_redact, t_scan, redacted


def bench_floor(arr: pa.Array) -> float:
    t = time.perf_counter()
    for c in _chunked(arr):
        pc.replace_substring_regex(c, PATTERN_FLOOR, "[PII]")
    return time.perf_counter() - t


def bench_presidio(texts: list[str]) -> float:
    os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NoOpNlpEngine
    from presidio_anonymizer import AnonymizerEngine

    analyzer = AnalyzerEngine(
        nlp_engine=NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "noop"}]),
        supported_languages=["en"],
    )
    anonymizer = AnonymizerEngine()
    analyzer.analyze(text=texts[0], language="en")  # warm up
    t = time.perf_counter()
    for text in texts:
        results = analyzer.analyze(text=text, language="en")
        anonymizer.anonymize(text=text, analyzer_results=results)
    return time.perf_counter() - t


def bench_stages(arr: pa.Array, reps: int = 5) -> dict[str, float]:
    """Best-of-``reps`` seconds of each engine stage over the whole column, memo warm: the
    prefilter (one thread), the marker pass on the candidate rows, and Python detection."""
    from ratchet.redaction import Redactor

    r = Redactor()
    r.redact_array(arr)
    best: dict[str, float] = {}
    for _ in range(reps):
        t = time.perf_counter()
        pc.match_substring_regex(arr, r._prefilter)
        times = {"prefilter": time.perf_counter() - t}
        idx = r._candidates(arr)
        cand = arr.take(pa.array(idx))
        t = time.perf_counter()
        r._mark(cand)
        times["mark"] = time.perf_counter() - t
        t = time.perf_counter()
        r._spans_for(arr, idx)
        times["detect"] = time.perf_counter() - t
        best = {k: min(best.get(k, v), v) for k, v in times.items()}
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50k records, 100 for Presidio")
    parser.add_argument("--records", type=int, default=None)
    parser.add_argument("--presidio-sample", type=int, default=None)
    parser.add_argument("--stages", action="store_true", help="only time each engine stage")
    args = parser.parse_args(argv)
    n = args.records or (50_000 if args.quick else 500_000)
    sample = args.presidio_sample or (100 if args.quick else 500)

    t = time.perf_counter()
    arr = make_texts(n)
    mb = arr.nbytes / 1e6
    print(f"generated {n:,} records, {mb:,.0f} MB of text in {time.perf_counter() - t:.1f} s")
    if args.stages:
        print({k: round(v, 3) for k, v in bench_stages(arr).items()}, "(s, best of 5)")
        return
    candidates = 0
    from ratchet.redaction import Redactor

    r = Redactor()
    for c in _chunked(arr):
        candidates += int(pc.sum(pc.match_substring_regex(c, r._prefilter)).as_py() or 0)
    print(f"prefilter candidates: {candidates:,} rows ({candidates / n:.1%})")

    t_floor = bench_floor(arr)
    t_redact, t_scan, _ = bench_ratchet(arr)
    t_pres = bench_presidio(arr.slice(0, sample).to_pylist())
    sample_mb = arr.slice(0, sample).nbytes / 1e6

    floor_mbs = mb / t_floor
    ours_mbs = mb / t_redact
    pres_mbs = sample_mb / t_pres
    print(f"{'engine':<34}{'MB/s':>10}{'records/s':>14}")
    print(f"{'pyarrow RE2 single pass (floor)':<34}{floor_mbs:>10.1f}{n / t_floor:>14,.0f}")
    print(f"{'ratchet redact_array':<34}{ours_mbs:>10.1f}{n / t_redact:>14,.0f}")
    print(f"{'ratchet scan_array (residual)':<34}{mb / t_scan:>10.1f}{n / t_scan:>14,.0f}")
    print(
        f"{'presidio (sample of ' + str(sample) + ')':<34}{pres_mbs:>10.2f}{sample / t_pres:>14,.0f}"
    )
    print(f"ratchet / floor    = {ours_mbs / floor_mbs:.2f}x  (target >= 0.5x)")
    print(f"ratchet / presidio = {ours_mbs / pres_mbs:,.0f}x  (target >= 100x)")


if __name__ == "__main__":
    main()
