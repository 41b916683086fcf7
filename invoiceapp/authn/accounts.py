"""Account changes that several pages share: setting a password, ending sessions.

A new password (changed while signed in, or reset from a mailed link) ends every other
session of the account and kills pending reset links and sign-ins by mail (codes and
magic links in flight), so whoever knew the old password, held an old cookie or read the
mailbox for a while is out.
"""

from __future__ import annotations

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from ..db import rows_changed, utcnow
from ..models import PersonalAccessToken, TokenPurpose, User, UserSession
from .mailed_sign_in import revoke_pending
from .passwords import hash_password
from .tokens import revoke_tokens


def revoke_sessions(db: Session, user_id: int, *, keep: UserSession | None = None) -> int:
    """End every session of the user (but ``keep``); returns how many ended. Caller commits."""
    statement = delete(UserSession).where(UserSession.user_id == user_id)
    if keep is not None:
        statement = statement.where(UserSession.id != keep.id)
    return rows_changed(db, statement.execution_options(synchronize_session="fetch"))


def set_password(db: Session, user: User, new_password: str, *, keep: UserSession | None) -> None:
    """Store the new password's hash, end the other sessions, kill pending mailed links
    and sign-ins by mail.

    The caller records the security event, rotates ``keep`` if it should survive, sends
    the notice and commits.
    """
    user.password_hash = hash_password(new_password)
    revoke_sessions(db, user.id, keep=keep)
    # A pending email change too: a thief with a stolen session could otherwise wait for
    # the owner's new password, then move the account to their own address.
    revoke_tokens(db, user.id, TokenPurpose.RESET_PASSWORD, TokenPurpose.CHANGE_EMAIL)
    # A code or magic link asked for in someone else's browser, while they could read the
    # mailbox, would otherwise still sign them in after the owner took the account back.
    revoke_pending(db, user.id)
    # API tokens are proof made with the old password: they stop on the next request.
    db.execute(
        update(PersonalAccessToken)
        .where(PersonalAccessToken.user_id == user.id, PersonalAccessToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )
