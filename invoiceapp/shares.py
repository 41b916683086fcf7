"""Shares as a domain: one customer's invoices shared with a person outside the organization.

A share starts as a mailed, single-use link (like an invitation: only the token's SHA-256
is stored). Accepted by the signed-in, verified owner of the address, it becomes a *grant*
to that user: read (or read and mark paid) the invoices of that one customer, until it
expires or is revoked. The grants a user holds are read once per request with the rest of
the principal (invoiceapp.principal) and are then plain inputs: the scope query
(invoiceapp.authz.scope) and can() (invoiceapp.authz.policy) read them, nothing else.

No HTTP and no policy here; the pages are invoiceapp.views.shares.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session, aliased

from .db import get_db, rows_changed, utcnow
from .models import Organization, Share, User

# secrets.token_urlsafe(32) is 43 URL-safe characters; anything else was never ours.
SHARE_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")
# How long a share may last, in days: the form's bounds.
MIN_SHARE_DAYS, MAX_SHARE_DAYS, DEFAULT_SHARE_DAYS = 1, 365, 30


@dataclass(frozen=True)
class Grant:
    """One accepted share, as the policy sees it: what, where, from whom, until when."""

    share_id: str  # the share's public id
    organization_id: int
    customer: str
    access: str  # ShareAccess: "read" or "read_mark_paid"
    shared_by: str  # the sharer's display name, for "your share from Ada …"
    expires_at: datetime
    revoked_at: datetime | None = None

    def live(self, now: datetime) -> bool:
        """Expired or revoked grants stop at once, whatever the caller still holds."""
        return self.revoked_at is None and now < self.expires_at

    def covers(self, organization_id: int, customer: str) -> bool:
        return self.organization_id == organization_id and self.customer == customer


_Sharer = aliased(User)
# The live grants of one user, with the sharer's name: one statement per request, like the
# memberships (built once with bound parameters, since it runs on every signed-in page).
_GRANTS = (
    select(Share, _Sharer.display_name)
    .outerjoin(_Sharer, _Sharer.id == Share.shared_by_id)
    .where(
        Share.guest_id == bindparam("user_id"),
        Share.accepted_at.is_not(None),
        Share.revoked_at.is_(None),
        Share.expires_at > bindparam("now"),
    )
    .order_by(Share.organization_id, Share.customer, Share.id)
)


def grants_of(user: User) -> tuple[Grant, ...]:
    """The user's grants as they are now: a revoked or expired one is gone next request."""
    rows = get_db().execute(_GRANTS, {"user_id": user.id, "now": utcnow()})
    return tuple(
        Grant(
            share_id=share.public_id,
            organization_id=share.organization_id,
            customer=share.customer,
            access=share.access,
            shared_by=name or "a former member",
            expires_at=share.expires_at,
        )
        for share, name in rows
    )


def share_token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def new_share(
    db: Session,
    organization: Organization,
    *,
    email: str,
    customer: str,
    access: str,
    days: int,
    shared_by: User,
) -> tuple[Share, str]:
    """Add a share (the caller commits); returns it and the raw token for the mail."""
    raw = secrets.token_urlsafe(32)
    now = utcnow()
    share = Share(
        public_id=secrets.token_hex(8),
        organization_id=organization.id,
        customer=customer,
        email=email,
        access=access,
        token_hash=share_token_hash(raw),
        shared_by_id=shared_by.id,
        created_at=now,
        expires_at=now + timedelta(days=days),
    )
    db.add(share)
    db.flush()
    return share, raw


def find_usable_share(db: Session, raw: object) -> Share | None:
    """The share behind a mailed token, if well formed, pending and unexpired; else None,
    without saying which (no oracle for old tokens)."""
    if not isinstance(raw, str) or not SHARE_TOKEN_SHAPE.fullmatch(raw):
        return None
    share = db.scalar(select(Share).where(Share.token_hash == share_token_hash(raw)))
    if share is None or share.accepted_at is not None or share.revoked_at is not None:
        return None
    if share.expires_at <= utcnow():
        return None
    return share


def claim_share(db: Session, share: Share, guest: User) -> bool:
    """Accept with one conditional UPDATE: of two simultaneous accepts, one wins."""
    now = utcnow()
    claimed = rows_changed(
        db,
        update(Share)
        .where(
            Share.id == share.id,
            Share.accepted_at.is_(None),
            Share.revoked_at.is_(None),
            Share.expires_at > now,
        )
        .values(accepted_at=now, guest_id=guest.id)
        .execution_options(synchronize_session=False),
    )
    if claimed == 1:
        share.accepted_at, share.guest_id = now, guest.id
    return claimed == 1


def revoke_share(db: Session, share: Share) -> bool:
    """Revoke, pending or accepted; False when it was revoked a moment ago."""
    now = utcnow()
    revoked = rows_changed(
        db,
        update(Share)
        .where(Share.id == share.id, Share.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False),
    )
    if revoked == 1:
        share.revoked_at = now
    return revoked == 1


def share_state(share: Share, now: datetime) -> str:
    """ "pending", "accepted", "expired" or "revoked": what the sharing page shows."""
    if share.revoked_at is not None:
        return "revoked"
    if share.expires_at <= now:
        return "expired"
    return "accepted" if share.accepted_at is not None else "pending"
