"""Sessions and one-time sign-in links.

Revision ID: 0001
"""

from alembic import op

from services.console.store import SERVICE_TABLES

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    for table in SERVICE_TABLES:
        table.create(bind)


def downgrade() -> None:
    bind = op.get_bind()
    for table in reversed(SERVICE_TABLES):
        table.drop(bind)
