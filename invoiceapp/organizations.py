"""Organizations as a domain: slugs, the free plan's member cap, invitations, ownership.

No HTTP and no policy here. Views decide *who* may act (authorize()); these helpers do
the work so that it stays correct when two requests race. A change to members, seats or
the plan first takes the organization's lock (lock_organization), then reads again what
the decision rested on (recheck_roles, the plan, the counts); the writes themselves are
conditional too (still the role that was read), and the caller commits once.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata
from datetime import datetime, timedelta

from sqlalchemy import Select, delete, event, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .authn.access_tokens import revoke_member_tokens
from .db import rows_changed, utcnow
from .models import Invitation, Membership, Organization, Plan, Role, User, UserSession

# Members plus pending invitations a free organization may have.
FREE_PLAN_MEMBER_LIMIT = 3

MAX_SLUG_LENGTH = 64
# Slugs that fixed routes (/orgs/new, /orgs/switch) would shadow.
RESERVED_SLUGS = frozenset({"new", "switch"})
# Two requests racing for the same slug: the loser tries the next free one.
SLUG_ATTEMPTS = 5

# secrets.token_urlsafe(32) is 43 URL-safe characters; anything else was never ours.
INVITATION_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


# ---------------------------------------------------------------------------
# Slugs
# ---------------------------------------------------------------------------

# Latin letters that do not decompose into a base letter plus accents.
_LATIN_LETTERS = str.maketrans(
    {"æ": "ae", "ø": "o", "ß": "ss", "œ": "oe", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i"}
)


def slug_base(name: str) -> str:
    """The ASCII skeleton of a name: "Ünïcorn & Co." becomes "unicorn-co"; none: "org"."""
    latin = unicodedata.normalize("NFKD", name.lower().translate(_LATIN_LETTERS))
    ascii_text = latin.encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")
    return slug[:MAX_SLUG_LENGTH].rstrip("-") or "org"


def _candidate(base: str, number: int) -> str:
    suffix = "" if number == 1 else f"-{number}"
    return base[: MAX_SLUG_LENGTH - len(suffix)].rstrip("-") + suffix


def unique_slug(db: Session, name: str) -> str:
    """The name's slug, or the first of slug-2, slug-3, ... that no organization has.

    Unique at the time of asking; the unique constraint decides under a race, and
    create_organization() then asks again.
    """
    base = slug_base(name)
    # Every candidate starts with the base shortened for the longest plausible suffix.
    prefix = base[: MAX_SLUG_LENGTH - 8]
    taken = set(db.scalars(select(Organization.slug).where(Organization.slug.like(prefix + "%"))))
    taken |= RESERVED_SLUGS
    number = 1
    while _candidate(base, number) in taken:
        number += 1
    return _candidate(base, number)


def create_organization(db: Session, name: str, owner: User) -> Organization:
    """A new free organization with ``owner`` as its owner, flushed; the caller commits.

    Nothing else may be pending in ``db``: a slug collision rolls the session back.
    """
    for _attempt in range(SLUG_ATTEMPTS):
        organization = Organization(slug=unique_slug(db, name), name=name, plan=Plan.FREE.value)
        db.add(organization)
        try:
            db.flush()
        except IntegrityError:
            db.rollback()  # someone took the slug a moment ago; look again
            continue
        db.add(Membership(user_id=owner.id, organization_id=organization.id, role=Role.OWNER.value))
        db.flush()
        return organization
    raise RuntimeError("could not find a free organization slug")  # pragma: no cover


# ---------------------------------------------------------------------------
# Seats: members plus pending invitations
# ---------------------------------------------------------------------------


def lock_organization(db: Session, organization: Organization) -> Organization:
    """Take this organization's write lock for the rest of the transaction, then re-read it.

    Seat counts and ownership are decided by reading first and writing after. Without a
    lock, two requests both read "one seat left" (or "she is a plain member") and both
    write. So every membership, invitation and plan change calls this first, and re-reads
    what it decides on after it: the plan, the roles, the counts.

    PostgreSQL: SELECT … FOR NO KEY UPDATE on the organization's row. Writers to the same
    organization queue here; the re-read then sees whatever the one before them committed.
    (NO KEY: rows that merely point at the organization, such as a new invoice, need not
    wait for it.)
    SQLite: it allows one writer for the whole database, but an ordinary transaction takes
    that lock only at its first write, after the reads. BEGIN IMMEDIATE takes it now.
    """
    if db.get_bind().dialect.name == "sqlite":
        _begin_immediate(db)
    return db.scalars(
        select(Organization)
        .where(Organization.id == organization.id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)  # the plan may have changed meanwhile
    ).one()


def _begin_immediate(db: Session) -> None:
    """SQLite's write lock, now. Python's sqlite3 opens a transaction only before a write,
    so none is open here unless this request already wrote (and so holds the lock)."""
    connection = db.connection()
    raw = connection.connection.dbapi_connection
    if raw is not None and not raw.in_transaction:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def member_count(db: Session, organization_id: int) -> int:
    return (
        db.scalar(
            select(func.count())
            .select_from(Membership)
            .where(Membership.organization_id == organization_id)
        )
        or 0
    )


def pending_invitations(organization_id: int) -> Select[Invitation]:
    """Invitations that still hold a seat: not accepted, not revoked, not expired."""
    return select(Invitation).where(
        Invitation.organization_id == organization_id,
        Invitation.accepted_at.is_(None),
        Invitation.revoked_at.is_(None),
        Invitation.expires_at > utcnow(),
    )


def seats_in_use(db: Session, organization_id: int, *, except_email: str | None = None) -> int:
    """Members plus pending invitations; ``except_email``'s invitation is being replaced."""
    pending = pending_invitations(organization_id)
    if except_email is not None:
        pending = pending.where(Invitation.email != except_email)
    invited = db.scalar(select(func.count()).select_from(pending.subquery())) or 0
    return member_count(db, organization_id) + invited


