"""The prediction log's and feedback's tables, as of the move to SQLAlchemy (issue 11).

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

from ticketflow.monitoring.database import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Creates the two tables and their indexes."""
    # Spelled out, not taken from `database.metadata`: a migration is the schema as of its version, and the
    # metadata moves on with later ones.
    op.create_table(
        "predictions",
        sa.Column("ticket_id", sa.String(200), primary_key=True),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("timestamp", UTCDateTime(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(50), nullable=False),
        sa.Column("needs_review", sa.Boolean(), nullable=False),
        sa.Column("min_confidence", sa.Float(), nullable=True),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("confidences", sa.JSON(), nullable=False),
    )
    op.create_index("predictions_timestamp", "predictions", ["timestamp", "ticket_id"])
    op.create_index("predictions_review", "predictions", ["needs_review", "min_confidence", "timestamp", "ticket_id"])
    op.create_table(
        "feedback",
        sa.Column("ticket_id", sa.String(200), primary_key=True),
        sa.Column("target", sa.String(200), primary_key=True),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("predicted_label", sa.String(200), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("model_version", sa.String(50), nullable=False),
        sa.Column("predicted_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("source", sa.String(100), nullable=False),
    )
    op.create_index("feedback_predicted_at", "feedback", ["predicted_at"])


def downgrade() -> None:
    """Drops them."""
    op.drop_table("feedback")
    op.drop_table("predictions")
