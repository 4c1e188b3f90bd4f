"""Per-type precision and recall of redaction on labelled text: the code-heavy precision set and
the existing PII sets.

A *replacement* is a span of the input that the output shows as a ``[TYPE]`` placeholder
(found by aligning the output's literal pieces with the input, so the measure needs nothing from
the redactor's internals and runs unchanged against older rule sets). It is *correct* when it
lies inside a labelled value: a replacement that reaches into code, a date or prose around a
value counts as wrong even if it also covers the value. A labelled value is *recalled* when
replacements cover all of it ("typed": by placeholders of its own type).

Sets:

* ``benchmarks/data/precision_set.jsonl`` (code, logs, issue-8 coverage classes, escapes; written by
  ``python -m benchmarks.precision_set``);
* the existing labelled sets of :mod:`benchmarks.pii_labelled` (``--per-type`` values per type in
  its templates) and its PII-free shop sentences (5x as many).

Run ``python -m benchmarks.precision`` (``--per-type 150``, a few seconds) and compare rule sets
from the same run of the same command.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections import Counter, defaultdict
from pathlib import Path

from benchmarks.pii_labelled import TEMPLATES, generators, shop_text
from ratchet.redaction import Redactor

DATA = Path(__file__).parent / "data" / "precision_set.jsonl"
_PLACEHOLDER = re.compile(r"\[([A-Z][A-Z0-9_]*)\]")


def replacements(
    text: str, out: str, types: tuple[str, ...] = ()
) -> list[tuple[int, int, str]] | None:
    """``(start, end, type)`` spans of ``text`` that ``out`` replaced; None if they do not align.
    Only ``[TYPE]`` of the redactor's ``types`` count (``[POST]`` in a log line is text)."""
    placeholder = re.compile(r"\[(" + "|".join(types) + r")\]") if types else _PLACEHOLDER
    pieces = placeholder.split(out)
    literals, types = pieces[0::2], pieces[1::2]
    if not types:
        return [] if out == text else None
    pattern = "".join(
        re.escape(lit) + ("(.+?)" if i < len(types) else "") for i, lit in enumerate(literals)
    )
    m = re.fullmatch(pattern, text, re.DOTALL)
    if m is None:
        return None
    return [(m.start(i + 1), m.end(i + 1), t) for i, t in enumerate(types)]


def labelled_spans(text: str, pii: list[tuple[str, str]]) -> list[tuple[int, int, str]]:
    spans = []
    for type_, value in pii:
        start = text.find(value)
        while start >= 0:
            spans.append((start, start + len(value), type_))
            start = text.find(value, start + 1)
    return spans


class Tally:
    """Counts per type: replacements made / correct, labelled values / recalled / typed."""

    def __init__(self) -> None:
        self.made: Counter[str] = Counter()
        self.correct: Counter[str] = Counter()
        self.labelled: Counter[str] = Counter()
        self.recalled: Counter[str] = Counter()
        self.typed: Counter[str] = Counter()
        self.wrong: dict[str, list[str]] = defaultdict(list)
        self.missed: dict[str, list[str]] = defaultdict(list)
        self.unaligned = 0

    def add(self, redactor: Redactor, text: str, pii: list[tuple[str, str]]) -> None:
        out, _ = redactor.redact_text(text)
        reps = replacements(text, out, redactor.types)
        if reps is None:
            self.unaligned += 1
            return
        labels = labelled_spans(text, pii)
        for s, e, t in reps:
            self.made[t] += 1
            if any(ls <= s and e <= le for ls, le, _ in labels):
                self.correct[t] += 1
            elif len(self.wrong[t]) < 4:
                self.wrong[t].append(f"{text[max(0, s - 25) : s]}<<{text[s:e]}>>{text[e : e + 15]}")
        for ls, le, lt in labels:
            self.labelled[lt] += 1
            cover = [(s, e, t) for s, e, t in reps if s < le and e > ls]
            chars = (
                set().union(*(range(max(s, ls), min(e, le)) for s, e, _ in cover))
                if cover
                else set()
            )
            if len(chars) == le - ls:
                self.recalled[lt] += 1
                if all(t == lt for _, _, t in cover):
                    self.typed[lt] += 1
            elif len(self.missed[lt]) < 4:
                self.missed[lt].append(text[ls:le])

    def report(self, title: str) -> dict[str, object]:
        print(f"\n## {title}")
        print(
            f"{'type':<15}{'replaced':>9}{'correct':>9}{'precision':>11}{'labelled':>10}{'recall':>9}{'typed':>8}"
        )
        types = sorted(set(self.made) | set(self.labelled))
        rows = {}
        for t in types:
            made, ok, lab = self.made[t], self.correct[t], self.labelled[t]
            prec = ok / made if made else float("nan")
            rec = self.recalled[t] / lab if lab else float("nan")
            typ = self.typed[t] / lab if lab else float("nan")
            rows[t] = {
                "replaced": made,
                "correct": ok,
                "labelled": lab,
                "recalled": self.recalled[t],
                "typed": self.typed[t],
            }
            print(f"{t:<15}{made:>9}{ok:>9}{prec:>11.1%}{lab:>10}{rec:>9.1%}{typ:>8.1%}")
        made, ok = sum(self.made.values()), sum(self.correct.values())
        lab, rec = sum(self.labelled.values()), sum(self.recalled.values())
        print(
            f"{'all':<15}{made:>9}{ok:>9}{(ok / made if made else 1):>11.2%}{lab:>10}{(rec / lab if lab else 1):>9.1%}"
        )
        if self.unaligned:
            print(f"unaligned outputs: {self.unaligned}")
        for t, ex in self.wrong.items():
            print(f"  wrong {t}: {ex}")
        for t, ex in self.missed.items():
            print(f"  missed {t}: {ex}")
        return {"rows": rows, "replaced": made, "correct": ok, "labelled": lab, "recalled": rec}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-type", type=int, default=150, help="values per type, existing sets")
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    redactor = Redactor()
    print(f"rule set {redactor.version}")
    records = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line]
    by_kind: dict[str, Tally] = defaultdict(Tally)
    total = Tally()
    for r in records:
        pii = [tuple(p) for p in r["pii"]]
        by_kind[r["kind"]].add(redactor, r["text"], pii)
        total.add(redactor, r["text"], pii)
    figures: dict[str, object] = {}
    for kind, tally in sorted(by_kind.items()):
        figures[kind] = tally.report(f"precision set: {kind}")
    figures["precision_set"] = total.report(f"precision set: all {len(records)} records")

    rnd = random.Random(args.seed)
    existing = Tally()
    for type_, gen in generators(args.seed).items():
        for _ in range(args.per_type):
            value = gen()  # type: ignore[operator]
            existing.add(redactor, rnd.choice(TEMPLATES).format(v=value), [(type_, value)])
    figures["pii_labelled"] = existing.report(f"existing labelled set ({args.per_type} per type)")
    clean = Tally()
    for text in shop_text(args.per_type * 5, args.seed):
        clean.add(redactor, text, [])
    figures["pii_free"] = clean.report(f"existing PII-free set ({args.per_type * 5} sentences)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
