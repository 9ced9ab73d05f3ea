"""API tokens (hashed) per workspace.

Revision ID: 0001
"""

from alembic import op

from services.runtime.auth import api_tokens

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    api_tokens.create(op.get_bind())


def downgrade() -> None:
    api_tokens.drop(op.get_bind())
