"""Security counters kept in the database, each changed by one conditional UPDATE.

A counter that is read, compared and then written back is outrun by a burst: ten
requests all read "2", all pass, and all write "3". Here the comparison sits in the
UPDATE's WHERE clause and the new value comes back with RETURNING, so the database
decides each attempt in turn, on SQLite and PostgreSQL alike, however many workers ask.

Every counter takes its attempt *before* the proof is checked, and a success gives it
back: what is being checked right now counts already, so a burst cannot get more
checks than the budget allows.

- Re-authentication: wrong proofs per session (UserSession.failed_reauthentications);
  at REAUTH_MAX_FAILURES the session ends.
- Second-step codes: wrong codes in a row per account (User.second_factor_failures).
  At TWO_FACTOR_MAX_FAILURES (NIST SP 800-63B: at most 100) authenticator codes are
  refused until a password reset or a recovery code.
- Codes sent by email: wrong tries per code (EmailSignIn.failed_attempts); at
  EMAIL_CODE_MAX_TRIES the code is dead.
- Sign-in slow-down: failed sign-ins per claimed account in a window (SecurityCounter).
  From SIGN_IN_SLOWDOWN_AFTER on, each attempt waits longer than the last (1, 2, 4 …
  seconds, at most SIGN_IN_SLOWDOWN_MAX_SECONDS). Nobody is locked out; guessing slows.

The callers commit, and commit a claimed attempt before checking the proof, so that
other workers see it and no lock is held while a password hash is computed.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, case, delete, literal, not_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from ..db import UTCDateTime, rows_changed, utcnow
from ..models import EmailSignIn, SecurityCounter, User, UserSession

# ---------------------------------------------------------------------------
# Re-authentication, per session
# ---------------------------------------------------------------------------


def claim_reauthentication(db: Session, auth_session: UserSession) -> int | None:
    """Count one more attempt at fresh proof in this session; the count including it.

    None when the session has no attempts left (or is gone): it must end unchecked.
    """
    maximum = current_app.config["REAUTH_MAX_FAILURES"]
    return _count_one_more(db, UserSession, auth_session, "failed_reauthentications", maximum)


def clear_reauthentication(db: Session, auth_session: UserSession) -> None:
    """Right proof: the session starts counting afresh."""
    _start_again(db, UserSession, auth_session, "failed_reauthentications")


# ---------------------------------------------------------------------------
# Second-step codes, per account
# ---------------------------------------------------------------------------


def code_limit() -> int:
    return int(current_app.config["TWO_FACTOR_MAX_FAILURES"])


def claim_code_attempt(db: Session, user: User) -> int | None:
    """Count one more code for this account; the count including it, or None when the
    account already reached the limit (its authenticator codes are locked)."""
    return _count_one_more(db, User, user, "second_factor_failures", code_limit())


def clear_code_failures(db: Session, user: User) -> None:
    """A right code, a recovery code or a password reset: counting starts again."""
    _start_again(db, User, user, "second_factor_failures")


def codes_locked(user: User) -> bool:
    return user.second_factor_failures >= code_limit()


# ---------------------------------------------------------------------------
# Codes sent by email, per code
# ---------------------------------------------------------------------------


def claim_email_code_try(db: Session, pending: EmailSignIn) -> int | None:
    """Count one more try at this mailed code; None when its tries are used up (the code
    is dead: a new one must be asked for). Per account, the sign-in slow-down applies too."""
    maximum = int(current_app.config["EMAIL_CODE_MAX_TRIES"])
    return _count_one_more(db, EmailSignIn, pending, "failed_attempts", maximum)


# ---------------------------------------------------------------------------
# Sign-in slow-down, per claimed account
# ---------------------------------------------------------------------------


def _row_key(name: str) -> str:
    """The row names the counter by a digest: the table holds no email addresses."""
    return hashlib.sha256(name.encode()).hexdigest()


def slowdown_delay(failures: int) -> int:
    """Seconds before the next attempt after ``failures`` in the window: 0 below the
    threshold, then 1, 2, 4, 8 … up to SIGN_IN_SLOWDOWN_MAX_SECONDS."""
    after = current_app.config["SIGN_IN_SLOWDOWN_AFTER"]
    if failures < after:
        return 0
    return min(2 ** min(failures - after, 30), current_app.config["SIGN_IN_SLOWDOWN_MAX_SECONDS"])


def claim_sign_in_attempt(db: Session, name: str) -> int:
    """0 when this attempt may be checked now; else the seconds to wait.

    While slowed down, an attempt takes the one place in the queue by moving
    next_attempt_at ahead (held until its outcome sets the real delay), so a burst
    cannot slip through together.
    """
    now = utcnow()
    counter = SecurityCounter
    slowed = and_(
        counter.failures >= current_app.config["SIGN_IN_SLOWDOWN_AFTER"],
        counter.window_ends_at > now,
    )
    held_until = now + timedelta(seconds=current_app.config["SIGN_IN_SLOWDOWN_MAX_SECONDS"])
    claimed = rows_changed(
        db,
        update(counter)
        .where(
            counter.key == _row_key(name),
            or_(not_(slowed), counter.next_attempt_at.is_(None), counter.next_attempt_at <= now),
        )
        .values(
            next_attempt_at=case(
                (slowed, literal(held_until, UTCDateTime())), else_=counter.next_attempt_at
            )
        )
        .execution_options(synchronize_session=False),
    )
    if claimed == 1:
        return 0
    wait_until = db.scalar(select(counter.next_attempt_at).where(counter.key == _row_key(name)))
    if wait_until is None or wait_until <= now:
        return 0  # no row: nothing has failed for this account lately
    return max(1, math.ceil((wait_until - now).total_seconds()))


def record_sign_in_failure(db: Session, name: str) -> int:
    """Count a failed sign-in in the window (a new window when the last one ended) and
    set when the next attempt may be checked. Returns the failures in the window."""
    now = utcnow()
    window = timedelta(seconds=current_app.config["SIGN_IN_SLOWDOWN_WINDOW_SECONDS"])
    key = _row_key(name)
    _insert_if_missing(db, key, now + window)
    counter = SecurityCounter
    window_over = counter.window_ends_at <= now
    failures = db.scalar(
        update(counter)
        .where(counter.key == key)
        .values(
            failures=case((window_over, 1), else_=counter.failures + 1),
            window_ends_at=case(
                (window_over, literal(now + window, UTCDateTime())), else_=counter.window_ends_at
            ),
        )
        .returning(counter.failures)
        .execution_options(synchronize_session=False)
    )
    assert failures is not None
    delay = slowdown_delay(failures)
    db.execute(
        update(counter)
        .where(counter.key == key)
        .values(next_attempt_at=now + timedelta(seconds=delay) if delay else None)
        .execution_options(synchronize_session=False)
    )
    return failures


def forget_sign_in_failures(db: Session, name: str) -> None:
    """A right password: this account's window of failures (for this kind of client) ends."""
    db.execute(
        delete(SecurityCounter)
        .where(SecurityCounter.key == _row_key(name))
        .execution_options(synchronize_session=False)
    )


