"""Efficacy of the weekly loop on a simulated stream with known ground truth (issue 11).

A help-desk agent answers twenty intents; it answers some of them wrong (an outdated policy, or a
neighbour intent's answer). Users vote: thumbs up on a share of right answers, thumbs down on a
share of wrong ones, and on some intents a correction (the right answer) with the thumbs down;
some wrong intents are never corrected, some only from a later week. Each simulated week's logs
and feedback go through the real weekly flow (``flows.weekly.weekly_flow``: ingest -> curate ->
train with the default ``local`` backend -> evaluate -> gate -> promote) on a temporary
``RATCHET_HOME`` under Prefect's test harness. After each week the agent's production model
answers **held-out paraphrases** (wordings made from templates that no logged question ever
uses), and the table reports:

* ``fixed``: corrected intents (a correction arrived by that week) whose every held-out paraphrase
  production answers right; the goal is all of them;
* ``kept``: intents the agent answered right from the start whose every held-out paraphrase
  production still answers right; the goal is all of them;
* the same two as shares of paraphrases, and the week's decision with its failed rules.

**Answers right** means normalised match (``ratchet.evaluation.scorers.normalised_match``: lower
case, no punctuation or articles) with the intent's right answer. Every answer the local and
logs models give is a stored answer copied verbatim (a correction or a logged response), so a
right answer matches exactly up to the cosmetic variants users type in corrections; token F1 is
too lenient here, because an outdated-policy answer differs from the right one by a figure or two
(``within 14 days`` vs ``within 30 days``: token F1 about 0.8, the gate's pass threshold).

The curate window is on feedback *arrival* (DESIGN.md), and a simulated week arrives in seconds:
each week's run gets ``since`` = the moment just before its ingest, so it curates that week's
feedback only, as a scheduled weekly run would.

Usage: ``python -m benchmarks.bench_efficacy [--weeks 6] [--seed 11] [--per-intent 30]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

AGENT = "helpdesk-bot"
SYSTEM = "You are Northwind's help desk assistant. Answer in one or two sentences."
START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday

#: How customers word a question in the logs ({p}: one of the intent's key phrases).
LOGGED_TEMPLATES: tuple[str, ...] = (
    "How do I {p}?",
    "how can i {p}",
    "What's the way to {p}?",
    "I want to {p}, what should I do?",
    "Please tell me how to {p}.",
    "Can you help me {p}?",
)
#: Wordings no logged question ever uses: the measurement's paraphrases.
HELD_OUT_TEMPLATES: tuple[str, ...] = (
    "Is there any way for me to {p} today?",
    "Could you explain the steps to {p}",
)
PREFIXES: tuple[str, ...] = ("", "", "Hi, ", "Hello! ")
SUFFIXES: tuple[str, ...] = ("", "", " Thanks.", " Thank you!")


@dataclass(frozen=True)
class Intent:
    """One thing customers ask, its key phrases, its right answer and what the agent says.

    ``wrong``: the agent's answer when it answers this intent wrong (None: it answers right).
    ``correct_p``: the chance that a thumbs down on a wrong answer carries a correction (0: users
    never correct it); ``correct_from``: the first week users correct it."""

    name: str
    topic: str
    phrases: tuple[str, str, str]
    right: str
    wrong: str | None = None
    correct_p: float = 0.0
    correct_from: int = 1


INTENTS: tuple[Intent, ...] = (
    Intent("reset_password", "account",
           ("reset my password", "change my login password", "recover a forgotten password"),
           "Go to Settings > Security, choose Reset password and follow the link we send you."),
    Intent("change_email", "account",
           ("change my email address", "update the email on my profile", "use a new email"),
           "Open Settings > Profile, edit the email field and confirm the code sent to the new "
           "address."),
    Intent("delete_account", "account",
           ("delete my account", "close my account for good", "remove my profile completely"),
           "Open Settings > Privacy and choose Delete account; it is erased after 14 days."),
    Intent("enable_2fa", "account",
           ("turn on two-factor authentication", "enable 2FA", "add two-step verification"),
           "Open Settings > Security and switch on Two-step verification with an authenticator "
           "app.",
           wrong="Two-step verification is not available for customer accounts yet.",
           correct_p=0.5),
    Intent("track_order", "orders",
           ("track my order", "see where my parcel is", "follow my delivery"),
           "Open Orders, pick the order and press Track to see the carrier's latest scan."),
    Intent("cancel_order", "orders",
           ("cancel my order", "stop an order I just placed", "call off my purchase"),
           "Press Cancel under Orders until the order ships; after that, return it instead.",
           wrong="Start a return under Orders > Return within 30 days; the return label is free.",
           correct_p=0.5),
    Intent("change_address", "orders",
           ("change the delivery address", "ship my order somewhere else",
            "fix a wrong shipping address"),
           "Edit the delivery address under Orders > Details before the order is packed.",
           wrong="Open Settings > Profile, edit the email field and confirm the code sent to the "
           "new address.",
           correct_p=0.4, correct_from=3),
    Intent("return_item", "returns",
           ("return an item", "send a product back", "get a return label"),
           "Start a return under Orders > Return within 30 days; the return label is free.",
           wrong="Start a return under Orders > Return within 14 days; the return label costs "
           "4.95 euros.",
           correct_p=0.5),
    Intent("refund_time", "returns",
           ("know when my refund arrives", "check how long a refund takes",
            "get my money back faster"),
           "Refunds reach your card 5 to 7 business days after we receive the return.",
           wrong="Refunds reach your card up to 30 business days after we receive the return.",
           correct_p=0.3),
    Intent("exchange_size", "returns",
           ("exchange for another size", "swap my shoes for a bigger size",
            "get a different size instead"),
           "Choose Exchange instead of Return and pick the new size; we ship it when the old "
           "one is scanned."),
    Intent("update_card", "billing",
           ("update my payment card", "add a new credit card", "replace my expired card"),
           "Go to Billing > Payment methods, add the new card and make it the default."),
    Intent("download_invoice", "billing",
           ("download an invoice", "get a receipt for my order", "print my bill"),
           "Open Orders, pick the order and press Download invoice to get the PDF.",
           wrong="Invoices are sent by post within a week of delivery.",
           correct_p=0.4),
    Intent("promo_code", "billing",
           ("use a promo code", "apply a discount voucher", "redeem my coupon"),
           "Type the code into the Promo code box at checkout, before you pay."),
    Intent("shipping_cost", "shipping",
           ("find out the shipping cost", "know how much delivery costs", "get free shipping"),
           "Standard delivery is free over 50 euros and costs 4.95 euros below that.",
           wrong="Standard delivery is free over 100 euros and costs 6.95 euros below that.",
           correct_p=0.5, correct_from=2),
    Intent("express_delivery", "shipping",
           ("get next-day delivery", "choose express shipping", "receive my order tomorrow"),
           "Choose Express at checkout for next-day delivery when you order before 2 pm."),
    Intent("ship_abroad", "shipping",
           ("ship to another country", "order from abroad", "send a package overseas"),
           "We ship to the EU, the UK and Switzerland; duties are shown at checkout."),
    Intent("store_hours", "stores",
           ("know your opening hours", "find out when the shop opens", "visit a store on Sunday"),
           "Our stores open 9 am to 8 pm Monday to Saturday and 11 am to 5 pm on Sunday.",
           wrong="Our stores open 10 am to 6 pm Monday to Friday and are closed at weekends."),
    Intent("gift_card", "stores",
           ("check my gift card balance", "see what is left on a gift card",
            "spend a gift voucher"),
           "Check the balance under Account > Gift cards or on the back of your receipt."),
    Intent("contact_support", "support",
           ("talk to a human agent", "reach customer service", "speak with someone from support"),
           "Use the chat in the app; an agent answers within 10 minutes, 8 am to 10 pm.",
           wrong="We only answer by post; allow two weeks for a reply."),
    Intent("loyalty_points", "stores",
           ("use my loyalty points", "redeem reward points", "see how many points I have"),
           "Your points show under Account > Rewards; 100 points take 1 euro off at checkout."),
)  # fmt: skip


def normalise(text: str) -> str:
    """The scorers' answer normalisation (lower case, no punctuation or articles)."""
    from ratchet.evaluation.scorers import normalise as scorer_normalise

    return scorer_normalise(text)


