"""Curation throughput and memory, and our near-dup step against datasketch on the same texts.

    python -m benchmarks.bench_curation [--quick] [--interactions N] [--datasketch-sample N]

Generates N synthetic interactions (default 1,000,000; --quick: 100,000) and feedback on 15 % of
them (plus changed votes, corrections, expert labels), as Arrow tables directly (seeded, fast),
runs ``ratchet.curation.curate`` and reports wall time and peak RSS. Then times the near-dup step
(MinHash signatures + LSH) on a sample of the normalised inputs against datasketch's ``MinHash``
+ ``MinHashLSH`` with the same shingles, permutations and threshold.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import threading
import time

import numpy as np
import psutil
import pyarrow as pa

from ratchet import schemas
from ratchet.config import CurationConfig
from ratchet.curation import curate, minhash, text

WORDS = np.array(
    (
        "account password reset order parcel delivery refund invoice billing card payment plan "
        "upgrade cancel subscription login email address change shipping return warranty price "
        "discount coupon store hours support agent error crash app update install device phone "
        "laptop screen battery charge contract tariff roaming data limit bill"
    ).split()
)
T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def _texts(rng: np.random.Generator, n: int, lo: int, hi: int) -> list[str]:
    lengths = rng.integers(lo, hi, size=n)
    words = WORDS[rng.integers(0, len(WORDS), size=int(lengths.sum()))]
    cuts = np.cumsum(lengths)[:-1]
    return [" ".join(chunk) for chunk in np.split(words, cuts)]


def generate(n: int, seed: int = 7) -> tuple[pa.Table, pa.Table]:
    rng = np.random.default_rng(seed)
    questions = _texts(rng, n, 6, 30)
    # 10 % exact repeats (case and punctuation changed), 5 % near duplicates (one word swapped).
    rep = rng.choice(n, size=n // 10, replace=False)
    src = rng.integers(0, n, size=len(rep))
    for i, j in zip(rep, src, strict=True):
        questions[i] = questions[j].upper() + "?"
    near = rng.choice(n, size=n // 20, replace=False)
    for i, j in zip(near, rng.integers(0, n, size=len(near)), strict=True):
        w = questions[j].split(" ")
        w[len(w) // 2] = str(WORDS[rng.integers(len(WORDS))])
        questions[i] = " ".join(w)
    answers = _texts(rng, n, 10, 60)
    iid = np.char.add("i", np.arange(n).astype(str)).tolist()
    role = pa.array(["system", "user"] * n)
    content = pa.array([x for q in questions for x in ("You are a support agent.", q)])
    nulls = pa.nulls(2 * n, pa.string())
    msgs = pa.StructArray.from_arrays(
        [role, content, nulls, nulls, pa.nulls(2 * n, schemas.MESSAGE.field("tool_calls").type)],
        fields=list(schemas.MESSAGE),
    )
    messages = pa.ListArray.from_arrays(
        pa.array(np.arange(0, 2 * n + 1, 2, dtype=np.int32)), msgs, type=schemas.MESSAGES
    )
    ts = pa.array(T0.timestamp() * 1e6 + rng.integers(0, 7 * 86400e6, size=n), pa.int64()).cast(
        schemas.UTC_TS
    )
    topics = np.array(["billing", "shipping", "account", "tech", None], dtype=object)
    meta = [None if t is None else f'{{"topic": "{t}"}}' for t in topics[rng.integers(0, 5, n)]]
    cols = {
        "schema_version": pa.array(["1.0"] * n),
        "agent_id": pa.array(["agent-a"] * n),
        "interaction_id": pa.array(iid),
        "timestamp": ts,
        "messages": messages,
        "response": pa.array(answers),
        "metadata": pa.array(meta, pa.string()),
        "content_hash": pa.array(["c" * 64] * n),
        "source_file": pa.array(["f" * 64] * n),
        "source_line": pa.array(np.arange(n)),
        "timestamp_assumed_utc": pa.array(np.zeros(n, bool)),
        "redaction_version": pa.array(["1"] * n),
        "pii_residual": pa.array(np.zeros(n, np.int32)),
    }
    interactions = pa.table(
        {f.name: cols.get(f.name, pa.nulls(n, f.type)).cast(f.type) for f in schemas.INTERACTIONS},
        schema=schemas.INTERACTIONS,
    )
    m = int(n * 0.15)
    target = rng.choice(n, size=m, replace=False)
    kind = rng.random(m)
    thumb = np.where(kind < 0.55, 1, np.where(kind < 0.85, -1, 0)).astype(np.int8)
    rating = np.where(thumb == 0, rng.integers(1, 6, size=m), -1).astype(np.int8)
    has_corr = (thumb == -1) & (rng.random(m) < 0.6)
    corrections = _texts(rng, m, 8, 40)
    source = np.where(rng.random(m) < 0.1, "expert", "user")
    # Changed votes: 5 % get a second, later event from the same annotator.
    again = rng.choice(m, size=m // 20, replace=False)
    fi = np.concatenate([target, target[again]])
    fth = np.concatenate([thumb, -thumb[again]])
    frt = np.concatenate([rating, rating[again]])
    fco = np.concatenate([np.where(has_corr, corrections, None), np.full(len(again), None)])
    fsrc = np.concatenate([source, source[again]])
    fts = np.concatenate([np.full(m, 1), np.full(len(again), 2)]) * 3600e6
    k = len(fi)
    fcols = {
        "schema_version": pa.array(["1.0"] * k),
        "agent_id": pa.array(["agent-a"] * k),
        "feedback_id": pa.array(np.char.add("f", np.arange(k).astype(str)).tolist()),
        "interaction_id": pa.array(np.array(iid, dtype=object)[fi].tolist()),
        "timestamp": pa.array(T0.timestamp() * 1e6 + 7 * 86400e6 + fts, pa.int64()).cast(
            schemas.UTC_TS
        ),
        "source": pa.array(fsrc.tolist()),
        "annotator": pa.array(["a1"] * k),
        "rating": pa.array(np.where(frt < 0, None, frt).tolist(), pa.int8()),
        "thumb": pa.array(np.where(fth == 0, None, fth).tolist(), pa.int8()),
        "correction": pa.array(fco.tolist(), pa.string()),
        "content_hash": pa.array(["c" * 64] * k),
        "source_file": pa.array(["f" * 64] * k),
        "source_line": pa.array(np.arange(k)),
        "timestamp_assumed_utc": pa.array(np.zeros(k, bool)),
        "redaction_version": pa.array(["1"] * k),
        "pii_residual": pa.array(np.zeros(k, np.int32)),
    }
    feedback = pa.table(
        {f.name: fcols.get(f.name, pa.nulls(k, f.type)).cast(f.type) for f in schemas.FEEDBACK},
        schema=schemas.FEEDBACK,
    )
    return interactions, feedback


class PeakRSS:
    """Samples this process's RSS every 10 ms (ru_maxrss cannot be reset between phases)."""

    def __init__(self) -> None:
        self.proc, self.peak, self._stop = psutil.Process(), 0, threading.Event()

    def __enter__(self) -> PeakRSS:
        self.peak = self.proc.memory_info().rss
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join()


