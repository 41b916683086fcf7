"""What the signed-in page costs per request, and that each saving kept its guarantee
(issue 21 item 1; bench/throughput.py measures the speed itself)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, pool, text

from conftest import POSTGRES_URL, app_on_postgres, make_test_app
from invoiceapp.extensions import limiter
from support import signed_in_client


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
