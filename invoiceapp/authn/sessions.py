"""Server-side sessions: the proof of identity, carried from one request to the next.

The browser holds a random token in an HttpOnly cookie; the database holds only
the token's SHA-256, so a leaked table cannot be replayed as cookies. Deleting
the row signs the browser out at once, wherever the cookie has been copied to.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Flask, Response, current_app, g, request
from sqlalchemy import bindparam, exists, inspect, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm.attributes import set_committed_value

from ..db import commits_so_far, first_read, get_db, utcnow
from ..models import Membership, Organization, Share, User, UserSession
from ..request_locals import request_g, this_app, this_request

# Session proofs that include a second factor (UserSession.proof); the principal and the
# guards on removing a factor both read it.
# A code or link by email ("email_code", "magic_link") is a first factor only, like a
# password: followed by the authenticator step it makes "email_code+totp" and so on.
TWO_FACTOR_PROOFS = frozenset(
    {"password+totp", "password+recovery_code", "passkey"}
    | {f"{first}+{second}" for first in ("email_code", "magic_link")
       for second in ("totp", "recovery_code")}
)  # fmt: skip


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _printable(text: str | None) -> str:
    """Headers are client input: keep control characters (NUL above all) out of the table."""
    return "".join(char for char in text or "" if char.isprintable())


def start_session(user: User, *, remember: bool, proof: str = "password") -> UserSession:
    """Sign ``user`` in with a brand-new token (a fresh id at every sign-in: no fixation).

    ``proof`` says how identity was proven ("password", "password+totp",
    "password+recovery_code", "passkey"): authorization reads it, for organizations that
    require two-factor. Whatever session the browser had before is deleted, and the
    caller commits.
    """
    db = get_db()
    previous = current_session()
    if previous is not None:
        db.delete(previous)
    token = secrets.token_urlsafe(32)
    now = utcnow()
    auth_session = UserSession(
        public_id=secrets.token_hex(8),
        token_hash=_token_hash(token),
        user_id=user.id,
        remember=remember,
        created_at=now,
        last_seen_at=now,
        authenticated_at=now,
        proof=proof,
        ip_address=request.remote_addr,
        user_agent=_printable(request.user_agent.string)[:300] or None,
    )
    db.add(auth_session)
    g.auth_session = auth_session
    g.auth_cookie = ("set", token, remember)
    return auth_session


def end_session() -> None:
    """Sign the current browser out: the row goes, so the cookie is worthless everywhere."""
    auth_session = current_session()
    if auth_session is not None:
        get_db().delete(auth_session)
    g.auth_session = None
    g.auth_cookie = ("clear", "", False)


def mark_reauthenticated(proof: str = "password") -> None:
    """The user just proved it is them again: the session is elevated from now.

    ``proof`` replaces the session's proof: it records how the session was *last* proven,
    so confirming with a password alone makes it a password-only session again (a
    stolen cookie plus a phished password must not inherit an earlier second factor).
    A change of privilege gets a new token (OWASP session management), kept on the same
    row so the active organization and "remember me" survive. The caller commits.
    """
    auth_session = current_session()
    if auth_session is not None:
        auth_session.authenticated_at = utcnow()
        auth_session.proof = proof
        token = secrets.token_urlsafe(32)
        auth_session.token_hash = _token_hash(token)
        g.auth_cookie = ("set", token, auth_session.remember)


# "Not looked up yet" on ``g``, as opposed to None ("looked up: no session"). One read of
# ``g`` (a context-local proxy) instead of a membership test and a read: current_session
# is asked several times per page.
_NOT_YET = object()


def current_session() -> UserSession | None:
    """The session this request's cookie names, looked up once per request."""
    auth_session = request_g().get("auth_session", _NOT_YET)  # without the proxy: hot
    if auth_session is _NOT_YET:
        return load_session_from_cookie()
    return auth_session


def is_fresh(
    auth_session: UserSession | None, now: datetime | None = None, within: int | None = None
) -> bool:
    """Elevated: a password was entered in this session within FRESH_AGE_SECONDS, or
    within ``within`` seconds when that is shorter (an organization's own window)."""
    if auth_session is None:
        return False
    seconds = current_app.config["FRESH_AGE_SECONDS"]
    if within is not None:
        seconds = min(seconds, within)
    age = (now or utcnow()) - auth_session.authenticated_at
    return age <= timedelta(seconds=seconds)


def _lifetimes(auth_session: UserSession) -> tuple[timedelta, timedelta]:
    config = current_app.config
    if auth_session.remember:
        idle, absolute = config["REMEMBER_IDLE_SECONDS"], config["REMEMBER_ABSOLUTE_SECONDS"]
    else:
        idle, absolute = config["SESSION_IDLE_SECONDS"], config["SESSION_ABSOLUTE_SECONDS"]
    return timedelta(seconds=idle), timedelta(seconds=absolute)


