"""What the signed-in page costs per request, and that each saving kept its guarantee
(issue 21 item 1; bench/throughput.py measures the speed itself)."""

from __future__ import annotations

from sqlalchemy import create_engine, pool, text

from conftest import POSTGRES_URL, app_on_postgres
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
