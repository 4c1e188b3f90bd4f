"""Local / logs backend retrieval: index build, load and answer latency, against a brute-force
numpy cosine peer on the same vectors.

Rows are (last user message, response) pairs of interactions: the bundled sample's (600), and
``ratchet.sample.write_interactions`` (seeded) for the large size. For each size:

* **build**: ``build_index`` (TF-IDF fit + transform, default settings: word 1-2-grams, no
  vocabulary cap) and ``save`` into a local-disk store;
* **load**: ``RetrievalIndex.load`` from that store (TF-IDF vectors recomputed from the
  questions);
* **answer**: median and p95 of one ``nearest`` call per question (200 questions drawn from the
  rows, seeded), the way ``ratchet ask`` and the answerers call it;
* **peer**: the same TF-IDF vectors held as a dense float32 numpy matrix, one ``q @ X.T`` and
  ``argmax`` per question (the obvious brute-force cosine). A dense matrix of an uncapped
  vocabulary does not fit in memory at 100k rows, so both sides of the comparison use
  ``max_features=--peer-features`` (1,024 by default); the top-1 rows are checked to agree.

Usage: ``OPENBLAS_NUM_THREADS=1 python -m benchmarks.bench_local_backend [--sizes 100000]
[--queries 200]`` (one BLAS thread: on a shared 2-core machine a threaded peer spends its time
waiting; one query is one small matrix product either way).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ratchet.backends.retrieval import RetrievalIndex, build_index, last_user_text
from ratchet.store import Store

SAMPLE = Path(__file__).resolve().parent.parent / "ratchet" / "data" / "sample"


def _pairs_from(paths: list[Path]) -> tuple[list[str], list[str], list[str]]:
    ids, questions, answers = [], [], []
    seen: set[str] = set()
    for path in paths:
        for line in path.read_text("utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
                question = last_user_text(row["messages"])
                iid, answer = str(row["interaction_id"]), str(row["response"])
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # the sample's deliberately malformed lines
            if question.strip() and iid not in seen:
                seen.add(iid)
                ids.append(iid)
                questions.append(question)
                answers.append(answer)
    return ids, questions, answers


def _ms(values: list[float]) -> tuple[float, float]:
    values = sorted(values)
    return statistics.median(values) * 1000, values[int(0.95 * (len(values) - 1))] * 1000


def measure(
    name: str,
    ids: list[str],
    questions: list[str],
    answers: list[str],
    queries: int,
    peer_features: int,
) -> dict[str, object]:
    rng = random.Random(0)
    asked = [questions[rng.randrange(len(questions))] for _ in range(queries)]
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        t = time.perf_counter()
        index = build_index(ids, questions, answers)
        index.save(store, "models/bench")
        build_s = time.perf_counter() - t
        t = time.perf_counter()
        loaded = RetrievalIndex.load(store, "models/bench")
        load_s = time.perf_counter() - t
    vocab = len(index.encoder.state()["vocabulary"])
    del index
    times = []
    for q in asked:
        t = time.perf_counter()
        loaded.nearest(q)
        times.append(time.perf_counter() - t)
    full_med, full_p95 = _ms(times)
    del loaded

    capped = build_index(ids, questions, answers, max_features=peer_features)
    dense = np.asarray(capped.matrix.toarray(), dtype=np.float32)
    ours, peer, agree = [], [], 0
    for q in asked:
        t = time.perf_counter()
        hit = capped.nearest(q)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        qv = np.asarray(capped.encoder.transform([q]).toarray(), dtype=np.float32)
        best = int(np.argmax(qv @ dense.T, axis=1)[0])
        peer.append(time.perf_counter() - t)
        agree += best == hit.row or bool(np.isclose(float((qv @ dense[best]).item()), hit.score))
    ours_med, _ = _ms(ours)
    peer_med, _ = _ms(peer)
    return {
        "size": name,
        "rows": len(ids),
        "vocabulary": vocab,
        "build_s": round(build_s, 2),
        "load_s": round(load_s, 2),
        "answer_ms_median": round(full_med, 2),
        "answer_ms_p95": round(full_p95, 2),
        "capped_ms_median": round(ours_med, 2),
        "peer_ms_median": round(peer_med, 2),
        "speed_vs_peer": round(peer_med / ours_med, 2) if ours_med else None,
        "peer_dense_mb": round(dense.nbytes / 1e6),
        "top1_agree": f"{agree}/{queries}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--peer-features", type=int, default=1024)
    args = parser.parse_args()
    build_index(["w"], ["warm up the imports"], ["-"]).nearest("warm")  # not timed: imports
    results = [
        measure(
            "bundled sample",
            *_pairs_from(sorted(SAMPLE.glob("interactions-*.jsonl"))),
            args.queries,
            args.peer_features,
        )
    ]
    from ratchet.sample import write_interactions

    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "interactions.jsonl"
            write_interactions(path, n, seed=0, workers=1)
            pairs = _pairs_from([path])
        results.append(measure(f"{n:,} generated", *pairs, args.queries, args.peer_features))
    for r in results:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
