"""Personal access tokens: a second way to prove who is calling, for scripts and the API.

A token is ``ia_pat_`` followed by 32 random bytes (43 URL-safe characters). It is shown
once; the database keeps only its SHA-256, like session cookies, so a copy of the table
cannot be replayed. A token belongs to one user and one organization and carries a scope
(read or write); what it may do is still decided by the policy, which reads the scope
(invoiceapp.authz.policy._narrowed). This module only answers "who is this?".

Tokens are read from ``Authorization: Bearer …`` on /api/ only: a page never accepts one,
so a token pasted into a script can never drive the HTML forms.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app, g, request
from sqlalchemy import and_, bindparam, func, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from ..db import commits_so_far, first_read, get_db, rows_changed, utcnow
from ..models import Membership, Organization, PersonalAccessToken, TokenScope, User

TOKEN_PREFIX = "ia_pat_"
# secrets.token_urlsafe(32) is 43 characters; anything else was never issued here.
TOKEN_SHAPE = re.compile(r"ia_pat_[A-Za-z0-9_-]{43}")
MIN_EXPIRES_DAYS, MAX_EXPIRES_DAYS = 1, 90
MAX_NAME_LENGTH = 100

# Why a presented token was refused. RFC 6750 gives every refusal one error code,
# "invalid_token", on purpose: the caller learns nothing about which check failed.
INVALID_TOKEN = "invalid_token"


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def issue_access_token(
    db: Session,
    user: User,
    organization: Organization,
    *,
    name: str,
    scope: TokenScope,
    expires_days: int,
) -> tuple[PersonalAccessToken, str]:
    """A new token; returns the row and the raw token (to show once). The caller commits."""
    if not MIN_EXPIRES_DAYS <= expires_days <= MAX_EXPIRES_DAYS:
        raise ValueError(f"expires_days must be {MIN_EXPIRES_DAYS}–{MAX_EXPIRES_DAYS}")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    token = PersonalAccessToken(
        public_id="pat_" + secrets.token_hex(8),
        user_id=user.id,
        organization_id=organization.id,
        name=name,
        scope=scope.value,
        token_hash=token_hash(raw),
        created_at=now,
        expires_at=now + timedelta(days=expires_days),
    )
    db.add(token)
    return token, raw


def live_token_count(db: Session, user_id: int) -> int:
    """How many of the user's tokens still work (or would, in a member organization).

    Takes the user's write lock first (lock_user), so that two requests cannot both count
    "one left" and both make a token; the caller then inserts and commits.
    """
    lock_user(db, user_id)
    return db.scalar(
        select(func.count())
        .select_from(PersonalAccessToken)
        .where(
            PersonalAccessToken.user_id == user_id,
            PersonalAccessToken.revoked_at.is_(None),
            PersonalAccessToken.expires_at > utcnow(),
        )
    ) or 0


def lock_user(db: Session, user_id: int) -> None:
    """This user's write lock, for the rest of the transaction: a count read after it is
    still true when the insert that depends on it commits.

    PostgreSQL: SELECT … FOR NO KEY UPDATE on the user's row (requests for other users do
    not wait). SQLite allows one writer for the whole database, and an ordinary
    transaction takes that lock only at its first write: BEGIN IMMEDIATE takes it now.
    """
    if db.get_bind().dialect.name == "sqlite":
        connection = db.connection()
        raw = connection.connection.dbapi_connection
        if raw is not None and not raw.in_transaction:  # else this request already writes
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        return
    db.execute(select(User.id).where(User.id == user_id).with_for_update(key_share=True))


def revoke_access_token(token: PersonalAccessToken) -> None:
    """Stops working on the very next request: every request looks the token up again."""
    if token.revoked_at is None:
        token.revoked_at = utcnow()


def revoke_member_tokens(db: Session, user_id: int, organization_id: int) -> int:
    """Revoke every live token of ``user_id`` for one organization (they left or were removed).

    A token whose user has no role in its organization already reaches nothing; revoking
    it as well means it stays dead if they are invited back. Returns how many.
    """
    return rows_changed(
        db,
        update(PersonalAccessToken)
        .where(
            PersonalAccessToken.user_id == user_id,
            PersonalAccessToken.organization_id == organization_id,
            PersonalAccessToken.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session="fetch"),
    )


def is_usable(token: PersonalAccessToken) -> bool:
    return token.revoked_at is None and token.expires_at > utcnow()


def bearer_credentials() -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header on an API path, else None.

    Any other scheme (or no header) is not a token request; the cookie is used instead.
    """
    if not request.path.startswith("/api/"):
        return None
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip()


