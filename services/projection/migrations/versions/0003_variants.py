"""A/B variants: the variant of each lead's invite and of its latest message, for rates per variant.

Revision ID: 0003_variants

Revision 0001 creates every table from the current definitions, so on a new schema this finds the columns in
place; on a schema made before it, it adds them (they fill for new events; ``leadstream replay`` rebuilds them
for old ones).
"""

from alembic import context, op
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateColumn

from services.projection.store import SCHEMA, build_views
from services.runtime.db import service_metadata

revision = "0003_variants"
down_revision = "0002"
branch_labels = None
depends_on = None

NEW_COLUMNS = {
    "lead_campaign": (
        "invite_variant_key",
        "invite_step",
        "invite_variant",
        "message_variant_key",
        "message_step",
        "message_variant",
    ),
}


def upgrade() -> None:
    schema = context.config.attributes.get("schema") or SCHEMA
    metadata, _ = service_metadata(schema)
    build_views(metadata)
    for table, columns in NEW_COLUMNS.items():
        for name in columns:
            ddl = CreateColumn(metadata.tables[f"{schema}.{table}"].c[name]).compile(dialect=postgresql.dialect())
            op.execute(f'ALTER TABLE "{schema}"."{table}" ADD COLUMN IF NOT EXISTS {ddl}')


def downgrade() -> None:
    schema = context.config.attributes.get("schema") or SCHEMA
    for table, columns in NEW_COLUMNS.items():
        for name in columns:
            op.execute(f'ALTER TABLE "{schema}"."{table}" DROP COLUMN IF EXISTS {name}')
