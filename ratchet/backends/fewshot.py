"""Few-shot answering: any base answerer, with the nearest curated examples in its prompt.

A ``few_shot`` candidate is the base model version's spec plus the parameters
``{"few_shot_dataset": <sft_examples version>, "k": N}``. Answering retrieves the ``k`` train-split
examples whose user question is nearest the request's last user message (cosine over word
counts weighted by inverse document frequency: no dependency, and the sets are small) and puts
them before the conversation as user/assistant turns, after any system message. The examples
come from the store, where they are redacted.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from ratchet.backends.base import Answer, Answerer, ModelSpec

FEW_SHOT_KEYS = ("few_shot_dataset", "k")
_WORD = re.compile(r"\w+", re.UNICODE)


def _tokens(text: str) -> Counter[str]:
    return Counter(w.lower() for w in _WORD.findall(text or ""))


def _last_user(messages: Sequence[Mapping[str, Any]]) -> str:
    users = [m.get("content") or "" for m in messages if m.get("role") == "user"]
    return str(users[-1]) if users else ""


class ExampleIndex:
    """Nearest examples by TF-IDF cosine over the examples' last user message."""

    def __init__(self, examples: Sequence[Sequence[Mapping[str, Any]]]) -> None:
        self.examples = [list(e) for e in examples]
        docs = [_tokens(_last_user(e)) for e in self.examples]
        df: Counter[str] = Counter(w for d in docs for w in d)
        n = len(docs)
        self.idf = {w: math.log((1 + n) / (1 + c)) + 1.0 for w, c in df.items()}
        self.vectors = [self._weigh(d) for d in docs]

    def _weigh(self, counts: Counter[str]) -> dict[str, float]:
        vec = {w: c * self.idf.get(w, 0.0) for w, c in counts.items()}
        norm = math.sqrt(sum(v * v for v in vec.values())) or 1.0
        return {w: v / norm for w, v in vec.items()}

    def nearest(self, question: str, k: int) -> list[list[Mapping[str, Any]]]:
        q = self._weigh(_tokens(question))
        scored = [
            (sum(q.get(w, 0.0) * v for w, v in vec.items()), i)
            for i, vec in enumerate(self.vectors)
        ]
        scored = [(s, i) for s, i in scored if s > 0.0]
        scored.sort(key=lambda t: (-t[0], t[1]))
        return [self.examples[i] for _, i in scored[:k]]


class FewShotAnswerer:
    """Wraps a base :class:`Answerer`; ``spec`` is the candidate's (with the few-shot keys)."""

    def __init__(self, base: Answerer, spec: ModelSpec, index: ExampleIndex, k: int) -> None:
        self.base, self.spec, self.index, self.k = base, spec, index, k

    def prompt(self, messages: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """The messages the base model answers: system turns, the shots, then the conversation."""
        shots = self.index.nearest(_last_user(messages), self.k)
        system = [m for m in messages if m.get("role") == "system"]
        rest = [m for m in messages if m.get("role") != "system"]
        turns: list[Mapping[str, Any]] = []
        for example in shots:
            question = _last_user(example)
            answer = next(
                (m.get("content") or "" for m in reversed(example) if m.get("role") == "assistant"),
                "",
            )
            if question and answer:
                turns += [
                    {"role": "user", "content": question},
                    {"role": "assistant", "content": answer},
                ]
        return [*system, *turns, *rest]

    def answer(self, messages: Sequence[Mapping[str, Any]]) -> Answer:
        return self.base.answer(self.prompt(messages))


def base_spec(spec: ModelSpec) -> ModelSpec:
    """The spec without the few-shot keys: what the wrapped answerer is built from."""
    params = {k: v for k, v in spec.parameters.items() if k not in FEW_SHOT_KEYS}
    return replace(spec, parameters=params)


def load_examples(store: Any, path: str) -> list[list[dict[str, Any]]]:
    """The train-split conversations of an sft_examples version (each ends with the answer)."""
    from ratchet.schemas import SFT_EXAMPLES

    table = store.read_table(path, SFT_EXAMPLES, columns=["example_id", "split", "messages"])
    rows = sorted(table.to_pylist(), key=lambda r: r["example_id"])
    return [r["messages"] for r in rows if r["split"] == "train"]


def make_answerer(spec: ModelSpec, context: Any) -> FewShotAnswerer:
    """The few-shot answerer of a candidate: its base backend's answerer, wrapped."""
    from ratchet.backends import answerer_for
    from ratchet.db import open_database, repo

    version = str(spec.parameters["few_shot_dataset"])
    with open_database(context.settings)() as s:
        path = repo.get_dataset_version(s, version).path
    base = answerer_for(base_spec(spec), context)
    k = int(spec.parameters.get("k", 3))
    return FewShotAnswerer(base, spec, ExampleIndex(load_examples(context.store, path)), k)