def held_out_paraphrases(intent: Intent) -> list[str]:
    """The measurement's questions for an intent: held-out wordings of every key phrase."""
    return [t.format(p=p) for t in HELD_OUT_TEMPLATES for p in intent.phrases]


def cosmetic(text: str, rng: random.Random) -> str:
    """A correction as a user types it: the right answer, sometimes in lower case or without its
    final full stop (the same after normalisation)."""
    r = rng.random()
    if r < 0.2:
        return text[0].lower() + text[1:]
    if r < 0.4:
        return text.rstrip(".")
    return text


@dataclass
class Week:
    """One simulated week: the files written and what it holds, by intent."""

    number: int
    interactions: Path
    feedback: Path
    questions: set[str] = field(default_factory=set)  # every logged user message
    intent_of: dict[str, str] = field(default_factory=dict)  # interaction id -> intent
    corrections: dict[str, list[str]] = field(default_factory=dict)  # intent -> texts
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class Stream:
    """The whole simulated stream and its ground truth."""

    intents: tuple[Intent, ...]
    weeks: list[Week]

    def corrected_by(self, week: int) -> set[str]:
        """Intents that received at least one correction in weeks 1..week."""
        return {name for w in self.weeks[:week] for name in w.corrections}

    def right_from_start(self) -> set[str]:
        return {i.name for i in self.intents if i.wrong is None}

    def logged_questions(self) -> set[str]:
        return {q for w in self.weeks for q in w.questions}


