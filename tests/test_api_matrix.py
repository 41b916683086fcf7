"""Every API route × every way of (not) proving who you are × own / other organization.

The caller is Ada: owner of Acme, not a member of Globex. Her tokens are for Acme.
Reading the table row by row replays the lesson: 401 before anything else, then 400 for
a cookie without its CSRF token, then 404 for another organization (never 403), then
403 for a read token that tries to write, and only then the work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from conftest import Clock
from invoiceapp.db import get_db
from invoiceapp.models import PersonalAccessToken
from support import NEW_INVOICE, PASSWORD, api_csrf_token, bearer, csrf_token_from, make_token


@dataclass(frozen=True)
class Route:
    method: str
    own: str
    other: str
    json: dict[str, Any] | None = None
    if_match: bool = False

    @property
    def unsafe(self) -> bool:
        return self.method in ("POST", "PATCH", "DELETE")


ROUTES = {
    "me": Route("GET", "/api/v1/me", "/api/v1/me"),
    "orgs": Route("GET", "/api/v1/orgs", "/api/v1/orgs"),
    "list-invoices": Route(
        "GET", "/api/v1/invoices?organization=acme", "/api/v1/invoices?organization=globex"
    ),
    "create-invoice": Route(
        "POST",
        "/api/v1/invoices?organization=acme",
        "/api/v1/invoices?organization=globex",
        json=NEW_INVOICE,
    ),
    "get-invoice": Route("GET", "/api/v1/invoices/inv_7", "/api/v1/invoices/inv_42"),
    "patch-invoice": Route(
        "PATCH",
        "/api/v1/invoices/inv_7",
        "/api/v1/invoices/inv_42",
        json={"customer": "Matrix Co"},
        if_match=True,
    ),
    "delete-invoice": Route(
        "DELETE", "/api/v1/invoices/inv_7", "/api/v1/invoices/inv_42", if_match=True
    ),
    "members": Route("GET", "/api/v1/orgs/acme/members", "/api/v1/orgs/globex/members"),
    "audit": Route("GET", "/api/v1/orgs/acme/audit", "/api/v1/orgs/globex/audit"),
    "roles": Route("GET", "/api/v1/orgs/acme/roles", "/api/v1/orgs/globex/roles"),
    "explain": Route(
        "GET",
        "/api/v1/authz/explain?action=invoice.read&invoice=inv_7",
        "/api/v1/authz/explain?action=invoice.read&invoice=inv_42",
    ),
}

CREDENTIALS = [
    "anonymous",
    "bad-token",
    "expired-token",
    "revoked-token",
    "read-token",
    "write-token",
    "cookie-without-csrf",
    "cookie-with-csrf",
]

SUCCESS = {"GET": 200, "POST": 201, "PATCH": 200, "DELETE": 204}


def expected(route: Route, credential: str, where: str) -> tuple[int, str | None, str | None]:
    """(status, error code, reason) — the lesson's order, written out independently."""
    if credential == "anonymous":
        return 401, "unauthorized", None
    if credential in ("bad-token", "expired-token", "revoked-token"):
        return 401, "unauthorized", "invalid_token"
    if credential == "cookie-without-csrf" and route.unsafe:
        return 400, "bad_request", "csrf"  # before the organization is even looked up
    if where == "other" and route.own != route.other:
        return 404, "not_found", None
    if credential == "read-token" and route.unsafe:
        return 403, "forbidden", "insufficient_scope"
    return SUCCESS[route.method], None, None


def _signed_in(app: Flask, email: str) -> FlaskClient:
    client = app.test_client()
    page = client.get("/sign-in").get_data(as_text=True)
    response = client.post(
        "/sign-in",
        data={"email": email, "password": PASSWORD, "csrf_token": csrf_token_from(page)},
    )
    assert response.status_code == 303
    return client


def _prepare(app: Flask, clock: Clock, credential: str) -> tuple[FlaskClient, dict[str, str]]:
    client = app.test_client()
    if credential == "anonymous":
        return client, {}
    if credential == "bad-token":
        return client, bearer("ia_pat_" + "B" * 43)
    if credential.endswith("-token"):
        scope = "read" if credential == "read-token" else "write"
        raw = make_token(app, "ada@acme.test", "acme", scope, days=1)
        if credential == "expired-token":
            clock.advance(days=1, seconds=1)
        if credential == "revoked-token":
            with app.app_context():
                db = get_db()
                token = db.scalars(select(PersonalAccessToken)).one()
                token.revoked_at = clock.now
                db.commit()
        return client, bearer(raw)
    client = _signed_in(app, "ada@acme.test")
    if credential == "cookie-with-csrf":
        return client, {"X-CSRFToken": api_csrf_token(client)}
    return client, {}


CASES = [
    pytest.param(name, credential, where, id=f"{name}-{credential}-{where}")
    for name, route in ROUTES.items()
    for credential in CREDENTIALS
    for where in (("own", "other") if route.own != route.other else ("own",))
]


@pytest.mark.parametrize(("route_name", "credential", "where"), CASES)
def test_api_access_matrix(
    csrf_app: Flask, clock: Clock, route_name: str, credential: str, where: str
) -> None:
    route = ROUTES[route_name]
    client, headers = _prepare(csrf_app, clock, credential)
    if route.if_match:
        headers["If-Match"] = '"1"'
    path = route.own if where == "own" else route.other
    response = client.open(path, method=route.method, headers=headers, json=route.json)

    status, code, reason = expected(route, credential, where)
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert response.mimetype == "application/json" or status == 204
    if code is not None:
        error = response.get_json()["error"]
        assert error["code"] == code
        assert error.get("reason") == reason
    if status == 401:
        challenge = 'Bearer realm="InvoiceApp"'
        if reason == "invalid_token":
            challenge += ', error="invalid_token"'
        assert response.headers["WWW-Authenticate"] == challenge
    assert response.headers["Cache-Control"] == "no-store"


def test_every_api_route_is_in_the_matrix(csrf_app: Flask) -> None:
    """A new route must join the table (openapi.json and docs are public and read-only)."""
    in_matrix: set[tuple[str, str]] = set()
    for route in ROUTES.values():
        for path in (route.own, route.other):
            adapter = csrf_app.url_map.bind("localhost")
            endpoint, _ = adapter.match(path.split("?")[0], method=route.method)
            in_matrix.add((endpoint, route.method))
    registered = {
        (rule.endpoint, method)
        for rule in csrf_app.url_map.iter_rules()
        if rule.endpoint.startswith("api.")
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    assert registered - in_matrix == {("api.openapi_json", "GET"), ("api.docs", "GET")}
