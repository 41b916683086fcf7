"""What the signed-in page costs per request, and that each saving kept its guarantee
(issue 21 item 1; bench/throughput.py measures the speed itself)."""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import flask_login
import pytest
from flask import Flask, request
from psycopg import pq
from sqlalchemy import create_engine, event, pool, select, text
from sqlalchemy.exc import OperationalError

from conftest import POSTGRES_URL, Clock, app_on_postgres, make_test_app
from invoiceapp import principal as principal_module
from invoiceapp.db import get_db, runs_alone
from invoiceapp.extensions import limiter
from invoiceapp.models import Membership, Organization, UserSession
from invoiceapp.principal import require_principal
from support import (
    AUTH_COOKIE,
    drop_the_pooled_connection,
    signed_in_client,
    signed_in_through_the_form,
)


def test_a_connection_the_database_dropped_is_replaced_without_an_error_page() -> None:
    """No ping before every checkout (a round trip per request on PostgreSQL): a dropped
    connection fails the request's first statement, the pool replaces every connection,
    and that first statement (the session's, before anything was read or written) is
    tried once more on a fresh one: the user never sees the restart."""
    with app_on_postgres() as app:
        assert app.extensions["db_engine"].pool._pre_ping is False
        client = signed_in_client(app, "ada@acme.test")
        assert client.get("/invoices/inv_7").status_code == 200
        drop_the_pooled_connection(app)

        met_the_dead_connection = client.get("/invoices/inv_7")
        assert met_the_dead_connection.status_code == 200
        assert "Wayne Enterprises" in met_the_dead_connection.get_data(as_text=True)
        assert client.get("/invoices/inv_7").status_code == 200


def test_a_write_that_meets_a_dropped_connection_is_a_503_and_the_next_request_recovers() -> None:
    """Only a first read is tried again. A dropped connection met later (here: by marking
    an invoice paid, after the session was read on a fresh connection) is a 503, never a
    second attempt at a write; nothing was stored, and the next request is served."""
    with app_on_postgres() as app:
        client = signed_in_client(app, "ada@acme.test")
        assert "badge-sent" in client.get("/invoices/inv_7").get_data(as_text=True)
        engine = app.extensions["db_engine"]
        drops: list[int] = []

        def drop_before_the_first_write(connection: Any, *args: Any) -> None:
            if not drops and not runs_alone(args[1]):
                drops.append(1)
                pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
                admin = create_engine(POSTGRES_URL or "", poolclass=pool.NullPool)
                with admin.begin() as other:
                    other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                admin.dispose()

        event.listen(engine, "before_cursor_execute", drop_before_the_first_write)
        try:
            failed = client.post("/invoices/inv_7/mark-paid")
        finally:
            event.remove(engine, "before_cursor_execute", drop_before_the_first_write)
        assert drops and failed.status_code == 503
        assert "Traceback" not in failed.get_data(as_text=True)
        assert "badge-sent" in client.get("/invoices/inv_7").get_data(as_text=True)
        assert client.post("/invoices/inv_7/mark-paid").status_code in (302, 303)
        assert "badge-paid" in client.get("/invoices/inv_7").get_data(as_text=True)


