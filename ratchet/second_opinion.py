"""A second, independent opinion on redaction: Presidio's pattern recognizers over a sample.

The residual scan (``pii_residual``) runs the redactor's own detectors after redaction, so it is
zero by construction: it cannot see a shape the redactor does not know. This module is the
independent check DESIGN.md asks for. It shares no code with :mod:`ratchet.redaction` (no
import, no copied pattern): detection is Presidio's (``presidio-analyzer``, the ``privacy``
extra), run offline.

What it does, per written table: pick a deterministic sample of rows (``numpy`` generator seeded
by ``quality.second_opinion_seed`` and the table name, so a rerun scans the same rows), collect
every string in the table's text columns (strings nested in lists and structs included: message
content, tool-call arguments), mask redaction placeholders, run the recognizers, and count hits
by entity type and the rows that hold one. The result holds counts only, never a matched value
or a span: it is safe in a log, an artifact, an exception or the ledger.

Decisions (measured with ``benchmarks/bench_second_opinion.py``; figures in
``benchmarks/README.md``):

* **Engine**: ``AnalyzerEngine`` over ``NoOpNlpEngine`` and a registry holding only the
  recognizers below. No NLP model is loaded (the default engine downloads spaCy's), so names and
  places are out of scope; the redactor does not claim them either.
* **Offline**: Presidio's e-mail validation calls ``tldextract``, whose module-level extractor
  fetches the public-suffix list over the network. The e-mail recognizer here validates with an
  extractor of its own built with ``suffix_list_urls=()`` and no cache dir: the snapshot bundled
  in the wheel, no network, no files written, whatever the environment says.
* **Recognizer set**: the PII the redactor claims to remove and Presidio knows:
  EMAIL_ADDRESS, PHONE_NUMBER, CREDIT_CARD (Luhn), IBAN_CODE (mod 97), US_SSN, IP_ADDRESS,
  CRYPTO (Base58Check / Bech32), MAC_ADDRESS. Left out on purpose: DATE_TIME (dates are not PII
  and every log is full of them), URL (an address is not PII; credentials inside one are the
  redactor's SECRET rule, which Presidio has no counterpart for), US_DRIVER_LICENSE and
  US_BANK_NUMBER (they match most alphanumeric words or digit runs: order ids, tracking numbers),
  UUID (ids), the country-specific national ids (short checksums such as NHS mod 11 pass on one
  random digit run in eleven, so tracking numbers would hit), and the NER types (no model).
* **Score thresholds** (``quality.second_opinion_min_scores``): checksum-validated types score
  1.0 when the checksum holds, so they need 0.9 (a match whose checksum fails is dropped by
  Presidio anyway). US_SSN needs 0.5: its 0.05 patterns ("very weak": any nine digits, 3-6 digit
  groups) hit order numbers; only the 0.5 ``ddd-dd-dddd`` shape counts. PHONE_NUMBER scores a
  flat 0.4 from ``phonenumbers``' matcher and counts at 0.4. IP_ADDRESS patterns score 0.6 (v4)
  and higher (v6) and are checked by Presidio for impossible octets.
* **Phone numbers**, Presidio's noisiest type here, are narrowed three ways, each measured on
  the PII-free shop set (``benchmarks.pii_labelled``) and the redacted bundled sample: leniency
  STRICT_GROUPING instead of VALID (VALID read "2023-510375" in an order id as a number: 15% of
  PII-free sentences hit); only numbers written like one count (a "+" or a separator: a bare
  10-digit run is a DHL tracking number in the sample as often as a phone); and a match glued
  to a longer token (a UUID's first eight digits) does not count. Regions: US, GB, DE, FR, NL
  (the locales of the labelled set; "+" numbers match from anywhere). ``phonenumbers`` is 95% of
  the scan's time, so it only sees runs of 7+ digits with their separators. Cost: recall on the
  labelled phones is ~60% (numbers without separators are left to the redactor).
* **IP addresses nobody owns** (loopback, unspecified, reserved, multicast, link-local,
  documentation ranges; checked with :mod:`ipaddress`) are not hits: the redactor keeps them by
  default (``redaction.keep_reserved_ips``), code samples quote them, and they are no one's.
* **Allow list**: ``redaction.allow_list`` (strings kept on purpose) is passed to Presidio's own
  exact allow list. ``redaction.disabled_types`` is *not* honoured: a type switched off in the
  redactor is exactly what this scan should see; drop the entity from
  ``quality.second_opinion_min_scores`` too when that is deliberate.
* **Credit cards** glued to more digits (a 22-digit USPS tracking number holds Luhn-valid
  16-digit windows) do not count.
* **Placeholders** (``[EMAIL]``, ``[CREDIT_CARD]``: the redactor's documented output form, an
  upper-snake word in brackets) are masked with spaces of the same length before analysis, so a
  placeholder never counts as a hit, and two fragments around one never fuse into a number.
* **Sample size**: at ingest, a file budget (``batch_sample_rows``): enough rows that a leak at
  ``quality.second_opinion_max_hit_rate`` is seen with ``quality.second_opinion_confidence``
  (2,995 rows at 0.1% and 95%), shared among the file's batches by bytes, and at most
  ``quality.second_opinion_sample_rows`` (200) per table and batch, so a small file is scanned as
  it always was; per curated table at curation, ``second_opinion_sample_rows``. The scan runs at
  ~4.5 ms a row of chat text on this machine, ~8x slower than the redactor on the same rows: 200
  rows per 10,000-line batch were ~120 µs of every record's ingest. At the maximum rate of 0.1%
  any single hit in a sample under 1,000 rows fails the suite.
* **Hit rate**: the share of *sampled rows* holding at least one hit. The data-quality check in
  :mod:`ratchet.quality` fails above ``quality.second_opinion_max_hit_rate`` and names each
  entity type with its count.
* **Presidio missing**: :meth:`SecondOpinion.scan` returns a result with
  ``status="skipped"`` and the reason ``"skipped: presidio not installed"``; whether that fails
  the suite is ``quality.second_opinion_required``. Nothing here raises for a missing package.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import re
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa

from ratchet.config import PipelineConfig, QualityConfig
from ratchet.schemas import schema_for
from ratchet.store import Store

log = logging.getLogger(__name__)

# Regions whose national formats phone matching understands (each one is a pass of
# phonenumbers' matcher: the scan's main cost). Numbers with a +country code match anywhere.
PHONE_REGIONS = ("US", "GB", "DE", "FR", "NL")
# phonenumbers' Leniency.STRICT_GROUPING: a valid number whose digit groups follow the
# region's format. VALID (Presidio's default) took "2023-510375" in "ORD-2023-510375" for a phone
# number: 15% of PII-free shop sentences hit.
PHONE_LENIENCY = 2
# A run of digits and the separators phone numbers are written with, and an extension (the
# phone gate: only such runs, with 7+ digits and a separator or "+", go to phonenumbers).
_DIGIT_RUN = re.compile(r"[+(]?\d[\d \t().\-/]*\d\)?(?:\s?(?:x|ext\.?)\s?\d+)?", re.IGNORECASE)
SKIPPED_NOT_INSTALLED = "skipped: presidio not installed"
SKIPPED_DISABLED = "skipped: quality.second_opinion_enabled is false"
# The redactor's output contract (DESIGN.md: "typed placeholders ([EMAIL])"), not a detector.
_PLACEHOLDER = re.compile(r"\[[A-Z][A-Z0-9_]*\]")


_JOIN = "\n\n"
# Digit types whose matchers can take a window out of a longer token (see the docstring).
_NUMERIC = frozenset({"CREDIT_CARD", "PHONE_NUMBER"})
_PHONE_MARKS = frozenset("+ -.()/")
_CLEAN_WINDOWS_MAX = 65_536  # phone windows remembered as match-free (then forgotten at once)


def _inside_longer_token(text: str, start: int, end: int) -> bool:
    """The match is glued to more of a token: a letter or digit right next to it, or a digit
    (or, past a dash, a letter) across one space or dash."""
    for i, step in ((start - 1, -1), (end, 1)):
        if not 0 <= i < len(text):
            continue
        if text[i].isalnum():
            return True
        j = i + step
        if 0 <= j < len(text) and (
            (text[i] in " -" and text[j].isdigit()) or (text[i] == "-" and text[j].isalpha())
        ):
            return True
    return False


_DOCUMENTATION_NETS = tuple(
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)


def _unowned_ip(value: str) -> bool:
    """An address no person can hold: loopback, unspecified, reserved, multicast, link-local or
    a documentation range (also IPv4-mapped in IPv6). Code samples and configs quote them."""
    try:
        ip = ipaddress.ip_interface(value.split("%", 1)[0].strip("[]")).ip
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    ip = mapped or ip
    return (
        ip.is_loopback or ip.is_unspecified or ip.is_reserved or ip.is_multicast
        or ip.is_link_local or any(ip in net for net in _DOCUMENTATION_NETS if ip.version == net.version)
    )  # fmt: skip


def _counts(entity: str, text: str, start: int, end: int) -> bool:
    """Whether a recognizer's match is a hit (see the module docstring on false positives)."""
    if entity in _NUMERIC and _inside_longer_token(text, start, end):
        return False
    if entity == "IP_ADDRESS":
        return not _unowned_ip(text[start:end])
    if entity == "PHONE_NUMBER":
        # A bare digit run is a tracking number, an order id or a timestamp as often as a phone
        # number: only numbers written like one (+country code, or grouped) count.
        return any(c in _PHONE_MARKS for c in text[start:end])
    return True


