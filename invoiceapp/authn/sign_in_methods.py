"""The sign-in methods an account chooses: password on or off, codes and links by email
on or off. Passkeys are on as long as one exists; the authenticator app is a second step.

One rule: never leave an account without a way in that does not depend on mail alone.
So password sign-in goes off only while a passkey exists, and the last passkey cannot be
removed while password sign-in is off. Mail is the way back either way: a password reset
(or an address claim) sets a new password, removes every passkey, and so turns password
sign-in back on (invoiceapp.authn.factors).
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..models import Passkey, User
from .events import EventKind, record_event
from .mailed_sign_in import revoke_pending

# How a session was proven, in words (/account/security, the decision trace).
PROOF_WORDS = {
    "password": "your password",
    "email_code": "a code sent by email",
    "magic_link": "a link sent by email",
    "passkey": "a passkey",
    "password+totp": "your password and an authenticator code",
    "password+recovery_code": "your password and a recovery code",
    "email_code+totp": "a code sent by email and an authenticator code",
    "email_code+recovery_code": "a code sent by email and a recovery code",
    "magic_link+totp": "a link sent by email and an authenticator code",
    "magic_link+recovery_code": "a link sent by email and a recovery code",
    "token": "an API token",
}

NEEDS_PASSKEY = (
    "Add a passkey first: with password sign-in off, a passkey is how you sign in. "
    "Password sign-in stays on."
)
LAST_PASSKEY = (
    "This is your only passkey and password sign-in is off, so removing it would leave no "
    "way in. Turn password sign-in back on first, or add another passkey."
)


def describe_proof(proof: str) -> str:
    return PROOF_WORDS.get(proof, proof)


class MethodRefused(Exception):
    """The change would leave the account with no way in; the message says what to do."""


def lock_account(db: Session, user: User) -> User:
    """Take the account's write lock for the rest of the transaction, then re-read it.

    "Is there another way in?" is read before it is written: without a lock, two requests
    (removing both passkeys at once, or turning the password off while the only passkey is
    removed) each see the other's way in and both go ahead. PostgreSQL: the user's row,
    FOR NO KEY UPDATE. SQLite has one writer for the whole database, taken now with BEGIN
    IMMEDIATE (as invoiceapp.organizations.lock_organization does).
    """
    if db.get_bind().dialect.name == "sqlite":
        raw = db.connection().connection.dbapi_connection
        if raw is not None and not raw.in_transaction:
            db.connection().exec_driver_sql("BEGIN IMMEDIATE")
    return db.scalars(
        select(User)
        .where(User.id == user.id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    ).one()


def passkey_count(db: Session, user: User) -> int:
    return db.scalar(select(func.count()).where(Passkey.user_id == user.id)) or 0


def set_password_sign_in(db: Session, user: User, enabled: bool) -> None:
    """Turn password sign-in on or off; off needs a passkey. The caller commits."""
    user = lock_account(db, user)
    if not enabled and passkey_count(db, user) == 0:
        raise MethodRefused(NEEDS_PASSKEY)
    if user.password_sign_in != enabled:
        user.password_sign_in = enabled
        detail = "password sign-in turned " + ("on" if enabled else "off")
        record_event(db, user.id, EventKind.SIGN_IN_METHODS_CHANGED, detail)


def set_email_sign_in(db: Session, user: User, enabled: bool) -> None:
    """Turn codes and links by email on or off; off also kills those in flight. Always
    allowed: the account keeps its password or a passkey (the rule above)."""
    user = lock_account(db, user)
    if user.email_sign_in != enabled:
        user.email_sign_in = enabled
        if not enabled:
            revoke_pending(db, user.id)
        detail = "sign-in by email turned " + ("on" if enabled else "off")
        record_event(db, user.id, EventKind.SIGN_IN_METHODS_CHANGED, detail)


def check_passkey_removal(db: Session, user: User) -> None:
    """Refuse to remove the last passkey of an account whose password sign-in is off.
    Locks the account first: the caller removes the passkey and commits."""
    user = lock_account(db, user)
    if not user.password_sign_in and passkey_count(db, user) <= 1:
        raise MethodRefused(LAST_PASSKEY)


def password_back_on(db: Session, user: User, because: str) -> None:
    """Every passkey is gone (a reset, a claim): the new password is the way in again."""
    if not user.password_sign_in:
        user.password_sign_in = True
        record_event(
            db, user.id, EventKind.SIGN_IN_METHODS_CHANGED, f"password sign-in on {because}"
        )
