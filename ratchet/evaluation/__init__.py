"""Evaluation (issue 11, DESIGN.md "Evaluation and the gate"): candidates and baselines answer
the eval suites, per-case scores are stored, and metrics with bootstrap intervals and paired
differences go to the database for the gate.

Modules: :mod:`~ratchet.evaluation.scorers` (named, versioned scorers),
:mod:`~ratchet.evaluation.stats` (bootstrap means, paired differences, slices),
:mod:`~ratchet.evaluation.runner` (concurrent, rate-limited, cached answering),
:mod:`~ratchet.evaluation.evaluate` (one evaluation end to end: plan, runs, comparison),
:mod:`~ratchet.evaluation.model_run` (one model's run, whole or in batches; candidate-only replay),
:mod:`~ratchet.evaluation.suites` (``ratchet suites import``). No Prefect here.
"""
