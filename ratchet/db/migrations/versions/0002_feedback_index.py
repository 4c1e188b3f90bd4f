"""Feedback index and part replacements (issue 13): curation finds an interaction's feedback
parts without reading every feedback part; compaction records which parts it merged.

``feedback_index`` starts empty: feedback parts committed before it are *unindexed* and readers
read them whole until ``ratchet store compact`` indexes them.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``feedback_index`` and ``part_replacements``."""
    op.create_table(
        "feedback_index",
        sa.Column("agent_id", sa.String(length=255), nullable=False),
        sa.Column("interaction_id", sa.String(length=255), nullable=False),
        sa.Column("part_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["part_id"], ["parts.id"], name=op.f("fk_feedback_index_part_id_parts")
        ),
        sa.PrimaryKeyConstraint(
            "agent_id", "interaction_id", "part_id", name=op.f("pk_feedback_index")
        ),
    )
    op.create_index(
        op.f("ix_feedback_index_part_id"), "feedback_index", ["part_id"], unique=False
    )
    op.create_table(
        "part_replacements",
        sa.Column("old_part_id", sa.String(length=64), nullable=False),
        sa.Column("new_part_id", sa.String(length=64), nullable=False),
        sa.Column("replaced_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["old_part_id"], ["parts.id"], name=op.f("fk_part_replacements_old_part_id_parts")
        ),
        sa.ForeignKeyConstraint(
            ["new_part_id"], ["parts.id"], name=op.f("fk_part_replacements_new_part_id_parts")
        ),
        sa.PrimaryKeyConstraint("old_part_id", "new_part_id", name=op.f("pk_part_replacements")),
    )
    op.create_index(
        op.f("ix_part_replacements_new_part_id"),
        "part_replacements",
        ["new_part_id"],
        unique=False,
    )


def downgrade() -> None:
    """Drop both tables (the index is rebuilt by compaction after an upgrade)."""
    op.drop_index(op.f("ix_part_replacements_new_part_id"), table_name="part_replacements")
    op.drop_table("part_replacements")
    op.drop_index(op.f("ix_feedback_index_part_id"), table_name="feedback_index")
    op.drop_table("feedback_index")
