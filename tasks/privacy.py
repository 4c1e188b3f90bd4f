"""Prefect task wrappers of the privacy operations (erasure, retention): one task run each.

The context (store, session factory, config, key) is passed in process: these tasks run in the
flow's own process and are never cached (their inputs name data to delete, and a cached result
would skip a deletion), so nothing is hashed or persisted from their inputs.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from ratchet.privacy.erasure import ErasureContext, ErasureRequest, erase
from tasks import runtime


@task(
    name="erase-records", cache_policy=NO_CACHE, retries=1,
    retry_condition_fn=runtime.retry_transient,
)  # fmt: skip
def erase_task(ctx: ErasureContext, request: ErasureRequest, dry_run: bool) -> dict[str, Any]:
    """Run one erasure; its report (counts and version ids, no person's id)."""
    return erase(ctx, request, dry_run=dry_run).as_dict()
