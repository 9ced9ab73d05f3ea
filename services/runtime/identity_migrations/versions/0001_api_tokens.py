"""API tokens (hashed) per workspace.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The table as this revision made it (later revisions add columns; the live definition is auth.api_tokens).
    op.create_table(
        "api_tokens",
        sa.Column("token_hash", sa.Text, primary_key=True),
        sa.Column("workspace_id", sa.Text, nullable=False, index=True),
        sa.Column("label", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema="identity",
    )


def downgrade() -> None:
    op.drop_table("api_tokens", schema="identity")
