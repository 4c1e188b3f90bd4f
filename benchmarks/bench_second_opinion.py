"""The PII second opinion (ratchet.second_opinion): false positives, recall, and its cost.

Three measurements, each next to its peer in the same run:

1. False positives on PII-free text: the shop sentences of ``benchmarks.pii_labelled`` (order
   ids, SKUs, prices, dates, tracking numbers), one sentence a row; the redactor's own false
   positives on the same rows beside them.
2. False positives on the bundled sample after redaction: the sample folder is ingested into a
   temporary store by the real pipeline, and every written row (interactions, feedback,
   quarantine) is scanned, whole (no sampling). The redactor removed what it knows, so what the
   second opinion finds there is either a miss of the redactor or a false positive of the scan;
   both are printed by type (counts, never values).
3. Recall on the labelled values of ``benchmarks.pii_labelled`` (share of sentences with a hit
   of any type), and throughput: the scan vs ``Redactor.redact_text`` on the same rows (MB/s,
   and the ratio redactor / scan).

Run ``python -m benchmarks.bench_second_opinion`` (``--quick``: fewer rows).
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.pii_labelled import TEMPLATES, generators, shop_text
from ratchet.config import PipelineConfig, QualityConfig
from ratchet.redaction import Redactor
from ratchet.second_opinion import SecondOpinion, text_columns

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "ratchet" / "data" / "sample"


def _written_sample_rows() -> dict[str, list[list[str]]]:
    """Ingest the bundled sample into a temporary store; every written row's strings by table."""
    from ratchet.db import open_database, repo
    from ratchet.ingest.pipeline import IngestContext, ingest_file
    from ratchet.settings import get_settings
    from ratchet.store import Store

    home = tempfile.mkdtemp(prefix="bench-second-opinion-")
    os.environ["RATCHET_HOME"] = home
    settings = get_settings()
    # the scan under test is run below, on everything written, not inside ingest
    config = PipelineConfig.model_validate(
        {"ingest": {"workers": 1}, "quality": {"second_opinion_enabled": False}}
    )
    ctx = IngestContext(
        store=Store(settings.store_root), sessions=open_database(settings), config=config,
        redactor=Redactor(config.redaction), pseudonym_key=b"b" * 32,
        now=datetime(2026, 11, 20, tzinfo=UTC),
    )  # fmt: skip
    for p in sorted(SAMPLE_DIR.glob("interactions-*.jsonl")) + [SAMPLE_DIR / "openai-chat.jsonl"]:
        ingest_file(ctx, p)
    for p in sorted(SAMPLE_DIR.glob("feedback-*.jsonl")):
        ingest_file(ctx, p, kind="feedback")
    from ratchet.schemas import schema_for

    out: dict[str, list[list[str]]] = {}
    with ctx.sessions() as s:
        for table in ("interactions", "feedback", "quarantine"):
            paths = [p.path for p in repo.list_parts(s, table)]
            schema = schema_for(table)
            data = ctx.store.read_tables(paths, schema, text_columns(schema))
            rows = []
            for record in data.to_pylist():
                strings: list[str] = []
                _collect(record, strings)
                rows.append(strings)
            out[table] = rows
    return out


def _collect(value: object, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for v in value.values():
            _collect(v, out)
    elif isinstance(value, list):
        for v in value:
            _collect(v, out)


def _mb(rows: list[list[str]]) -> float:
    return sum(len(s.encode()) for r in rows for s in r) / 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 PII-free rows, 50 per type")
    parser.add_argument("--seed", type=int, default=20261122)
    args = parser.parse_args(argv)
    n_clean, per_type = (1000, 50) if args.quick else (5000, 200)
    scan = SecondOpinion(QualityConfig())
    redactor = Redactor()
    t0 = time.perf_counter()
    scan.scan_texts([["warm up"]])
    print(
        f"analyzer built in {time.perf_counter() - t0:.1f} s; entity thresholds "
        f"{scan.config.second_opinion_min_scores}"
    )

    clean = [[t] for t in shop_text(n_clean, args.seed)]
    hit_rows, hits = scan.scan_texts(clean)
    red_fp = sum(bool(redactor.redact_text(r[0])[1]) for r in clean)
    print(
        f"PII-free shop sentences: {len(clean):,} rows; second opinion: {hit_rows} rows "
        f"({hit_rows / len(clean):.2%}) {dict(hits)}; redactor: {red_fp} rows "
        f"({red_fp / len(clean):.2%})"
    )

    written = _written_sample_rows()
    for table, rows in written.items():
        hit_rows, hits = scan.scan_texts(rows)
        print(
            f"bundled sample after redaction, {table}: {len(rows):,} rows, {_mb(rows):.2f} MB; "
            f"second opinion: {hit_rows} rows ({hit_rows / max(len(rows), 1):.2%}) {dict(hits)}"
        )

    rnd = random.Random(args.seed)
    recall: dict[str, str] = {}
    labelled: list[list[str]] = []
    for type_, gen in generators(args.seed).items():
        rows = [[rnd.choice(TEMPLATES).format(v=gen())] for _ in range(per_type)]  # type: ignore[operator]
        labelled += rows
        hit_rows, _ = scan.scan_texts(rows)
        recall[type_] = f"{hit_rows / per_type:.0%}"
    print(f"recall (sentence has a hit of any type), {per_type} per type: {recall}")

    # throughput on the same rows: the written sample (real chat text) + the labelled sentences
    import pyarrow as pa

    rows = written["interactions"] + written["feedback"] + labelled
    texts = ["\n\n".join(r) for r in rows]
    mb = _mb(rows)
    t0 = time.perf_counter()
    redactor.redact_array(pa.array(texts, pa.string()))
    t_col = time.perf_counter() - t0
    t0 = time.perf_counter()
    for t in texts:
        redactor.redact_text(t)
    t_red = time.perf_counter() - t0
    t0 = time.perf_counter()
    scan.scan_texts(rows)
    t_scan = time.perf_counter() - t0
    per_row = t_scan / len(rows)
    sample = QualityConfig().second_opinion_sample_rows
    print(
        f"throughput on the same {len(rows):,} rows ({mb:.2f} MB): second opinion "
        f"{mb / t_scan:.3f} MB/s ({per_row * 1000:.2f} ms/row); redactor column path "
        f"(redact_array) {mb / t_col:.2f} MB/s = {t_scan / t_col:,.0f}x the scan's speed; "
        f"redactor per text (redact_text) {mb / t_red:.2f} MB/s = {t_scan / t_red:,.1f}x"
    )
    print(
        f"cost at the default sample ({sample} rows per table per batch): about "
        f"{sample * per_row:.1f} s per ingest batch and table"
    )


if __name__ == "__main__":
    main()
