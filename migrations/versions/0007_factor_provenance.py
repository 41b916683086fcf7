"""Factor provenance: how the session that added each second factor was proven.

Revision ID: 0007_factor_provenance
Revises: 0006_scale
Create Date: 2026-12-07

users.totp_added_with and passkeys.added_with hold the proof of the session that turned
the authenticator app on or added the passkey ("password", "password+totp", "passkey",
...). A factor added in the last few days by a session proven with the password alone
may be one a thief planted with a stolen password, so its owner may remove it with the
password (invoiceapp.authn.second_factor). Rows from before this revision stay NULL:
nobody knows how they were added, so they count as vouched for.

Adding nullable columns needs no table rebuild on SQLite, so the invoices triggers of
0006 are untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_factor_provenance"
down_revision: str | Sequence[str] | None = "0006_scale"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("totp_added_with", sa.String(length=32), nullable=True))
    with op.batch_alter_table("passkeys") as batch:
        batch.add_column(sa.Column("added_with", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("passkeys") as batch:
        batch.drop_column("added_with")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("totp_added_with")
