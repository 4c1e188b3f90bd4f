"""Repository functions over the training database, by what they own:

:mod:`ratchet.db.ledger` (source files, parts, record keys, pipeline runs),
:mod:`ratchet.db.datasets` (dataset versions and lineage), :mod:`ratchet.db.training`
(training runs, model versions, promotions), :mod:`ratchet.db.evals` (eval runs and metrics) and
:mod:`ratchet.db.tombstones`. This module re-exports them all, so callers keep one import.

Every function takes a :class:`~sqlalchemy.orm.Session` that the caller opened and whose
transaction the caller commits (``with factory() as s, s.begin():``); none opens, commits or
rolls back a session, so several calls compose into one atomic unit. Functions flush when a
later statement (or the caller) needs the row to exist, and raise the typed errors of
:mod:`ratchet.db.errors`; their messages name ids and rules, never record content.

Idempotence is the rule wherever a rerun can repeat a write: registering a dataset version,
adding a tombstone or recording a part that is already there returns the stored row.
"""

from ratchet.db._common import IN_CHUNK, INSERT_CHUNK, PG_ARRAY_CHUNK
from ratchet.db.datasets import (
    AUTO,
    dataset_lineage,
    get_dataset_version,
    latest_dataset_version,
    list_dataset_versions,
    register_dataset_version,
    versions_referencing,
)
from ratchet.db.evals import (
    MetricValue,
    add_eval_metrics,
    create_eval_run,
    eval_metrics,
    finish_eval_run,
    get_eval_run,
    list_eval_runs,
)
from ratchet.db.feedback_index import (
    drop_feedback_index,
    feedback_parts_for,
    index_feedback_part,
    unindexed_feedback_parts,
)
from ratchet.db.ledger import (
    PartKey,
    PartRecord,
    RecordKeyRow,
    begin_source_file,
    complete_source_file,
    fail_source_file,
    finish_pipeline_run,
    get_source_file,
    insert_keys,
    list_parts,
    lock_agents_for_commit,
    lookup_keys,
    record_part,
    referenced_part_paths,
    retire_parts,
    source_file_parts,
    start_pipeline_run,
)
from ratchet.db.tombstones import (
    add_tombstone,
    list_tombstones,
    tombstone_id,
    tombstoned,
)
from ratchet.db.training import (
    Decision,
    create_model_version,
    create_training_run,
    find_training_runs,
    get_model_version,
    get_training_run,
    list_decisions,
    list_model_versions,
    list_training_runs,
    model_version_of_run,
    production_version,
    promote,
    reject,
    rollback,
    set_traffic_share,
    training_spend_since,
    update_training_run,
)

__all__ = [
    "AUTO",
    "INSERT_CHUNK",
    "IN_CHUNK",
    "PG_ARRAY_CHUNK",
    "Decision",
    "MetricValue",
    "PartKey",
    "PartRecord",
    "RecordKeyRow",
    "add_eval_metrics",
    "add_tombstone",
    "begin_source_file",
    "complete_source_file",
    "create_eval_run",
    "create_model_version",
    "create_training_run",
    "dataset_lineage",
    "drop_feedback_index",
    "eval_metrics",
    "fail_source_file",
    "feedback_parts_for",
    "find_training_runs",
    "finish_eval_run",
    "finish_pipeline_run",
    "get_dataset_version",
    "get_eval_run",
    "get_model_version",
    "get_source_file",
    "get_training_run",
    "index_feedback_part",
    "insert_keys",
    "latest_dataset_version",
    "list_dataset_versions",
    "list_decisions",
    "list_eval_runs",
    "list_model_versions",
    "list_parts",
    "list_tombstones",
    "list_training_runs",
    "lock_agents_for_commit",
    "lookup_keys",
    "model_version_of_run",
    "production_version",
    "promote",
    "record_part",
    "referenced_part_paths",
    "register_dataset_version",
    "reject",
    "retire_parts",
    "rollback",
    "set_traffic_share",
    "source_file_parts",
    "start_pipeline_run",
    "tombstone_id",
    "tombstoned",
    "training_spend_since",
    "unindexed_feedback_parts",
    "update_training_run",
    "versions_referencing",
]