def generate(
    out: Path,
    *,
    weeks: int = 6,
    per_intent: int = 30,
    seed: int = 11,
    intents: Sequence[Intent] = INTENTS,
    thumbs_up_p: float = 0.3,
    thumbs_down_p: float = 0.6,
    stray_down_p: float = 0.02,
) -> Stream:
    """Write ``interactions-week-NN.jsonl`` and ``feedback-week-NN.jsonl`` (canonical JSONL)
    for each week into ``out``; seeded, so the same arguments give the same files.

    Per week, each intent gets ``per_intent`` ± 20% interactions worded with a logged template,
    a key phrase and an optional greeting or thanks. The agent answers right, or its ``wrong``
    answer. Right answers get a thumbs up with ``thumbs_up_p`` (and, rarely, a stray thumbs down
    without correction); wrong answers a thumbs down with ``thumbs_down_p``, which carries a
    correction (the right answer, cosmetic variants included) with the intent's ``correct_p``
    from week ``correct_from`` on."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    result: list[Week] = []
    for w in range(1, weeks + 1):
        week = Week(
            w, out / f"interactions-week-{w:02d}.jsonl", out / f"feedback-week-{w:02d}.jsonl"
        )
        records: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        for intent in intents:
            n = max(1, round(per_intent * rng.uniform(0.8, 1.2)))
            for _ in range(n):
                question = (
                    rng.choice(PREFIXES)
                    + rng.choice(LOGGED_TEMPLATES).format(p=rng.choice(intent.phrases))
                    + rng.choice(SUFFIXES)
                )
                ts = START + timedelta(weeks=w - 1, seconds=rng.randrange(6 * 86400))
                iid = str(uuid.UUID(int=rng.getrandbits(128)))
                wrong = intent.wrong is not None
                records.append(
                    {
                        "schema_version": "1.0",
                        "interaction_id": iid,
                        "agent_id": AGENT,
                        "timestamp": ts.isoformat(),
                        "user_id": f"user_{rng.randrange(5000):04d}",
                        "model_version": f"{AGENT}@v1",
                        "messages": [
                            {"role": "system", "content": SYSTEM},
                            {"role": "user", "content": question},
                        ],
                        "response": intent.wrong if wrong else intent.right,
                        "latency_ms": round(rng.uniform(300, 900), 1),
                        "metadata": {"topic": intent.topic},
                    }
                )
                week.questions.add(question)
                week.intent_of[iid] = intent.name
                week.counts[intent.name] = week.counts.get(intent.name, 0) + 1
                event: dict[str, Any] | None = None
                if not wrong and rng.random() < thumbs_up_p:
                    event = {"thumb": 1}
                elif not wrong and rng.random() < stray_down_p:
                    event = {"thumb": -1}
                elif wrong and rng.random() < thumbs_down_p:
                    event = {"thumb": -1}
                    if w >= intent.correct_from and rng.random() < intent.correct_p:
                        event["correction"] = cosmetic(intent.right, rng)
                        week.corrections.setdefault(intent.name, []).append(event["correction"])
                if event is not None:
                    given = ts + timedelta(minutes=rng.randrange(2, 600))
                    events.append(
                        {
                            "interaction_id": iid,
                            "agent_id": AGENT,
                            "timestamp": given.isoformat(),
                            "source": "user",
                            **event,
                        }
                    )
        records.sort(key=lambda r: r["timestamp"])
        events.sort(key=lambda e: e["timestamp"])
        for path, rows in ((week.interactions, records), (week.feedback, events)):
            path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows), "utf-8")
        result.append(week)
    return Stream(tuple(intents), result)


# --- measuring production ------------------------------------------------------------------------
@dataclass(frozen=True)
class Measured:
    """Production's answers to the held-out paraphrases, scored against the right answers."""

    version: str
    backend: str
    right: dict[str, list[bool]]  # intent -> one verdict per held-out paraphrase