class SecondOpinionConfigError(ValueError):
    """The configured entity set names a type this scanner has no recognizer for."""


@dataclass
class SecondOpinionResult:
    """What the scan of one table found: counts only, never a value or a position."""

    table: str
    status: str  # scanned | skipped
    rows_total: int = 0
    rows_scanned: int = 0
    rows_with_hits: int = 0
    hits_by_type: Counter[str] = field(default_factory=Counter)
    reason: str | None = None  # why it was skipped

    @property
    def hit_rate(self) -> float:
        return self.rows_with_hits / self.rows_scanned if self.rows_scanned else 0.0

    def merge(self, other: SecondOpinionResult) -> None:
        """Fold another scan of the same table in (a file's batches, a table's parts)."""
        if other.status == "scanned":
            self.status = "scanned"
            self.reason = None
        self.rows_total += other.rows_total
        self.rows_scanned += other.rows_scanned
        self.rows_with_hits += other.rows_with_hits
        self.hits_by_type.update(other.hits_by_type)

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "status": self.status,
            "reason": self.reason,
            "rows_total": self.rows_total,
            "rows_scanned": self.rows_scanned,
            "rows_with_hits": self.rows_with_hits,
            "hit_rate": round(self.hit_rate, 6),
            "hits_by_type": dict(sorted(self.hits_by_type.items())),
        }


