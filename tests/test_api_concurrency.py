"""Two clients PATCH the same invoice with the same If-Match, at the same moment.

Exactly one wins (200), the other is told the invoice moved on (412), and the winner's
change is the one stored: no lost update, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from test_api import bearer, make_token

import seed
from conftest import TEST_CONFIG, make_test_app
from invoiceapp import create_app
from invoiceapp.db import get_db
from support import invoice, live_server, postgres_schema

POSTGRES_URL = os.environ.get("INVOICEAPP_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def live_app(request: pytest.FixtureRequest, database_file: Path) -> Iterator[Flask]:
    if request.param == "sqlite":
        app = make_test_app(database_file)
        yield app
        app.extensions["db_engine"].dispose()
        return
    if not POSTGRES_URL:
        pytest.skip("set INVOICEAPP_TEST_POSTGRES_URL to run the PostgreSQL variant")
    with postgres_schema(POSTGRES_URL) as url:
        seed.migrate(url)
        app = create_app({**TEST_CONFIG, "DATABASE_URL": url})
        with app.app_context():
            seed.seed(get_db())
        yield app
        app.extensions["db_engine"].dispose()


def _at_once(calls: list[Any]) -> list[Any]:
    start = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        start.wait()
        results[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.parametrize("writers", [2, 8])
def test_patches_with_the_same_etag_at_once_one_wins_the_rest_get_412(
    live_app: Flask, writers: int
) -> None:
    tokens = [make_token(live_app, "ada@acme.test", "acme") for _ in range(writers)]
    with live_server(live_app) as base:
        etag = requests.get(base + "/api/v1/invoices/inv_7", headers=bearer(tokens[0])).headers[
            "ETag"
        ]

        def patch(number: int) -> requests.Response:
            return requests.patch(
                base + "/api/v1/invoices/inv_7",
                json={"customer": f"Writer {number}"},
                headers=bearer(tokens[number], **{"If-Match": etag}),
                timeout=30,
            )

        results = _at_once([lambda n=n: patch(n) for n in range(writers)])
    statuses = sorted(response.status_code for response in results)
    assert statuses == [200] + [412] * (writers - 1), [r.text for r in results]
    (winner,) = [r.json() for r in results if r.status_code == 200]
    for loser in (r for r in results if r.status_code == 412):
        assert loser.json()["error"]["code"] == "precondition_failed"
    with live_app.extensions["db_sessionmaker"]() as db:
        stored = invoice(db, "inv_7")
        assert stored.customer == winner["customer"]
        assert stored.version == 2 == winner["version"]


def test_the_same_stale_etag_sent_twice_in_a_row_is_200_then_412(live_app: Flask) -> None:
    raw = make_token(live_app, "ada@acme.test", "acme")
    client = live_app.test_client()
    etag = client.get("/api/v1/invoices/inv_7", headers=bearer(raw)).headers["ETag"]
    first = client.patch(
        "/api/v1/invoices/inv_7",
        json={"customer": "First"},
        headers=bearer(raw, **{"If-Match": etag}),
    )
    second = client.patch(
        "/api/v1/invoices/inv_7",
        json={"customer": "Second"},
        headers=bearer(raw, **{"If-Match": etag}),
    )
    assert (first.status_code, second.status_code) == (200, 412)
    with live_app.extensions["db_sessionmaker"]() as db:
        assert invoice(db, "inv_7").customer == "First"
