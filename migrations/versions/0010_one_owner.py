"""One owner: at most one per organization; tokens of people no longer members revoked.

Revision ID: 0010_one_owner
Revises: 0009_audit_repeats
Create Date: 2026-12-07

ix_memberships_one_owner is a partial unique index (WHERE role = 'owner'), which both
SQLite and PostgreSQL support: the database itself refuses a second owner. That an
organization keeps at least one owner is checked by the app at commit
(invoiceapp.organizations), because a transfer passes through "no owner" between its two
UPDATEs and SQLite has no deferred constraints.

Removing a member now revokes their API tokens for that organization. Tokens left over
from removals before this change are revoked here, so none comes back to life when its
user is invited again.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_one_owner"
down_revision: str | Sequence[str] | None = "0009_audit_repeats"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_memberships_one_owner",
        "memberships",
        ["organization_id"],
        unique=True,
        sqlite_where=sa.text("role = 'owner'"),
        postgresql_where=sa.text("role = 'owner'"),
    )
    op.execute(
        "UPDATE personal_access_tokens SET revoked_at = CURRENT_TIMESTAMP "
        "WHERE revoked_at IS NULL AND NOT EXISTS ("
        "SELECT 1 FROM memberships WHERE memberships.user_id = personal_access_tokens.user_id "
        "AND memberships.organization_id = personal_access_tokens.organization_id)"
    )


def downgrade() -> None:
    # The revoked tokens stay revoked: nobody can tell them apart from others any more.
    op.drop_index("ix_memberships_one_owner", table_name="memberships")
