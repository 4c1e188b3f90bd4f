"""Soundness of the promotion gate by simulation: A/A (how often does it promote a candidate
that is no better?) and power (how often does it promote a known improvement?), per number of
holdout cases. The gate is the real one (ratchet.gates, the shipped gates.yaml with min_cases
lowered to the smallest size simulated, so the size effect shows).

Scenarios (each trial draws fresh cases):

* ``aa_same``: the candidate answers exactly as the baseline (a deterministic model retrained on
  nothing new). Paired differences are all 0.
* ``aa_noisy``: both models have the same per-case pass probability (p_i ~ Beta(4, 2)) but
  answer independently (a sampling model): same quality, different luck. Reported for the full
  gate and for the statistical rules alone (no_regressions relaxed), which is what the paired
  intervals control.
* ``fix``: a deterministic baseline (passes each case with p_i ~ Beta(4, 2)); the candidate
  fixes each failed case with probability ``fix`` and keeps every passed one: the corrections
  scenario. Effect size = expected rise of pass_rate = fix x (1 - E[p]) = fix / 3.
* ``shift``: continuous token_f1 per case, candidate = baseline + delta + N(0, 0.1) (clipped),
  no_regressions relaxed: power of the quality/key-metric rules for a mean improvement ``delta``.

Usage: python benchmarks/bench_gate.py [--trials 200] [--sizes 20,50,100,200]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ratchet.gates import compare_scores, evaluate_gate, load_gates

CONFIG_DIR = Path(__file__).resolve().parent.parent / "ratchet" / "configs"


def _gate(cfg, cand_f1, base_f1, cand_pass, base_pass, kinds):
    n = len(cand_f1)
    comp = compare_scores(
        "c",
        "b",
        [str(i) for i in range(n)],
        kinds,
        {"token_f1": cand_f1, "pass_rate": cand_pass.astype(float)},
        {"token_f1": base_f1, "pass_rate": base_pass.astype(float)},
        config=cfg,
        passed=(list(base_pass), list(cand_pass)),
    )
    return evaluate_gate(comp, cfg).passed


def trial(kind: str, n: int, rng: np.random.Generator, cfg, param: float) -> bool:
    kinds = ["golden"] * (n // 2) + ["regression"] * (n - n // 2)
    p = rng.beta(4, 2, n)
    if kind == "aa_same":
        base_pass = rng.random(n) < p
        f1 = np.where(base_pass, 1.0, 0.3)
        return _gate(cfg, f1, f1, base_pass, base_pass, kinds)
    if kind == "aa_noisy":
        base_pass, cand_pass = rng.random(n) < p, rng.random(n) < p
        return _gate(
            cfg,
            np.where(cand_pass, 1.0, 0.3),
            np.where(base_pass, 1.0, 0.3),
            cand_pass,
            base_pass,
            kinds,
        )
    if kind == "fix":
        base_pass = rng.random(n) < p
        cand_pass = base_pass | (rng.random(n) < param)
        return _gate(
            cfg,
            np.where(cand_pass, 1.0, 0.3),
            np.where(base_pass, 1.0, 0.3),
            cand_pass,
            base_pass,
            kinds,
        )
    if kind == "shift":
        base = rng.beta(5, 2, n)
        cand = np.clip(base + param + rng.normal(0, 0.1, n), 0, 1)
        thr = cfg.pass_threshold
        return _gate(cfg, cand, base, cand >= thr, base >= thr, kinds)
    raise ValueError(kind)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--sizes", default="20,50,100,200")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    base_cfg = load_gates(CONFIG_DIR, {"min_cases": min(sizes), "bootstrap_samples": 1000})
    relaxed = base_cfg.model_copy(update={"max_new_failures": 10**9})
    rows = [
        ("aa_same", 0.0, base_cfg, "full gate"),
        ("aa_noisy", 0.0, base_cfg, "full gate"),
        ("aa_noisy", 0.0, relaxed, "statistical rules only"),
        ("fix", 0.15, base_cfg, "full gate"),
        ("fix", 0.30, base_cfg, "full gate"),
        ("shift", 0.02, relaxed, "statistical rules only"),
        ("shift", 0.05, relaxed, "statistical rules only"),
    ]
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    print(f"trials per cell: {args.trials}; promote rate by number of holdout cases")
    print("| scenario | size | gate | " + " | ".join(f"n={n}" for n in sizes) + " |")
    print("|---|---|---|" + "---|" * len(sizes))
    for kind, param, cfg, label in rows:
        rates = [
            np.mean([trial(kind, n, rng, cfg, param) for _ in range(args.trials)]) for n in sizes
        ]
        size = {
            "fix": f"fix {param:.0%} of failures (+{param / 3:.1%} pass rate)",
            "shift": f"token_f1 +{param:.2f}",
        }.get(kind, "none")
        print(f"| {kind} | {size} | {label} | " + " | ".join(f"{r:.1%}" for r in rates) + " |")
    print(f"elapsed {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
