"""What a vendor's feedback value says, in Ratchet's terms: a thumb, a rating or a correction.

Langfuse scores and LangSmith feedback both carry a *name* (Langfuse ``name``, LangSmith
``key``) and a value that is a number, a boolean, a label or a text. One set of rules
(``sources.*`` in the pipeline config) reads them for both vendors, so a team that moves from
one to the other keeps its meaning:

- a name in ``sources.correction_names`` (or a vendor's own correction field/type): the text is
  the right answer, a ``correction`` (curation reads a correction alone as a thumbs down with
  the fix);
- a boolean: true is a thumb up, false a thumb down;
- a number whose name is in ``sources.rating_names`` (or any Langfuse NUMERIC score when
  ``sources.langfuse_numeric_as_rating``): a rating, rescaled from ``sources.rating_range`` to
  1-5 and rounded;
- another number of exactly 1 or 0 (or -1): a thumb up or down, the usual encoding of a vote;
  any other is refused (a 0.73 from an evaluator is not a vote, and guessing would train on
  it);
- a label: whatever ``sources.categorical_map`` says it means (case-insensitive), else refused.

Every refusal is a :class:`~ratchet.ingest.records.Reject` whose detail starts with the vendor's
name and names the missing piece or the config key, never the value.
"""

from __future__ import annotations

import math
from typing import Any

from ratchet.config import SourcesConfig
from ratchet.ingest.records import Reject

DEFAULT_SOURCES = SourcesConfig()


def is_correction_name(name: Any, config: SourcesConfig) -> bool:
    return isinstance(name, str) and name.strip().lower() in {
        n.strip().lower() for n in config.correction_names
    }


def _is_rating_name(name: Any, config: SourcesConfig) -> bool:
    return isinstance(name, str) and name.strip().lower() in {
        n.strip().lower() for n in config.rating_names
    }


def rating_of(value: float, vendor: str, config: SourcesConfig) -> int:
    """A number on ``sources.rating_range`` rescaled to a 1-5 rating (rounded half up)."""
    low, high = config.rating_range
    try:
        value = float(value)  # an integer past ~1.8e308 does not fit a float
    except OverflowError:
        raise Reject("invalid_value", f"{vendor}: score is out of range") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise Reject("invalid_value", f"{vendor}: score is outside sources.rating_range")
    return math.floor(1 + 4 * (value - low) / (high - low) + 0.5)


def vote_of_number(
    value: float, name: Any, vendor: str, config: SourcesConfig, *, as_rating: bool = False
) -> dict[str, int]:
    """``{"thumb": ±1}`` or ``{"rating": n}`` for a numeric feedback value (rules above)."""
    if isinstance(value, bool):
        return {"thumb": 1 if value else -1}
    if as_rating or _is_rating_name(name, config):
        return {"rating": rating_of(value, vendor, config)}
    if value == 1:
        return {"thumb": 1}
    if value in (0, -1):
        return {"thumb": -1}
    raise Reject(
        "invalid_value",
        f"{vendor}: a numeric score other than 1/0 is a rating only when its name is in "
        "sources.rating_names",
    )


def vote_of_label(label: str, vendor: str, config: SourcesConfig) -> dict[str, int]:
    """``{"thumb": ±1}`` or ``{"rating": n}`` for a categorical label, by ``categorical_map``."""
    wanted = label.strip().lower()
    for key, meaning in config.categorical_map.items():
        if key.strip().lower() == wanted:
            if meaning.thumb is not None:
                return {"thumb": meaning.thumb}
            return {"rating": int(meaning.rating or 0)}
    raise Reject("invalid_value", f"{vendor}: categorical label is not in sources.categorical_map")


def correction_text(value: Any) -> str | None:
    """The right answer a correction carries: a text, or the text inside a vendor object
    (``{"output": ...}``, ``{"content": ...}``, an assistant message); None when there is none."""
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, dict):
        for key in ("output", "content", "text", "answer", "correction", "value"):
            inner = correction_text(value.get(key))
            if inner is not None:
                return inner
    return None


__all__ = [
    "DEFAULT_SOURCES",
    "correction_text",
    "is_correction_name",
    "rating_of",
    "vote_of_label",
    "vote_of_number",
]
