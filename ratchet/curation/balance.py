"""Balance: at most ``max_per_topic`` cases per task or topic, chosen deterministically.

A case's topic is its interaction's ``metadata`` JSON ``topic`` key, else its ``task`` key, else
a cluster id made of the first ``topic_cluster_rows`` MinHash values of its user input
(``cluster-<hex>``): texts share it with probability Jaccard^rows, so similar questions tend to
share a cluster and one frequent question cannot crowd out the rest. Within a topic the
best-labelled cases are kept (the dedupe priority order), which is deterministic.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa


def metadata_topics(metadata: pa.Array) -> list[str | None]:
    """The ``topic`` (else ``task``) string of each metadata JSON object; None when absent."""
    out: list[str | None] = []
    for raw in metadata.to_pylist():
        topic = None
        if raw:
            try:
                obj = json.loads(raw)
            except ValueError:
                obj = None
            if isinstance(obj, dict):
                for key in ("topic", "task"):
                    value = obj.get(key)
                    if isinstance(value, (str, int)) and str(value).strip():
                        topic = str(value).strip()
                        break
        out.append(topic)
    return out


def cluster_topics(signatures: np.ndarray, rows: int) -> list[str]:
    head = np.ascontiguousarray(signatures[:, :rows])
    empty = (signatures == np.uint32(0xFFFFFFFF)).all(axis=1)
    return [
        "cluster-none" if e else "cluster-" + h.tobytes().hex()
        for h, e in zip(head, empty, strict=True)
    ]


def topics(metadata: pa.Array, signatures: np.ndarray, rows: int) -> np.ndarray:
    meta = metadata_topics(metadata)
    clusters = cluster_topics(signatures, rows)
    return np.array(
        [m if m is not None else c for m, c in zip(meta, clusters, strict=True)], dtype=object
    )


def cap_per_topic(topic: np.ndarray, prio: np.ndarray, max_per_topic: int) -> np.ndarray:
    """True for rows within their topic's first ``max_per_topic`` by priority."""
    df = pd.DataFrame({"topic": topic, "prio": prio, "pos": np.arange(len(topic))})
    df = df.sort_values(["topic", "prio"], kind="stable")
    within = df.groupby("topic", sort=False).cumcount().to_numpy() < max_per_topic
    keep = np.zeros(len(topic), dtype=bool)
    keep[df["pos"].to_numpy()[within]] = True
    return keep
