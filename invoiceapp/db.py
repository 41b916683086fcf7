"""SQLAlchemy 2.0 without a Flask wrapper: one engine per app, one session per request."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar, cast

from flask import Flask, current_app, g, has_request_context, request
from sqlalchemy import MetaData, create_engine, event, make_url
from sqlalchemy.engine import Connection, CursorResult, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.sql import Executable
from sqlalchemy.types import DateTime, TypeDecorator

from .request_locals import request_g

T = TypeVar("T")

# psycopg's "no transaction open" (pq.TransactionStatus.IDLE), without importing the driver.
_IDLE = 0

# Stable constraint names, so Alembic migrations can refer to them on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC and always hands back an aware datetime (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; use utcnow()")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _system_time() -> datetime:
    return datetime.now(UTC)


# Where "now" comes from. Tests replace it (tests/conftest.py, the ``clock`` fixture) to
# prove expiry and freshness without sleeping.
now_source: Callable[[], datetime] = _system_time


def utcnow() -> datetime:
    """The current time, aware and in UTC. Every expiry and freshness check uses this."""
    return now_source()


def rows_changed(db: Session, statement: Executable) -> int:
    """Run an INSERT, UPDATE or DELETE and say how many rows it changed.

    The compare-and-set writes (claim a token, move a version, remove a row once) decide on
    this count. ``Session.execute`` is typed to return a plain ``Result``; for these
    statements it is a ``CursorResult``, which carries ``rowcount``: the cast says so once.
    """
    return cast(CursorResult[Any], db.execute(statement)).rowcount


def make_engine(url: str, *, busy_timeout_seconds: float = 5.0) -> Engine:
    """An engine that survives a busy or restarted database instead of failing with 500s.

    SQLite: write-ahead logging, so readers never wait for a writer, and a busy timeout,
    so writers queue for a while before giving up (invoiceapp.errors turns that into a 503).
    Servers: no "ping" before every use (on PostgreSQL that was one round trip in six per
    page). A connection the server dropped fails its first statement instead; SQLAlchemy
    recognises the disconnect and throws away every pooled connection made before it, so
    the app still recovers by itself after a restart: a request's first statement is tried
    once more on a fresh connection (first_read), and a later one that met the dead
    connection gets a 503 (invoiceapp.errors), the next request a fresh connection.
    Errors never quote a statement's parameters (hide_parameters): a
    traceback in the log must not carry a password hash, a token or a customer's data.
    """
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        engine = create_engine(
            url, connect_args={"timeout": busy_timeout_seconds}, hide_parameters=True
        )

        @event.listens_for(engine, "connect")
        def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            # SQLite ignores foreign keys unless every connection asks for them.
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    connect_args: dict[str, Any] = {}
    if backend == "postgresql":
        from .pg_cursor import DescribedOnDemandCursor

        # Columns described only when read: 0.04 ms less per page (invoiceapp/pg_cursor.py).
        connect_args = {"connect_timeout": 5, "cursor_factory": DescribedOnDemandCursor}
    if backend != "postgresql":
        return create_engine(
            url, pool_pre_ping=False, connect_args=connect_args, hide_parameters=True
        )
    # PostgreSQL: every pooled connection stays in the driver's autocommit mode, set once
    # when it is made, and the transaction is begun by _begin_transactions, just before the
    # first statement that needs one. A GET's session used to switch autocommit on at every
    # checkout and off again at every return (three driver calls, 0.05 ms of CPU a page).
    engine = create_engine(
        url,
        pool_pre_ping=False,
        connect_args=connect_args,
        hide_parameters=True,
        isolation_level="AUTOCOMMIT",
    )
    event.listen(engine, "before_cursor_execute", _begin_transactions)
    return engine


def ensure_sqlite_directory(url: str) -> None:
    """A fresh checkout has no instance/ yet; SQLite creates the file but not its folder.

    Does nothing for other databases, in-memory SQLite and ``file:`` URIs.
    """
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:"):
        if not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)


def init_db(app: Flask) -> None:
    engine = make_engine(
        app.config["DATABASE_URL"], busy_timeout_seconds=app.config["SQLITE_BUSY_TIMEOUT_SECONDS"]
    )
    app.extensions["db_engine"] = engine
    makers = {"db_sessionmaker": sessionmaker(engine, expire_on_commit=False)}
    if engine.dialect.name == "postgresql":
        makers["db_read_sessionmaker"] = sessionmaker(
            transaction_at_first_write(engine), expire_on_commit=False
        )
    for name, maker in makers.items():
        event.listen(maker, "after_commit", _count_commit)
        app.extensions[name] = maker
    app.teardown_appcontext(_close_session)


def _count_commit(db: Session) -> None:
    db.info["commits"] = db.info.get("commits", 0) + 1


def commits_so_far(db: Session) -> int:
    """How many times this session has committed: something read before a commit may be
    out of date after it (invoiceapp.authn.sessions keeps the roles it read until then)."""
    return int(db.info.get("commits", 0))


def get_db() -> Session:
    """The request's session. Views commit explicitly; nothing commits behind their back.

    On PostgreSQL a GET or HEAD gets one whose transaction starts at its first write
    (transaction_at_first_write): a page that only reads sends no BEGIN and no ROLLBACK.
    """
    # Asked ~7 times a page: ``g`` read without its proxy (invoiceapp.request_locals).
    request_globals = request_g()
    db: Session | None = request_globals.get("db")
    if db is None:
        extensions = current_app.extensions
        maker = extensions["db_sessionmaker"]
        if has_request_context() and request.method in ("GET", "HEAD"):
            maker = extensions.get("db_read_sessionmaker", maker)
        db = request_globals.db = maker()
    return db


# What may run outside a transaction: a plain SELECT. Not one that takes row locks (they
# would end with the statement), nor anything that writes.
_LOCKING_READ = re.compile(r"\bFOR\s+(NO\s+KEY\s+UPDATE|KEY\s+SHARE|UPDATE|SHARE)\b", re.I)


# Asked before every statement on PostgreSQL. The SQL texts are the few SQLAlchemy compiled
# once, and the regex scan of a long one (the session's: 1,700 characters) took 22 µs of
# CPU, twice a page; remembered, the answer costs a dictionary look-up (str caches its hash).
@lru_cache(maxsize=1024)
def runs_alone(statement: str) -> bool:
    """True for a statement that only reads and locks nothing."""
    head = statement.lstrip()[:6].upper()
    return head == "SELECT" and _LOCKING_READ.search(statement) is None


def transaction_at_first_write(engine: Engine) -> Engine:
    """The same engine and pool, but a session on it starts its transaction lazily.

    PostgreSQL: a connection in autocommit mode runs each plain SELECT on its own, which
    saves two round trips (BEGIN, then ROLLBACK at the end) per page that only reads. Under
    PostgreSQL's READ COMMITTED every statement sees a fresh snapshot anyway, so reads
    alone see what they would have seen in a transaction. The first statement that writes
    or locks rows gets an explicit BEGIN just before it, so from there on everything is
    one transaction as before: the view's commit() commits it (psycopg commits whenever a
    transaction is open), an error or the end of the request rolls it back.
    """
    return engine.execution_options(begin_at_first_write=True)


def _begin_transactions(
    connection: Connection,
    cursor: Any,
    statement: str,
    _parameters: Any,
    _context: Any,
    _executemany: bool,
) -> None:
    """PostgreSQL's BEGIN, sent just before the first statement of a transaction.

    The connections are in autocommit mode (make_engine), so this is where transactions
    start: before any statement, as the driver itself would begin one, except on a
    session of transaction_at_first_write, where a plain SELECT runs alone, and on a
    connection that asked for autocommit by name (VACUUM, CREATE DATABASE).
    """
    dbapi_connection = cursor.connection
    if dbapi_connection.info.transaction_status != _IDLE or not dbapi_connection.autocommit:
        return  # already in a transaction, or the driver begins them itself
    options = connection.get_execution_options()
    if options.get("isolation_level") == "AUTOCOMMIT":
        return
    if options.get("begin_at_first_write") and runs_alone(statement):
        return
    cursor.execute("BEGIN")


def first_read(db: Session, read: Callable[[], T]) -> T:
    """Run the request's first statement, and once more if the pooled connection it met
    was dead (the database restarted since the connection was made; there is no ping
    before every use). Nothing has been read or written in this session yet, so trying
    again cannot do anything twice; the retry gets a fresh connection, since SQLAlchemy
    replaces the whole pool when it sees a disconnect. A database that is still down
    fails the retry too, and that request gets its 503 (invoiceapp.errors)."""
    if db.in_transaction():  # not the first statement after all: no second try
        return read()
    try:
        return read()
    except DBAPIError as error:
        if not error.connection_invalidated:
            raise
        db.rollback()
        return read()


def _close_session(_exc: BaseException | None) -> None:
    db: Session | None = g.pop("db", None)
    if db is not None:
        try:
            db.close()
        except DBAPIError:
            # The database went away after the response was made (its ROLLBACK failed):
            # drop the connection, the pool makes a new one. The answer stands.
            db.invalidate()


# PostgreSQL error classes that mean "not now" rather than "wrong": connection failures,
# too many connections, a server shutting down or starting, lock waits and deadlocks.
_TRANSIENT_SQLSTATE_PREFIXES = ("08", "53", "57P", "55P03", "40P01", "40001")
_TRANSIENT_SQLITE_MESSAGES = ("database is locked", "database table is locked", "unable to open")


def is_database_unavailable(error: BaseException) -> bool:
    """True when a database error means "busy or unreachable, try again" (a 503).

    A missing table or a broken query is a bug and stays a 500. An error raised while
    handling such an outage counts as the outage: code that catches the first failure and
    tries again (Flask-Limiter does, around its key functions) gets SQLAlchemy's
    PendingRollbackError, whose context is the real cause. Found by `make load`.
    """
    seen: BaseException | None = error
    for _ in range(5):  # the chain is short; never loop on a cycle
        if seen is None:
            return False
        if _is_transient(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _is_transient(error: BaseException) -> bool:
    if isinstance(error, SQLAlchemyTimeoutError):  # no pooled connection became free
        return True
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    if not isinstance(error, OperationalError):
        return False
    sqlstate = getattr(error.orig, "sqlstate", None)
    if isinstance(error.orig, sqlite3.Error):
        return any(text in str(error.orig) for text in _TRANSIENT_SQLITE_MESSAGES)
    # psycopg gives no SQLSTATE when the connection itself failed (refused, timed out).
    return sqlstate is None or sqlstate.startswith(_TRANSIENT_SQLSTATE_PREFIXES)
