"""What a code by email and a magic link share: who may get one, and the browser that asked.

Mail goes only to a verified address of an account that left email sign-in on. Whoever
asks, the answer is the same (the views build it before anything is looked up).

A sign-in by mail is bound to the browser that asked for it. That browser keeps a random
nonce in Flask's signed session cookie; the row keeps only the nonce's SHA-256. A code
typed in another browser, or a link opened in one (forwarded, or phished out of the
mailbox and replayed), finds nothing to finish: only the browser that asked signs in.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app, session
from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from ..db import rows_changed, utcnow
from ..models import EmailSignIn, EmailSignInKind, User


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def may_sign_in_by_mail(user: User | None) -> bool:
    """Mail goes to a verified address only, of an account that allows it."""
    return user is not None and user.email_verified and user.email_sign_in


@dataclass(frozen=True)
class Requested:
    """This browser's half of a sign-in by mail: its nonce, the address it asked for, and
    what to do once signed in."""

    nonce: str
    email: str
    remember: bool = False
    next_path: str = ""


def remember_request(
    kind: EmailSignInKind, email: str, *, remember: bool = False, next_path: str = ""
) -> Requested:
    """A new nonce for this browser, kept for EMAIL_SIGN_IN_SECONDS. Set whatever the
    address, so the answer cannot tell accounts apart. (``next_path`` must be safe already.)"""
    nonce = secrets.token_urlsafe(32)
    session[_session_key(kind)] = {
        "nonce": nonce,
        "email": email,
        "remember": remember,
        "next": next_path,
        "expires": utcnow().timestamp() + current_app.config["EMAIL_SIGN_IN_SECONDS"],
    }
    return Requested(nonce, email, remember, next_path)


def requested_here(kind: EmailSignInKind) -> Requested | None:
    """This browser's pending request of ``kind``, if it has one that has not expired."""
    state = session.get(_session_key(kind))
    if not isinstance(state, dict):
        return None
    try:
        if utcnow().timestamp() > float(state["expires"]):
            return None
        return Requested(
            str(state["nonce"]),
            str(state["email"]),
            bool(state.get("remember")),
            str(state.get("next") or ""),
        )
    except (KeyError, TypeError, ValueError):
        return None


def forget_request(kind: EmailSignInKind) -> None:
    session.pop(_session_key(kind), None)


def _session_key(kind: EmailSignInKind) -> str:
    return f"{kind.value}_pending"


def add_pending(
    db: Session, user: User, kind: EmailSignInKind, secret_hash: str, nonce: str
) -> EmailSignIn:
    """Store a new code or link for the browser holding ``nonce``; the older ones of that
    kind for the same browser die (only the newest mail works). The caller commits."""
    browser = sha256(nonce)
    db.execute(
        delete(EmailSignIn)
        .where(
            EmailSignIn.user_id == user.id,
            EmailSignIn.kind == kind.value,
            EmailSignIn.browser_hash == browser,
        )
        .execution_options(synchronize_session=False)
    )
    now = utcnow()
    pending = EmailSignIn(
        user_id=user.id,
        kind=kind.value,
        secret_hash=secret_hash,
        browser_hash=browser,
        created_at=now,
        expires_at=now + timedelta(seconds=current_app.config["EMAIL_SIGN_IN_SECONDS"]),
    )
    db.add(pending)
    return pending


def still_usable(pending: EmailSignIn | None) -> bool:
    """Unused, unexpired, and its account still takes sign-in by mail at that address."""
    return (
        pending is not None
        and pending.used_at is None
        and pending.expires_at > utcnow()
        and may_sign_in_by_mail(pending.user)
    )


def spend(db: Session, pending: EmailSignIn) -> bool:
    """Mark a code or link used. Of two requests that present it at once, exactly one
    gets True: the UPDATE only changes a row nobody has used yet."""
    used = rows_changed(
        db,
        update(EmailSignIn)
        .where(EmailSignIn.id == pending.id, EmailSignIn.used_at.is_(None))
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False),
    )
    return used == 1


def revoke_pending(db: Session, user_id: int) -> None:
    """Every code and link in flight stops working (password reset, methods turned off)."""
    db.execute(
        delete(EmailSignIn)
        .where(EmailSignIn.user_id == user_id, EmailSignIn.used_at.is_(None))
        .execution_options(synchronize_session=False)
    )
