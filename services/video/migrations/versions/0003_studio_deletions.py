"""The studio deletions of erased leads' videos (``deletions``), worked by the deletion loop.

Revision ID: 0003_studio_deletions
"""

from alembic import op

from services.video.store import deletions

revision = "0003_studio_deletions"
down_revision = "0002_job_traceparent"
branch_labels = None
depends_on = None


def upgrade() -> None:
    deletions.create(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    deletions.drop(op.get_bind(), checkfirst=True)