def has_room_for_invitation(db: Session, organization: Organization, email: str) -> bool:
    """A free organization may not grow past FREE_PLAN_MEMBER_LIMIT, invitations included."""
    if organization.plan != Plan.FREE:
        return True
    return seats_in_use(db, organization.id, except_email=email) < FREE_PLAN_MEMBER_LIMIT


def has_room_for_member(db: Session, organization: Organization) -> bool:
    """At acceptance: the invitation's seat was counted when it was sent, but the plan
    may have changed since, so only members count here (first come, first served)."""
    if organization.plan != Plan.FREE:
        return True
    return member_count(db, organization.id) < FREE_PLAN_MEMBER_LIMIT


def fits_free_plan(db: Session, organization_id: int) -> bool:
    """Whether a downgrade to free would leave the organization within the cap."""
    return seats_in_use(db, organization_id) <= FREE_PLAN_MEMBER_LIMIT


# ---------------------------------------------------------------------------
# Memberships and sessions
# ---------------------------------------------------------------------------


def membership_of(db: Session, organization_id: int, user_id: int) -> Membership | None:
    return db.scalar(
        select(Membership).where(
            Membership.organization_id == organization_id, Membership.user_id == user_id
        )
    )


def is_member_by_email(db: Session, organization_id: int, email: str) -> bool:
    found = db.scalar(
        select(Membership.id)
        .join(User, User.id == Membership.user_id)
        .where(Membership.organization_id == organization_id, User.email == email)
    )
    return found is not None


def forget_active_organization(db: Session, user_id: int, organization_id: int) -> None:
    """Every session of ``user_id`` working in the organization stops pointing at it."""
    db.execute(
        update(UserSession)
        .where(
            UserSession.user_id == user_id,
            UserSession.active_organization_id == organization_id,
        )
        .values(active_organization_id=None)
        .execution_options(synchronize_session="fetch")
    )


