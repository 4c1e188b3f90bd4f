"""The eval set accumulates: this version = the previous version ∪ the new cases.

* Rows are never deleted. A case whose interaction's current feedback turned against it is
  retired (``status="retired"`` with a ``retired_reason``): a golden case voted down
  (``voted_down``), a regression case voted up (``voted_up``). Retired cases are not evaluated.
* At most one *active* row per ``case_id``: a new case whose id is already active is skipped
  (the known case keeps its first expected answer and split). A retired case keeps its row; a
  new case with the same id (the same question, now with a correction, say) is added beside it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ratchet import schemas
from ratchet.curation.signals import NEG, POS


def conform(previous: pa.Table | None) -> pa.Table:
    """The previous version as exactly ``schemas.EVAL_CASES`` (empty when None)."""
    if previous is None:
        return schemas.EVAL_CASES.empty_table()
    missing = [f.name for f in schemas.EVAL_CASES if f.name not in previous.column_names]
    if missing:
        raise ValueError(f"previous eval cases lack columns {missing}")
    return previous.select(schemas.EVAL_CASES.names).cast(schemas.EVAL_CASES)


def active_holdout(cases: pa.Table) -> pa.Table:
    mask = pc.and_(pc.equal(cases["status"], "active"), pc.equal(cases["split"], "holdout"))
    return cases.filter(mask)


def merge(
    previous: pa.Table, new: pa.Table, resolved: pd.DataFrame, stats: dict[str, int]
) -> tuple[pa.Table, pa.Table]:
    """(this version, the new rows skipped because their case is already active)."""
    verdict = dict(zip(resolved["interaction_id"], resolved["verdict"], strict=True))
    status = np.array(previous["status"].to_pylist(), dtype=object)
    reason = np.array(previous["retired_reason"].to_pylist(), dtype=object)
    kinds = previous["kind"].to_pylist()
    now_verdict = [verdict.get(i) for i in previous["interaction_id"].to_pylist()]
    active = status == "active"
    voted_down = active & np.array(
        [k == "golden" and v == NEG for k, v in zip(kinds, now_verdict, strict=True)], dtype=bool
    )
    voted_up = active & np.array(
        [k == "regression" and v == POS for k, v in zip(kinds, now_verdict, strict=True)],
        dtype=bool,
    )
    status[voted_down | voted_up] = "retired"
    reason[voted_down] = "voted_down"
    reason[voted_up] = "voted_up"
    stats["retired_golden"] = int(voted_down.sum())
    stats["retired_regression"] = int(voted_up.sum())
    stats["eval_cases_previous"] = previous.num_rows
    previous = previous.set_column(
        previous.schema.get_field_index("status"),
        schemas.EVAL_CASES.field("status"),
        pa.array(status.tolist(), pa.string()),
    ).set_column(
        previous.schema.get_field_index("retired_reason"),
        schemas.EVAL_CASES.field("retired_reason"),
        pa.array(reason.tolist(), pa.string()),
    )
    still_active = set(
        pc.filter(previous["case_id"], pc.equal(previous["status"], "active")).to_pylist()
    )
    known = pa.array([c in still_active for c in new["case_id"].to_pylist()], pa.bool_())
    stats["eval_cases_already_active"] = int(pc.sum(known).as_py() or 0)
    added = new.filter(pc.invert(known))
    stats["eval_cases_added"] = added.num_rows
    merged = pa.concat_tables([previous, added.cast(schemas.EVAL_CASES)])
    return merged, new.filter(known)
