"""Tokens get an id, scopes, an expiry, a revocation time and their first characters.

Tokens made before keep working with every scope (they could do everything) and no expiry: replace them
with scoped, expiring ones (`leadstream tokens create`, then `revoke`). Expand-only: older code ignores the
new columns (during a rolling update it does not yet refuse revoked or expired tokens).

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "api_tokens",
        sa.Column(
            "token_id", postgresql.UUID(as_uuid=True), nullable=False, server_default=sa.text("gen_random_uuid()")
        ),
        schema="identity",
    )
    op.create_unique_constraint("api_tokens_token_id_key", "api_tokens", ["token_id"], schema="identity")
    op.add_column(
        "api_tokens",
        sa.Column("scopes", postgresql.ARRAY(sa.Text), nullable=False, server_default=sa.text("'{read,write,admin}'")),
        schema="identity",
    )
    op.add_column("api_tokens", sa.Column("prefix", sa.Text, nullable=False, server_default=""), schema="identity")
    op.add_column("api_tokens", sa.Column("expires_at", sa.DateTime(timezone=True)), schema="identity")
    op.add_column("api_tokens", sa.Column("revoked_at", sa.DateTime(timezone=True)), schema="identity")


def downgrade() -> None:
    for column in ("revoked_at", "expires_at", "prefix", "scopes"):
        op.drop_column("api_tokens", column, schema="identity")
    op.drop_constraint("api_tokens_token_id_key", "api_tokens", schema="identity")
    op.drop_column("api_tokens", "token_id", schema="identity")
