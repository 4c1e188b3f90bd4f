"""Seconds per optimizer step of the trl backend on the tiny offline model (informational).

Runs SFT, DPO and KTO in process (``backends.trl_in_process``) on the 2-layer GPT-2 of
:mod:`ratchet.backends.tiny_model`, with one torch thread and with torch's default thread count
(the peer), and prints seconds per step from the trainer's own ``train_runtime`` (imports,
model loading and dataset formatting are not counted). Needs the ``train`` extra; offline.

    HF_HUB_OFFLINE=1 python -m benchmarks.bench_trl_backend --steps 10
"""

from __future__ import annotations

import argparse
import os
import tempfile
import uuid
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()

    from ratchet.backends import trainer_for
    from ratchet.backends.tiny_model import build_tiny_model
    from ratchet.store import Store
    from tests.unit import test_backends_trl as t

    root = Path(tempfile.mkdtemp(prefix="bench-trl-"))
    base = build_tiny_model(root / "base")
    store = Store(f"memory://bench-trl-{uuid.uuid4().hex}")
    print(f"{'strategy':8} {'threads':>8} {'s/step':>8} {'first loss':>10} {'last loss':>10}")
    for strategy, kind in (
        ("sft", "sft_examples"),
        ("dpo", "preference_pairs"),
        ("kto", "binary_feedback"),
    ):
        for threads in (1, None):
            trainer = trainer_for(
                "trl",
                t._context(store, root / "work", trl_in_process=True, trl_cpu_threads=threads),
            )
            spec = t._spec(store, base, strategy, kind, max_steps=args.steps, cpu_threads=threads)
            trainer.submit(spec)
            status = trainer.poll(spec.training_run_id)
            losses = t._losses(status)
            per_step = status.metrics["train_runtime"] / status.metrics["steps"]
            print(
                f"{strategy:8} {threads or 'default':>8} {per_step:8.3f} {losses[0]:10.3f} "
                f"{losses[-1]:10.3f}"
            )


if __name__ == "__main__":
    main()
