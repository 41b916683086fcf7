"""Email sign-in: one-time codes and magic links, and the methods an account chooses.

Revision ID: 0014_email_sign_in
Revises: 0013_view_as
Create Date: 2026-12-07

email_sign_ins holds each pending code or link as digests only: of the code or token, and
of the nonce held by the browser that asked (a sign-in finishes only there).

users.password_sign_in and users.email_sign_in are the account's own switches; both
start on, so every existing account signs in as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_email_sign_in"
down_revision: str | Sequence[str] | None = "0013_view_as"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("password_sign_in", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
        batch.add_column(
            sa.Column("email_sign_in", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
    op.create_table(
        "email_sign_ins",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("browser_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.CheckConstraint(
            "kind IN ('email_code', 'magic_link')", name=op.f("ck_email_sign_ins_kind")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_email_sign_ins_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_sign_ins")),
    )
    for column in ("user_id", "secret_hash", "browser_hash"):
        op.create_index(op.f(f"ix_email_sign_ins_{column}"), "email_sign_ins", [column])


def downgrade() -> None:
    for column in ("user_id", "secret_hash", "browser_hash"):
        op.drop_index(op.f(f"ix_email_sign_ins_{column}"), table_name="email_sign_ins")
    op.drop_table("email_sign_ins")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("email_sign_in")
        batch.drop_column("password_sign_in")
