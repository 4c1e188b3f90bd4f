"""Vectorised MinHash and LSH banding for near-duplicate search.

Design, for speed at a million rows on two cores:

* Shingles are character n-grams of the normalised UTF-8 bytes. All texts share one byte buffer
  (the Arrow array's own), so every shingle is hashed once by a rolling polynomial over the whole
  buffer (n vector operations, no Python loop per text), then mixed down to 32 bits.
* The permutations are a matrix operation: ``(x * a + b) >> 32`` with odd 64-bit ``a``
  (multiply-shift hashing) over a block of shingles × permutations, reduced per text with
  ``np.minimum.reduceat``. Blocks keep the temporary matrix near 8 MB (in cache), computed in place.
* LSH bands of ``r`` rows are folded into one 64-bit key per band; texts sharing a key are
  candidates (grouped by sorting the keys rather than with a Python dict of lists, the same
  buckets, built in C). Candidates are verified with the signatures' estimated Jaccard, so a
  band collision never merges two texts on its own.
* Band count and rows are chosen as datasketch's ``MinHashLSH`` chooses them (minimising the
  weighted false-positive and false-negative areas), so the two are comparable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

_MAX = np.uint64(0xFFFFFFFF)
_BLOCK = 1 << 14  # shingles per block: 16k × 64 permutations × 8 bytes = 8 MB (cache-sized)
_PRIME = np.uint64(1099511628211)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_FOLD = np.uint64(0x9E3779B97F4A7C15)


def _mix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(30))
    h = h * _MIX1
    h = h ^ (h >> np.uint64(27))
    h = h * _MIX2
    return h ^ (h >> np.uint64(31))


def shingle_hashes(texts: pa.StringArray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of every character k-gram (bytes), and per-text shingle offsets.

    A non-empty text shorter than k is one shingle (itself); an empty text has none.
    """
    n = len(texts)
    if texts.null_count:
        texts = pa.compute.fill_null(texts, "")
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int32)[texts.offset : texts.offset + n + 1]
    offsets = offsets.astype(np.int64)
    data_buf = texts.buffers()[2]
    data = (
        np.frombuffer(data_buf, dtype=np.uint8)[offsets[0] : offsets[-1]]
        if data_buf is not None
        else np.zeros(0, np.uint8)
    )
    offsets = offsets - offsets[0]
    lengths = np.diff(offsets)
    # Pad so every position has k bytes ahead; positions past a text's end are masked below.
    padded = np.concatenate([data, np.zeros(k, np.uint8)]).astype(np.uint64)
    total = len(data)
    h = np.zeros(total, dtype=np.uint64)
    for j in range(k):
        h = h * _PRIME + padded[j : j + total] + np.uint64(1)
    text_of = np.repeat(np.arange(n), lengths)
    pos = np.arange(total, dtype=np.int64)
    ends = offsets[1:][text_of] if total else np.zeros(0, np.int64)
    full = pos + k <= ends
    counts = np.maximum(lengths - k + 1, 0)
    short = (lengths > 0) & (lengths < k)
    if short.any():
        # The whole short text is one shingle: its rolling hash over exactly its own bytes.
        starts = offsets[:-1][short]
        sh = np.zeros(int(short.sum()), dtype=np.uint64)
        for j in range(k):
            live = j < lengths[short]
            sh = np.where(
                live, sh * _PRIME + padded[np.minimum(starts + j, total)] + np.uint64(1), sh
            )
        keep = full.copy()
        keep[starts] = True
        h[starts] = sh
        full = keep
        counts = np.where(short, 1, counts)
    hashes = _mix64(h[full]) & _MAX
    shingle_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=shingle_offsets[1:])
    return hashes, shingle_offsets


def permutation_params(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
    return a, b


def signatures(texts: pa.StringArray, *, k: int, num_perm: int, seed: int) -> np.ndarray:
    """MinHash signatures, shape (len(texts), num_perm), uint32. An empty text's row is all
    0xFFFFFFFF (it has no shingles); callers leave such rows out of near-duplicate search.

    Texts are taken in groups of about 4 MB, so the per-byte temporaries of shingle hashing stay
    small whatever the input size."""
    n = len(texts)
    sig = np.full((n, num_perm), np.uint32(0xFFFFFFFF), dtype=np.uint32)
    if not n:
        return sig
    a, b = permutation_params(num_perm, seed)
    if texts.null_count:
        texts = pa.compute.fill_null(texts, "")
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int32)[texts.offset : texts.offset + n + 1]
    start = 0
    while start < n:
        stop = int(np.searchsorted(offsets, offsets[start] + _GROUP_BYTES, side="right")) - 1
        stop = min(max(stop, start + 1), n)
        sig[start:stop] = _signatures(texts.slice(start, stop - start), k, a, b)
        start = stop
    return sig


_GROUP_BYTES = 1 << 22


