"""Idempotency keys of saved searches (``Idempotency-Key``: a retried request starts one search).

Revision ID: 0005_idempotency_keys
"""

from alembic import op

from services.discovery.store import idempotency_keys

revision = "0005_idempotency_keys"
down_revision = "0004_search_traceparent"
branch_labels = None
depends_on = None


def upgrade() -> None:
    idempotency_keys.create(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    idempotency_keys.drop(op.get_bind(), checkfirst=True)
