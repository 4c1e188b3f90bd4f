"""System prompts for ``prompt`` candidates: given, or built from regression corrections.

A ``prompt`` candidate is a targeted patch: the base model with a new system prompt. Given as a
parameter (``--param system_prompt=...``) it is used as is; otherwise each active regression
case of the dataset's **train** split (the fix checks) becomes one explicit rule: "when asked
X, answer Y" with the expert's correction. Holdout cases are never used: the candidate is
evaluated on them, and a prompt that quotes them would pass the gate by leakage. The text comes
from the store, which holds it redacted.
"""

from __future__ import annotations

from typing import Any

from ratchet.backends.base import JobSpec

RULES_HEADER = (
    "Follow these rules, learned from corrected answers. When a question matches "
    "one, answer as the rule says."
)
MAX_QUESTION_CHARS = 300
MAX_ANSWER_CHARS = 600


def _clip(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


def _question(messages: list[dict[str, Any]]) -> str:
    users = [m.get("content") or "" for m in messages if m.get("role") == "user"]
    return users[-1] if users else ""


def correction_rules(rows: list[dict[str, Any]], max_rules: int) -> list[str]:
    """One rule per active train-split regression case, deduplicated by question, in case order
    (sorted by case id, so the same dataset gives the same prompt)."""
    rules: list[str] = []
    seen: set[str] = set()
    for row in sorted(rows, key=lambda r: r["case_id"]):
        if row["kind"] != "regression" or row["status"] != "active" or row["split"] != "train":
            continue
        question = _clip(_question(row["input"] or []), MAX_QUESTION_CHARS)
        if not question or question in seen or not (row.get("expected") or "").strip():
            continue
        seen.add(question)
        rules.append(
            f'When asked "{question}", answer: "{_clip(row["expected"], MAX_ANSWER_CHARS)}"'
        )
        if len(rules) >= max_rules:
            break
    return rules


def compose_prompt(base_prompt: str | None, rules: list[str]) -> str:
    """The base system prompt (if any) followed by the numbered rules."""
    parts = [base_prompt.strip()] if base_prompt and base_prompt.strip() else []
    parts.append(RULES_HEADER)
    parts += [f"{i}. {rule}" for i, rule in enumerate(rules, start=1)]
    return "\n".join(parts)


def build_system_prompt(
    store: Any, spec: JobSpec, base_prompt: str | None, max_rules: int
) -> tuple[str, int]:
    """The candidate's system prompt and how many rules it holds (0 when given)."""
    given = spec.params.get("system_prompt")
    if isinstance(given, str) and given.strip():
        return given, 0
    from ratchet.schemas import EVAL_CASES

    table = store.read_table(
        spec.data.train_path,
        EVAL_CASES,
        columns=["case_id", "kind", "split", "status", "input", "expected"],
    )
    rules = correction_rules(table.to_pylist(), max_rules)
    if not rules:
        raise ValueError(
            f"dataset version {spec.data.dataset_version_id}: no active train-split "
            "regression case with a correction to make a rule from; pass "
            "--param system_prompt=... instead"
        )
    return compose_prompt(base_prompt, rules), len(rules)
