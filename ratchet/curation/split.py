"""Deterministic splits from the hash of a case id.

A case's split depends only on its ``case_id`` (and the configured shares), never on the run,
the row order or the other cases: the same question lands in the same split every week, which
is what keeps a holdout case out of every training file for good.
"""

from __future__ import annotations

import hashlib

import numpy as np

HOLDOUT, TRAIN, VALIDATION = "holdout", "train", "validation"


def _unit(prefix: bytes, case_ids: list[str]) -> np.ndarray:
    """A uniform number in [0, 1) per id, from 64 bits of sha256(prefix + id)."""
    out = np.empty(len(case_ids), dtype=np.float64)
    for i, cid in enumerate(case_ids):
        out[i] = int.from_bytes(hashlib.sha256(prefix + cid.encode()).digest()[:8], "big") / 2**64
    return out


def holdout_mask(case_ids: list[str], holdout_share: float) -> np.ndarray:
    """True for cases held out of training (about ``holdout_share`` of ids)."""
    return _unit(b"split:", case_ids) < holdout_share


def eval_splits(case_ids: list[str], holdout_share: float) -> np.ndarray:
    """ "holdout" or "train" per case."""
    return np.where(holdout_mask(case_ids, holdout_share), HOLDOUT, TRAIN).astype(object)


def training_splits(case_ids: list[str], validation_share: float) -> np.ndarray:
    """ "train" or "validation" per training example (a second, independent hash)."""
    return np.where(_unit(b"validation:", case_ids) < validation_share, VALIDATION, TRAIN).astype(
        object
    )
