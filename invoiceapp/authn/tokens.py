"""Single-use links sent by mail: verify an email, reset a password, confirm a new email.

The link carries 32 random bytes; the database keeps only their SHA-256, so a copy of
the table cannot be turned into working links. A token is claimed with one conditional
UPDATE, so two simultaneous uses cannot both succeed.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from ..db import rows_changed, utcnow
from ..models import AccountToken, TokenPurpose, User

# secrets.token_urlsafe(32): 43 URL-safe characters. Anything else is not one of ours.
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def issue_token(
    db: Session, user: User, purpose: TokenPurpose, lifetime_seconds: int, *, email: str
) -> str:
    """A new link for ``user``; returns the raw token (for the mail only). Caller commits."""
    raw = secrets.token_urlsafe(32)
    now = utcnow()
    db.add(
        AccountToken(
            token_hash=_hash(raw),
            purpose=purpose.value,
            user_id=user.id,
            email=email,
            created_at=now,
            expires_at=now + timedelta(seconds=lifetime_seconds),
        )
    )
    return raw


def find_usable_token(db: Session, raw: str, purpose: TokenPurpose) -> AccountToken | None:
    """The token if it is well formed, ours, unused and unexpired; else None (no detail)."""
    if not isinstance(raw, str) or not TOKEN_SHAPE.fullmatch(raw):
        return None
    token = db.scalar(
        select(AccountToken).where(
            AccountToken.token_hash == _hash(raw), AccountToken.purpose == purpose.value
        )
    )
    if token is None or token.used_at is not None or token.expires_at <= utcnow():
        return None
    return token


def claim_token(db: Session, raw: str, purpose: TokenPurpose) -> AccountToken | None:
    """Use the token up, atomically: of two simultaneous claims exactly one gets it.

    The caller commits together with the change the token allows.
    """
    token = find_usable_token(db, raw, purpose)
    if token is None:
        return None
    now = utcnow()
    claimed = rows_changed(
        db,
        update(AccountToken)
        .where(AccountToken.id == token.id, AccountToken.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False),
    )
    if claimed != 1:
        return None
    token.used_at = now
    return token


def is_newest(db: Session, token: AccountToken) -> bool:
    """Whether no link of the same kind was issued to the account after this one.

    Issuing a link deletes the older ones, but two requests at the same moment can each
    issue one before either sees the other's. Asking this when a link is used is what
    makes "a new link kills the older ones" hold even then.
    """
    newer = db.scalar(
        select(AccountToken.id)
        .where(
            AccountToken.user_id == token.user_id,
            AccountToken.purpose == token.purpose,
            AccountToken.id > token.id,
        )
        .limit(1)
    )
    return newer is None


def revoke_tokens(db: Session, user_id: int, *purposes: TokenPurpose) -> None:
    """Pending links of these kinds stop working (after a password change, say)."""
    db.execute(
        delete(AccountToken)
        .where(
            AccountToken.user_id == user_id,
            AccountToken.purpose.in_([p.value for p in purposes]),
            AccountToken.used_at.is_(None),
        )
        .execution_options(synchronize_session=False)
    )
