"""Removing every second factor at once: when the mailbox proves enough to start over.

A password reset and an address claim both end with the password alone. A passkey or an
authenticator app that someone else enrolled would otherwise survive the very step that
was meant to shut them out, and stand between the mailbox owner and the account. It is
also the way back for whoever lost their phone or their only passkey: changing second
factors needs one, the mailbox proves enough to start again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from ..models import User
from . import recovery_codes, totp
from .events import EventKind, record_event
from .passkeys import passkeys_of
from .sign_in_methods import password_back_on


@dataclass(frozen=True)
class RemovedFactors:
    """What went, for the notice mail."""

    passkeys: list[str] = field(default_factory=list)  # their names
    totp: bool = False  # an authenticator app (and its recovery codes)


def remove_second_factors(db: Session, user: User, because: str) -> RemovedFactors:
    """Delete every passkey, the TOTP secret (also one still being enrolled) and the
    recovery codes, each recorded as an event saying ``because``. The caller commits."""
    names = []
    for passkey in passkeys_of(db, user):
        names.append(passkey.name)
        db.delete(passkey)
        record_event(db, user.id, EventKind.PASSKEY_REMOVED, because)
    had_totp = user.totp_secret_encrypted is not None
    totp.disable(user)
    recovery_codes.remove_codes(db, user)
    if had_totp:
        record_event(db, user.id, EventKind.TWO_FACTOR_DISABLED, because)
    # With the passkeys gone, the password just chosen is the way in (sign_in_methods.py).
    password_back_on(db, user, because)
    return RemovedFactors(passkeys=names, totp=had_totp)
