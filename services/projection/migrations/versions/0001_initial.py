"""Runtime tables and every view table, in the schema being migrated (the live one or a replay's).

Revision ID: 0001
"""

from alembic import context, op

from services.projection.store import SCHEMA, build_views
from services.runtime.db import service_metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _metadata():  # type: ignore[no-untyped-def]
    # The same revision builds the live schema and every replay schema: the schema comes from the config.
    schema = context.config.attributes.get("schema") or SCHEMA
    metadata, _ = service_metadata(schema)
    build_views(metadata)
    return metadata


def upgrade() -> None:
    _metadata().create_all(op.get_bind())


def downgrade() -> None:
    _metadata().drop_all(op.get_bind())
