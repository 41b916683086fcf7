"""What the signed-in page costs per request, and that each saving kept its guarantee
(issue 21 item 1; bench/throughput.py measures the speed itself)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import request
from sqlalchemy import create_engine, pool, text

from conftest import POSTGRES_URL, app_on_postgres, make_test_app
from invoiceapp.extensions import limiter
from support import signed_in_client, signed_in_through_the_form


def test_a_connection_the_database_dropped_costs_one_503_and_the_next_request_recovers() -> None:
    """No ping before every checkout (a round trip per request on PostgreSQL): a dropped
    connection fails its first statement, and the pool replaces every connection."""
    with app_on_postgres() as app:
        engine = app.extensions["db_engine"]
        assert engine.pool._pre_ping is False
        client = signed_in_client(app, "ada@acme.test")
        assert client.get("/invoices/inv_7").status_code == 200
        with engine.connect() as connection:  # the pooled connection the page just used
            pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        admin = create_engine(POSTGRES_URL or "", poolclass=pool.NullPool)
        with admin.begin() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        admin.dispose()

        met_the_dead_connection = client.get("/invoices/inv_7")
        assert met_the_dead_connection.status_code == 503
        assert "Traceback" not in met_the_dead_connection.get_data(as_text=True)
        after = client.get("/invoices/inv_7")
        assert after.status_code == 200
        assert "INV-" in after.get_data(as_text=True) or "inv_7" in after.get_data(as_text=True)


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
