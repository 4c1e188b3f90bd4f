"""Vectorised MinHash: estimates track true Jaccard; LSH finds near pairs, not unrelated ones."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ratchet.curation import minhash


def _jaccard(a: str, b: str, k: int = 5) -> float:
    sa = {a[i : i + k] for i in range(len(a) - k + 1)}
    sb = {b[i : i + k] for i in range(len(b) - k + 1)}
    return len(sa & sb) / len(sa | sb)


def test_signature_estimate_close_to_true_jaccard() -> None:
    a = "the quick brown fox jumps over the lazy dog near the river bank today"
    b = a.replace("lazy", "sleepy")
    sig = minhash.signatures(pa.array([a, b]), k=5, num_perm=256, seed=3)
    est = (sig[0] == sig[1]).mean()
    assert abs(est - _jaccard(a, b)) < 0.1


def test_short_and_empty_texts() -> None:
    sig = minhash.signatures(pa.array(["ab", "ab", "", "abc"]), k=5, num_perm=32, seed=1)
    assert (sig[0] == sig[1]).all() and not (sig[0] == sig[3]).all()
    assert (sig[2] == np.uint32(0xFFFFFFFF)).all()


def test_sliced_arrays_hash_like_fresh_ones() -> None:
    arr = pa.array(["zzz zzz zzz", "hello world again", "another text here"])
    a = minhash.signatures(arr.slice(1), k=4, num_perm=32, seed=1)
    b = minhash.signatures(pa.array(["hello world again", "another text here"]), k=4,
                           num_perm=32, seed=1)
    assert (a == b).all()


def test_lsh_edges_and_components() -> None:
    base = "please cancel my subscription and refund the last payment to my card"
    texts = [base, base.replace("last", "latest"), "completely unrelated question about hours",
             base + " thanks"]
    sig = minhash.signatures(pa.array(texts), k=5, num_perm=128, seed=1)
    labels = minhash.components(len(texts), minhash.candidate_edges(sig, 0.6))
    assert labels[0] == labels[1] == labels[3] != labels[2]


def test_band_choice_matches_datasketch_shape() -> None:
    bands, rows = minhash.bands_for(0.8, 64)
    assert bands * rows <= 64 and rows > 1
