"""Whether a user has "something you have" set up (a TOTP app or a passkey), and where
each one came from.

Provenance matters because a factor can be planted: whoever has the password alone may
set up the *first* second factor of an account (someone has to, and at that point the
password is all the account has). Such a factor, added in the last NEW_FACTOR_NOTICE_DAYS
by a session proven with a password only, is flagged on the security pages and in the
password-change mail. It is never removable with the password alone: a thief holds the
password too, and could strip the owner's own new factor that way and then move the
email address. What tells the owner from the thief is the mailbox: a password reset
removes every second factor (invoiceapp.authn.factors), so that is the way out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select

from ..db import get_db, utcnow
from ..models import Passkey, User
from .sessions import TWO_FACTOR_PROOFS


def has_second_factor(user: User) -> bool:
    if user.totp_enabled_at is not None:
        return True
    return (
        get_db().scalar(select(Passkey.id).where(Passkey.user_id == user.id).limit(1)) is not None
    )


def flagged_until(added_with: str | None, added_at: datetime | None) -> datetime | None:
    """Until when this factor is flagged as added by a password-only session; None when it
    is not (added with a second factor, long ago, or before provenance was kept)."""
    if added_with is None or added_at is None or added_with in TWO_FACTOR_PROOFS:
        return None
    until = added_at + timedelta(days=current_app.config["NEW_FACTOR_NOTICE_DAYS"])
    return until if utcnow() < until else None


def totp_flagged_until(user: User) -> datetime | None:
    if user.totp_enabled_at is None:
        return None
    return flagged_until(user.totp_added_with, user.totp_enabled_at)


def passkey_flagged_until(passkey: Passkey) -> datetime | None:
    return flagged_until(passkey.added_with, passkey.created_at)


@dataclass(frozen=True)
class RecentFactor:
    """A factor added lately by a password-only session, for pages and mail."""

    description: str
    added_at: datetime
    flagged_until: datetime


def factors_added_without_second_factor(user: User) -> list[RecentFactor]:
    """Every factor of ``user`` flagged right now (see flagged_until)."""
    found = []
    if until := totp_flagged_until(user):
        assert user.totp_enabled_at is not None
        found.append(RecentFactor("the authenticator app", user.totp_enabled_at, until))
    passkeys = get_db().scalars(select(Passkey).where(Passkey.user_id == user.id))
    for passkey in passkeys:
        if until := passkey_flagged_until(passkey):
            # The name is whatever the adder typed: quoted and shortened.
            found.append(
                RecentFactor(f"the passkey “{passkey.name[:40]}”", passkey.created_at, until)
            )
    return found
