"""Walking and rebuilding the string leaves of (nested) Arrow columns.

Text hides in ``list<struct<…list<struct<struct<string>>>>>`` columns (a message's content, a tool
call's JSON arguments). These helpers reach every string leaf named by a dotted path from
:func:`ratchet.schemas.text_columns`, hand the flat leaf array to a function along with the
top-level row of each element, and rebuild the enclosing lists and structs around the result,
so the table keeps its exact schema and validity.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa

# (flat string leaf, top-level row index of each element) -> new leaf of the same length and type
LeafFn = Callable[[pa.Array, np.ndarray], pa.Array]


def transform_leaf(arr: pa.Array, parts: list[str], rows: np.ndarray, fn: LeafFn) -> pa.Array:
    """Apply ``fn`` to the string leaf at ``parts`` (struct field names below ``arr``).

    List levels are transparent (as in ``text_columns``). Values under null lists or structs are
    passed to ``fn`` too; that is harmless and keeps the offsets untouched.
    """
    t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        if parts:
            raise ValueError(f"path continues below a string leaf: {'.'.join(parts)}")
        return fn(arr, rows)
    mask = arr.is_null() if arr.null_count else None
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        offsets = arr.offsets.to_numpy()
        start, end = int(offsets[0]), int(offsets[-1])
        child_rows = np.repeat(rows, np.diff(offsets))
        values = transform_leaf(arr.values.slice(start, end - start), parts, child_rows, fn)
        new_offsets = pa.array(offsets - start, type=arr.offsets.type)
        return type(arr).from_arrays(new_offsets, values, type=t, mask=mask)
    if pa.types.is_struct(t):
        if not parts:
            raise ValueError("path ends at a struct, not a string leaf")
        index = t.get_field_index(parts[0])
        if index < 0:
            raise ValueError(f"no struct field {parts[0]!r}")
        children = [arr.field(i) for i in range(t.num_fields)]
        children[index] = transform_leaf(children[index], parts[1:], rows, fn)
        return pa.StructArray.from_arrays(children, fields=list(t), mask=mask)
    raise ValueError(f"cannot walk into type {t}")


def collect_leaf(
    arr: pa.Array, parts: list[str], rows: np.ndarray
) -> list[tuple[pa.Array, np.ndarray]]:
    """The flat string leaf at ``parts`` with its row index, without rebuilding (for scans)."""
    t = arr.type
    if pa.types.is_struct(t) and parts:
        collect = arr.field(t.get_field_index(parts[0]))
        return collect_leaf(collect, parts[1:], rows)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        offsets = arr.offsets.to_numpy()
        start, end = int(offsets[0]), int(offsets[-1])
        return collect_leaf(
            arr.values.slice(start, end - start), parts, np.repeat(rows, np.diff(offsets))
        )
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)) or parts:
        raise ValueError(f"path does not end at a string leaf: {'.'.join(parts) or t}")
    return [(arr, rows)]
