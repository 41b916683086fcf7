"""Two clients PATCH the same invoice with the same If-Match, at the same moment.

Exactly one wins (200), the other is told the invoice moved on (412), and the winner's
change is the one stored: no lost update, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import pytest
import requests
from flask import Flask

from support import all_at_once, bearer, invoice, live_server, make_token


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

        results = all_at_once([lambda n=n: patch(n) for n in range(writers)])
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
