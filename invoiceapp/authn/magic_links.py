"""Magic links: sign in by opening a link sent to the account's verified address.

A link in mail is opened by more than its reader: scanners, previewers and antivirus
gateways fetch every link in a message. So opening /sign-in/link/<token> only shows a
page with one button; the button's POST signs in (CONTRACT section 8).

The risk of a link is that it travels: forwarded by mistake, or phished ("send me the
link you just got"). Here a link signs in only the browser that asked for it: asking
leaves a random nonce in that browser's signed session cookie, and the link works only
with it (mailed_sign_in.py). Opened anywhere else, the button says so and changes
nothing; the owner can ask for a code or a link where they are. (The other design, a
short code shown on the asking browser and typed where the link was opened, lets a
phisher who asks for the link relay that code too.) Binding does not help when the
phisher asks in their own browser and talks the owner into handing over the link: that
browser asked. The mail warns against forwarding it; an organization can refuse mailed
sign-ins altogether (authz/org_security.py).

The link carries 32 random bytes, stored as their SHA-256; it works once, for
EMAIL_SIGN_IN_SECONDS. A link is a first factor: with an authenticator app set up the
second step follows. The session records the proof "magic_link".
"""

from __future__ import annotations

import enum
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import EmailSignIn, EmailSignInKind, User
from .mailed_sign_in import add_pending, sha256, spend, still_usable

KIND = EmailSignInKind.LINK
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)


def issue_link_token(db: Session, user: User, nonce: str) -> str:
    """A new link token for the browser holding ``nonce``; the raw token is for the mail
    only. The caller commits before the mail leaves."""
    raw = secrets.token_urlsafe(32)
    add_pending(db, user, KIND, sha256(raw), nonce)
    return raw


def usable_link(db: Session, raw: str) -> EmailSignIn | None:
    """The link if it is well formed, ours, unused, unexpired and its account still takes
    sign-in by mail; else None (no detail). Reading only: a GET may call it."""
    if not isinstance(raw, str) or not TOKEN_SHAPE.fullmatch(raw):
        return None
    pending = db.scalar(
        select(EmailSignIn).where(
            EmailSignIn.kind == KIND.value, EmailSignIn.secret_hash == sha256(raw)
        )
    )
    return pending if still_usable(pending) else None


def asked_here(pending: EmailSignIn, nonce: str | None) -> bool:
    """Whether the browser holding ``nonce`` is the one that asked for this link."""
    return nonce is not None and secrets.compare_digest(pending.browser_hash, sha256(nonce))


class Refused(enum.Enum):
    DEAD = "dead"  # not usable: unknown, used, expired
    OTHER_BROWSER = "other_browser"  # usable, but asked for in another browser


@dataclass(frozen=True)
class Accepted:
    user: User


def use_link(db: Session, raw: str, nonce: str | None, email: str | None) -> Accepted | Refused:
    """Spend the link, atomically, if this browser asked for it, for the address the
    account still has (a link mailed to an address since replaced is dead). A link opened
    in another browser is not spent: its owner can still use it where they asked. The
    caller commits."""
    pending = usable_link(db, raw)
    if pending is None or (email is not None and email != pending.user.email):
        return Refused.DEAD
    if not asked_here(pending, nonce):
        return Refused.OTHER_BROWSER
    if not spend(db, pending):
        return Refused.DEAD
    return Accepted(pending.user)