def measure_production(stream: Stream) -> Measured:
    """Ask the agent's production model every held-out paraphrase (through the same answerer
    ``ratchet ask`` uses) and score it by normalised match with the intent's right answer."""
    from ratchet.backends import BackendContext, answerer_for
    from ratchet.backends.base import Answer
    from ratchet.config import load_config
    from ratchet.db import open_database, repo
    from ratchet.evaluation.scorers import Case, normalised_match
    from ratchet.settings import get_settings
    from ratchet.training import model_spec_of
    from tasks import runtime

    settings = get_settings()
    with open_database(settings)() as s:
        row = repo.production_version(s, AGENT)
        if row is None:
            raise RuntimeError(f"agent {AGENT} has no production model")
        spec, version, backend = model_spec_of(row), row.id, row.backend
    context = BackendContext(runtime.store(settings), settings, load_config(settings))
    answerer = answerer_for(spec, context)
    right: dict[str, list[bool]] = {}
    for intent in stream.intents:
        verdicts = []
        for q in held_out_paraphrases(intent):
            messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}]
            got: Answer = answerer.answer(messages)
            case = Case(case_id=q, input=messages, expected=intent.right)
            verdicts.append(normalised_match(case, got) == 1.0)
        right[intent.name] = verdicts
    return Measured(version, backend, right)


def _share(names: set[str], m: Measured) -> tuple[int, int, float]:
    whole = sum(all(m.right[n]) for n in names)
    answers = [v for n in names for v in m.right[n]]
    return whole, len(names), (sum(answers) / len(answers) if answers else float("nan"))