def merge_results(into: dict[str, SecondOpinionResult], result: SecondOpinionResult) -> None:
    """Fold a scan into the per-table results of a larger unit (a file's batches)."""
    seen = into.get(result.table)
    if seen is None:
        into[result.table] = replace(result, hits_by_type=Counter(result.hits_by_type))
    else:
        seen.merge(result)


# Presidio's package imports its NLP engines eagerly, and those import PyTorch and transformers
# when they are installed (the ``train`` extra): ~330 MB and ~5 s of CPU in every process that
# scans, for recognizers this module never uses (pattern recognizers, ``NoOpNlpEngine``).
_HEAVY_OPTIONAL = ("torch", "transformers")


def _import_presidio() -> Any:
    """``presidio_analyzer``, imported with its optional model back ends hidden.

    A ``None`` entry in ``sys.modules`` makes an import raise ImportError, which Presidio's
    NLP modules catch (their model back ends are optional); the entries are removed again
    straight after, so a later ``import torch`` elsewhere in the process works as usual. A
    module already imported is left alone."""
    import importlib
    import sys

    if "presidio_analyzer" in sys.modules:  # imported already (or hidden: raises)
        return importlib.import_module("presidio_analyzer")
    hidden = [m for m in _HEAVY_OPTIONAL if m not in sys.modules]
    with _IMPORT_LOCK:
        for name in hidden:
            sys.modules[name] = None  # type: ignore[assignment]
        try:
            return importlib.import_module("presidio_analyzer")
        finally:
            for name in hidden:
                if sys.modules.get(name, 0) is None:
                    del sys.modules[name]