# The token a bearer header names, its user, its organization and the user's role there (if
# still a member): everything the principal needs, in one statement, as for a session
# (invoiceapp.authn.sessions). It was three: the token, then its user, then the role.
_TOKEN_USER_AND_ROLE = (
    select(User, PersonalAccessToken, Organization, Membership.role)
    .select_from(PersonalAccessToken)
    .join(User, User.id == PersonalAccessToken.user_id)
    .join(Organization, Organization.id == PersonalAccessToken.organization_id)
    .outerjoin(
        Membership,
        and_(
            Membership.user_id == PersonalAccessToken.user_id,
            Membership.organization_id == PersonalAccessToken.organization_id,
        ),
    )
    .where(PersonalAccessToken.token_hash == bindparam("token_hash"))
)


@dataclass(frozen=True)
class ReadWithToken:
    """The role the token's statement read, for the principal (invoiceapp.principal)."""

    user_id: int
    organization: Organization
    role: str | None  # None: no longer a member of the token's organization
    commits: int  # the request's commits when it was read (invoiceapp.db.commits_so_far)


def read_with_token(user_id: int) -> ReadWithToken | None:
    """The role read with this request's token, once, and only while nothing was committed
    since (like invoiceapp.authn.sessions.read_with_session): else None, read it afresh."""
    read: ReadWithToken | None = g.pop("read_with_token", None)
    if read is None or read.user_id != user_id or read.commits != commits_so_far(get_db()):
        return None
    return read


def load_access_token() -> PersonalAccessToken | None:
    """The request's usable token, looked up once per request (None when refused).

    A refusal is remembered on ``g`` so the 401 can say ``error="invalid_token"``.
    """
    if "access_token" in g:
        return g.access_token
    g.access_token = None
    raw = bearer_credentials()
    if raw is None:
        return None
    token: PersonalAccessToken | None = None
    role: str | None = None  # the user's role in the token's organization, if still a member
    if TOKEN_SHAPE.fullmatch(raw):
        db = get_db()
        parameters = {"token_hash": token_hash(raw)}
        # The request's first statement: tried once more if the pooled connection was dead.
        row = first_read(db, lambda: db.execute(_TOKEN_USER_AND_ROLE, parameters).first())
        if row is not None:
            user, token, organization, role = row
            # What a lazy load of each would have found: no statement of their own.
            set_committed_value(token, "user", user)
            set_committed_value(token, "organization", organization)
    if token is None or not is_usable(token):
        g.token_problem = INVALID_TOKEN
        return None
    _touch(token)
    # Counted after the touch, as the session's statement does: that commit wrote only
    # "last used", so the role read before it still stands.
    commits = commits_so_far(get_db())
    g.read_with_token = ReadWithToken(token.user_id, token.organization, role, commits)
    g.access_token = token
    return token


def current_access_token() -> PersonalAccessToken | None:
    """The token that authenticated this request, or None (a session, or nobody)."""
    return g.get("access_token")


def presented_invalid_token() -> bool:
    return g.get("token_problem") == INVALID_TOKEN


def _touch(token: PersonalAccessToken) -> None:
    """Record the use for the tokens page, at most once a minute per token."""
    now = utcnow()
    if token.last_used_at is not None and now - token.last_used_at < timedelta(
        seconds=current_app.config["API_TOKEN_TOUCH_SECONDS"]
    ):
        return
    db = get_db()
    token.last_used_at = now
    try:
        db.commit()
    except OperationalError:
        # Another writer holds the database: "last used" can wait for the next request.
        db.rollback()
