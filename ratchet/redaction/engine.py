"""The redaction engine: typed placeholders in, PII out, at close to RE2 speed.

How a column is processed (measured choices, see ``benchmarks/README.md``):

1. **Prefilter** (one vectorised RE2 pass, ``pyarrow.compute.match_substring_regex``) over the
   whole column with the union of the detectors' tight ``shape`` regexes. Rows it rejects are
   provably free of every rule's matches and are never touched by Python. Columns of 1 MiB and
   more are cut in two slices run on two threads (the kernel releases the GIL); so is step 2.
2. **Mark** (one RE2 pass over the candidate rows only, ``replace_substring_regex``): every
   maximal token that could hold PII is wrapped in a sentinel. Splitting on the sentinel gives
   the token positions without any Python regex scanning the row.
3. **Detect** (Python ``re`` + checksums) only inside those tokens, with look-arounds that see the
   real context. A token that ends inside a word (a greedy marker alternative can stop in the
   middle of the next value) is extended to the end of that word. Digit-only tokens go only to
   the digit-family rules; every token goes only to the rules whose needles it holds and, for
   each rule, only if it has as many digits as the rule's values need (a routing table, built
   lazily). A token without hits is remembered with two characters of left context and three
   of right (all the built-in rules can see), so the repeated dates, order-id tails and tracking
   numbers of shop text are settled once per ``Redactor``; a hit is never remembered. A greedy
   match that fails its validator is retried cut at earlier group ends (``Detector.right``),
   preferring a cut whose rest is itself a value. Overlaps are settled by detector priority
   (secrets, then e-mail, IBAN, card…). A row holding escapes (``\\_``, ``&#64;``, ``\\u0040``,
   ``%40``) is also read through its decoded view (:mod:`ratchet.redaction.escapes`; the
   prefilter has an escape alternative so such rows are candidates), and those hits, mapped
   back to whole escapes, win over overlapping hits in the text as written.
4. **Replace** in Python for those rows; ``replace_with_mask`` puts them back into the column.
5. **Repeat** 2-4 on the rows that changed, up to ``_MAX_ROUNDS``: a value whose left context was
   another value (digits right after a card or a token) is found once that neighbour is a
   placeholder. So ``scan(redact(x)) == 0`` is the fixed point, not a hope.

The residual scan (``scan_table``) runs the same passes and counts instead of replacing,
so it uses exactly the full detector set, checksums included. Placeholders (``[EMAIL]``) never
match a detector; a hit whose value *is* a placeholder is ignored regardless.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import accumulate, pairwise

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ratchet.config import RedactionConfig
from ratchet.redaction import escapes
from ratchet.redaction.arrow import collect_leaf, transform_leaf
from ratchet.redaction.detectors import (
    M_CRYPTO,
    M_DIGITS,
    M_HEXCOLON,
    M_IPV4,
    M_MACDOT,
    PLACEHOLDER_RE,
    TYPES,
    Detector,
    builtin_detectors,
    marker_rank,
)
from ratchet.redaction.errors import RedactionConfigError
from ratchet.schemas import PII_COUNTS, text_columns

# Bump when a built-in detector, validator or the placeholder format changes: partitions record
# the version that redacted them, so a changed rule set is visible in the data.
RULESET_VERSION = "1.2.0"

# Text columns that hold hashes, versions or enums: never redacted and never scanned (a 64-hex
# content hash is not PII, and scanning it only costs time). Top-level column names.
NEVER_TOUCHED_COLUMNS: frozenset[str] = frozenset(
    {
        "schema_version",
        "content_hash",
        "source_file",
        "redaction_version",
        "record_kind",
        "reason",
        "kind",
        "split",
        "status",
        "origin",
        "source",
        "case_id",
        "example_id",
        "pair_id",
        "review_id",
        "eval_run_id",
        "model_version_id",
        "feedback_id",
    }
)
# Leaf names inside nested structs (messages, tool calls) that are enums or opaque ids.
NEVER_TOUCHED_LEAVES: frozenset[str] = frozenset({"role", "type", "id", "tool_call_id"})
# Identifiers that joins depend on: not rewritten here (``user_id``/``annotator`` are
# pseudonymised by the caller with :func:`ratchet.redaction.pseudonymise`), but still scanned, so a
# raw e-mail used as an id fails the data-quality suite instead of slipping through.
IDENTITY_COLUMNS: frozenset[str] = frozenset(
    {"agent_id", "interaction_id", "conversation_id", "user_id", "annotator"}
)

_SENTINEL = "\x1f"
# A marker token may end inside a word (RE2 takes the first alternative, and a greedy one such as
# the IBAN groups can stop in the middle of the next value): rules may match up to the end of
# that word, at most this many characters past the token.
_MAX_EXTEND = 256
_SPACE = re.compile(r"\s")
# Detection runs to a fixed point: a value whose context was another value (a digit run right
# after a card, a token cut by a neighbour's marker) is found once that neighbour is a
# placeholder. Each round only re-reads the rows the previous one changed.
_MAX_ROUNDS = 4
_DIGITISH = "0123456789 .-/()+"
_EXTRA_TYPE_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,39}$")
_DIGIT = re.compile(r"\d")
# Built-in rules whose every kept value holds at least this many ``\d`` digits (from the regex or
# the validator): a token with fewer is not worth running them on. Counts above 12 all qualify.
_MIN_DIGITS: dict[str, int] = {
    "card_luhn": 12,  # card_prefix_len: 12-19 digits
    "phone_nanp": 10,  # 3 + 3 + 4 in the regex
    "us_ssn": 9,
    "phone_national": 9,  # _national_ok: 9-12 digits
    "phone_international": 8,  # _phone_digits(8, 15)
    "ipv4": 4,
    "iban_mod97": 2,
    "btc_base58check": 1,  # starts with 1 or 3
    "ipv6": 1,  # ipv6_ok wants a digit
    "phone_mobile_compact": 10,
}
# The widest look-behind of a built-in rule (``(?<=\\[nrt])``, ``(?<!\d[ .\-])``): two chars.
_LOOKBEHIND = 2
# Clean windows remembered per Redactor (cleared when full): shop text repeats its dates, order-id
# and carrier formats, and a token seen before in the same context costs one set lookup.
_MEMO_MAX = 1 << 16


# The prefilter (the one pass over every byte) runs on slices in parallel for columns this large.
_PARALLEL_MIN_BYTES = 1 << 20
_WORKERS = max(1, min(2, os.cpu_count() or 1))
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _forget_pool() -> None:
    """A forked child has none of the parent's threads: it must start its own pool."""
    global _POOL, _POOL_LOCK
    _POOL = None
    _POOL_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _pool() -> ThreadPoolExecutor | None:
    """The shared prefilter pool (``None`` on one core); its tasks never submit tasks."""
    global _POOL
    if _WORKERS < 2:
        return None
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(_WORKERS, thread_name_prefix="ratchet-prefilter")
        return _POOL


