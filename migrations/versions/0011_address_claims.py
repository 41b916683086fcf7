"""Address claims: a mailed link that gives an unverified account's address to its owner.

Revision ID: 0011_address_claims
Revises: 0010_one_owner
Create Date: 2026-12-07

Only the CHECK constraint on account_tokens.purpose changes: it takes one more kind of
link, "claim_address". SQLite cannot alter a constraint, so batch mode copies the table.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011_address_claims"
down_revision: str | Sequence[str] | None = "0010_one_owner"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = ("verify_email", "reset_password", "change_email")
AFTER = (*BEFORE, "claim_address")


def _purpose_in(purposes: tuple[str, ...]) -> str:
    return "purpose IN (" + ", ".join(f"'{p}'" for p in purposes) + ")"


def _set_purposes(purposes: tuple[str, ...]) -> None:
    with op.batch_alter_table("account_tokens") as batch:
        batch.drop_constraint(op.f("ck_account_tokens_purpose"), type_="check")
        batch.create_check_constraint(op.f("ck_account_tokens_purpose"), _purpose_in(purposes))


def upgrade() -> None:
    _set_purposes(AFTER)


def downgrade() -> None:
    # Claim links in flight would break the old constraint; they are only links, and expire.
    op.execute("DELETE FROM account_tokens WHERE purpose = 'claim_address'")
    _set_purposes(BEFORE)
