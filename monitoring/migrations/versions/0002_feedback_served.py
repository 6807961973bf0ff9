"""Feedback says whether it corrects a served answer (issue 16's label audit corrects training tickets too).

Before this version a correction of a training ticket carried the model version `label-audit:<version>`, which live
accuracy filtered on. The fact is now a column, `served`, and those rows get their plain version back.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_LEGACY_PREFIX = "label-audit:"  # how 0001's rows marked a correction of a ticket that was never served


def upgrade() -> None:
    """Adds `served` (true for every existing correction but the label audit's) and restores their versions."""
    # batch_alter_table: SQLite cannot add a NOT NULL column in place; on PostgreSQL it is a plain ALTER TABLE.
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("served", sa.Boolean(), nullable=False, server_default=sa.true()))
    feedback = sa.table("feedback", sa.column("model_version", sa.String(50)), sa.column("served", sa.Boolean()))
    op.execute(
        feedback.update()
        .where(feedback.c.model_version.startswith(_LEGACY_PREFIX, autoescape=True))
        .values(served=False, model_version=sa.func.substr(feedback.c.model_version, len(_LEGACY_PREFIX) + 1))
    )


def downgrade() -> None:
    """Marks unserved corrections the old way again and drops `served`."""
    feedback = sa.table("feedback", sa.column("model_version", sa.String(50)), sa.column("served", sa.Boolean()))
    op.execute(
        feedback.update()
        .where(feedback.c.served == sa.false())
        .values(model_version=sa.literal(_LEGACY_PREFIX) + feedback.c.model_version)
    )
    with op.batch_alter_table("feedback") as batch:
        batch.drop_column("served")