def _touched(path: str) -> bool:
    parts = path.split(".")
    return parts[0] not in NEVER_TOUCHED_COLUMNS and not (
        len(parts) > 1 and parts[-1] in NEVER_TOUCHED_LEAVES
    )


def redactable_columns(schema: pa.Schema) -> list[str]:
    """Dotted string leaves the redactor rewrites: every text leaf but hashes, enums and ids."""
    return [
        p for p in text_columns(schema) if _touched(p) and p.split(".")[0] not in IDENTITY_COLUMNS
    ]


def scannable_columns(schema: pa.Schema) -> list[str]:
    """Dotted string leaves the residual scan reads: the redactable ones plus the identities."""
    return [p for p in text_columns(schema) if _touched(p)]


@dataclass(frozen=True)
class RedactionResult:
    """What :meth:`Redactor.redact_table` returns.

    ``pii_counts`` is aligned with the table's rows (an empty map for a clean row); ``totals`` sums
    it by type; ``version`` is the rule set that produced it, to be stored with the data.
    """

    table: pa.Table
    pii_counts: pa.MapArray
    totals: dict[str, int]
    version: str
    rows_with_pii: int = 0
    columns: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class _Rule:
    detector: Detector
    regex: re.Pattern[str]
    has_value_group: bool
    right: re.Pattern[str] | None = None


def _check_re2(pattern: str, what: str) -> None:
    try:
        pc.match_substring_regex(pa.array([""]), pattern)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise RedactionConfigError(f"{what}: not a valid RE2 regular expression") from None


