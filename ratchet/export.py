"""Exports a trainer or eval tool reads as-is, each validated before it is written.

Formats:

* ``openai_chat``: OpenAI chat fine-tuning JSONL, ``{"messages": [...]}`` per line, tool calls
  kept, null fields omitted.
* ``openai_dpo``: OpenAI preference (DPO) JSONL, ``{"input": {"messages": [...]},
  "preferred_output": [{"role": "assistant", "content": ...}], "non_preferred_output": [...]}``.
* ``eval``: ``{"case_id", "input", "expected", "metadata": {...}}`` per active eval case.
* Parquet for Hugging Face ``datasets`` / TRL, conversational form: ``messages`` (SFT);
  ``prompt``/``chosen``/``rejected`` (DPO); ``prompt``/``completion``/``label`` (KTO).

Validation follows OpenAI's published rules for fine-tuning files: every line a JSON object with
known keys only, a non-empty ``messages`` list of known roles with string content (or valid tool
calls whose ``arguments`` parse as JSON), at least one assistant message, at least
``min_examples`` examples, and a per-example token count within ``context_tokens``. Violations
carry the line number and the rule, never the text (which may hold what redaction missed). An
invalid export raises :class:`ExportValidationError` and writes nothing. Files are written aside
and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ratchet.config import ExportConfig
from ratchet.schemas import VALID_ROLES

MESSAGE_KEYS = frozenset(
    {"role", "content", "name", "tool_calls", "tool_call_id", "weight", "function_call"}
)
CHAT_KEYS = frozenset({"messages", "tools", "parallel_tool_calls"})
DPO_KEYS = frozenset({"input", "preferred_output", "non_preferred_output"})
DPO_INPUT_KEYS = frozenset({"messages", "tools", "parallel_tool_calls"})
EVAL_KEYS = frozenset({"case_id", "input", "expected", "expected_tool_calls", "metadata"})


@dataclass(frozen=True)
class Violation:
    """One broken rule: 1-based line (0 for the whole file), rule name, where (field path), and
    for a whole-file rule the numbers behind it (``8 examples, export.min_examples is 10``)."""

    line: int
    rule: str
    where: str = ""
    detail: str = ""

    def describe(self) -> str:
        if self.line == 0:
            return f"{self.rule} ({self.detail})" if self.detail else self.rule
        return f"line {self.line}: {self.rule}" + (f" at {self.where}" if self.where else "")


class ExportValidationError(ValueError):
    """An export broke the format rules; nothing was written. Carries every violation."""

    def __init__(self, fmt: str, violations: list[Violation]) -> None:
        self.format = fmt
        self.violations = violations
        head = "; ".join(v.describe() for v in violations[:10])
        more = f" (+{len(violations) - 10} more)" if len(violations) > 10 else ""
        super().__init__(f"{fmt} export invalid, {len(violations)} violation(s): {head}{more}")


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    rows: int
    bytes: int
    sha256: str
    token_estimator: str  # "tiktoken:<encoding>" or "chars/<n>+<overhead>"
    max_example_tokens: int
    skipped: dict[str, int] = field(default_factory=dict)  # rows left out, counted per reason


# --- token counting -------------------------------------------------------------------------
def token_counter(config: ExportConfig) -> tuple[str, Callable[[str], int]]:
    """(estimator name, tokens-of-text function). tiktoken only if its encoding loads offline;
    otherwise ceil(chars / chars_per_token), which over-counts English on purpose."""
    if config.token_estimator in ("auto", "tiktoken"):
        try:
            import tiktoken

            enc = tiktoken.get_encoding(config.tiktoken_encoding)
            return f"tiktoken:{config.tiktoken_encoding}", lambda s: len(
                enc.encode(s, disallowed_special=())
            )
        except Exception:
            if config.token_estimator == "tiktoken":  # noqa: S105 - a tokenizer name
                raise RuntimeError(
                    f"token_estimator=tiktoken but encoding {config.tiktoken_encoding!r} is "
                    "not available offline"
                ) from None
    per = config.chars_per_token
    return (f"chars/{per:g}+{config.tokens_per_message}", lambda s: math.ceil(len(s) / per))


def _message_tokens(messages: list[Any], count: Callable[[str], int], overhead: int) -> int:
    total = 3  # the reply priming every chat request carries
    for m in messages:
        if not isinstance(m, dict):
            continue
        total += overhead
        for key in ("content", "name"):
            if isinstance(m.get(key), str):
                total += count(m[key])
        for call in m.get("tool_calls") or []:
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict):
                total += count(str(fn.get("name") or "")) + count(str(fn.get("arguments") or ""))
    return total


# --- record building ------------------------------------------------------------------------
def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _messages(value: list[dict] | None) -> list[dict]:
    return [_drop_nulls(m) for m in (value or [])]


def _assistant(content: str | None) -> list[dict]:
    return [{"role": "assistant", "content": content}]


def _train_rows(table: pa.Table, split: str | None) -> pa.Table:
    return table if split is None else table.filter(pc.equal(table["split"], split))


def openai_chat_records(sft_examples: pa.Table, split: str | None = "train") -> list[dict]:
    rows = _train_rows(sft_examples, split).sort_by("example_id")
    return [{"messages": _messages(m)} for m in rows["messages"].to_pylist()]


def dpo_skip_reason(chosen: str | None, rejected: str | None) -> str | None:
    """Why a pair cannot be a DPO line (OpenAI's DPO takes non-empty text outputs that differ),
    or None. Curation already drops such pairs; versions made before it did may hold them."""
    chosen, rejected = (chosen or "").strip(), (rejected or "").strip()
    if not chosen:
        return "chosen_empty"
    if not rejected:
        return "rejected_empty"  # typically a tool-call answer whose calls the pair cannot hold
    return "identical_outputs" if chosen == rejected else None


def openai_dpo_records(
    preference_pairs: pa.Table, split: str | None = "train", skipped: Counter[str] | None = None
) -> list[dict]:
    """DPO lines of one split; a pair that cannot be one is left out and counted in
    ``skipped`` (one such pair never blocks the whole export)."""
    rows = (
        _train_rows(preference_pairs, split)
        .sort_by("pair_id")
        .select(["input", "chosen", "rejected"])
        .to_pylist()
    )
    out = []
    for r in rows:
        why = dpo_skip_reason(r["chosen"], r["rejected"])
        if why is not None:
            if skipped is not None:
                skipped[why] += 1
            continue
        out.append(
            {
                "input": {"messages": _messages(r["input"])},
                "preferred_output": _assistant(r["chosen"]),
                "non_preferred_output": _assistant(r["rejected"]),
            }
        )
    return out


def eval_records(eval_cases: pa.Table, split: str | None = None) -> list[dict]:
    """Active cases (retired ones are history, not evaluated), optionally of one split."""
    rows = eval_cases.filter(pc.equal(eval_cases["status"], "active"))
    rows = _train_rows(rows, split).sort_by("case_id").to_pylist()
    out = []
    for r in rows:
        rec: dict[str, Any] = {
            "case_id": r["case_id"],
            "input": _messages(r["input"]),
            "expected": r["expected"],
            "metadata": _drop_nulls(
                {
                    "kind": r["kind"],
                    "split": r["split"],
                    "fix_check": r["fix_check"],
                    "topic": r["topic"],
                    "interaction_id": r["interaction_id"],
                }
            ),
        }
        if r["expected_tool_calls"]:
            rec["expected_tool_calls"] = _messages(r["expected_tool_calls"])
        out.append(rec)
    return out


# --- validation -----------------------------------------------------------------------------
def _check_tool_calls(calls: Any, line: int, where: str, out: list[Violation]) -> None:
    if not isinstance(calls, list) or not calls:
        out.append(Violation(line, "invalid_tool_calls", where))
        return
    for j, call in enumerate(calls):
        w = f"{where}.tool_calls[{j}]"
        if not isinstance(call, dict) or set(call) - {"id", "type", "function"}:
            out.append(Violation(line, "invalid_tool_call", w))
            continue
        fn = call.get("function")
        if (
            call.get("type", "function") != "function"
            or not isinstance(call.get("id"), str)
            or not isinstance(fn, dict)
            or not isinstance(fn.get("name"), str)
            or not fn.get("name")
            or not isinstance(fn.get("arguments"), str)
        ):
            out.append(Violation(line, "invalid_tool_call", w))
            continue
        try:
            json.loads(fn["arguments"])
        except ValueError:
            out.append(Violation(line, "tool_arguments_not_json", w))


def _check_messages(
    messages: Any, line: int, where: str, out: list[Violation], *, need_assistant: bool
) -> None:
    if not isinstance(messages, list):
        out.append(Violation(line, "messages_missing", where))
        return
    if not messages:
        out.append(Violation(line, "messages_empty", where))
        return
    for i, m in enumerate(messages):
        w = f"{where}[{i}]"
        if not isinstance(m, dict):
            out.append(Violation(line, "message_not_object", w))
            continue
        if set(m) - MESSAGE_KEYS:
            out.append(Violation(line, "unknown_message_key", w))
        if m.get("role") not in VALID_ROLES:
            out.append(Violation(line, "unknown_role", w))
        content = m.get("content")
        calls = m.get("tool_calls")
        if calls is not None:
            _check_tool_calls(calls, line, w, out)
            if m.get("role") != "assistant":
                out.append(Violation(line, "tool_calls_not_assistant", w))
        if content is None:
            if calls is None:
                out.append(Violation(line, "content_missing", w))
        elif not isinstance(content, str):
            out.append(Violation(line, "content_not_string", w))
        if "weight" in m and m["weight"] not in (0, 1):
            out.append(Violation(line, "invalid_weight", w))
    if need_assistant and not any(
        isinstance(m, dict) and m.get("role") == "assistant" for m in messages
    ):
        out.append(Violation(line, "no_assistant_message", where))


def _check_output(value: Any, line: int, where: str, out: list[Violation]) -> None:
    if not (
        isinstance(value, list)
        and len(value) == 1
        and isinstance(value[0], dict)
        and value[0].get("role") == "assistant"
        and set(value[0]) <= MESSAGE_KEYS
    ):
        out.append(Violation(line, "invalid_output", where))
        return
    if not isinstance(value[0].get("content"), str) or not value[0]["content"]:
        out.append(Violation(line, "content_not_string", where))


def min_examples_for(split: str | None, config: ExportConfig) -> int:
    """``export.min_examples`` binds the training file (OpenAI's own minimum is 10); a
    validation file only needs one example (OpenAI sets no minimum for it)."""
    return 1 if split == "validation" else config.min_examples


def validate_records(
    records: list[Any], fmt: str, config: ExportConfig, *, min_examples: int | None = None
) -> tuple[list[Violation], str, int]:
    """(violations, token estimator, largest example's tokens) for ``fmt`` in openai_chat |
    openai_dpo | eval. ``min_examples`` defaults to ``export.min_examples``."""
    estimator, count = token_counter(config)
    out: list[Violation] = []
    max_tokens = 0
    least = config.min_examples if min_examples is None else min_examples
    if len(records) < least:
        key = "export.min_examples" if least == config.min_examples else "the minimum"
        out.append(
            Violation(0, "too_few_examples", detail=f"{len(records)} examples, {key} is {least}")
        )
    for line, rec in enumerate(records, start=1):
        if not isinstance(rec, dict):
            out.append(Violation(line, "not_object"))
            continue
        allowed = {"openai_chat": CHAT_KEYS, "openai_dpo": DPO_KEYS, "eval": EVAL_KEYS}[fmt]
        if set(rec) - allowed:
            out.append(Violation(line, "unknown_key"))
        if fmt == "openai_chat":
            _check_messages(rec.get("messages"), line, "messages", out, need_assistant=True)
            msgs = rec.get("messages") if isinstance(rec.get("messages"), list) else []
        elif fmt == "openai_dpo":
            inp = rec.get("input")
            if not isinstance(inp, dict) or set(inp) - DPO_INPUT_KEYS:
                out.append(Violation(line, "invalid_input", "input"))
                msgs = []
            else:
                _check_messages(
                    inp.get("messages"), line, "input.messages", out, need_assistant=False
                )
                msgs = inp.get("messages") if isinstance(inp.get("messages"), list) else []
            _check_output(rec.get("preferred_output"), line, "preferred_output", out)
            _check_output(rec.get("non_preferred_output"), line, "non_preferred_output", out)
            if rec.get("preferred_output") == rec.get("non_preferred_output"):
                out.append(Violation(line, "identical_outputs"))
            longer = max(
                (rec.get(k) or [] for k in ("preferred_output", "non_preferred_output")),
                key=lambda o: len(json.dumps(o)),
            )
            msgs = list(msgs or []) + (longer if isinstance(longer, list) else [])
        else:
            if not isinstance(rec.get("case_id"), str) or not rec.get("case_id"):
                out.append(Violation(line, "missing_case_id", "case_id"))
            _check_messages(rec.get("input"), line, "input", out, need_assistant=False)
            if not isinstance(rec.get("expected"), str):
                out.append(Violation(line, "expected_not_string", "expected"))
            if not isinstance(rec.get("metadata"), dict):
                out.append(Violation(line, "metadata_not_object", "metadata"))
            if "expected_tool_calls" in rec:
                _check_tool_calls(rec["expected_tool_calls"], line, "expected_tool_calls", out)
            msgs = rec.get("input") if isinstance(rec.get("input"), list) else []
        tokens = _message_tokens(
            msgs if isinstance(msgs, list) else [], count, config.tokens_per_message
        )
        max_tokens = max(max_tokens, tokens)
        if tokens > config.context_tokens:
            out.append(Violation(line, "too_many_tokens"))
    return out, estimator, max_tokens


# --- writing --------------------------------------------------------------------------------
def _atomic_write(path: Path, write: Callable[[Path], None]) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    data = path.read_bytes()
    return len(data), hashlib.sha256(data).hexdigest()


def write_jsonl(
    records: list[dict],
    fmt: str,
    path: Path,
    config: ExportConfig,
    *,
    min_examples: int | None = None,
    skipped: dict[str, int] | None = None,
) -> ExportResult:
    """Validate ``records`` as ``fmt`` and write them as JSONL at ``path`` (atomically), or raise
    ExportValidationError and write nothing."""
    violations, estimator, max_tokens = validate_records(
        records, fmt, config, min_examples=min_examples
    )
    if violations:
        raise ExportValidationError(fmt, violations)

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")))
                fh.write("\n")

    size, digest = _atomic_write(Path(path), write)
    return ExportResult(
        Path(path),
        fmt,
        len(records),
        size,
        digest,
        estimator,
        max_tokens,
        dict(sorted((skipped or {}).items())),
    )


def export_openai_chat(
    sft_examples: pa.Table, out_dir: Path | str, config: ExportConfig, *, split: str = "train"
) -> ExportResult:
    """``<out_dir>/openai_chat.<split>.jsonl`` from the SFT examples of one split
    (``train`` or ``validation``: OpenAI's ``training_file`` and ``validation_file``)."""
    return write_jsonl(
        openai_chat_records(sft_examples, split),
        "openai_chat",
        Path(out_dir) / f"openai_chat.{split}.jsonl",
        config,
        min_examples=min_examples_for(split, config),
    )


def export_openai_dpo(
    preference_pairs: pa.Table, out_dir: Path | str, config: ExportConfig, *, split: str = "train"
) -> ExportResult:
    """``<out_dir>/openai_dpo.<split>.jsonl`` from the preference pairs of one split; pairs
    that cannot be DPO lines are left out and counted in ``ExportResult.skipped``."""
    skipped: Counter[str] = Counter()
    records = openai_dpo_records(preference_pairs, split, skipped)
    return write_jsonl(
        records,
        "openai_dpo",
        Path(out_dir) / f"openai_dpo.{split}.jsonl",
        config,
        min_examples=min_examples_for(split, config),
        skipped=skipped,
    )


def export_eval(
    eval_cases: pa.Table, out_dir: Path | str, config: ExportConfig, *, split: str | None = None
) -> ExportResult:
    """``<out_dir>/eval[.<split>].jsonl`` of the active eval cases."""
    name = "eval.jsonl" if split is None else f"eval.{split}.jsonl"
    return write_jsonl(eval_records(eval_cases, split), "eval", Path(out_dir) / name, config)


def _conversation(column: Iterable[str | None]) -> list[list[dict]]:
    return [[{"role": "assistant", "content": c}] for c in column]


HF_KINDS = ("sft", "dpo", "kto")


def export_hf_parquet(
    table: pa.Table, kind: str, out_dir: Path | str, config: ExportConfig, *, split: str = "train"
) -> ExportResult:
    """``<out_dir>/hf_<kind>.<split>.parquet`` in TRL's conversational columns.

    ``kind`` is ``sft`` (from sft_examples: ``messages``), ``dpo`` (from preference_pairs:
    ``prompt``/``chosen``/``rejected``) or ``kto`` (from binary_feedback:
    ``prompt``/``completion``/``label``). Checked with the same message rules as the JSONL.
    """
    if kind not in HF_KINDS:
        raise ValueError(f"kind must be one of {HF_KINDS}")
    rows = _train_rows(table, split)
    least = min_examples_for(split, config)
    skipped: Counter[str] = Counter()
    if kind == "sft":
        rows = rows.sort_by("example_id")
        records: list[dict[str, Any]] = [
            {"messages": _messages(m)} for m in rows["messages"].to_pylist()
        ]
        violations, estimator, max_tokens = validate_records(
            records, "openai_chat", config, min_examples=least
        )
    elif kind == "dpo":
        rows = rows.sort_by("pair_id")
        records = []
        for r in rows.select(["input", "chosen", "rejected"]).to_pylist():
            why = dpo_skip_reason(r["chosen"], r["rejected"])
            if why is not None:
                skipped[why] += 1
                continue
            records.append(
                {
                    "prompt": _messages(r["input"]),
                    "chosen": _assistant(r["chosen"]),
                    "rejected": _assistant(r["rejected"]),
                }
            )
        violations, estimator, max_tokens = validate_records(
            [
                {
                    "input": {"messages": r["prompt"]},
                    "preferred_output": r["chosen"],
                    "non_preferred_output": r["rejected"],
                }
                for r in records
            ],
            "openai_dpo",
            config,
            min_examples=least,
        )
    else:
        rows = rows.sort_by("example_id")
        records = [
            {
                "prompt": _messages(r["prompt"]),
                "completion": _assistant(r["completion"]),
                "label": bool(r["label"]),
            }
            for r in rows.select(["prompt", "completion", "label"]).to_pylist()
        ]
        violations, estimator, max_tokens = validate_records(
            [{"messages": r["prompt"] + r["completion"]} for r in records],
            "openai_chat",
            config,
            min_examples=least,
        )
    if violations:
        raise ExportValidationError(f"hf_{kind}", violations)
    out = pa.Table.from_pylist(records)
    path = Path(out_dir) / f"hf_{kind}.{split}.parquet"
    size, digest = _atomic_write(path, lambda tmp: pq.write_table(out, tmp))
    return ExportResult(
        path,
        f"hf_{kind}",
        len(records),
        size,
        digest,
        estimator,
        max_tokens,
        dict(sorted(skipped.items())),
    )