def _run_week(week: Week) -> dict[str, Any]:
    from flows.weekly import weekly_flow

    since = datetime.now(UTC) - timedelta(seconds=1)
    state = weekly_flow(
        paths=[str(week.interactions)],
        feedback_paths=[str(week.feedback)],
        agent=AGENT,
        since=since,
        strategy="sft",
        backend="local",
        return_state=True,
    )
    if not state.is_completed():
        return {"action": "failed", "reasons": [str(state.message)]}
    result = state.result()
    decided = dict(result.get("improve", {}).get(AGENT) or {})
    versions = {
        v["kind"]: v["rows"]
        for r in (result.get("curate") or {}).get("reports", [])
        for v in r.get("versions", [])
    }
    return decided | {"rows": versions}


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Generate the stream, run the weekly flow per week, measure production after each."""
    from prefect.testing.utilities import prefect_test_harness

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ratchet-efficacy-") as tmp:
        root = Path(args.keep or tmp)
        for key in [k for k in os.environ if k.startswith("RATCHET_")]:
            del os.environ[key]
        os.environ["RATCHET_HOME"] = str(root / "home")
        # The similarity scorer is reported, never gated: tfidf_cosine instead of loading
        # MiniLM keeps the run short without changing any rule the gate judges.
        (root / "efficacy.yaml").write_text("evaluation:\n  embedding: tfidf\n", "utf-8")
        os.environ["RATCHET_CONFIG"] = str(root / "efficacy.yaml")
        stream = generate(root / "stream", weeks=args.weeks, per_intent=args.per_intent,
                          seed=args.seed)  # fmt: skip
        right_from_start = stream.right_from_start()
        with prefect_test_harness(server_startup_timeout=600):
            for week in stream.weeks:
                started = time.perf_counter()
                decided = _run_week(week)
                seconds = time.perf_counter() - started
                m = measure_production(stream)
                corrected = stream.corrected_by(week.number)
                fixed = _share(corrected, m)
                kept = _share(right_from_start, m)
                rows.append(
                    {
                        "week": week.number,
                        "interactions": sum(week.counts.values()),
                        "corrections": sum(len(v) for v in week.corrections.values()),
                        "decision": decided.get("action"),
                        "reasons": decided.get("reasons") or [],
                        "sft_rows": decided.get("rows", {}).get("sft_examples", 0),
                        "eval_rows": decided.get("rows", {}).get("eval_cases", 0),
                        "production": f"{m.backend}:{m.version[:12]}",
                        "corrected": sorted(corrected),
                        "not_fixed": sorted(n for n in corrected if not all(m.right[n])),
                        "lost": sorted(n for n in right_from_start if not all(m.right[n])),
                        "fixed": fixed,
                        "kept": kept,
                        "seconds": seconds,
                    }
                )
                _print_row(rows[-1])
    return rows


def _print_row(r: dict[str, Any]) -> None:
    fw, fn, fp = r["fixed"]
    kw, kn, kp = r["kept"]
    why = "; ".join(x.split(":")[0] for x in r["reasons"]) if r["decision"] != "promote" else ""
    print(
        f"| {r['week']} | {r['interactions']} | {r['corrections']} | {r['sft_rows']} | "
        f"{r['decision']}{f' ({why})' if why else ''} | {r['production']} | "
        f"{fw}/{fn} ({fp:.0%}) | {kw}/{kn} ({kp:.0%}) | {r['seconds']:.0f} s |",
        flush=True,
    )
    if r["not_fixed"] or r["lost"]:
        print(f"|   | not fixed: {', '.join(r['not_fixed']) or '-'}; lost: "
              f"{', '.join(r['lost']) or '-'} |", flush=True)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weeks", type=int, default=6)
    ap.add_argument("--per-intent", type=int, default=30)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--json", action="store_true", help="also print the rows as JSON")
    ap.add_argument("--keep", help="an empty folder to run in and keep (store, database)")
    args = ap.parse_args(argv)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    started = time.perf_counter()
    print(
        f"{len(INTENTS)} intents ({sum(i.wrong is not None for i in INTENTS)} answered wrong, "
        f"{sum(i.correct_p > 0 for i in INTENTS)} of them corrected by users); "
        f"{len(HELD_OUT_TEMPLATES) * 3} held-out paraphrases per intent; seed {args.seed}"
    )
    print(
        "| week | interactions | corrections | sft rows | decision | production | "
        "corrected intents fixed (paraphrases) | right intents kept (paraphrases) | run |"
    )
    print("|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    rows = run(args)
    print(f"elapsed {time.perf_counter() - started:.0f} s")
    if args.json:
        print(json.dumps(rows, default=str, indent=1))


if __name__ == "__main__":
    main()