class MembershipChanged(Exception):
    """Someone changed the roles or members this request decided on, after it read them.

    The view rolls back and answers 409: nothing it meant to write has been written.
    """


class OwnershipChanged(MembershipChanged):
    """The owner or the chosen member changed while the transfer was being made."""


def recheck_roles(db: Session, organization_id: int, expected: dict[int, str | None]) -> None:
    """After lock_organization(): each user still has the role authorize() was given.

    ``expected`` maps user ids to the role read before the lock (None: not a member). The
    policy's answer was about those roles; if one moved, the answer may be wrong.
    """
    rows = db.execute(
        select(Membership.user_id, Membership.role).where(
            Membership.organization_id == organization_id,
            Membership.user_id.in_(list(expected)),
        )
    )
    now: dict[int, str] = {user_id: role for user_id, role in rows}
    for user_id, role in expected.items():
        if now.get(user_id) != role:
            raise MembershipChanged(f"user {user_id}: role {role} became {now.get(user_id)}")


def set_role(db: Session, membership: Membership, *, from_role: str, to_role: str) -> None:
    """One conditional UPDATE: only when the membership still has ``from_role``."""
    changed = rows_changed(
        db,
        update(Membership)
        .where(Membership.id == membership.id, Membership.role == from_role)
        .values(role=to_role)
        .execution_options(synchronize_session=False),
    )
    if changed != 1:
        raise OwnershipChanged(f"membership {membership.id} no longer has role {from_role}")
    membership.role = to_role
    _check_owner_at_commit(db, membership.organization_id)


def remove_membership(db: Session, membership: Membership, *, role: str) -> None:
    """Delete one membership, only if it still has ``role``; end its reach at once.

    Their browsers stop working in the organization (roles are read again per request),
    and their API tokens for it are revoked: a token must not come back to life if the
    person is invited again later.
    """
    deleted = rows_changed(
        db,
        delete(Membership)
        .where(Membership.id == membership.id, Membership.role == role)
        .execution_options(synchronize_session=False),
    )
    if deleted != 1:
        raise MembershipChanged(f"membership {membership.id} no longer has role {role}")
    forget_active_organization(db, membership.user_id, membership.organization_id)
    revoke_member_tokens(db, membership.user_id, membership.organization_id)
    _check_owner_at_commit(db, membership.organization_id)


# ---------------------------------------------------------------------------
# Exactly one owner
# ---------------------------------------------------------------------------
#
# At most one: the database refuses a second (a partial unique index on memberships,
# ix_memberships_one_owner). At least one: checked here, at commit, for every
# organization whose memberships this transaction changed. A check at commit and not
# per statement, because a transfer passes through "no owner" between its two UPDATEs
# (demote first, or the index would see two owners), and SQLite has no deferred
# constraints. The conditional writes above already refuse every race we know of;
# this check is what stops the one we have not thought of.

_OWNER_CHECKS = "organizations_to_check_for_an_owner"


def _check_owner_at_commit(db: Session, organization_id: int) -> None:
    db.info.setdefault(_OWNER_CHECKS, set()).add(organization_id)


@event.listens_for(Session, "before_commit")
def _exactly_one_owner(db: Session) -> None:
    organization_ids = db.info.pop(_OWNER_CHECKS, set())
    if not organization_ids:
        return
    db.flush()
    for organization_id in sorted(organization_ids):
        owners = db.scalar(
            select(func.count())
            .select_from(Membership)
            .where(
                Membership.organization_id == organization_id,
                Membership.role == Role.OWNER.value,
            )
        )
        if owners != 1:
            raise OwnershipChanged(f"organization {organization_id} would have {owners} owners")


@event.listens_for(Session, "after_rollback")
def _forget_owner_checks(db: Session) -> None:
    db.info.pop(_OWNER_CHECKS, None)


