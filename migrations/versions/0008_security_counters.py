"""Security counters: wrong second-step codes per account, failed sign-ins per claim.

Revision ID: 0008_security_counters
Revises: 0007_factor_provenance
Create Date: 2026-12-07

users.second_factor_failures counts wrong codes in a row; at the limit the account's
authenticator codes are refused until a password reset or a recovery code.

security_counters holds, per claimed account (a digest, never the address), the failed
sign-ins of a fifteen-minute window and when the next attempt may be checked: the
growing delay before the hard limit. Both are changed only by conditional UPDATEs, so
concurrent requests cannot lose a count.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_security_counters"
down_revision: str | Sequence[str] | None = "0007_factor_provenance"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("second_factor_failures", sa.Integer(), server_default="0", nullable=False)
        )
    op.create_table(
        "security_counters",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_security_counters")),
    )
    op.create_index(
        op.f("ix_security_counters_window_ends_at"), "security_counters", ["window_ends_at"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_security_counters_window_ends_at"), table_name="security_counters")
    op.drop_table("security_counters")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("second_factor_failures")
