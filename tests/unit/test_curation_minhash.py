"""Vectorised MinHash: estimates track true Jaccard; LSH finds near pairs, not unrelated ones;
and each of these is compared with datasketch (a test dependency), the reference implementation
the module's design follows."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from datasketch import MinHash, MinHashLSH

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
    b = minhash.signatures(
        pa.array(["hello world again", "another text here"]), k=4, num_perm=32, seed=1
    )
    assert (a == b).all()


def test_lsh_edges_and_components() -> None:
    base = "please cancel my subscription and refund the last payment to my card"
    texts = [
        base,
        base.replace("last", "latest"),
        "completely unrelated question about hours",
        base + " thanks",
    ]
    sig = minhash.signatures(pa.array(texts), k=5, num_perm=128, seed=1)
    labels = minhash.components(len(texts), minhash.candidate_edges(sig, 0.6))
    assert labels[0] == labels[1] == labels[3] != labels[2]


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.9])
@pytest.mark.parametrize("num_perm", [32, 64, 128])
def test_band_choice_matches_datasketch(threshold: float, num_perm: int) -> None:
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    assert minhash.bands_for(threshold, num_perm) == (lsh.b, lsh.r)


BASE = [
    "please cancel my subscription and refund the last payment to my card",
    "how do i change the delivery address on an order that already shipped",
    "what are your opening hours on public holidays and weekends in december",
    "my invoice shows a charge twice for the same month, can you check it",
]
TEXTS = [
    *BASE,
    BASE[0].replace("last", "latest"),
    BASE[1] + " please",
    BASE[2].replace("december", "november"),
    "completely unrelated question about parking",
]


def _ds_minhash(text: str, k: int, num_perm: int) -> MinHash:
    m = MinHash(num_perm=num_perm, seed=7)
    for i in range(max(len(text) - k + 1, 1)):
        m.update(text[i : i + k].encode())
    return m


def test_jaccard_estimates_agree_with_datasketch() -> None:
    k, perms = 5, 256
    sig = minhash.signatures(pa.array(TEXTS), k=k, num_perm=perms, seed=3)
    ds = [_ds_minhash(t, k, perms) for t in TEXTS]
    for i in range(len(TEXTS)):
        for j in range(i + 1, len(TEXTS)):
            ours = float((sig[i] == sig[j]).mean())
            theirs = ds[i].jaccard(ds[j])
            true = _jaccard(TEXTS[i], TEXTS[j], k)
            # two independent estimators of the same quantity: each within a few standard
            # errors (sqrt(J(1-J)/256) <= 0.032) of the truth, so within 0.15 of each other
            assert abs(ours - true) < 0.1 and abs(theirs - true) < 0.1, (i, j)
            assert abs(ours - theirs) < 0.15, (i, j)


@pytest.mark.parametrize("threshold", [0.5, 0.7])
def test_near_pairs_are_the_ones_datasketch_lsh_finds(threshold: float) -> None:
    k, perms = 5, 128
    sig = minhash.signatures(pa.array(TEXTS), k=k, num_perm=perms, seed=1)
    e = minhash.candidate_edges(sig, threshold)
    ours = {tuple(sorted(p)) for p in zip(e.left.tolist(), e.right.tolist(), strict=True)}
    lsh = MinHashLSH(threshold=threshold, num_perm=perms)
    ds = [_ds_minhash(t, k, perms) for t in TEXTS]
    for i, m in enumerate(ds):
        lsh.insert(str(i), m)
    theirs = {
        tuple(sorted((i, int(j))))
        for i, m in enumerate(ds)
        for j in lsh.query(m)
        if int(j) != i and ds[i].jaccard(ds[int(j)]) >= threshold  # verified, as ours are
    }
    # the pairs far from the threshold decide the same way in both
    clear = {
        (i, j)
        for i in range(len(TEXTS))
        for j in range(i + 1, len(TEXTS))
        if abs(_jaccard(TEXTS[i], TEXTS[j], k) - threshold) > 0.15
    }
    assert ours & clear == theirs & clear
    assert {(0, 4), (1, 5), (2, 6)} <= ours
