"""Initial schema of the training database.

Written from an autogenerate draft and reviewed: plain ``sa.DateTime(timezone=True)`` stands for
``ratchet.db.models.UTCDateTime`` (migrations never import the models, which will move on), and
indexes are created outside batch mode (CREATE INDEX works on both engines).

Revision ID: 0001
Revises:
Create Date: 2026-11-22 04:38:46.592394
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create every table, parents before children."""
    op.create_table('dataset_versions',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('agent_id', sa.String(length=255), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('path', sa.String(length=1024), nullable=False),
    sa.Column('rows', sa.BigInteger(), nullable=False),
    sa.Column('schema_fingerprint', sa.String(length=64), nullable=False),
    sa.Column('config_hash', sa.String(length=64), nullable=False),
    sa.Column('parent_id', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('flow_run_id', sa.String(length=64), nullable=True),
    sa.Column('stats', sa.JSON(), nullable=False),
    sa.CheckConstraint("kind IN ('eval_cases', 'sft_examples', 'preference_pairs', 'binary_feedback', 'review_queue')", name=op.f('ck_dataset_versions_kind')),
    sa.ForeignKeyConstraint(['parent_id'], ['dataset_versions.id'], name=op.f('fk_dataset_versions_parent_id_dataset_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dataset_versions'))
    )
    op.create_index(op.f('ix_dataset_versions_agent_id_kind_created_at'), 'dataset_versions', ['agent_id', 'kind', 'created_at'], unique=False)

    op.create_table('pipeline_runs',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('flow_name', sa.String(length=255), nullable=False),
    sa.Column('flow_run_id', sa.String(length=64), nullable=True),
    sa.Column('agent_id', sa.String(length=255), nullable=True),
    sa.Column('parameters', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('counts', sa.JSON(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'in_progress', 'completed', 'failed', 'cancelled')", name=op.f('ck_pipeline_runs_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pipeline_runs'))
    )
    op.create_index(op.f('ix_pipeline_runs_agent_id_started_at'), 'pipeline_runs', ['agent_id', 'started_at'], unique=False)

    op.create_table('source_files',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=1024), nullable=False),
    sa.Column('bytes', sa.BigInteger(), nullable=False),
    sa.Column('lines', sa.BigInteger(), nullable=True),
    sa.Column('counts', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('flow_run_id', sa.String(length=64), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.CheckConstraint("kind IN ('interactions', 'feedback', 'openai_chat')", name=op.f('ck_source_files_kind')),
    sa.CheckConstraint("status IN ('in_progress', 'completed', 'failed')", name=op.f('ck_source_files_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_source_files'))
    )
    op.create_table('tombstones',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('agent_id', sa.String(length=255), nullable=True),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('value', sa.String(length=255), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('user', 'interaction')", name=op.f('ck_tombstones_kind')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tombstones')),
    sa.UniqueConstraint('agent_id', 'kind', 'value', name=op.f('uq_tombstones_agent_id_kind_value'))
    )
    op.create_index(op.f('ix_tombstones_kind_value'), 'tombstones', ['kind', 'value'], unique=False)

    op.create_table('dataset_lineage',
    sa.Column('version_id', sa.String(length=64), nullable=False),
    sa.Column('ref_kind', sa.String(length=32), nullable=False),
    sa.Column('ref', sa.String(length=1024), nullable=False),
    sa.CheckConstraint("ref_kind IN ('part', 'dataset_version', 'flow_run', 'feedback_file')", name=op.f('ck_dataset_lineage_ref_kind')),
    sa.ForeignKeyConstraint(['version_id'], ['dataset_versions.id'], name=op.f('fk_dataset_lineage_version_id_dataset_versions')),
    sa.PrimaryKeyConstraint('version_id', 'ref_kind', 'ref', name=op.f('pk_dataset_lineage'))
    )
    op.create_index(op.f('ix_dataset_lineage_ref_kind_ref'), 'dataset_lineage', ['ref_kind', 'ref'], unique=False)

    op.create_table('parts',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('table_name', sa.String(length=32), nullable=False),
    sa.Column('agent_id', sa.String(length=255), nullable=True),
    sa.Column('partition_date', sa.Date(), nullable=True),
    sa.Column('path', sa.String(length=1024), nullable=False),
    sa.Column('rows', sa.BigInteger(), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('source_file_id', sa.String(length=64), nullable=True),
    sa.Column('redaction_version', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('bytes', sa.BigInteger(), nullable=True),
    sa.Column('schema_fingerprint', sa.String(length=64), nullable=True),
    sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("table_name IN ('interactions', 'feedback', 'quarantine')", name=op.f('ck_parts_table_name')),
    sa.ForeignKeyConstraint(['source_file_id'], ['source_files.id'], name=op.f('fk_parts_source_file_id_source_files')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_parts')),
    sa.UniqueConstraint('path', name=op.f('uq_parts_path'))
    )
    op.create_index(op.f('ix_parts_source_file_id'), 'parts', ['source_file_id'], unique=False)
    op.create_index(op.f('ix_parts_table_name_agent_id_partition_date'), 'parts', ['table_name', 'agent_id', 'partition_date'], unique=False)

    op.create_table('training_runs',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('agent_id', sa.String(length=255), nullable=False),
    sa.Column('dataset_version_id', sa.String(length=64), nullable=True),
    sa.Column('base_model_version', sa.String(length=255), nullable=False),
    sa.Column('training_type', sa.String(length=32), nullable=False),
    sa.Column('backend', sa.String(length=64), nullable=False),
    sa.Column('parameters', sa.JSON(), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('external_job_id', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.Column('artifacts', sa.JSON(), nullable=False),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('cost_usd', sa.Float(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'in_progress', 'completed', 'failed', 'cancelled')", name=op.f('ck_training_runs_status')),
    sa.CheckConstraint("training_type IN ('sft', 'dpo', 'kto', 'few_shot', 'prompt')", name=op.f('ck_training_runs_training_type')),
    sa.ForeignKeyConstraint(['dataset_version_id'], ['dataset_versions.id'], name=op.f('fk_training_runs_dataset_version_id_dataset_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_training_runs'))
    )
    op.create_index(op.f('ix_training_runs_agent_id_created_at'), 'training_runs', ['agent_id', 'created_at'], unique=False)
    op.create_index(op.f('ix_training_runs_external_job_id'), 'training_runs', ['external_job_id'], unique=False)

    op.create_table('model_versions',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('agent_id', sa.String(length=255), nullable=False),
    sa.Column('backend', sa.String(length=64), nullable=False),
    sa.Column('model_ref', sa.String(length=1024), nullable=False),
    sa.Column('system_prompt', sa.Text(), nullable=True),
    sa.Column('parameters', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('traffic_share', sa.Float(), nullable=False),
    sa.Column('parent_id', sa.String(length=64), nullable=True),
    sa.Column('training_run_id', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('promoted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('candidate', 'production', 'retired', 'rejected')", name=op.f('ck_model_versions_status')),
    sa.CheckConstraint('traffic_share >= 0 AND traffic_share <= 1', name=op.f('ck_model_versions_traffic_share')),
    sa.ForeignKeyConstraint(['parent_id'], ['model_versions.id'], name=op.f('fk_model_versions_parent_id_model_versions')),
    sa.ForeignKeyConstraint(['training_run_id'], ['training_runs.id'], name=op.f('fk_model_versions_training_run_id_training_runs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_versions'))
    )
    op.create_index(op.f('ix_model_versions_agent_id'), 'model_versions', ['agent_id'], unique=False)
    op.create_index('ux_model_versions_one_production', 'model_versions', ['agent_id'], unique=True, sqlite_where=sa.text("status = 'production'"), postgresql_where=sa.text("status = 'production'"))

    op.create_table('record_keys',
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('agent_id', sa.String(length=255), nullable=False),
    sa.Column('record_id', sa.String(length=255), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('part_id', sa.String(length=64), nullable=False),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('interaction', 'feedback')", name=op.f('ck_record_keys_kind')),
    sa.ForeignKeyConstraint(['part_id'], ['parts.id'], name=op.f('fk_record_keys_part_id_parts')),
    sa.PrimaryKeyConstraint('kind', 'agent_id', 'record_id', name=op.f('pk_record_keys'))
    )
    op.create_index(op.f('ix_record_keys_part_id'), 'record_keys', ['part_id'], unique=False)

    op.create_table('eval_runs',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('agent_id', sa.String(length=255), nullable=False),
    sa.Column('model_version_id', sa.String(length=64), nullable=False),
    sa.Column('dataset_version_id', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('n_cases', sa.Integer(), nullable=False),
    sa.Column('cost_usd', sa.Float(), nullable=True),
    sa.Column('results_path', sa.String(length=1024), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('flow_run_id', sa.String(length=64), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'in_progress', 'completed', 'failed', 'cancelled')", name=op.f('ck_eval_runs_status')),
    sa.ForeignKeyConstraint(['dataset_version_id'], ['dataset_versions.id'], name=op.f('fk_eval_runs_dataset_version_id_dataset_versions')),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'], name=op.f('fk_eval_runs_model_version_id_model_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_eval_runs'))
    )
    op.create_index(op.f('ix_eval_runs_agent_id_started_at'), 'eval_runs', ['agent_id', 'started_at'], unique=False)
    op.create_index(op.f('ix_eval_runs_model_version_id'), 'eval_runs', ['model_version_id'], unique=False)

    op.create_table('promotion_decisions',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('agent_id', sa.String(length=255), nullable=False),
    sa.Column('candidate_id', sa.String(length=64), nullable=False),
    sa.Column('baseline_id', sa.String(length=64), nullable=True),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('passed', sa.Boolean(), nullable=False),
    sa.Column('reasons', sa.JSON(), nullable=False),
    sa.Column('gate_results', sa.JSON(), nullable=False),
    sa.Column('decided_by', sa.String(length=255), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('flow_run_id', sa.String(length=64), nullable=True),
    sa.CheckConstraint("action IN ('promote', 'reject', 'rollback')", name=op.f('ck_promotion_decisions_action')),
    sa.ForeignKeyConstraint(['baseline_id'], ['model_versions.id'], name=op.f('fk_promotion_decisions_baseline_id_model_versions')),
    sa.ForeignKeyConstraint(['candidate_id'], ['model_versions.id'], name=op.f('fk_promotion_decisions_candidate_id_model_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_promotion_decisions'))
    )
    op.create_index(op.f('ix_promotion_decisions_agent_id_decided_at'), 'promotion_decisions', ['agent_id', 'decided_at'], unique=False)

    op.create_table('eval_metrics',
    sa.Column('eval_run_id', sa.String(length=64), nullable=False),
    sa.Column('subset', sa.String(length=64), nullable=False),
    sa.Column('metric', sa.String(length=128), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('ci_low', sa.Float(), nullable=True),
    sa.Column('ci_high', sa.Float(), nullable=True),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['eval_run_id'], ['eval_runs.id'], name=op.f('fk_eval_metrics_eval_run_id_eval_runs')),
    sa.PrimaryKeyConstraint('eval_run_id', 'subset', 'metric', name=op.f('pk_eval_metrics'))
    )


def downgrade() -> None:
    """Drop everything (indexes go with their tables), children before parents."""
    op.drop_table('eval_metrics')
    op.drop_table('promotion_decisions')
    op.drop_table('eval_runs')
    op.drop_table('record_keys')
    op.drop_table('model_versions')
    op.drop_table('training_runs')
    op.drop_table('parts')
    op.drop_table('dataset_lineage')
    op.drop_table('tombstones')
    op.drop_table('source_files')
    op.drop_table('pipeline_runs')
    op.drop_table('dataset_versions')
