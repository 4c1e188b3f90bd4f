"""Quality filters: each rule a named reason, the first that applies is recorded.

Reasons, in the order they are checked (``FILTER_REASONS``):

* ``empty_answer``: the answer to learn (the response of a golden case, the correction of a
  regression case) has no text and no tool calls.
* ``placeholder_only``: the user input or the answer is nothing but redaction placeholders
  (``[EMAIL] [PHONE]``) and whitespace or punctuation: redaction ate the content.
* ``too_short``: the user input or the answer is shorter than ``min_chars`` (an answer made only
  of tool calls is not short).
* ``too_long``: the whole example (every message's content and tool-call arguments plus the
  answer) is longer than ``max_chars``.
* ``refusal``: the answer matches one of ``refusal_patterns`` ("I can't help with that").
* ``low_rating``: a thumb up that came with a rating below ``golden_min_rating``.

Filtering runs before dedupe, so a filtered row never wins as a duplicate group's representative.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ratchet.config import CurationConfig
from ratchet.curation import text

FILTER_REASONS = (
    "empty_answer",
    "placeholder_only",
    "too_short",
    "too_long",
    "refusal",
    "low_rating",
)


def filter_reasons(
    *,
    user_input: pa.StringArray,
    messages: pa.Array,
    answer: pa.StringArray,
    answer_has_tool_calls: np.ndarray,
    low_rating: np.ndarray,
    check_refusal: np.ndarray,
    config: CurationConfig,
) -> np.ndarray:
    """The first failing rule per row (object array; None where the row passes)."""
    n = len(user_input)
    reason = np.full(n, None, dtype=object)
    in_len = text.char_lengths(user_input)
    ans_len = text.char_lengths(text.string_array(answer))
    answer_blank = text.char_lengths(pc.utf8_trim_whitespace(text.string_array(answer))) == 0
    rules = [
        ("empty_answer", answer_blank & ~answer_has_tool_calls),
        (
            "placeholder_only",
            text.placeholder_only(user_input, config.placeholder_pattern)
            | text.placeholder_only(answer, config.placeholder_pattern),
        ),
        (
            "too_short",
            (in_len < config.min_chars) | ((ans_len < config.min_chars) & ~answer_has_tool_calls),
        ),
        ("too_long", text.messages_chars(messages) + ans_len > config.max_chars),
        ("refusal", check_refusal & text.matches_any(answer, config.refusal_patterns)),
        ("low_rating", low_rating),
    ]
    for name, hit in rules:
        reason[(reason == None) & hit] = name  # noqa: E711 (elementwise on an object array)
    return reason