# The session a cookie names, its user, the user's roles with their organizations, and
# whether the user holds any live share (invoiceapp.shares): everything the principal needs,
# in one statement, one row per membership. Every signed-in request starts here, so it is
# built once with bound parameters (see bench/throughput.py); the EXISTS lets the principal
# skip the shares statement for the many users who hold none.
_HAS_LIVE_SHARE = (
    exists()
    .where(
        Share.guest_id == UserSession.user_id,
        Share.accepted_at.is_not(None),
        Share.revoked_at.is_(None),
        Share.expires_at > bindparam("now"),
    )
    .label("has_live_share")
)
# The user is an entity of its own in the row rather than contains_eager(UserSession.user):
# the ORM then skips the joined-eager machinery (0.014 ms of CPU per request on SQLite);
# _look_up_cookie hands the user to ``auth_session.user`` itself.
_SESSION_USER_AND_ROLES = (
    select(User, UserSession, Membership.role, Organization, _HAS_LIVE_SHARE)
    .select_from(UserSession)
    .join(User, User.id == UserSession.user_id)
    .outerjoin(Membership, Membership.user_id == UserSession.user_id)
    .outerjoin(Organization, Organization.id == Membership.organization_id)
    .where(UserSession.token_hash == bindparam("token_hash"))
    .order_by(Membership.id)
)


@dataclass(frozen=True)
class ReadWithSession:
    """What the session's statement read for the principal (invoiceapp.principal)."""

    user_id: int
    memberships: tuple[tuple[str, Organization], ...]  # (role, organization), as joined
    has_live_share: bool
    commits: int  # the request's commits when it was read (invoiceapp.db.commits_so_far)


def read_with_session(user_id: int) -> ReadWithSession | None:
    """The roles and the shares hint read with this request's session, once, and only
    while nothing was committed since: the first caller takes them, so a principal built
    again later (view-as started), or first built after this request changed a membership
    or accepted a share, reads the database afresh."""
    read: ReadWithSession | None = g.pop("read_with_session", None)
    if read is None or read.user_id != user_id or read.commits != commits_so_far(get_db()):
        return None
    return read


def load_session_from_cookie() -> UserSession | None:
    """The session the request's cookie names, looked up once per request: a gate may ask
    (current_session) before Flask-Login does, on a page open to everyone, and a second
    statement would read the same row again. A session deleted since (signed out, ended)
    counts as none. Expired or unknown tokens count as no session at all."""
    request_globals = request_g()  # ``g`` without its proxy (invoiceapp.request_locals)
    auth_session: UserSession | None = request_globals.get("cookie_session", _NOT_YET)
    if auth_session is _NOT_YET:
        # Just read from the database: it cannot have been deleted since, so no need to ask
        # the ORM (a few microseconds); a later call in this request does ask.
        auth_session = request_globals.cookie_session = _look_up_cookie()
    elif auth_session is not None and _deleted(auth_session):
        auth_session = None
    request_globals.auth_session = auth_session
    return auth_session


def _deleted(auth_session: UserSession) -> bool:
    state = inspect(auth_session)
    return state.deleted or state.was_deleted or auth_session in get_db().deleted


def _look_up_cookie() -> UserSession | None:
    config = this_app().config
    token = this_request().cookies.get(config["AUTH_COOKIE_NAME"])
    request_globals = request_g()
    request_globals.auth_session = None
    if not token or len(token) > 128:
        return None
    db = get_db()
    now = utcnow()
    parameters = {"token_hash": _token_hash(token), "now": now}
    rows = first_read(db, lambda: db.execute(_SESSION_USER_AND_ROLES, parameters).all())
    if not rows:
        request_globals.auth_cookie = ("clear", "", False)
        return None
    user, auth_session = rows[0][0], rows[0][1]
    # What contains_eager would have done: ``auth_session.user`` is this user, no statement.
    set_committed_value(auth_session, "user", user)
    idle, absolute = _lifetimes(auth_session)
    if now - auth_session.last_seen_at > idle or now - auth_session.created_at > absolute:
        db.delete(auth_session)
        db.commit()
        request_globals.auth_cookie = ("clear", "", False)
        return None
    touch_every = timedelta(seconds=config["SESSION_TOUCH_SECONDS"])
    if now - auth_session.last_seen_at > touch_every:
        auth_session.last_seen_at = now
        try:
            db.commit()
        except OperationalError:
            # Another writer holds the database. "Last seen" can wait for the next
            # request; a page that only reads should not fail for it.
            db.rollback()
    request_globals.read_with_session = ReadWithSession(
        user_id=auth_session.user_id,
        memberships=tuple((role, org) for _, _, role, org, _ in rows if org is not None),
        has_live_share=bool(rows[0][4]),
        commits=commits_so_far(db),
    )
    request_globals.auth_session = auth_session
    return auth_session


def _write_auth_cookie(response: Response) -> Response:
    action = g.get("auth_cookie")
    if action is None:
        return response
    config = current_app.config
    kind, token, remember = action
    if kind == "clear":
        response.delete_cookie(
            config["AUTH_COOKIE_NAME"],
            secure=config["AUTH_COOKIE_SECURE"],
            httponly=True,
            samesite="Lax",
        )
    else:
        response.set_cookie(
            config["AUTH_COOKIE_NAME"],
            token,
            # Without "remember me" the cookie dies with the browser.
            max_age=config["REMEMBER_ABSOLUTE_SECONDS"] if remember else None,
            secure=config["AUTH_COOKIE_SECURE"],
            httponly=True,
            samesite="Lax",
        )
    return response


def init_sessions(app: Flask) -> None:
    app.after_request(_write_auth_cookie)