def transfer_ownership(db: Session, current_owner: Membership, new_owner: Membership) -> None:
    """The owner becomes an admin and ``new_owner`` the owner, in the caller's transaction.

    Demoting first means the organization never has two owners, even mid-transaction;
    if the second step fails the caller rolls back and the old owner stays owner.
    Of two simultaneous transfers, only one finds the owner still an owner.
    """
    set_role(db, current_owner, from_role=Role.OWNER.value, to_role=Role.ADMIN.value)
    set_role(db, new_owner, from_role=new_owner.role, to_role=Role.OWNER.value)


# ---------------------------------------------------------------------------
# Invitations
# ---------------------------------------------------------------------------


def invitation_token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def issue_invitation_token(
    invitation: Invitation, lifetime_seconds: int, *, now: datetime | None = None
) -> str:
    """A fresh link for ``invitation`` (new or resent); returns the raw token for the mail.

    Only the SHA-256 is stored, so a copy of the table holds no working links.
    """
    raw = secrets.token_urlsafe(32)
    invitation.token_hash = invitation_token_hash(raw)
    invitation.expires_at = (now or utcnow()) + timedelta(seconds=lifetime_seconds)
    return raw


def new_invitation(
    db: Session,
    organization: Organization,
    *,
    email: str,
    role: str,
    invited_by: User,
    lifetime_seconds: int,
) -> tuple[Invitation, str]:
    """Revoke any pending invitation to ``email`` here, then add a new one (caller commits)."""
    revoke_pending_invitations(db, organization.id, email)
    now = utcnow()
    invitation = Invitation(
        public_id=secrets.token_hex(8),
        organization_id=organization.id,
        email=email,
        role=role,
        invited_by_id=invited_by.id,
        created_at=now,
    )
    raw = issue_invitation_token(invitation, lifetime_seconds, now=now)
    db.add(invitation)
    db.flush()
    return invitation, raw


def revoke_pending_invitations(db: Session, organization_id: int, email: str) -> int:
    """An address has at most one live invitation per organization: the newest."""
    return rows_changed(
        db,
        update(Invitation)
        .where(
            Invitation.organization_id == organization_id,
            Invitation.email == email,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session="fetch"),
    )


def revoke_invitation(db: Session, invitation: Invitation) -> bool:
    """Revoke one invitation, unless it was accepted or revoked a moment ago."""
    now = utcnow()
    revoked = rows_changed(
        db,
        update(Invitation)
        .where(
            Invitation.id == invitation.id,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
        )
        .values(revoked_at=now)
        .execution_options(synchronize_session=False),
    )
    if revoked == 1:
        invitation.revoked_at = now
    return revoked == 1


def find_usable_invitation(db: Session, raw: object) -> Invitation | None:
    """The invitation behind a mailed token, if it is well formed, ours, pending and
    unexpired; else None, without saying which (no oracle for old tokens)."""
    if not isinstance(raw, str) or not INVITATION_TOKEN_SHAPE.fullmatch(raw):
        return None
    invitation = db.scalar(
        select(Invitation).where(Invitation.token_hash == invitation_token_hash(raw))
    )
    if invitation is None or not invitation.pending or invitation.expires_at <= utcnow():
        return None
    if invitation.role == Role.OWNER:
        return None  # one owner per organization: ownership moves only by a transfer
    return invitation


def claim_invitation(db: Session, invitation: Invitation) -> bool:
    """Mark it accepted with one conditional UPDATE: of two simultaneous accepts, one wins.

    The caller adds the membership and commits both together.
    """
    now = utcnow()
    claimed = rows_changed(
        db,
        update(Invitation)
        .where(
            Invitation.id == invitation.id,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
            Invitation.expires_at > now,
        )
        .values(accepted_at=now)
        .execution_options(synchronize_session=False),
    )
    if claimed == 1:
        invitation.accepted_at = now
    return claimed == 1
