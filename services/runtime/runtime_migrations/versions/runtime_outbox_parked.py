"""Parked outbox rows: rows the broker refused for what they are, with the error.

Revision ID: runtime_outbox_parked
"""

from alembic import context, op
from sqlalchemy import MetaData

from services.runtime.db import RuntimeTables

revision = "runtime_outbox_parked"
down_revision = None
branch_labels = None
depends_on = None


def _tables() -> RuntimeTables:
    return RuntimeTables(MetaData(schema=context.config.attributes["schema"]))


def upgrade() -> None:
    _tables().outbox_parked.create(op.get_bind())


def downgrade() -> None:
    _tables().outbox_parked.drop(op.get_bind())
