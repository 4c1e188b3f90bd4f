"""Erasure marks (issue 12): models trained on erased data, superseded versions, applied tombstones.

Three nullable columns, added without batch mode (``ADD COLUMN`` of a nullable column without a
constraint works on SQLite and PostgreSQL alike):

* ``model_versions.erased_data_at``: when an erasure removed records this version was trained on
  (``ratchet models show`` says "trained on erased data"); NULL for a clean version;
* ``dataset_versions.superseded_by``: the version an erasure or retention run made without the
  removed rows (the old row keeps its id for the training runs that name it, and its ``path``
  then points at the new file: the old file is deleted);
* ``tombstones.erased_at``: when the erasure a tombstone asked for finished; NULL means pending
  (a consent withdrawal recorded at ingest, a run that crashed half-way), and the next forget or
  retention run sweeps it.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the three marks."""
    op.add_column(
        "model_versions", sa.Column("erased_data_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "dataset_versions", sa.Column("superseded_by", sa.String(length=64), nullable=True)
    )
    op.add_column("tombstones", sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Drop them again (batch mode: SQLite rebuilds the tables)."""
    for table, column in (
        ("tombstones", "erased_at"),
        ("dataset_versions", "superseded_by"),
        ("model_versions", "erased_data_at"),
    ):
        with op.batch_alter_table(table) as batch:
            batch.drop_column(column)