_IMPORT_LOCK = threading.Lock()


def presidio_available() -> bool:
    """Whether ``presidio-analyzer`` (the ``privacy`` extra) can be imported."""
    try:
        _import_presidio()
    except ImportError:
        return False
    return True


def _string_type(t: pa.DataType) -> bool:
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return True
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _string_type(t.value_type)
    if pa.types.is_struct(t):
        return any(_string_type(t.field(i).type) for i in range(t.num_fields))
    return False


def text_columns(schema: pa.Schema) -> list[str]:
    """Columns holding text anywhere inside them (plain strings, lists and structs of them).

    Maps are left out: the only ones are the PII counts (type names -> integers)."""
    return [f.name for f in schema if _string_type(f.type)]


def sample_indices(num_rows: int, size: int, seed: int, table: str) -> np.ndarray:
    """Up to ``size`` row indices, sorted, the same for the same (rows, size, seed, table)."""
    if num_rows <= size:
        return np.arange(num_rows)
    salt = int.from_bytes(hashlib.sha256(f"{seed}:{table}".encode()).digest()[:8], "big")
    rng = np.random.default_rng([seed, salt])
    return np.sort(rng.choice(num_rows, size=size, replace=False))


def _strings(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        if value:
            out.append(value)
    elif isinstance(value, dict):
        for v in value.values():
            _strings(v, out)
    elif isinstance(value, list):
        for v in value:
            _strings(v, out)


def _mask(text: str) -> str:
    return _PLACEHOLDER.sub(lambda m: " " * (m.end() - m.start()), text)


class SecondOpinion:
    """Presidio pattern recognizers over a sample of a table; build once, scan many tables.

    The analyzer is built lazily on the first scan and shared by threads (analysis holds no
    per-call state in the recognizers used here).
    """

    def __init__(self, config: QualityConfig, allow_list: Sequence[str] = ()) -> None:
        self.config = config
        self.allow_list = list(allow_list)
        self._analyzer: Any = None
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        return presidio_available()

    def _engine(self) -> Any:
        with self._lock:
            if self._analyzer is None:
                self._analyzer = _build_analyzer(sorted(self.config.second_opinion_min_scores))
            return self._analyzer

    def scan_texts(self, rows: list[list[str]]) -> tuple[int, Counter[str]]:
        """(rows with a hit, hits by type) over rows given as lists of their strings.

        A row's strings are analysed as one text joined by blank lines (one engine call per row,
        not per string: the per-call overhead dominates short strings); a blank line is a hard
        boundary for every recognizer used, so values never fuse across it."""
        engine = self._engine()
        min_scores = self.config.second_opinion_min_scores
        entities = sorted(min_scores)
        rows_hit = 0
        hits: Counter[str] = Counter()
        for strings in rows:
            text = _mask(_JOIN.join(strings))
            if not text.strip():
                continue
            found = [
                r for r in engine.analyze(text=text, language="en", entities=entities,
                                          allow_list=self.allow_list or None)
                if r.score >= min_scores.get(r.entity_type, 1.1)
                and _counts(r.entity_type, text, r.start, r.end)
            ]  # fmt: skip
            hits.update(r.entity_type for r in found)
            rows_hit += bool(found)
        return rows_hit, hits

    def skipped(self) -> str | None:
        """Why this scanner scans nothing (disabled, Presidio missing), or None."""
        if not self.config.second_opinion_enabled:
            return SKIPPED_DISABLED
        if not self.available:
            return SKIPPED_NOT_INSTALLED
        return None

    def scan(self, table: pa.Table, name: str, rows: int | None = None) -> SecondOpinionResult:
        """Scan a sample of the table's text columns (``rows`` rows, default
        ``quality.second_opinion_sample_rows``); never raises for a missing package."""
        if self.skipped():  # nothing to sample
            return self.scan_sample(pa.table({}), name, table.num_rows)
        cfg = self.config
        size = cfg.second_opinion_sample_rows if rows is None else rows
        idx = sample_indices(table.num_rows, size, cfg.second_opinion_seed, name)
        columns = text_columns(table.schema)
        sample = table.select(columns).take(pa.array(idx, pa.int64()))
        return self.scan_sample(sample, name, table.num_rows)

    def scan_sample(self, sample: pa.Table, name: str, rows_total: int) -> SecondOpinionResult:
        """Scan rows already sampled (text columns only) from a table of ``rows_total`` rows."""
        result = SecondOpinionResult(table=name, status="skipped", rows_total=rows_total)
        result.reason = self.skipped() or ""
        if result.reason:
            return result
        result.status = "scanned"
        if not sample.num_columns or not sample.num_rows:
            return result
        rows: list[list[str]] = []
        for record in sample.to_pylist():
            strings: list[str] = []
            _strings(record, strings)
            rows.append(strings)
        result.rows_scanned = len(rows)
        result.rows_with_hits, result.hits_by_type = self.scan_texts(rows)
        if result.rows_with_hits:
            log.warning(
                "second opinion: %s: %d of %d sampled rows hold PII by Presidio: %s",
                name,
                result.rows_with_hits,
                result.rows_scanned,
                dict(result.hits_by_type),
            )
        return result


def batch_sample_rows(config: QualityConfig, share: float | None) -> int:
    """Rows to sample from each table of an ingest batch that holds ``share`` of its file's
    bytes (None: not known, such as a vendor export mapped to records).

    Why a file budget and not a fixed sample per batch: the scan exists to catch a leak the
    redactor has no rule for, a shape that recurs at some rate; what decides whether it is seen
    is how many rows of the file were looked at, not how many per batch. The file gets
    ``ln(1 - confidence) / ln(1 - max_hit_rate)`` rows (2,995 at 95% and 0.1%: a leak at the
    rate that fails the suite is seen with 95% probability), each batch its share of them, and
    never more than ``second_opinion_sample_rows``: a small file is scanned as before, a large
    one no longer pays 200 rows for every 10,000 (that was ~120 µs of every record's ingest,
    more than any other stage; ``benchmarks/README.md``)."""
    cap = config.second_opinion_sample_rows
    confidence, rate = config.second_opinion_confidence, config.second_opinion_max_hit_rate
    if share is None or confidence >= 1.0 or not 0.0 < rate < 1.0:
        return cap
    budget = math.log(1.0 - confidence) / math.log(1.0 - rate)
    return max(1, min(cap, math.ceil(budget * min(1.0, share))))


_scanners: dict[str, SecondOpinion] = {}
_scanners_lock = threading.Lock()


def scanner_for(config: PipelineConfig) -> SecondOpinion:
    """One scanner per process and config: the analyzer takes seconds to build, and ingest
    scans every batch. ``redaction.allow_list`` (strings deliberately kept, such as a support
    address the agent quotes) is honoured with Presidio's own exact allow list."""
    key = config.quality.model_dump_json() + "\0".join(config.redaction.allow_list)
    with _scanners_lock:
        scanner = _scanners.get(key)
        if scanner is None:
            scanner = _scanners[key] = SecondOpinion(
                config.quality, allow_list=config.redaction.allow_list
            )
        return scanner


def scan_written(
    store: Store,
    pipeline: PipelineConfig,
    parts: Iterable[tuple[str, str, int]],
    rows: int | None = None,
) -> dict[str, SecondOpinionResult]:
    """Scan what was written, read back from the store: ``parts`` are (table, path, rows).

    Reading back (text columns only) scans the bytes that readers will get, not an in-memory
    copy. One sample per table across its parts (``rows`` rows, default
    ``quality.second_opinion_sample_rows``), drawn as from the parts concatenated; only the parts
    holding a sampled row are read, and a skipped scan reads nothing.
    """
    by_table: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for table, path, n in parts:
        by_table[table].append((path, n))
    scanner = scanner_for(pipeline)
    config = pipeline.quality
    size = config.second_opinion_sample_rows if rows is None else rows
    out: dict[str, SecondOpinionResult] = {}
    for table, items in by_table.items():
        total = sum(n for _, n in items)
        if scanner.skipped():
            out[table] = scanner.scan_sample(pa.table({}), table, total)
            continue
        idx = sample_indices(total, size, config.second_opinion_seed, table)
        starts = np.cumsum([0] + [n for _, n in items])
        owner = np.searchsorted(starts, idx, side="right") - 1  # the part of each sampled row
        needed = np.unique(owner)
        schema = schema_for(table)
        data = store.read_tables([items[i][0] for i in needed], schema, text_columns(schema))
        # a sampled row's place among the parts read: its offset in its part, plus the rows of
        # the parts read before it
        read_before = np.cumsum([0] + [items[i][1] for i in needed])
        local = idx - starts[owner] + read_before[np.searchsorted(needed, owner)]
        sample = data.take(pa.array(local, pa.int64()))
        out[table] = scanner.scan_sample(sample, table, total)
    return out


def _build_analyzer(entities: list[str]) -> Any:
    """An offline ``AnalyzerEngine`` with exactly the recognizers for ``entities``."""
    import tldextract

    _import_presidio()  # first, lean (see _HEAVY_OPTIONAL)
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NoOpNlpEngine
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        CryptoRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        MacAddressRecognizer,
        PhoneRecognizer,
        UsSsnRecognizer,
    )

    offline_tld = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class OfflineEmailRecognizer(EmailRecognizer):
        """Presidio's e-mail recognizer, validating domains against the bundled suffix list."""

        def validate_result(self, pattern_text: str) -> bool:
            return offline_tld(pattern_text).fqdn != ""

    class WindowedPhoneRecognizer(PhoneRecognizer):
        """Presidio's phone recognizer, run only on the digit runs that could be a number.

        ``phonenumbers``' matcher walks the whole text once per region: 95% of the scan's time
        on chat text. Running it on each run of 7+ digits (with their separators, one character
        of context either side) finds the same matches at a fraction of the cost. What a window
        yields depends on its text alone, so a window without a match (the dates, order ids and
        tracking numbers that make up most of them, and repeat) is remembered and not matched
        again; a window with a match is never remembered, so no value is kept."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.clean: set[str] = set()

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            results: list[Any] = []
            clean = self.clean
            for m in _DIGIT_RUN.finditer(text):
                run = m.group()
                if sum(c.isdigit() for c in run) < 7 or not any(c in _PHONE_MARKS for c in run):
                    continue
                s, e = max(0, m.start() - 1), min(len(text), m.end() + 1)
                window = text[s:e]
                if window in clean:
                    continue
                found = super().analyze(window, entities, nlp_artifacts)
                if not found:
                    if len(clean) >= _CLEAN_WINDOWS_MAX:
                        clean.clear()
                    clean.add(window)
                for r in found:
                    r.start += s
                    r.end += s
                    results.append(r)
            return results

    known: dict[str, Any] = {
        "EMAIL_ADDRESS": OfflineEmailRecognizer,
        "PHONE_NUMBER": lambda: WindowedPhoneRecognizer(
            supported_regions=PHONE_REGIONS, leniency=PHONE_LENIENCY
        ),
        "CREDIT_CARD": CreditCardRecognizer,
        "IBAN_CODE": IbanRecognizer,
        "US_SSN": UsSsnRecognizer,
        "IP_ADDRESS": IpRecognizer,
        "CRYPTO": CryptoRecognizer,
        "MAC_ADDRESS": MacAddressRecognizer,
    }
    unknown = sorted(set(entities) - set(known))
    if unknown:
        raise SecondOpinionConfigError(
            f"quality.second_opinion_min_scores: no recognizer for {unknown}; "
            f"known: {sorted(known)}"
        )
    registry = RecognizerRegistry(
        recognizers=[known[e]() for e in entities], supported_languages=["en"]
    )
    nlp = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}])
    return AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=["en"])