def test_a_page_without_limits_never_asks_the_limiter_and_limited_routes_still_are(
    database_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Flask-Limiter resolved the limits of every request, though the invoice page has
    none. Now only routes with limits (sign-in, the API) reach it, and they are limited."""
    app = make_test_app(database_file, RATELIMIT_ENABLED=True, SIGN_IN_RATE_LIMIT="3 per minute")
    client = signed_in_client(app, "ada@acme.test")
    assert client.get("/invoices/inv_7").status_code == 200  # each endpoint learnt once
    resolved: list[str | None] = []
    real = limiter.limit_manager.resolve_limits

    def counting(flask_app: Any, endpoint: str | None = None, *args: Any, **kwargs: Any) -> Any:
        resolved.append(endpoint)
        return real(flask_app, endpoint, *args, **kwargs)

    monkeypatch.setattr(limiter.limit_manager, "resolve_limits", counting)
    assert client.get("/invoices/inv_7").status_code == 200
    assert resolved == []

    assert client.get("/api/v1/invoices").status_code == 200
    assert resolved  # the API's limits are still worked out
    assert "X-RateLimit-Limit" in client.get("/api/v1/invoices").headers

    stranger = app.test_client()
    answers = [
        stranger.post("/sign-in", data={"email": "ada@acme.test", "password": "wrong"}).status_code
        for _ in range(4)
    ]
    assert answers[-1] == 429
    app.extensions["db_engine"].dispose()


@contextmanager
def round_trips(app: Flask) -> Iterator[list[str]]:
    """Each time the app's connections wait for PostgreSQL while the block runs, named by
    the first words of what was sent (libpq's own trace, so a BEGIN or ROLLBACK sent by the
    driver counts too: SQLAlchemy's events never see those). Filled in when the block ends."""
    engine = app.extensions["db_engine"]
    trips: list[str] = []
    with tempfile.TemporaryFile("w+") as trace:

        def start(dbapi_connection: Any, *_: Any) -> None:
            dbapi_connection.pgconn.trace(trace.fileno())
            dbapi_connection.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)

        def stop(dbapi_connection: Any, *_: Any) -> None:
            dbapi_connection.pgconn.untrace()

        event.listen(engine, "checkout", start)
        event.listen(engine, "checkin", stop)
        try:
            yield trips
        finally:
            event.remove(engine, "checkout", start)
            event.remove(engine, "checkin", stop)
        trace.seek(0)
        statement = ""
        for line in trace:  # "F<TAB>length<TAB>Kind<TAB>details", a statement may wrap
            direction, _, kind, details = (line.rstrip("\n").split("\t", 3) + ["", "", ""])[:4]
            if direction != "F":
                continue
            if kind == "Query":  # the simple protocol: one message, one wait
                trips.append(details.strip().strip('"')[:40])
            elif kind == "Parse":  # the extended one: Parse, Bind, Execute, then Sync waits
                statement = details.split('"')[3][:40]
            elif kind == "Sync":
                trips.append(statement)


def test_a_signed_in_page_that_only_reads_is_two_round_trips_on_postgresql() -> None:
    """No ping, no BEGIN, no ROLLBACK: a GET reads outside a transaction (each statement
    sees the latest committed data, as under READ COMMITTED in one), and who asks costs
    one statement. What is left: who asks (session, user, roles), and the invoice."""
    with app_on_postgres() as app:
        client = signed_in_client(app, "ada@acme.test")
        assert client.get("/invoices/inv_7").status_code == 200  # "last seen" written here
        with round_trips(app) as trips:
            assert client.get("/invoices/inv_7").status_code == 200
        assert len(trips) == 2, trips
        assert trips[0].startswith("SELECT users.id")  # with the session and the roles
        assert trips[1].startswith("SELECT invoices.id")


def test_a_get_that_writes_still_writes_in_one_transaction_on_postgresql(
    clock: Clock,
) -> None:
    """The session's "last seen" is written at most once a minute, from a GET: that
    write still gets its BEGIN, right before it, and its COMMIT, and it is stored."""
    with app_on_postgres() as app:
        client = signed_in_client(app, "ada@acme.test")
        assert client.get("/invoices/inv_7").status_code == 200
        clock.advance(seconds=app.config["SESSION_TOUCH_SECONDS"] + 1)
        with round_trips(app) as trips:
            assert client.get("/invoices/inv_7").status_code == 200
        assert [trip.split()[0] for trip in trips] == [
            "SELECT",
            "BEGIN",
            "UPDATE",
            "COMMIT",
            "SELECT",
        ], trips
        with app.app_context():
            seen = get_db().scalar(select(UserSession.last_seen_at).order_by(UserSession.id.desc()))
        assert seen == clock.now


@pytest.mark.parametrize(
    ("statement", "alone"),
    [
        ("SELECT invoices.id FROM invoices WHERE invoices.public_id = %(p)s", True),
        ("  select 1", True),
        ("SELECT users.id FROM users WHERE users.id = %(id)s FOR KEY SHARE OF users", False),
        ("SELECT id FROM memberships FOR UPDATE", False),
        ("SELECT id FROM memberships FOR NO KEY UPDATE SKIP LOCKED", False),
        ("UPDATE sessions SET last_seen_at=%(t)s WHERE sessions.id = %(id)s", False),
        ("INSERT INTO audit_events (action) VALUES (%(a)s)", False),
        ("WITH gone AS (DELETE FROM shares RETURNING id) SELECT count(*) FROM gone", False),
        ("SAVEPOINT sa_savepoint_1", False),
    ],
)
def test_only_a_plain_select_runs_outside_a_transaction(statement: str, alone: bool) -> None:
    assert runs_alone(statement) is alone


def test_a_signed_out_or_revoked_session_is_refused_on_the_very_next_request(
    app_on_each_engine: Flask,
) -> None:
    """The savings above keep the session server-side: on PostgreSQL a GET now reads
    outside a transaction, and still sees a sign-out or a revoke committed a moment ago
    (each statement reads the latest committed rows); a copied cookie dies with its row."""
    app = app_on_each_engine
    laptop = signed_in_client(app, "ada@acme.test")
    phone = signed_in_client(app, "ada@acme.test")
    copied = app.test_client()
    cookie = laptop.get_cookie(AUTH_COOKIE)
    assert cookie is not None
    copied.set_cookie(AUTH_COOKIE, cookie.value)
    assert copied.get("/invoices/inv_7").status_code == 200
    assert phone.get("/invoices/inv_7").status_code == 200

    assert laptop.post("/sign-out").status_code in (302, 303)
    refused = copied.get("/invoices/inv_7")
    assert refused.status_code == 302 and refused.headers["Location"].startswith("/sign-in")
    assert copied.get("/api/v1/invoices").status_code == 401

    with app.app_context():
        [left] = get_db().scalars(select(UserSession.public_id)).all()
    assert phone.get("/account/sessions").status_code == 200
    revoker = signed_in_client(app, "ada@acme.test")
    assert revoker.post(f"/account/sessions/{left}/revoke").status_code == 303
    assert phone.get("/invoices/inv_7").status_code == 302


def test_an_unlimited_page_never_enters_flask_limiter_at_all(
    database_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The limiter's before-request hook asks first whether the route has limits: the
    invoice page no longer makes Flask-Limiter work out its endpoint, exemptions and filters."""
    app = make_test_app(database_file, RATELIMIT_ENABLED=True)
    client = signed_in_client(app, "ada@acme.test")
    assert client.get("/invoices/inv_7").status_code == 200
    entered: list[str] = []
    real = limiter.identify_request

    def identifying() -> str:
        entered.append("limiter")
        return real()

    monkeypatch.setattr(limiter, "identify_request", identifying)
    assert client.get("/invoices/inv_7").status_code == 200
    assert client.get("/dashboard").status_code == 200
    assert entered == []
    assert client.get("/api/v1/invoices").status_code == 200
    assert entered  # a route with limits still goes through the limiter
    app.extensions["db_engine"].dispose()


def test_with_limits_in_redis_a_page_sends_redis_nothing_and_sign_in_still_gets_its_429(
    database_file: Path, redis_url: str
) -> None:
    """As deployed (limits shared in Redis), a page without limits costs no round trip to
    Redis, and the limits that exist are still counted there and still refuse."""
    import redis

    app = make_test_app(
        database_file,
        RATELIMIT_ENABLED=True,
        RATELIMIT_STORAGE_URI=redis_url,
        SIGN_IN_RATE_LIMIT="3 per minute",
    )
    server = redis.Redis.from_url(redis_url)
    server.flushall()
    client = signed_in_client(app, "ada@acme.test")  # sign-in itself is counted in Redis
    assert client.get("/invoices/inv_7").status_code == 200

    def commands() -> int:
        return int(server.info("stats")["total_commands_processed"])

    before = commands()
    for _ in range(5):
        assert client.get("/invoices/inv_7").status_code == 200
    assert commands() - before == 1  # only the INFO that read the first count

    stranger = app.test_client()
    answers = [
        stranger.post("/sign-in", data={"email": "linus@acme.test", "password": "no"}).status_code
        for _ in range(4)
    ]
    assert answers[-1] == 429
    assert commands() - before > 4  # those attempts were counted in Redis
    server.close()
    app.extensions["db_engine"].dispose()


def test_header_links_built_once_still_follow_where_the_app_is_mounted(
    database_file: Path,
) -> None:
    """The header's links are built once per process (fixed_url), keyed by the mount point:
    the same app behind a path prefix (SCRIPT_NAME) links under that prefix, and not once
    the prefix is gone."""
    app = make_test_app(database_file)
    client = signed_in_client(app, "ada@acme.test")
    plain = client.get("/invoices/inv_7").get_data(as_text=True)
    mounted = client.get("/invoices/inv_7", base_url="http://localhost/billing/")
    assert mounted.status_code == 200
    html = mounted.get_data(as_text=True)
    assert 'href="/billing/static/app.css"' in html and 'href="/billing/dashboard"' in html
    assert 'href="/static/app.css"' in plain and 'href="/dashboard"' in plain
    again = client.get("/invoices/inv_7").get_data(as_text=True)
    assert "/billing/" not in again
    app.extensions["db_engine"].dispose()


def test_security_headers_appear_once_each_and_a_view_s_own_value_is_kept(
    database_file: Path,
) -> None:
    """The headers are added in one pass over what the view set: never twice, and never
    over a value a view chose itself (an invitation link's page sets its Referrer-Policy)."""
    app = make_test_app(database_file, AUTH_COOKIE_SECURE=True)

    @app.get("/test-own-header")
    def own_header() -> Any:
        from flask import Response

        return Response("ok", headers={"Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"})

    answer = app.test_client().get("/test-own-header")
    assert answer.headers.getlist("Referrer-Policy") == ["no-referrer"]
    for name in (
        "Content-Security-Policy",
        "X-Content-Type-Options",
        "X-Frame-Options",
        "Cross-Origin-Opener-Policy",
        "Permissions-Policy",
        "Strict-Transport-Security",
    ):
        assert len(answer.headers.getlist(name)) == 1, name
    app.extensions["db_engine"].dispose()


def test_a_get_page_skips_the_csrf_check_early_and_a_post_without_a_token_is_still_400(
    database_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CSRF gate answers a GET at once (nothing to check) instead of asking Flask-WTF to
    work out exemptions first; an unsafe request is checked exactly as before."""
    from invoiceapp.extensions import csrf

    app = make_test_app(database_file, WTF_CSRF_ENABLED=True)
    client = signed_in_through_the_form(app, "ada@acme.test")
    checked: list[str] = []
    real = csrf.protect

    def protecting(*args: Any, **kwargs: Any) -> Any:
        checked.append(request.method)
        return real(*args, **kwargs)

    monkeypatch.setattr(csrf, "protect", protecting)
    assert client.get("/invoices/inv_7").status_code == 200
    assert checked == []
    refused = client.post("/invoices/inv_7/send", data={})
    assert refused.status_code == 400
    assert checked == ["POST"]
    app.extensions["db_engine"].dispose()


def test_roles_read_with_the_session_are_read_again_after_this_request_commits(
    app_on_each_engine: Flask,
) -> None:
    """The session's statement reads the roles before any view runs. A request that
    changes a membership and commits, and only then asks who it is (a page rendered after
    joining an organization), must see the change: after a commit the roles are read
    afresh, before it the session's statement answers and no other is sent."""
    app = app_on_each_engine
    cookie = signed_in_client(app, "ada@acme.test").get_cookie(AUTH_COOKIE)
    assert cookie is not None
    headers = {"Cookie": f"{AUTH_COOKIE}={cookie.value}"}

    with app.test_request_context("/dashboard", headers=headers):
        assert [o.slug for o in require_principal().organizations.values()] == ["acme"]

    with app.test_request_context("/dashboard", headers=headers):
        ada = flask_login.current_user  # the authentication gate's lookup: the roles too
        assert ada.is_authenticated
        db = get_db()
        globex = db.scalar(select(Organization).where(Organization.slug == "globex"))
        assert globex is not None
        db.add(Membership(user_id=ada.id, organization_id=globex.id, role="member"))
        db.commit()
        principal = require_principal()
        assert principal.role_in(globex.id) == "member"
        assert sorted(o.slug for o in principal.organizations.values()) == ["acme", "globex"]


def test_a_page_open_to_everyone_reads_a_signed_in_session_once(app: Flask) -> None:
    """The home page has no sign-in gate, so view-as's gate asks for the session before
    Flask-Login does; the cookie is still looked up once, not once for each."""
    client = signed_in_client(app, "ada@acme.test")
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    client.get("/")
    engine = app.extensions["db_engine"]
    event.listen(engine, "before_cursor_execute", count)
    try:
        home = client.get("/")
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert home.status_code == 200 and "Ada Lovelace" in home.get_data(as_text=True)
    assert sum("FROM sessions" in statement for statement in seen) == 1, seen


def test_an_outage_met_while_making_a_403_page_is_a_503(
    database_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make load` found a 500: PostgreSQL stopped while a member's refused delete was
    answered, and the 403 page's "Why?" (the custom roles that would allow it) met the
    outage inside the error handler. An outage is a 503 wherever it is met."""
    app = make_test_app(database_file, PROPAGATE_EXCEPTIONS=False)
    linus = signed_in_client(app, "linus@acme.test")
    outage = OperationalError("SELECT …", {}, sqlite3.OperationalError("database is locked"))

    def unavailable(*_args: Any) -> Any:
        raise outage

    monkeypatch.setattr(principal_module, "_custom_roles_in", unavailable)
    response = linus.post("/invoices/inv_7/delete")
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert "Traceback" not in response.get_data(as_text=True)


def test_whether_a_statement_may_run_alone_is_worked_out_once_per_sql_text() -> None:
    """Asked before every PostgreSQL statement; the regex scan of the session's statement
    cost 22 µs a time, so each SQL text's answer is remembered."""
    text = "SELECT invoices.id FROM invoices WHERE invoices.id = %(id)s -- asked twice"
    hits = runs_alone.cache_info().hits
    assert runs_alone(text) is True
    assert runs_alone(text) is True
    assert runs_alone.cache_info().hits == hits + 1


def test_postgresql_connections_stay_in_autocommit_and_a_page_switches_no_mode() -> None:
    """Transactions are begun by BEGIN before the first statement that needs one
    (db._begin_transactions), so a GET's session no longer switches the driver's
    autocommit on at checkout and off at return; a POST's session still gets one
    transaction for all its statements."""
    with app_on_postgres() as app:
        read_maker = app.extensions["db_read_sessionmaker"]
        assert "isolation_level" not in read_maker.kw["bind"].get_execution_options()
        engine = app.extensions["db_engine"]
        with engine.connect() as connection:
            raw = connection.connection.dbapi_connection
            assert raw.autocommit is True
            connection.execute(text("SELECT 1"))
            assert raw.info.transaction_status != 0  # begun: not a GET's session
            connection.rollback()
        with app.test_request_context("/", method="GET"):
            db = get_db()
            db.execute(text("SELECT 1"))
            assert db.connection().connection.dbapi_connection.info.transaction_status == 0
