"""Sign in with a one-time code sent by email: proof that you read the account's mailbox.

The code is six random digits, lives EMAIL_SIGN_IN_SECONDS (10 minutes), works once and
only in the browser that asked for it (mailed_sign_in.py). Six digits are a million
possibilities, so guessing is what to stop:

- each code takes EMAIL_CODE_MAX_TRIES wrong tries, then it is dead (counters.py, one
  conditional UPDATE per try, so a burst cannot get more checks than that);
- per account, failed tries slow down like wrong passwords, counted per kind of client
  (devices.py), so a stranger's guesses never lock the owner's known browser out;
- and the sign-in rate limits (Flask-Limiter) apply, per client and per account.

Only a keyed digest of the code is stored (HMAC with a key derived from SECRET_KEY, over
the browser's nonce and the code): a copy of the table alone cannot be searched through
a million candidates.

A code by email is a first factor, like a password: with an authenticator app set up,
the second step still follows. The session records the proof "email_code".
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..db import utcnow
from ..models import EmailSignIn, EmailSignInKind, User
from . import counters
from .mailed_sign_in import add_pending, sha256, spend, still_usable

KIND = EmailSignInKind.CODE
CODE_DIGITS = 6
CODE_SHAPE = re.compile(r"[0-9]{6}")


def new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def normalise_code(typed: str) -> str:
    """People copy codes with spaces or dashes ("123 456"): only the digits count."""
    return "".join(char for char in typed if char not in " -\t")[:32]


def _digest(nonce: str, code: str) -> str:
    key = hashlib.sha256(b"email-code:" + current_app.config["SECRET_KEY"].encode()).digest()
    return hmac.new(key, f"{nonce}:{code}".encode(), hashlib.sha256).hexdigest()


def issue_code(db: Session, user: User, nonce: str) -> str:
    """A new code for ``user``, for the browser holding ``nonce``; returns the code (for
    the mail only). The caller commits before the mail leaves."""
    code = new_code()
    add_pending(db, user, KIND, _digest(nonce, code), nonce)
    return code


class Refused(enum.Enum):
    """Why a typed code did not sign in (the page says the same for all but DEAD)."""

    WRONG = "wrong"  # a live code, but not this one
    DEAD = "dead"  # no live code for this browser: expired, used, tries used up, none sent


@dataclass(frozen=True)
class Accepted:
    user: User


def pending_code(db: Session, nonce: str) -> EmailSignIn | None:
    """The newest live code asked for by the browser holding ``nonce``."""
    pending = db.scalar(
        select(EmailSignIn)
        .where(
            EmailSignIn.kind == KIND.value,
            EmailSignIn.browser_hash == sha256(nonce),
            EmailSignIn.used_at.is_(None),
            EmailSignIn.expires_at > utcnow(),
        )
        .order_by(EmailSignIn.id.desc())
        .limit(1)
    )
    return pending if still_usable(pending) else None


def check_code(db: Session, nonce: str, email: str, typed: str) -> Accepted | Refused:
    """Take one try at this browser's code. Commits the try before comparing, and the use."""
    pending = pending_code(db, nonce)
    if pending is None or pending.user.email != email:
        return Refused.DEAD
    if counters.claim_email_code_try(db, pending) is None:
        db.commit()
        return Refused.DEAD
    db.commit()
    code = normalise_code(typed)
    right = CODE_SHAPE.fullmatch(code) is not None and hmac.compare_digest(
        pending.secret_hash, _digest(nonce, code)
    )
    if not right:
        return Refused.WRONG
    # Of two simultaneous right answers, one uses the code up.
    if not spend(db, pending):
        return Refused.DEAD
    return Accepted(pending.user)
