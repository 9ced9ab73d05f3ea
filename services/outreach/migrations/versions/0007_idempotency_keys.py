"""Idempotency keys of campaign creates and launches (``Idempotency-Key``: a double click launches once).

0001 creates the tables from the current ``store`` definitions, so the table may exist already.

Revision ID: 0007_idempotency_keys
"""

from alembic import op

from services.outreach.store import idempotency_keys

revision = "0007_idempotency_keys"
down_revision = "0006_workflow_versions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    idempotency_keys.create(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    idempotency_keys.drop(op.get_bind(), checkfirst=True)
