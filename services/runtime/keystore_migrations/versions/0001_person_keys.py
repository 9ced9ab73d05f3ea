"""Data keys per person (workspace and lead): crypto-shredding of personal fields in events.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "person_keys",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("data_key", sa.LargeBinary, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("(data_key IS NULL) = (erased_at IS NOT NULL)", name="erased_has_no_key"),
        schema="personal_keys",
    )
    op.create_index("person_keys_lead", "person_keys", ["lead_id"], schema="personal_keys")


def downgrade() -> None:
    op.drop_table("person_keys", schema="personal_keys")