def _signatures(texts: pa.StringArray, k: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    hashes, offsets = shingle_hashes(texts, k)
    n = len(texts)
    sig = np.full((n, len(a)), np.uint32(0xFFFFFFFF), dtype=np.uint32)
    counts = np.diff(offsets)
    nonempty = np.flatnonzero(counts > 0)
    if not len(nonempty):
        return sig
    starts = offsets[nonempty]
    ends = offsets[nonempty + 1]
    i = 0
    while i < len(nonempty):
        # Take whole texts until the block holds about _BLOCK shingles (at least one text).
        j = int(np.searchsorted(ends, starts[i] + _BLOCK, side="right"))
        j = max(j, i + 1)
        lo, hi = int(starts[i]), int(ends[j - 1])
        x = hashes[lo:hi]
        perm = np.multiply(x[:, None], a[None, :])
        np.add(perm, b[None, :], out=perm)
        np.right_shift(perm, np.uint64(32), out=perm)
        mins = np.minimum.reduceat(perm, starts[i:j] - lo, axis=0)
        sig[nonempty[i:j]] = mins.astype(np.uint32)
        i = j
    return sig


def optimal_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) minimising false positives + false negatives, as datasketch chooses."""
    xs = np.linspace(0.0, 1.0, 1001)
    best, best_err = (1, num_perm), float("inf")
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            p = 1.0 - (1.0 - xs**rows) ** bands
            lo = xs <= threshold
            fp = float(np.trapezoid(p[lo], xs[lo]))
            fn = float(np.trapezoid(1.0 - p[~lo], xs[~lo])) if (~lo).any() else 0.0
            err = 0.5 * fp + 0.5 * fn
            if err < best_err:
                best, best_err = (bands, rows), err
    return best


_BANDS_CACHE: dict[tuple[float, int], tuple[int, int]] = {}


def bands_for(threshold: float, num_perm: int) -> tuple[int, int]:
    key = (round(threshold, 6), num_perm)
    if key not in _BANDS_CACHE:
        _BANDS_CACHE[key] = optimal_bands(threshold, num_perm)
    return _BANDS_CACHE[key]


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit key per (text, band), shape (n, bands)."""
    n = sig.shape[0]
    keys = np.empty((n, bands), dtype=np.uint64)
    s = sig.astype(np.uint64)
    for band in range(bands):
        h = np.full(n, np.uint64(((band + 1) * int(_FOLD)) & 0xFFFFFFFFFFFFFFFF), dtype=np.uint64)
        for col in range(band * rows, (band + 1) * rows):
            h = _mix64(h ^ s[:, col])
        keys[:, band] = h
    return keys


@dataclass(frozen=True)
class Edges:
    """Verified near-duplicate pairs (indices into the signature rows)."""

    left: np.ndarray
    right: np.ndarray


def candidate_edges(
    sig: np.ndarray,
    threshold: float,
    *,
    active: np.ndarray | None = None,
    priority: np.ndarray | None = None,
) -> Edges:
    """Pairs whose signatures share a band and whose estimated Jaccard ≥ threshold.

    Within each bucket every member is paired with the bucket's first member in ``priority``
    order (lowest first; default: row order), a star rather than all pairs, so a bucket of size m
    costs m, not m². ``active`` masks rows out of the search (empty texts).
    """
    n, num_perm = sig.shape
    bands, rows = bands_for(threshold, num_perm)
    idx = np.arange(n) if active is None else np.flatnonzero(active)
    if len(idx) < 2:
        return Edges(np.zeros(0, np.int64), np.zeros(0, np.int64))
    keys = band_keys(sig[idx], bands, rows)
    prio = np.zeros(len(idx), np.int64) if priority is None else priority[idx]
    lefts, rights = [], []
    for band in range(bands):
        k = keys[:, band]
        order = np.lexsort((np.arange(len(idx)), prio, k))
        ks = k[order]
        first = np.ones(len(ks), dtype=bool)
        first[1:] = ks[1:] != ks[:-1]
        head = np.maximum.accumulate(np.where(first, np.arange(len(ks)), 0))
        member = ~first
        lefts.append(idx[order[head[member]]])
        rights.append(idx[order[member]])
    left = np.concatenate(lefts)
    right = np.concatenate(rights)
    if not len(left):
        return Edges(left, right)
    pair = np.unique(np.stack([left, right], axis=1), axis=0)
    left, right = pair[:, 0], pair[:, 1]
    est = np.empty(len(left), dtype=np.float64)
    for s in range(0, len(left), 1 << 16):
        est[s : s + (1 << 16)] = (
            sig[left[s : s + (1 << 16)]] == sig[right[s : s + (1 << 16)]]
        ).mean(axis=1)
    ok = est >= threshold
    return Edges(left[ok], right[ok])


def components(n: int, edges: Edges) -> np.ndarray:
    """Connected-component label (the smallest member index) of each of n rows."""
    labels = np.arange(n, dtype=np.int64)
    if not len(edges.left):
        return labels
    a, b = edges.left, edges.right
    while True:
        new = labels.copy()
        np.minimum.at(new, a, labels[b])
        np.minimum.at(new, b, labels[a])
        new = new[new]
        while True:
            jumped = new[new]
            if np.array_equal(jumped, new):
                break
            new = jumped
        if np.array_equal(new, labels):
            return labels
        labels = new
