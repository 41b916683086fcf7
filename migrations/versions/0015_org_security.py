"""The organization's security policy: which proofs reach its data, how old a session
may be, its own elevation window, which domains may be invited, and API tokens.

Revision ID: 0015_org_security
Revises: 0014_email_sign_in
Create Date: 2026-12-07

Columns on organizations, all with defaults that change nothing: "any" proof (the
existing requires_two_factor column still says whether a second factor is required),
no limits, any domain, tokens for everyone. SQLite adds the CHECK constraints by batch copy.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_org_security"
down_revision: str | Sequence[str] | None = "0014_email_sign_in"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PROOF_RULES = ("any", "no_mailed", "second_factor", "passkey")
TOKEN_CREATORS = ("everyone", "managers", "nobody")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN (" + ", ".join(f"'{value}'" for value in values) + ")"


def upgrade() -> None:
    with op.batch_alter_table("organizations") as batch:
        batch.add_column(
            sa.Column("proof_rule", sa.String(length=16), server_default="any", nullable=False)
        )
        batch.add_column(sa.Column("max_session_hours", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("elevation_minutes", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column(
                "invitation_domains", sa.String(length=500), server_default="", nullable=False
            )
        )
        batch.add_column(
            sa.Column(
                "token_creators", sa.String(length=16), server_default="everyone", nullable=False
            )
        )
        batch.add_column(sa.Column("token_max_days", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("tokens_may_read", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.create_check_constraint(
            op.f("ck_organizations_proof_rule"), _in("proof_rule", PROOF_RULES)
        )
        batch.create_check_constraint(
            op.f("ck_organizations_token_creators"), _in("token_creators", TOKEN_CREATORS)
        )


def downgrade() -> None:
    with op.batch_alter_table("organizations") as batch:
        batch.drop_constraint(op.f("ck_organizations_token_creators"), type_="check")
        batch.drop_constraint(op.f("ck_organizations_proof_rule"), type_="check")
        for column in (
            "tokens_may_read",
            "token_max_days",
            "token_creators",
            "invitation_domains",
            "elevation_minutes",
            "max_session_hours",
            "proof_rule",
        ):
            batch.drop_column(column)