class Redactor:
    """Replaces PII with ``[TYPE]`` placeholders; one instance per rule set, reusable, stateless
    but for caches that never change a result (clean tokens, the routing table; thread-safe).

    Built from a :class:`~ratchet.config.RedactionConfig` (extra patterns, allow-list, disabled
    types). ``version`` identifies the rule set: ``RULESET_VERSION`` plus a hash of that config.
    """

    def __init__(self, config: RedactionConfig | None = None) -> None:
        self.config = config or RedactionConfig()
        known = set(TYPES) | set(self.config.extra_patterns)
        for name in self.config.disabled_types:
            if name not in known:
                raise RedactionConfigError(
                    f"redaction.disabled_types: unknown type {name!r}; known: {sorted(known)}"
                )
        extras: list[Detector] = []
        for type_, pattern in self.config.extra_patterns.items():
            where = f"redaction.extra_patterns.{type_}"
            if not _EXTRA_TYPE_RE.match(type_):
                raise RedactionConfigError(f"{where}: type must be UPPER_SNAKE (A-Z, 0-9, _)")
            _check_re2(pattern, where)
            try:
                re.compile(pattern)
            except re.error:
                raise RedactionConfigError(
                    f"{where}: not a valid Python regular expression"
                ) from None
            if re.fullmatch(pattern, "") is not None:
                raise RedactionConfigError(f"{where}: pattern matches the empty string")
            extras.append(Detector(type_, f"extra:{type_}", pattern, pattern, pattern))
        disabled = set(self.config.disabled_types)
        # Extra patterns first: an operator's rule is more specific than the built-ins.
        self.detectors: tuple[Detector, ...] = tuple(
            d
            for d in (*extras, *builtin_detectors(self.config.keep_reserved_ips))
            if d.type not in disabled
        )
        self.types: tuple[str, ...] = tuple(dict.fromkeys(d.type for d in self.detectors))
        self._rules = [
            _Rule(
                d,
                re.compile(d.pattern),
                "v" in re.compile(d.pattern).groupindex,
                re.compile(d.right) if d.right else None,
            )
            for d in self.detectors
        ]
        # Family routing: a window made only of digits and digit separators goes only to the rules
        # whose tokens can be that (cards, SSNs, phones, IPv4, dashed MACs, base58 wallets) and the
        # operator's extras; the secret, e-mail and IBAN rules would need a letter, '@' or ':'.
        digit_markers = {M_DIGITS, M_IPV4, M_HEXCOLON + "|" + M_MACDOT, M_CRYPTO}
        self._digit_rules = [
            (p, r)
            for p, r in enumerate(self._rules)
            if r.detector.marker in digit_markers or r.detector.rule.startswith("extra:")
        ]
        self._all_rules = list(enumerate(self._rules))
        # Routing table: (digit-only, digits up to 12, which needles) -> the rules worth running.
        self._needles = tuple(sorted({n for d in self.detectors for n in d.needles}))
        self._routes: dict[tuple[bool, int, tuple[bool, ...]], list[tuple[int, int, _Rule]]] = {}
        # Operator patterns may look behind arbitrarily far: no window memo with extras.
        self._memo: set[tuple[str, int, int]] | None = None if extras else set()
        self._allow = frozenset(self.config.allow_list)
        self._min_len = min((d.min_len for d in self.detectors), default=1)
        shapes = list(dict.fromkeys(d.shape for d in self.detectors))
        if shapes:
            # A row whose only PII is escaped (``jane&#64;example.com``) matches no shape.
            shapes.append(escapes.HINT_RE2)
        # RE2 takes the first alternative matching at the leftmost position: the wide, specific
        # tokens must come before the generic hex and digit runs, which would cut them short.
        markers = sorted(dict.fromkeys(d.marker for d in self.detectors), key=marker_rank)
        self._prefilter = "|".join(f"(?:{s})" for s in shapes) if shapes else None
        self._marker = "|".join(f"(?:{m})" for m in markers) if markers else None
        self._marker_py = re.compile(self._marker) if self._marker else None
        # The prefilter for single strings (``redact_text``): Python ``re`` when it compiles the
        # same union (a pyarrow call costs ~5 ms a string, mostly compiling the RE2 program).
        self._prefilter_py: re.Pattern[str] | None = None
        if self._prefilter is not None:
            try:
                self._prefilter_py = re.compile(self._prefilter)
            except re.error:
                self._prefilter_py = None
        self.version = f"{RULESET_VERSION}+{self.config_hash(self.config)}"

    @staticmethod
    def config_hash(config: RedactionConfig) -> str:
        """12 hex of a canonical JSON of what changes detection: extras, allow-list, disabled."""
        canonical = json.dumps(
            {
                "extra_patterns": dict(sorted(config.extra_patterns.items())),
                "allow_list": sorted(set(config.allow_list)),
                "disabled_types": sorted(set(config.disabled_types)),
                "keep_reserved_ips": config.keep_reserved_ips,
            },
            sort_keys=True,
            ensure_ascii=True,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    # --- single strings ---------------------------------------------------------------------------
    def _windows(self, text: str) -> list[tuple[int, int]]:
        """Marker tokens of one string, found with Python ``re`` (slow path; see ``_mark``)."""
        if self._marker_py is None:
            return []
        return [m.span() for m in self._marker_py.finditer(text) if m.end() > m.start()]

    def _keep(self, rule: _Rule, text: str, s: int, e: int) -> int:
        """How much of ``text[s:e]`` the rule redacts (validator, allow-list, placeholders); 0: none."""
        validate = rule.detector.validate
        keep = e - s
        if rule.detector.validate_at is not None:
            keep = rule.detector.validate_at(text, s, e)
            if not keep:
                return 0
        if validate is not None:
            keep = validate(text[s:e])
            if not keep:
                return 0
        value = text[s : s + keep]
        if value in self._allow or PLACEHOLDER_RE.fullmatch(value):
            return 0
        return keep

    def _back_off(self, rule: _Rule, text: str, start: int, s: int, e: int) -> tuple[int, int]:
        """The greedy match ``[s, e)`` failed its validator: retry the same start cut at each
        earlier group end (an alphanumeric followed by a separator) where the rule's right boundary
        holds in the real text. The longest valid cut wins, unless a shorter one leaves a rest
        that is itself a whole value ("+44 20 7946 0958 020 7946 0958": two phones, not one of
        15 digits and a stray "7946 0958"). Returns ``(start, kept length)``; 0 when none."""
        if rule.right is None:
            return s, 0
        best = (s, 0)
        for cut in range(e - 1, s, -1):
            if text[cut].isalnum() or not (text[cut - 1].isalnum() or text[cut - 1] == ")"):
                continue
            m = rule.regex.match(text, start, cut)
            if m is None:
                continue
            s2, e2 = m.span("v") if rule.has_value_group else m.span()
            if e2 != cut or e2 <= s2 or not rule.right.match(text, e2):
                continue
            keep = self._keep(rule, text, s2, e2)
            if not keep:
                continue
            if best[1] == 0:
                best = (s2, keep)
            # The rest as the next round would see it: after a placeholder, not after digits.
            off = s2 + keep - 1
            rest = self._find("]" + text[off + 1 :], [(1, e - off)])
            if rest and rest[-1][1] >= e - off:
                return s2, keep
        return best

    def _find(self, text: str, windows: Iterable[tuple[int, int]]) -> list[tuple[int, int, str]]:
        """Accepted ``(start, end, type)`` spans, sorted, non-overlapping, priority-settled."""
        found: list[tuple[int, int, int, str]] = []  # (start, end, priority, type)
        n = len(text)
        min_len = self._min_len
        memo = self._memo
        window_hits = self._window_hits
        for a, b in windows:
            if 0 < b < n and not text[b].isspace() and not text[b - 1].isspace():
                limit = min(n, b + _MAX_EXTEND)
                m = _SPACE.search(text, b, limit)
                b = m.start() if m else limit
            if b - a < min_len:
                continue
            endpos = min(n, b + 3)  # a little right context for the look-aheads
            # What a window yields depends only on text[a - _LOOKBEHIND : endpos] (the built-in
            # rules look at most that far back; back-offs never read past a whitespace ``b``):
            # a clean token in the same context (a date, an order-id tail, a tracking number) is
            # looked at once. Only windows without hits are remembered, so no value is kept.
            key = None
            if memo is not None and (b == n or text[b].isspace()):
                left = a - _LOOKBEHIND if a > _LOOKBEHIND else 0
                key = (text[left:endpos], a - left, b - a)
                if key in memo:
                    continue
            hits = window_hits(text, a, b, endpos)
            if hits:
                found.extend(hits)
            elif key is not None and memo is not None:
                if len(memo) >= _MEMO_MAX:
                    memo.clear()
                memo.add(key)
        if not found:
            return []
        found.sort(key=lambda f: (f[2], f[0]))
        accepted: list[tuple[int, int, str]] = []
        for s, e, _, type_ in found:
            if all(e <= s2 or s >= e2 for s2, e2, _ in accepted):
                accepted.append((s, e, type_))
        accepted.sort()
        return accepted

    def _detect(
        self,
        text: str,
        windows: Iterable[tuple[int, int]] | None = None,
        escaped: bool | None = None,
    ) -> list[tuple[int, int, str]]:
        """Accepted spans of ``text``: in the text as written and, where it holds escapes, in
        its decoded view (:mod:`ratchet.redaction.escapes`), mapped back so the placeholder
        covers the whole escaped value. Where both find a value, the decoded view's span wins
        (it is the value as a reader sees it)."""
        spans = self._find(text, self._windows(text) if windows is None else windows)
        if escaped is None:
            escaped = escapes.HINT.search(text) is not None
        if not escaped:
            return spans
        decoded, src = escapes.decode(text)
        if not src:
            return spans
        mapped = [
            (*escapes.to_original(src, s, e), t)
            for s, e, t in self._find(decoded, self._windows(decoded))
        ]
        if not mapped:
            return spans
        merged = mapped + [
            (s, e, t) for s, e, t in spans if all(e <= s2 or s >= e2 for s2, e2, _ in mapped)
        ]
        merged.sort()
        return merged

    def _window_hits(
        self, text: str, a: int, b: int, endpos: int
    ) -> list[tuple[int, int, int, str]]:
        """``(start, end, priority, type)`` of every rule's kept values inside ``text[a:b]``."""
        hits: list[tuple[int, int, int, str]] = []
        size = b - a
        low = text[a:b].lower()
        digits = len(_DIGIT.findall(low))
        key = (
            not low.strip(_DIGITISH),
            min(12, digits),
            tuple(map(low.__contains__, self._needles)),
        )
        rules = self._routes.get(key)
        if rules is None:
            rules = self._routes[key] = self._route(*key)
        for min_len, priority, rule in rules:
            if size < min_len:
                continue
            det = rule.detector
            for m in rule.regex.finditer(text, a, endpos):
                s, e = m.span("v") if rule.has_value_group else m.span()
                if e > b or e <= s:
                    continue
                keep = self._keep(rule, text, s, e)
                if not keep and rule.right is not None:
                    s, keep = self._back_off(rule, text, m.start(), s, e)
                if keep:
                    hits.append((s, s + keep, priority, det.type))
        return hits

    def _route(
        self, digit_only: bool, digits: int, present: tuple[bool, ...]
    ) -> list[tuple[int, int, _Rule]]:
        """The rules a window of this kind can hold a value of: its family (digit runs go only to
        the digit rules), the needles it contains, and enough digits for the rule's values."""
        have = {n for n, p in zip(self._needles, present, strict=True) if p}
        return [
            (r.detector.min_len, priority, r)
            for priority, r in (self._digit_rules if digit_only else self._all_rules)
            if (not r.detector.needles or have.intersection(r.detector.needles))
            and digits >= _MIN_DIGITS.get(r.detector.rule, 0)
        ]

    @staticmethod
    def _apply(text: str, spans: Sequence[tuple[int, int, str]]) -> str:
        out: list[str] = []
        last = 0
        for s, e, type_ in spans:
            out.append(text[last:s])
            out.append(f"[{type_}]")
            last = e
        out.append(text[last:])
        return "".join(out)

    def redact_text(self, text: str) -> tuple[str, dict[str, int]]:
        """One string, redacted, with its counts by type (quarantined lines, file names)."""
        if not text or self._prefilter is None:
            return text, {}
        counts: Counter[str] = Counter()
        for _ in range(_MAX_ROUNDS):
            if not self._maybe_pii(text):
                break
            spans = self._detect(text)
            if not spans:
                break
            text = self._apply(text, spans)
            counts.update(t for _, _, t in spans)
        return text, dict(counts)

    def _maybe_pii(self, text: str) -> bool:
        if self._prefilter_py is not None:
            return self._prefilter_py.search(text) is not None
        return bool(pc.match_substring_regex(pa.array([text]), self._prefilter)[0].as_py())

    def scan_text(self, text: str) -> int:
        """Detector hits in one string (0 for redacted text)."""
        return sum(self.redact_text(text)[1].values())

    # --- columns ----------------------------------------------------------------------------------
    def _candidates(self, arr: pa.Array) -> np.ndarray:
        """Indices of rows the prefilter keeps."""
        if self._prefilter is None or len(arr) == 0:
            return np.empty(0, dtype=np.int64)
        pool = _pool() if arr.nbytes >= _PARALLEL_MIN_BYTES else None
        if pool is None:
            mask = pc.match_substring_regex(arr, self._prefilter).to_numpy(zero_copy_only=False)
        else:
            # pyarrow's regex kernels release the GIL: one slice per core, in parallel.
            k = _WORKERS
            bounds = [len(arr) * i // k for i in range(k + 1)]
            parts = pool.map(
                lambda lo_hi: pc.match_substring_regex(
                    arr.slice(lo_hi[0], lo_hi[1] - lo_hi[0]), self._prefilter
                ).to_numpy(zero_copy_only=False),
                list(pairwise(bounds)),
            )
            mask = np.concatenate(list(parts))
        return np.flatnonzero(mask == True)  # noqa: E712 (null rows compare False, not raise)

    def _mark(self, cand: pa.Array) -> pa.Array:
        return pc.replace_substring_regex(cand, self._marker, _SENTINEL + r"\0" + _SENTINEL)

    def _spans_for(
        self, arr: pa.Array, idx: np.ndarray
    ) -> tuple[list[str], list[list[tuple[int, int, str]]]]:
        """Texts of the candidate rows and their accepted spans."""
        cand = arr.take(pa.array(idx))
        pool = _pool() if cand.nbytes >= _PARALLEL_MIN_BYTES else None
        if pool is None:
            marked_arr = self._mark(cand)
        else:
            k = _WORKERS
            bounds = [len(cand) * i // k for i in range(k + 1)]
            pieces = pool.map(
                lambda lo_hi: self._mark(cand.slice(lo_hi[0], lo_hi[1] - lo_hi[0])),
                list(pairwise(bounds)),
            )
            marked_arr = pa.chunked_array(list(pieces), cand.type)
        texts: list[str] = cand.to_pylist()
        marked: list[str] = marked_arr.to_pylist()
        # Rows that may hold escapes, in one RE2 pass (a superset of what ``decode`` rewrites).
        escaped = pc.match_substring_regex(cand, escapes.HINT_RE2).to_numpy(zero_copy_only=False)
        all_spans: list[list[tuple[int, int, str]]] = []
        for text, mk, esc in zip(texts, marked, escaped, strict=True):
            if _SENTINEL in text:  # the text itself holds the sentinel: find tokens the slow way
                windows = self._windows(text)
            else:
                # Odd pieces are the marked tokens; their offsets are the running sum of lengths.
                lengths = list(map(len, mk.split(_SENTINEL)))
                ends = list(accumulate(lengths))
                windows = [(ends[i - 1], ends[i]) for i in range(1, len(lengths), 2) if lengths[i]]
            if esc:
                all_spans.append(self._detect(text, windows, escaped=True))
            else:
                all_spans.append(self._find(text, windows) if windows else [])
        return texts, all_spans

    def _settle(self, arr: pa.Array) -> dict[int, tuple[str, Counter[str]]]:
        """Elements of a flat string array with hits: their redacted text and counts by type,
        detection run to a fixed point (each round re-reads only the rows the last one changed)."""
        result: dict[int, tuple[str, Counter[str]]] = {}
        rows = np.arange(len(arr))
        current = arr
        for _ in range(_MAX_ROUNDS):
            idx = self._candidates(current)
            if len(idx) == 0:
                break
            texts, all_spans = self._spans_for(current, idx)
            next_rows: list[int] = []
            next_texts: list[str] = []
            for k, text, spans in zip(idx.tolist(), texts, all_spans, strict=True):
                if not spans:
                    continue
                row = int(rows[k])
                new = self._apply(text, spans)
                counts = result[row][1] if row in result else Counter()
                counts.update(t for _, _, t in spans)
                result[row] = (new, counts)
                next_rows.append(row)
                next_texts.append(new)
            if not next_rows:
                break
            rows = np.array(next_rows, dtype=np.int64)
            current = pa.array(next_texts, pa.string())
        return result

    def redact_array(self, arr: pa.Array) -> tuple[pa.Array, dict[int, Counter[str]]]:
        """A flat string array, redacted, and the counts of each element that had hits."""
        settled = self._settle(arr)
        if not settled:
            return arr, {}
        changed = sorted(settled)
        mask = np.zeros(len(arr), dtype=bool)
        mask[changed] = True
        new_values = pa.array([settled[i][0] for i in changed], arr.type)
        counts = {i: settled[i][1] for i in changed}
        return pc.replace_with_mask(arr, pa.array(mask), new_values), counts

    def scan_array(self, arr: pa.Array) -> dict[int, int]:
        """Hits per element of a flat string array (only elements with hits are listed); the
        same fixed point as :meth:`redact_array`, so it counts what redaction would replace."""
        return {i: sum(c.values()) for i, (_, c) in self._settle(arr).items()}

    # --- tables -----------------------------------------------------------------------------------
    def redact_table(self, table: pa.Table) -> RedactionResult:
        """Redact every redactable string leaf; same schema back, counts per row and by type."""
        paths = redactable_columns(table.schema)
        by_column: dict[str, list[list[str]]] = {}
        for p in paths:
            head, *rest = p.split(".")
            by_column.setdefault(head, []).append(rest)
        row_counts: dict[int, Counter[str]] = {}

        def redact_leaf(leaf: pa.Array, rows: np.ndarray) -> pa.Array:
            new_leaf, counts = self.redact_array(leaf)
            for i, c in counts.items():
                row = int(rows[i])
                row_counts.setdefault(row, Counter()).update(c)
            return new_leaf

        columns = list(table.columns)
        for name, leaf_paths in by_column.items():
            ci = table.schema.get_field_index(name)
            chunks = []
            base = 0
            for chunk in table.column(ci).chunks:
                rows = np.arange(base, base + len(chunk))
                for parts in leaf_paths:
                    chunk = transform_leaf(chunk, parts, rows, redact_leaf)
                chunks.append(chunk)
                base += len(chunk)
            columns[ci] = pa.chunked_array(chunks, type=table.schema.field(ci).type)
        out = pa.Table.from_arrays(columns, schema=table.schema)
        totals: Counter[str] = Counter()
        for c in row_counts.values():
            totals.update(c)
        return RedactionResult(
            table=out,
            pii_counts=self.counts_array(row_counts, table.num_rows),
            totals=dict(sorted(totals.items())),
            version=self.version,
            rows_with_pii=len(row_counts),
            columns=tuple(paths),
        )

    @staticmethod
    def counts_array(row_counts: dict[int, Counter[str]], num_rows: int) -> pa.MapArray:
        """Per-row ``map<string,int32>`` (``PII_COUNTS``), empty maps for clean rows."""
        lengths = np.zeros(num_rows, dtype=np.int32)
        keys: list[str] = []
        values: list[int] = []
        for row in sorted(row_counts):
            items = sorted(row_counts[row].items())
            lengths[row] = len(items)
            keys.extend(k for k, _ in items)
            values.extend(v for _, v in items)
        offsets = np.zeros(num_rows + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        return pa.MapArray.from_arrays(
            pa.array(offsets, pa.int32()),
            pa.array(keys, pa.string()),
            pa.array(values, pa.int32()),
            type=PII_COUNTS,
        )

    def scan_table(self, table: pa.Table) -> pa.Int32Array:
        """Residual hits per row over every scannable text leaf of an already written table."""
        hits = np.zeros(table.num_rows, dtype=np.int32)
        for path in scannable_columns(table.schema):
            head, *rest = path.split(".")
            base = 0
            for chunk in table.column(head).chunks:
                for leaf, rows in collect_leaf(chunk, rest, np.arange(base, base + len(chunk))):
                    for i, n in self.scan_array(leaf).items():
                        hits[rows[i]] += n
                base += len(chunk)
        return pa.array(hits, pa.int32())
