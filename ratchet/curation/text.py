"""Text views of interactions that curation compares: the user input, its normal form, its id.

Everything here is vectorised over Arrow arrays (pyarrow.compute, RE2), so a million rows cost
seconds, not minutes. The *user input* of an interaction is the text of its user turns joined by
newlines: that is what a duplicate means for an eval case (the same question), while the system
prompt, identical across one agent, would only make every pair look alike.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ratchet.schemas import MESSAGE, MESSAGES

# Unicode punctuation and symbols; RE2's \w is ASCII-only, so a class of what to drop is safer
# than a class of what to keep (accented letters survive).
_PUNCT = r"[\p{P}\p{S}]+"


def string_array(values: pa.Array | pa.ChunkedArray) -> pa.StringArray:
    """One contiguous utf8 array (chunks combined, large_string cast down)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if not pa.types.is_string(values.type):
        values = values.cast(pa.string())
    return values


def list_array(values: pa.Array | pa.ChunkedArray) -> pa.ListArray:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    return values


def user_text(messages: pa.Array | pa.ChunkedArray) -> pa.StringArray:
    """The user turns' content of each conversation, joined by newlines ("" when none)."""
    messages = list_array(messages)
    n = len(messages)
    flat = messages.flatten()
    parents = pc.list_parent_indices(messages).to_numpy(zero_copy_only=False)
    is_user = pc.fill_null(pc.equal(pc.struct_field(flat, "role"), "user"), False)
    content = pc.fill_null(pc.struct_field(flat, "content"), "")
    content = pc.filter(content, is_user)
    parents = parents[is_user.to_numpy(zero_copy_only=False)]
    counts = np.bincount(parents, minlength=n) if n else np.zeros(0, dtype=np.int64)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    grouped = pa.ListArray.from_arrays(pa.array(offsets), string_array(content))
    return string_array(pc.fill_null(pc.binary_join(grouped, "\n"), ""))


def normalise(texts: pa.Array | pa.ChunkedArray) -> pa.StringArray:
    """Lowercase, punctuation and symbols stripped, whitespace collapsed and trimmed."""
    out = pc.utf8_lower(string_array(texts))
    out = pc.replace_substring_regex(out, _PUNCT, "")
    out = pc.replace_substring_regex(out, r"\s+", " ")
    return string_array(pc.utf8_trim_whitespace(out))


def sha256_ids(prefix: str, values: list[str] | pa.StringArray) -> list[str]:
    """hex sha256 of ``prefix`` + unit separator + value, one per value (None counts as "")."""
    if isinstance(values, pa.Array):
        values = values.to_pylist()
    base = hashlib.sha256((prefix + "\x1f").encode())
    out = []
    for v in values:
        h = base.copy()
        h.update((v or "").encode())
        out.append(h.hexdigest())
    return out


def case_ids(agent_id: str, normalised_input: pa.StringArray) -> list[str]:
    """case_id = sha256(agent_id, normalised user input): stable across runs and weeks."""
    return sha256_ids(agent_id, normalised_input)


def placeholder_only(texts: pa.Array, placeholder_pattern: str) -> np.ndarray:
    """True where the text holds at least one placeholder and nothing else but whitespace or
    punctuation (e.g. ``"[EMAIL]  [PHONE]"``): what redaction left of a message with no content."""
    texts = string_array(texts)
    has = pc.fill_null(pc.match_substring_regex(texts, placeholder_pattern), False)
    rest = pc.replace_substring_regex(texts, placeholder_pattern, "")
    rest = pc.replace_substring_regex(rest, r"[\s\p{P}\p{S}]+", "")
    empty_rest = pc.fill_null(pc.equal(pc.utf8_length(rest), 0), True)
    return np.asarray(pc.and_(has, empty_rest).to_numpy(zero_copy_only=False), dtype=bool)


def matches_any(texts: pa.Array, patterns: list[str]) -> np.ndarray:
    """True where the stripped text matches one of the case-insensitive regexes."""
    texts = pc.utf8_trim_whitespace(string_array(texts))
    out = np.zeros(len(texts), dtype=bool)
    for pattern in patterns:
        hit = pc.match_substring_regex(texts, pattern, ignore_case=True)
        out |= np.asarray(pc.fill_null(hit, False).to_numpy(zero_copy_only=False), dtype=bool)
    return out


def char_lengths(texts: pa.Array) -> np.ndarray:
    return np.asarray(
        pc.fill_null(pc.utf8_length(string_array(texts)), 0).to_numpy(zero_copy_only=False),
        dtype=np.int64,
    )


def messages_chars(messages: pa.Array) -> np.ndarray:
    """Characters of every message's content and tool-call arguments, per conversation."""
    messages = list_array(messages)
    n = len(messages)
    flat = messages.flatten()
    parents = pc.list_parent_indices(messages).to_numpy(zero_copy_only=False)
    lengths = char_lengths(pc.fill_null(pc.struct_field(flat, "content"), ""))
    tool_calls = pc.struct_field(flat, "tool_calls")
    tc_flat = pc.list_flatten(tool_calls)
    if len(tc_flat):
        args = pc.struct_field(pc.struct_field(tc_flat, "function"), "arguments")
        tc_parents = pc.list_parent_indices(tool_calls).to_numpy(zero_copy_only=False)
        lengths = lengths + np.bincount(
            tc_parents, weights=char_lengths(pc.fill_null(args, "")), minlength=len(flat)
        ).astype(np.int64)
    return np.bincount(parents, weights=lengths, minlength=n).astype(np.int64)


def append_assistant(
    messages: pa.Array, content: pa.Array, tool_calls: pa.Array | None = None
) -> pa.ListArray:
    """Each conversation with one assistant message appended (content, tool calls), in Arrow.

    An empty content next to tool calls becomes null, which is how OpenAI writes a pure
    tool-call turn.
    """
    messages = list_array(messages)
    n = len(messages)
    content = string_array(content)
    tc_type = MESSAGE.field("tool_calls").type
    if tool_calls is None:
        tool_calls = pa.nulls(n, tc_type)
    else:
        tool_calls = list_array(tool_calls).cast(tc_type)
        has_calls = pc.fill_null(pc.greater(pc.list_value_length(tool_calls), 0), False)
        content = pc.if_else(
            pc.and_(has_calls, pc.equal(content, "")), pa.scalar(None, pa.string()), content
        )
    new = pa.StructArray.from_arrays(
        [
            pa.array(["assistant"] * n, pa.string()),
            content,
            pa.nulls(n, pa.string()),
            pa.nulls(n, pa.string()),
            tool_calls,
        ],
        fields=list(MESSAGE),
    )
    values = messages.flatten()
    lengths = np.asarray(
        pc.fill_null(pc.list_value_length(messages), 0).to_numpy(zero_copy_only=False),
        dtype=np.int64,
    )
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths + 1, out=offsets[1:])
    idx = np.empty(int(offsets[-1]), dtype=np.int64)
    parents = np.repeat(np.arange(n), lengths)
    old_pos = np.arange(len(values), dtype=np.int64)
    idx[old_pos + parents] = old_pos
    idx[offsets[1:] - 1] = len(values) + np.arange(n)
    combined = pa.concat_arrays([values.cast(MESSAGE), new])
    return pa.ListArray.from_arrays(
        pa.array(offsets.astype(np.int32)), combined.take(pa.array(idx)), type=MESSAGES
    )
