"""Whether a user has "something you have" set up (a TOTP app or a passkey), and where
each one came from.

Provenance matters because a factor can be planted: whoever has the password alone may
set up the *first* second factor of an account (someone has to, and at that point the
password is all the account has). Such a factor, added in the last
FACTOR_REMOVABLE_WITH_PASSWORD_DAYS by a session proven with a password only, is not yet
vouched for: its owner may remove it with a fresh password, and does not need the factor
a thief may be holding. A factor added with a second factor, or one older than that, can
only be removed with a second factor. A password reset removes every factor anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select

from ..db import get_db, utcnow
from ..models import Passkey, User
from .sessions import TWO_FACTOR_PROOFS

# How long a factor added without a second factor stays removable with the password.
DEFAULT_REMOVABLE_DAYS = 7


def has_second_factor(user: User) -> bool:
    if user.totp_enabled_at is not None:
        return True
    return (
        get_db().scalar(select(Passkey.id).where(Passkey.user_id == user.id).limit(1)) is not None
    )


def removable_with_password_until(
    added_with: str | None, added_at: datetime | None
) -> datetime | None:
    """Until when a fresh password alone may remove this factor; None: it needs a second
    factor. Factors from before provenance was kept (``added_with`` None) are vouched for."""
    if added_with is None or added_at is None or added_with in TWO_FACTOR_PROOFS:
        return None
    days = current_app.config.get("FACTOR_REMOVABLE_WITH_PASSWORD_DAYS", DEFAULT_REMOVABLE_DAYS)
    until = added_at + timedelta(days=days)
    return until if utcnow() < until else None


def totp_removable_with_password(user: User) -> datetime | None:
    if user.totp_enabled_at is None:
        return None
    return removable_with_password_until(user.totp_added_with, user.totp_enabled_at)


def passkey_removable_with_password(passkey: Passkey) -> datetime | None:
    return removable_with_password_until(passkey.added_with, passkey.created_at)


@dataclass(frozen=True)
class RecentFactor:
    """A factor its owner may still remove with the password, for pages and mail."""

    description: str
    added_at: datetime
    removable_until: datetime


def factors_removable_with_password(user: User) -> list[RecentFactor]:
    """Every factor of ``user`` that a fresh password alone may remove right now."""
    found = []
    if until := totp_removable_with_password(user):
        assert user.totp_enabled_at is not None
        found.append(RecentFactor("the authenticator app", user.totp_enabled_at, until))
    passkeys = get_db().scalars(select(Passkey).where(Passkey.user_id == user.id))
    for passkey in passkeys:
        if until := passkey_removable_with_password(passkey):
            # The name is whatever the adder typed: quoted and shortened.
            found.append(
                RecentFactor(f"the passkey “{passkey.name[:40]}”", passkey.created_at, until)
            )
    return found