def _insert_if_missing(db: Session, key: str, window_ends_at: datetime) -> None:
    """Create the row unless a concurrent request did; a new row also sweeps stale ones."""
    dialect = postgresql if db.get_bind().dialect.name == "postgresql" else sqlite
    created = rows_changed(
        db,
        dialect.insert(SecurityCounter)
        .values(key=key, failures=0, window_ends_at=window_ends_at)
        .on_conflict_do_nothing(index_elements=["key"]),
    )
    if created == 1:
        stale = utcnow() - timedelta(seconds=current_app.config["SIGN_IN_SLOWDOWN_MAX_SECONDS"])
        db.execute(
            delete(SecurityCounter)
            .where(SecurityCounter.window_ends_at < stale)
            .execution_options(synchronize_session=False)
        )


# ---------------------------------------------------------------------------
# The two statements every per-row counter above is made of
# ---------------------------------------------------------------------------


def _count_one_more(
    db: Session,
    model: type[UserSession | User | EmailSignIn],
    row: UserSession | User | EmailSignIn,
    column: str,
    maximum: int,
) -> int | None:
    """One conditional ``UPDATE … SET column = column + 1 WHERE column < maximum RETURNING``.

    The database adds and compares in one step, so a burst on several workers cannot all
    read the same count; None when the count had already reached ``maximum``. (``model``
    is given, not read off ``row``: the row may be Flask-Login's proxy of the user.)
    """
    counter = getattr(model, column)
    count: int | None = db.scalar(
        update(model)
        .where(model.id == row.id, counter < maximum)
        .values({column: counter + 1})
        .returning(counter)
        .execution_options(synchronize_session=False)
    )
    if count is not None:
        set_committed_value(row, column, count)
    return count


def _start_again(
    db: Session, model: type[UserSession | User], row: UserSession | User, column: str
) -> None:
    db.execute(
        update(model)
        .where(model.id == row.id)
        .values({column: 0})
        .execution_options(synchronize_session=False)
    )
    set_committed_value(row, column, 0)