def _shingles(s: str, k: int) -> list[bytes]:
    b = s.encode()
    return [b] if len(b) < k else [b[i : i + k] for i in range(len(b) - k + 1)]


def near_dup_vs_datasketch(texts: pa.StringArray, cfg: CurationConfig) -> dict[str, float]:
    from datasketch import MinHash, MinHashLSH

    k, perms, thr = cfg.shingle_chars, cfg.minhash_permutations, cfg.near_duplicate_threshold
    t = time.perf_counter()
    sig = minhash.signatures(texts, k=k, num_perm=perms, seed=cfg.minhash_seed)
    edges = minhash.candidate_edges(sig, thr)
    ours = time.perf_counter() - t
    py = texts.to_pylist()
    t = time.perf_counter()
    lsh = MinHashLSH(threshold=thr, num_perm=perms)
    mhs = []
    for i, s in enumerate(py):
        mh = MinHash(num_perm=perms, seed=cfg.minhash_seed)
        mh.update_batch(_shingles(s, k))
        lsh.insert(i, mh)
        mhs.append(mh)
    pairs = 0
    for i, mh in enumerate(mhs):
        pairs += sum(1 for j in lsh.query(mh) if j > i and mh.jaccard(mhs[j]) >= thr)
    theirs = time.perf_counter() - t
    return {
        "texts": len(py),
        "ours_s": ours,
        "datasketch_s": theirs,
        "ours_pairs": len(edges.left),
        "datasketch_pairs": pairs,
        "speedup": theirs / ours if ours else float("inf"),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="100k interactions")
    ap.add_argument("--interactions", type=int, default=None)
    ap.add_argument("--datasketch-sample", type=int, default=20_000)
    args = ap.parse_args()
    n = args.interactions or (100_000 if args.quick else 1_000_000)
    cfg = CurationConfig()
    t = time.perf_counter()
    interactions, feedback = generate(n)
    print(
        f"generated {n:,} interactions, {feedback.num_rows:,} feedback events "
        f"in {time.perf_counter() - t:.1f} s"
    )
    with PeakRSS() as rss:
        base = rss.peak
        t = time.perf_counter()
        r = curate(
            interactions,
            feedback,
            None,
            cfg,
            now=dt.datetime(2027, 1, 1, tzinfo=dt.UTC),
            scan_residual=lambda tb: pa.array(np.zeros(tb.num_rows, np.int32)),
        )
        wall = time.perf_counter() - t
    print(
        f"curate: {wall:.1f} s wall; peak RSS {rss.peak / 2**20:,.0f} MiB "
        f"(inputs held before the call: {base / 2**20:,.0f} MiB); "
        f"ru_maxrss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB"
    )
    keys = (
        "signal_golden",
        "signal_regression",
        "signal_neutral",
        "signal_review_thumbs_down_no_correction",
        "feedback_superseded",
        "removed_duplicate_exact",
        "removed_duplicate_near",
        "capped_by_balance",
        "rows_eval_cases",
        "rows_sft_examples",
        "rows_preference_pairs",
        "rows_binary_feedback",
        "rows_review_queue",
    )
    print("stats: " + ", ".join(f"{k}={r.stats[k]:,}" for k in keys))
    # The same kind of texts curate deduplicates: normalised user inputs (repeats included).
    sample = text.normalise(
        text.user_text(interactions["messages"].slice(0, min(args.datasketch_sample, n)))
    )
    cmp = near_dup_vs_datasketch(sample, cfg)
    print(
        f"near-dup on {cmp['texts']:,} texts: ours {cmp['ours_s']:.2f} s "
        f"({cmp['ours_pairs']} pairs), datasketch {cmp['datasketch_s']:.2f} s "
        f"({cmp['datasketch_pairs']} pairs); ours is {cmp['speedup']:.0f}x faster"
    )


if __name__ == "__main__":
    main()
