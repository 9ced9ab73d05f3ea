"""The post a posts watch matched for a lead (the hook of its messages, the post a comment answers).

Expand-only: older code ignores the table.

Revision ID: 0002_matched_posts
"""

from alembic import op

from services.messaging.store import matched_posts

revision = "0002_matched_posts"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    matched_posts.create(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    matched_posts.drop(op.get_bind(), checkfirst=True)
