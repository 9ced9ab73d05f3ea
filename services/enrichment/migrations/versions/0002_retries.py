"""Durable per-lead retries.

Revision ID: 0002
"""

from alembic import op

from services.enrichment.store import enrichment_retries

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    enrichment_retries.create(op.get_bind())


def downgrade() -> None:
    enrichment_retries.drop(op.get_bind())
