"""The JSON API: the same three steps as the pages (401, 404, 403), answered in JSON.

Helpers here (make_token, bearer, NEW_INVOICE) are shared with the other test_api files.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from conftest import make_test_app
from invoiceapp.api import invoices as invoices_api
from invoiceapp.authn.tokens import issue_token
from invoiceapp.db import get_db
from invoiceapp.models import (
    AuditEvent,
    Invoice,
    Membership,
    Organization,
    PersonalAccessToken,
    TokenPurpose,
    User,
)
from seed import demo_invoice_id
from support import (
    NEW_INVOICE,
    PASSWORD,
    api_csrf_token,
    bearer,
    csrf_token_from,
    invoice,
    make_token,
    signed_in_client,
    user,
)

NEW_PASSWORD = "orbital-pumpkin-lantern-47-quiet"
NOT_FOUND = {
    "error": {"code": "not_found", "message": "There is nothing here, or it is not yours to see."}
}


def error_of(response: Any) -> dict[str, Any]:
    body = response.get_json()
    assert set(body) == {"error"}, body
    return body["error"]


# --- 401: authentication ---------------------------------------------------------------


def test_anonymous_api_call_gets_401_with_a_bearer_challenge(client: FlaskClient) -> None:
    response = client.get("/api/v1/invoices")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="InvoiceApp"'
    assert error_of(response)["code"] == "unauthorized"
    assert "reason" not in error_of(response)


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer ia_pat_" + "x" * 43,  # well formed, never issued
        "Bearer nope",
        "Bearer ",
        "bearer ia_pat_" + "A" * 43,
        "Bearer ia_pat_" + "x" * 43 + "\u00e9",
    ],
)
def test_a_bad_token_gets_401_invalid_token(client: FlaskClient, authorization: str) -> None:
    response = client.get("/api/v1/me", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert (
        response.headers["WWW-Authenticate"] == 'Bearer realm="InvoiceApp", error="invalid_token"'
    )
    assert error_of(response) == {
        "code": "unauthorized",
        "message": "This access token is not valid: it is unknown, expired or revoked.",
        "reason": "invalid_token",
    }


def test_an_expired_token_gets_401_invalid_token(app: Flask, client: FlaskClient, clock) -> None:
    raw = make_token(app, "ada@acme.test", "acme", days=1)
    assert client.get("/api/v1/me", headers=bearer(raw)).status_code == 200
    clock.advance(days=1, seconds=1)
    response = client.get("/api/v1/me", headers=bearer(raw))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_a_token_decides_alone_even_with_a_valid_cookie_alongside(app: Flask) -> None:
    ada = signed_in_client(app, "ada@acme.test")
    assert ada.get("/api/v1/me").status_code == 200
    response = ada.get("/api/v1/me", headers={"Authorization": "Bearer ia_pat_" + "x" * 43})
    assert response.status_code == 401


def test_tokens_never_reach_the_html_pages(app: Flask, client: FlaskClient, db: Session) -> None:
    raw = make_token(app, "ada@acme.test", "acme")
    page = client.get("/invoices", headers=bearer(raw))
    assert page.status_code == 302
    assert page.headers["Location"].startswith("/sign-in")
    post = client.post("/invoices/inv_7/delete", headers=bearer(raw))
    assert post.status_code == 401
    assert post.headers["WWW-Authenticate"].startswith("Session ")
    assert invoice(db, "inv_7").deleted_at is None


def test_last_used_is_written_at_most_once_a_minute(
    app: Flask, client: FlaskClient, db: Session, clock
) -> None:
    raw = make_token(app, "ada@acme.test", "acme")

    def last_used() -> Any:
        db.expire_all()
        return db.scalars(select(PersonalAccessToken.last_used_at)).one()

    assert last_used() is None
    client.get("/api/v1/me", headers=bearer(raw))
    first = last_used()
    assert first == clock.now
    clock.advance(seconds=30)
    client.get("/api/v1/me", headers=bearer(raw))
    assert last_used() == first
    clock.advance(seconds=31)
    client.get("/api/v1/me", headers=bearer(raw))
    assert last_used() == clock.now


# --- /me --------------------------------------------------------------------------------


def test_me_with_a_session_lists_every_membership_and_the_csrf_token(app: Flask) -> None:
    grace = signed_in_client(app, "grace@acme.test")
    body = grace.get("/api/v1/me").get_json()
    assert body["user"] == {
        "name": "Grace Hopper",
        "email": "grace@acme.test",
        "email_verified": True,
    }
    assert [(o["slug"], o["role"]) for o in body["organizations"]] == [
        ("acme", "admin"),
        ("globex", "member"),
    ]
    assert body["active_organization"] == "acme"
    assert body["authentication"]["method"] == "session"
    assert body["authentication"]["token"] is None
    assert body["csrf_token"]


def test_me_with_a_token_shows_its_scope_and_only_its_organization(
    app: Flask, client: FlaskClient
) -> None:
    raw = make_token(app, "grace@acme.test", "globex", "read")
    body = client.get("/api/v1/me", headers=bearer(raw)).get_json()
    assert [(o["slug"], o["role"]) for o in body["organizations"]] == [("globex", "member")]
    assert body["active_organization"] == "globex"
    assert body["authentication"]["method"] == "token"
    assert body["authentication"]["token"]["scope"] == "read"
    assert body["authentication"]["token"]["organization"] == "globex"
    assert body["csrf_token"] is None
    assert raw not in json.dumps(body)


# --- 404: scope -------------------------------------------------------------------------


def test_other_org_invoice_is_404_like_a_missing_one(app: Flask) -> None:
    linus = signed_in_client(app, "linus@acme.test")
    other = linus.get("/api/v1/invoices/inv_42")
    missing = linus.get("/api/v1/invoices/inv_999999")
    assert other.status_code == missing.status_code == 404
    assert other.get_data() == missing.get_data()
    assert other.get_json() == NOT_FOUND


def test_a_token_reaches_only_its_own_organization_even_where_its_user_is_a_member(
    app: Flask, client: FlaskClient, db: Session
) -> None:
    # Grace is a member of Globex too; her Acme token must not know that.
    raw = make_token(app, "grace@acme.test", "acme")
    missing = client.get("/api/v1/invoices/inv_999999", headers=bearer(raw))
    for method, path in [
        ("GET", "/api/v1/invoices/inv_42"),
        ("PATCH", "/api/v1/invoices/inv_42"),
        ("DELETE", "/api/v1/invoices/inv_42"),
        ("GET", "/api/v1/invoices?organization=globex"),
        ("POST", "/api/v1/invoices?organization=globex"),
        ("GET", "/api/v1/orgs/globex/members"),
        ("GET", "/api/v1/orgs/globex/audit"),
    ]:
        response = client.open(
            path, method=method, headers=bearer(raw, **{"If-Match": '"1"'}), json=NEW_INVOICE
        )
        assert response.status_code == 404, (method, path)
        assert response.get_data() == missing.get_data()
    assert [
        o["slug"] for o in client.get("/api/v1/orgs", headers=bearer(raw)).get_json()["items"]
    ] == ["acme"]
    assert invoice(db, "inv_42").deleted_at is None
    # ...while her browser, a member there, reads it.
    assert (
        signed_in_client(app, "grace@acme.test").get("/api/v1/invoices/inv_42").status_code == 200
    )


def test_malformed_ids_and_slugs_are_plain_404s(app: Flask) -> None:
    ada = signed_in_client(app, "ada@acme.test")
    for path in ["/api/v1/invoices/7", "/api/v1/invoices/inv_%00", "/api/v1/orgs/ACME/members"]:
        assert ada.get(path).get_json() == NOT_FOUND, path


# --- 403: the policy, and the token's scope ---------------------------------------------


def test_a_read_token_cannot_write_403_insufficient_scope(
    app: Flask, client: FlaskClient, db: Session
) -> None:
    raw = make_token(app, "ada@acme.test", "acme", "read")
    assert client.get("/api/v1/invoices/inv_7", headers=bearer(raw)).status_code == 200
    response = client.delete("/api/v1/invoices/inv_7", headers=bearer(raw, **{"If-Match": '"1"'}))
    assert response.status_code == 403
    error = error_of(response)
    assert error["code"] == "forbidden"
    assert error["reason"] == "insufficient_scope"
    assert "invoice.delete" in error["message"]
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    assert invoice(db, "inv_7").deleted_at is None


def test_a_write_token_never_exceeds_its_user_s_role(
    app: Flask, client: FlaskClient, db: Session
) -> None:
    raw = make_token(app, "linus@acme.test", "acme", "write")
    response = client.delete("/api/v1/invoices/inv_7", headers=bearer(raw, **{"If-Match": '"1"'}))
    assert response.status_code == 403
    error = error_of(response)
    assert "reason" not in error
    assert "invoice.delete" in error["message"] and "owner or admin" in error["message"]
    assert invoice(db, "inv_7").deleted_at is None


def test_audit_log_is_for_owners_and_admins_and_shows_the_refusals(
    app: Flask, client: FlaskClient
) -> None:
    linus = make_token(app, "linus@acme.test", "acme")
    client.delete("/api/v1/invoices/inv_7", headers=bearer(linus, **{"If-Match": '"1"'}))
    assert client.get("/api/v1/orgs/acme/audit", headers=bearer(linus)).status_code == 403
    ada = make_token(app, "ada@acme.test", "acme", "read")
    events = client.get("/api/v1/orgs/acme/audit?decision=denied", headers=bearer(ada)).get_json()
    refused = [e for e in events["items"] if e["action"] == "invoice.delete"]
    assert refused and refused[0]["actor_email"] == "linus@acme.test"
    assert refused[0]["status"] == 403


# --- Revocation: revoked, removed, new password ------------------------------------------


def test_removing_the_user_from_the_organization_stops_the_token_at_once(
    app: Flask, client: FlaskClient, db: Session
) -> None:
    raw = make_token(app, "linus@acme.test", "acme", "read")
    assert client.get("/api/v1/invoices/inv_7", headers=bearer(raw)).status_code == 200
    ada = signed_in_client(app, "ada@acme.test")
    removed = ada.post(f"/orgs/acme/members/{user(db, 'linus@acme.test').id}/remove")
    assert removed.status_code == 303
    # Removal revokes the member's tokens for that organization: a rejoin cannot revive them.
    refused = client.get("/api/v1/invoices/inv_7", headers=bearer(raw))
    assert refused.status_code == 401
    assert refused.get_json()["error"]["code"] == "unauthorized"
    assert client.get("/api/v1/me", headers=bearer(raw)).status_code == 401


def test_a_changed_password_stops_the_token(app: Flask, client: FlaskClient) -> None:
    raw = make_token(app, "ada@acme.test", "acme", "read")
    assert client.get("/api/v1/me", headers=bearer(raw)).status_code == 200
    ada = signed_in_client(app, "ada@acme.test")  # just signed in, so elevated
    changed = ada.post(
        "/account/password",
        data={
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
    )
    assert changed.status_code == 303, changed.get_data(as_text=True)[:500]
    response = client.get("/api/v1/me", headers=bearer(raw))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_a_password_reset_stops_the_token(app: Flask, client: FlaskClient) -> None:
    raw = make_token(app, "ada@acme.test", "acme", "read")
    with app.app_context():
        db = get_db()
        ada = db.scalar(select(User).where(User.email == "ada@acme.test"))
        link = issue_token(db, ada, TokenPurpose.RESET_PASSWORD, 1800, email=ada.email)
        db.commit()
    reset = client.post(
        f"/reset-password/{link}",
        data={"new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD},
    )
    assert reset.status_code == 303
    assert client.get("/api/v1/me", headers=bearer(raw)).status_code == 401


# --- CSRF for cookie requests -------------------------------------------------------------


def test_cookie_writes_need_the_csrf_header_and_tokens_do_not(csrf_app: Flask, db: Session) -> None:
    ada = csrf_app.test_client()
    page = ada.get("/sign-in")
    ada.post(
        "/sign-in",
        data={
            "email": "ada@acme.test",
            "password": PASSWORD,
            "csrf_token": csrf_token_from(page.get_data(as_text=True)),
        },
    )
    refused = ada.post("/api/v1/invoices", json=NEW_INVOICE)
    assert refused.status_code == 400
    assert error_of(refused)["code"] == "bad_request"
    assert error_of(refused)["reason"] == "csrf"
    wrong = ada.post("/api/v1/invoices", json=NEW_INVOICE, headers={"X-CSRFToken": "forged"})
    assert wrong.status_code == 400
    made = ada.post(
        "/api/v1/invoices", json=NEW_INVOICE, headers={"X-CSRFToken": api_csrf_token(ada)}
    )
    assert made.status_code == 201

    raw = make_token(csrf_app, "ada@acme.test", "acme")
    by_token = csrf_app.test_client().post(
        "/api/v1/invoices", json=NEW_INVOICE, headers=bearer(raw)
    )
    assert by_token.status_code == 201


def test_anonymous_write_is_401_before_csrf(csrf_app: Flask) -> None:
    response = csrf_app.test_client().post("/api/v1/invoices", json=NEW_INVOICE)
    assert response.status_code == 401


# --- Creating and reading ------------------------------------------------------------------


def test_create_makes_a_draft_authored_by_the_caller(
    app: Flask, client: FlaskClient, db: Session
) -> None:
    raw = make_token(app, "linus@acme.test", "acme")
    response = client.post("/api/v1/invoices", json=NEW_INVOICE, headers=bearer(raw))
    assert response.status_code == 201
    body = response.get_json()
    assert body["status"] == "draft"
    assert body["organization"] == "acme"
    assert body["created_by"] == "linus@acme.test"
    assert body["amount"] == "1250.00"
    assert body["version"] == 1
    assert response.headers["ETag"] == '"1"'
    assert response.headers["Location"] == f"/api/v1/invoices/{body['id']}"
    assert response.headers["Cache-Control"] == "no-store"
    stored = invoice(db, body["id"])
    assert stored.amount_minor == 125000
    assert stored.created_by_id == user(db, "linus@acme.test").id


def test_create_in_another_of_my_organizations_by_slug(app: Flask, db: Session) -> None:
    grace = signed_in_client(app, "grace@acme.test")
    response = grace.post("/api/v1/invoices?organization=globex", json=NEW_INVOICE)
    assert response.status_code == 201
    assert response.get_json()["organization"] == "globex"


@pytest.mark.parametrize(
    "smuggled",
    [
        {"status": "paid"},
        {"organization_id": 2},
        {"organization": "globex"},
        {"created_by_id": 1},
        {"created_by": "ada@acme.test"},
        {"number": 1},
        {"id": "inv_7"},
        {"version": 9},
    ],
)
def test_fields_that_choose_status_owner_or_organization_are_refused(
    app: Flask, client: FlaskClient, db: Session, smuggled: dict[str, Any]
) -> None:
    raw = make_token(app, "linus@acme.test", "acme")
    before = db.scalar(select(func.count()).select_from(Invoice))
    response = client.post(
        "/api/v1/invoices", json={**NEW_INVOICE, **smuggled}, headers=bearer(raw)
    )
    assert response.status_code == 422
    (name,) = smuggled
    assert error_of(response)["fields"] == {name: ["Extra inputs are not permitted"]}
    patched = client.patch(
        "/api/v1/invoices/inv_7", json=smuggled, headers=bearer(raw, **{"If-Match": '"1"'})
    )
    # Linus may not edit Ada's invoice at all: the policy answers before the body is read.
    assert patched.status_code == 403
    assert db.scalar(select(func.count()).select_from(Invoice)) == before


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"customer": ""}, "customer"),
        ({"customer": "   "}, "customer"),
        ({"customer": "x" * 201}, "customer"),
        ({"customer": "Evil\u202eCorp"}, "customer"),
        ({"customer": "Nul\x00Corp"}, "customer"),
        ({"customer": 12}, "customer"),
        ({"amount": 12.5}, "amount"),
        ({"amount": "0"}, "amount"),
        ({"amount": "-5"}, "amount"),
        ({"amount": "1.005"}, "amount"),
        ({"amount": "12,50"}, "amount"),  # a decimal comma (thousands are read: 1,250.00)
        ({"amount": "1e3"}, "amount"),
        ({"amount": "NaN"}, "amount"),
        ({"amount": "1000000000.01"}, "amount"),
        ({"amount": "\u0661\u0662"}, "amount"),
        ({"currency": "XXX"}, "currency"),
        ({"issue_date": "2024-02-30"}, "issue_date"),
        ({"issue_date": 1714521600}, "issue_date"),
        ({"due_date": "2024-04-30"}, "due_date"),
        ({"customer": None}, "customer"),
    ],
)
def test_invalid_fields_are_422_with_the_field_named(
    app: Flask, client: FlaskClient, change: dict[str, Any], field: str
) -> None:
    raw = make_token(app, "ada@acme.test", "acme")
    created = client.post("/api/v1/invoices", json={**NEW_INVOICE, **change}, headers=bearer(raw))
    assert created.status_code == 422
    error = error_of(created)
    assert error["code"] == "validation"
    assert set(error["fields"]) == {field}
    patched = client.patch(
        "/api/v1/invoices/inv_7", json=change, headers=bearer(raw, **{"If-Match": '"1"'})
    )
    assert patched.status_code == 422
    assert set(error_of(patched)["fields"]) == {field}


def test_amount_follows_the_form_s_money_rules(app: Flask, client: FlaskClient) -> None:
    raw = make_token(app, "ada@acme.test", "acme")
    for text, stored in [("0.01", "0.01"), ("7", "7.00"), ("1000000000", "1000000000.00")]:
        response = client.post(
            "/api/v1/invoices", json={**NEW_INVOICE, "amount": text}, headers=bearer(raw)
        )
        assert response.status_code == 201, text
        assert response.get_json()["amount"] == stored


# --- Error shapes: never HTML under /api/ ------------------------------------------------


def test_malformed_json_is_400_and_non_json_is_415(app: Flask, client: FlaskClient) -> None:
    raw = make_token(app, "ada@acme.test", "acme")
    malformed = client.post(
        "/api/v1/invoices", data="{not json", content_type="application/json", headers=bearer(raw)
    )
    assert malformed.status_code == 400
    assert error_of(malformed)["reason"] == "malformed_json"
    for data, content_type in [
        ("customer=x", "application/x-www-form-urlencoded"),
        ("{}", "text/plain"),
        ("{}", None),
    ]:
        response = client.post(
            "/api/v1/invoices", data=data, content_type=content_type, headers=bearer(raw)
        )
        assert response.status_code == 415, content_type
        assert error_of(response)["code"] == "unsupported_media_type"
    body_not_object = client.post("/api/v1/invoices", json=["customer"], headers=bearer(raw))
    assert body_not_object.status_code == 422
    assert set(error_of(body_not_object)["fields"]) == {"body"}


def test_unknown_paths_methods_and_oversized_bodies_answer_json(
    app: Flask, client: FlaskClient
) -> None:
    raw = make_token(app, "ada@acme.test", "acme")
    unknown = client.post("/api/v1/nothing-here", headers=bearer(raw))
    assert unknown.status_code == 404 and error_of(unknown)["code"] == "not_found"
    assert client.get("/api/v2/invoices").get_json() == NOT_FOUND
    wrong_method = client.put("/api/v1/invoices/inv_7", headers=bearer(raw))
    assert wrong_method.status_code == 405
    assert error_of(wrong_method)["code"] == "method_not_allowed"
    assert "PATCH" in wrong_method.headers["Allow"]
    huge = client.post(
        "/api/v1/invoices",
        json={**NEW_INVOICE, "customer": "x" * 300_000},
        headers=bearer(raw),
    )
    assert huge.status_code == 413
    assert error_of(huge)["code"] == "too_large"


def test_a_crash_is_a_json_500_without_a_trace(database_file: Path) -> None:
    app = make_test_app(database_file)

    @app.get("/api/v1/_boom")
    def boom() -> str:
        raise RuntimeError("secret detail")

    response = app.test_client().get("/api/v1/_boom")
    assert response.status_code == 500
    assert error_of(response) == {
        "code": "internal",
        "message": "An unexpected error happened on our side. It has been logged.",
    }
    assert "secret" not in response.get_data(as_text=True)
    app.extensions["db_engine"].dispose()


def test_rate_limit_per_token_and_per_user_is_429_json_with_retry_after(
    database_file: Path,
) -> None:
    app = make_test_app(
        database_file,
        RATELIMIT_ENABLED=True,
        API_RATE_LIMIT="3 per minute",
        API_USER_RATE_LIMIT="5 per minute",
    )
    client = app.test_client()
    first, second = (
        make_token(app, "ada@acme.test", "acme"),
        make_token(app, "ada@acme.test", "acme"),
    )
    answers = [client.get("/api/v1/me", headers=bearer(first)) for _ in range(4)]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    # Only a refusal says "retry after"; a success carries the limit's counters instead.
    assert "Retry-After" not in answers[0].headers
    assert answers[0].headers["X-RateLimit-Remaining"] == "2"
    limited = client.get("/api/v1/invoices", headers=bearer(first))  # the whole API, not a route
    assert limited.status_code == 429
    assert error_of(limited)["code"] == "rate_limited"
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    # Another token of the same user has its own bucket, until the user's total runs out.
    assert [client.get("/api/v1/me", headers=bearer(second)).status_code for _ in range(3)] == [
        200,
        200,
        429,
    ]
    # Someone else is not affected.
    other = make_token(app, "linus@acme.test", "acme")
    assert client.get("/api/v1/me", headers=bearer(other)).status_code == 200
    app.extensions["db_engine"].dispose()


# --- Lists: cursor pagination ---------------------------------------------------------------


def _add_invoices(app: Flask, organization: str, count: int) -> None:
    raw = make_token(app, "ada@acme.test", organization)
    client = app.test_client()
    for number in range(count):
        response = client.post(
            "/api/v1/invoices",
            json={**NEW_INVOICE, "customer": f"Customer {number}"},
            headers=bearer(raw),
        )
        assert response.status_code == 201


def test_cursor_pages_walk_every_invoice_once_newest_first(app: Flask, db: Session) -> None:
    _add_invoices(app, "acme", 23)
    acme = db.scalar(select(Organization).where(Organization.slug == "acme"))
    assert acme is not None
    total = db.scalar(
        select(func.count())
        .select_from(Invoice)
        .where(Invoice.organization_id == acme.id, Invoice.deleted_at.is_(None))
    )
    raw = make_token(app, "linus@acme.test", "acme", "read")
    client = app.test_client()
    seen: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        url = "/api/v1/invoices?limit=7" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(url, headers=bearer(raw)).get_json()
        pages += 1
        assert len(body["items"]) <= 7
        seen += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == total and len({item["id"] for item in seen}) == total
    assert pages == -(-total // 7)
    times = [item["created_at"] for item in seen]
    assert times == sorted(times, reverse=True)
    assert {item["organization"] for item in seen} == {"acme"}


def test_status_filter_and_limits(app: Flask) -> None:
    raw = make_token(app, "ada@acme.test", "acme", "read")
    client = app.test_client()
    sent = client.get("/api/v1/invoices?status=sent&limit=100", headers=bearer(raw)).get_json()
    assert sent["items"] and {i["status"] for i in sent["items"]} == {"sent"}
    default = client.get("/api/v1/invoices", headers=bearer(raw)).get_json()
    assert len(default["items"]) <= 25
    for query, field in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("status=lost", "status"),
        ("organization=Not%20A%20Slug", "organization"),
    ]:
        response = client.get(f"/api/v1/invoices?{query}", headers=bearer(raw))
        assert response.status_code == 422, query
        assert set(error_of(response)["fields"]) == {field}


@pytest.mark.parametrize(
    "cursor",
    [
        "not-base64!",
        "e30",  # {}
        "WyJhdWRpdCIsIjIwMjQtMDEtMDFUMDA6MDA6MDArMDA6MDAiLDFd",  # an audit cursor
        "WyJpbnZvaWNlcyIsIjIwMjQtMDEtMDFUMDA6MDA6MDAiLCJpbnZfNyJd",  # naive time
        "WyJpbnZvaWNlcyIsIjAwMDEtMDEtMDFUMDA6MDA6MDArMDU6MDAiLCJpbnZfNyJd",  # year 0
        "WyJpbnZvaWNlcyIsIjIwMjQtMDEtMDFUMDA6MDA6MDArMDA6MDAiLDFd",  # a number as the id
        "WyJpbnZvaWNlcyIsIjIwMjQtMDEtMDFUMDA6MDA6MDArMDA6MDAiLCJcdTAwMDAiXQ",  # NUL
    ],
)
def test_a_cursor_we_did_not_make_is_422_never_500(app: Flask, cursor: str) -> None:
    raw = make_token(app, "ada@acme.test", "acme", "read")
    response = app.test_client().get(f"/api/v1/invoices?cursor={cursor}", headers=bearer(raw))
    assert response.status_code == 422
    assert error_of(response)["reason"] == "invalid_cursor"
    assert set(error_of(response)["fields"]) == {"cursor"}


def test_a_cursor_survives_the_deletion_of_its_last_row(app: Flask) -> None:
    _add_invoices(app, "acme", 6)
    raw = make_token(app, "ada@acme.test", "acme")
    client = app.test_client()
    first = client.get("/api/v1/invoices?limit=3", headers=bearer(raw)).get_json()
    last = first["items"][-1]
    gone = client.delete(
        f"/api/v1/invoices/{last['id']}",
        headers=bearer(raw, **{"If-Match": f'"{last["version"]}"'}),
    )
    assert gone.status_code == 204
    rest = client.get(
        f"/api/v1/invoices?limit=3&cursor={first['next_cursor']}", headers=bearer(raw)
    ).get_json()
    assert rest["items"] and rest["items"][0]["created_at"] <= last["created_at"]
    assert not {i["id"] for i in rest["items"]} & {i["id"] for i in first["items"]}


def test_a_cursor_naming_another_organization_s_invoice_is_refused_like_garbage(
    app: Flask,
) -> None:
    import base64

    def cursor_for(public_id: str) -> str:
        raw = json.dumps(["invoices", "2024-01-01T00:00:00+00:00", public_id])
        return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()

    raw = make_token(app, "ada@acme.test", "acme", "read")
    client = app.test_client()
    other = client.get(f"/api/v1/invoices?cursor={cursor_for('inv_42')}", headers=bearer(raw))
    missing = client.get(f"/api/v1/invoices?cursor={cursor_for('inv_999999')}", headers=bearer(raw))
    assert other.status_code == missing.status_code == 422
    assert other.get_data() == missing.get_data()
    mine = client.get(f"/api/v1/invoices?cursor={cursor_for('inv_7')}", headers=bearer(raw))
    assert mine.status_code == 200


def test_members_and_audit_pages_follow_their_cursors(app: Flask) -> None:
    raw = make_token(app, "ada@acme.test", "acme", "read")
    client = app.test_client()
    first = client.get("/api/v1/orgs/acme/members?limit=2", headers=bearer(raw)).get_json()
    rest = client.get(
        f"/api/v1/orgs/acme/members?limit=100&cursor={first['next_cursor']}", headers=bearer(raw)
    ).get_json()
    emails = [m["email"] for m in first["items"] + rest["items"]]
    assert emails[0] == "ada@acme.test" and len(emails) == len(set(emails)) >= 4
    assert rest["next_cursor"] is None
    assert "hank@globex.test" not in emails
    linus = make_token(app, "linus@acme.test", "acme")
    for _ in range(3):  # one record in Acme's log, counting three refusals
        client.delete("/api/v1/invoices/inv_7", headers=bearer(linus, **{"If-Match": '"1"'}))
    refused = client.patch(  # another action refused: a record of its own
        "/api/v1/invoices/inv_7", json={"customer": "Changed"}, headers=bearer(linus)
    )
    assert refused.status_code == 403
    log = client.get("/api/v1/orgs/acme/audit?limit=1", headers=bearer(raw)).get_json()
    assert len(log["items"]) == 1 and log["next_cursor"]
    older = client.get(
        f"/api/v1/orgs/acme/audit?limit=1&cursor={log['next_cursor']}", headers=bearer(raw)
    ).get_json()
    assert older["items"][0] != log["items"][0]
    assert [(i["action"], i["count"]) for i in log["items"] + older["items"]] == [
        ("invoice.update", 1), ("invoice.delete", 3)]  # fmt: skip


# --- Versions: ETag, If-Match (412), unconditional writes (409) ----------------------------


def test_get_sends_the_version_as_etag_and_a_stale_if_match_is_412(
    app: Flask, client: FlaskClient, db: Session
) -> None:
    raw = make_token(app, "ada@acme.test", "acme")
    read = client.get("/api/v1/invoices/inv_7", headers=bearer(raw))
    assert read.headers["ETag"] == '"1"'
    changed = client.patch(
        "/api/v1/invoices/inv_7",
        json={"customer": "Wayne Enterprises Ltd"},
        headers=bearer(raw, **{"If-Match": read.headers["ETag"]}),
    )
    assert changed.status_code == 200
    assert changed.headers["ETag"] == '"2"'
    assert changed.get_json()["customer"] == "Wayne Enterprises Ltd"
    stale = client.patch(
        "/api/v1/invoices/inv_7",
        json={"customer": "Overwrite"},
        headers=bearer(raw, **{"If-Match": read.headers["ETag"]}),
    )
    assert stale.status_code == 412
    assert error_of(stale)["code"] == "precondition_failed"
    weak = client.patch(
        "/api/v1/invoices/inv_7",
        json={"customer": "Weak"},
        headers=bearer(raw, **{"If-Match": 'W/"2"'}),
    )
    assert weak.status_code == 412  # If-Match compares strongly
    empty = client.patch(
        "/api/v1/invoices/inv_7",
        json={"customer": "Empty"},
        headers=bearer(raw, **{"If-Match": ""}),
    )
    assert empty.status_code == 412  # present but naming no version is not "unconditional"
    assert invoice(db, "inv_7").customer == "Wayne Enterprises Ltd"
    assert invoice(db, "inv_7").version == 2


def test_if_match_star_overwrites_on_purpose_and_a_no_op_keeps_the_version(
    app: Flask, client: FlaskClient, db: Session
) -> None:
    raw = make_token(app, "ada@acme.test", "acme")
    same = client.patch(
        "/api/v1/invoices/inv_7",
        json={"customer": "Wayne Enterprises"},
        headers=bearer(raw, **{"If-Match": '"1"'}),
    )
    assert same.status_code == 200 and same.headers["ETag"] == '"1"'
    star = client.patch(
        "/api/v1/invoices/inv_7", json={"amount": "1.00"}, headers=bearer(raw, **{"If-Match": "*"})
    )
    assert star.status_code == 200 and star.headers["ETag"] == '"2"'
    assert invoice(db, "inv_7").amount_minor == 100


def test_patch_keeps_due_after_issue_across_fields(app: Flask, client: FlaskClient) -> None:
    raw = make_token(app, "ada@acme.test", "acme")
    due = client.get("/api/v1/invoices/inv_7", headers=bearer(raw)).get_json()["due_date"]
    response = client.patch(
        "/api/v1/invoices/inv_7",
        json={"issue_date": "2999-01-01"},
        headers=bearer(raw, **{"If-Match": '"1"'}),
    )
    assert response.status_code == 422
    assert set(error_of(response)["fields"]) == {"due_date"}
    assert client.get("/api/v1/invoices/inv_7", headers=bearer(raw)).get_json()["due_date"] == due


def test_a_status_change_on_the_pages_makes_an_api_etag_stale(
    app: Flask, client: FlaskClient, db: Session
) -> None:
    raw = make_token(app, "ada@acme.test", "acme")
    draft = demo_invoice_id(db, "acme", 7)  # sent, it may still be deleted: the version decides
    etag = client.get(f"/api/v1/invoices/{draft}", headers=bearer(raw)).headers["ETag"]
    ada = signed_in_client(app, "ada@acme.test")
    assert ada.post(f"/invoices/{draft}/send").status_code == 303
    assert invoice(db, draft).version == 2
    response = client.delete(f"/api/v1/invoices/{draft}", headers=bearer(raw, **{"If-Match": etag}))
    assert response.status_code == 412
    assert invoice(db, draft).deleted_at is None


def test_a_paid_invoice_is_voided_not_deleted_through_the_api_too(
    app: Flask, client: FlaskClient, db: Session
) -> None:
    raw = make_token(app, "ada@acme.test", "acme")  # the owner, with a write token
    paid = demo_invoice_id(db, "acme", 1)
    response = client.delete(f"/api/v1/invoices/{paid}", headers=bearer(raw, **{"If-Match": "*"}))
    assert response.status_code == 403
    error = error_of(response)
    assert error["code"] == "forbidden"
    assert error["message"].startswith("invoice.delete refused: The invoice state rule:")
    assert "a paid invoice cannot be deleted. Void it instead" in error["message"]
    assert invoice(db, paid).deleted_at is None


def test_delete_is_soft_recorded_and_then_404(app: Flask, client: FlaskClient, db: Session) -> None:
    raw = make_token(app, "grace@acme.test", "acme")
    response = client.delete("/api/v1/invoices/inv_7", headers=bearer(raw, **{"If-Match": '"1"'}))
    assert response.status_code == 204
    assert response.get_data() == b""
    stored = invoice(db, "inv_7")
    assert stored.deleted_at is not None and stored.version == 2
    assert client.get("/api/v1/invoices/inv_7", headers=bearer(raw)).get_json() == NOT_FOUND
    again = client.delete("/api/v1/invoices/inv_7", headers=bearer(raw, **{"If-Match": "*"}))
    assert again.status_code == 404
    db.expire_all()
    records = db.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "invoice.delete", AuditEvent.decision == "allowed"
        )
    ).all()
    assert [(r.resource_id, r.status, r.actor_email) for r in records] == [
        ("inv_7", 204, "grace@acme.test")
    ]


def test_a_patch_without_if_match_applies_to_the_version_it_reads(
    app: Flask, client: FlaskClient, db: Session
) -> None:
    raw = make_token(app, "ada@acme.test", "acme")
    first = client.patch("/api/v1/invoices/inv_7", json={"customer": "First"}, headers=bearer(raw))
    assert first.status_code == 200 and first.headers["ETag"] == '"2"'
    grace = make_token(app, "grace@acme.test", "acme")
    between = client.patch(
        "/api/v1/invoices/inv_7",
        json={"currency": "EUR"},
        headers=bearer(grace, **{"If-Match": '"2"'}),
    )
    assert between.status_code == 200  # version 3, which Ada never read
    second = client.patch("/api/v1/invoices/inv_7", json={"amount": "7.00"}, headers=bearer(raw))
    assert second.status_code == 200 and second.headers["ETag"] == '"4"'
    stored = invoice(db, "inv_7")
    assert (stored.customer, stored.currency, stored.amount_minor) == ("First", "EUR", 700)


def _a_write_lands_between_read_and_write(monkeypatch: pytest.MonkeyPatch, app: Flask) -> None:
    """Someone else saves inv_7 after the handler read it, before its compare-and-set."""
    check = invoices_api.version_seen

    def check_then_someone_saves(found: Invoice) -> int:
        seen = check(found)
        with app.extensions["db_sessionmaker"]() as other:
            other.execute(
                update(Invoice)
                .where(Invoice.public_id == "inv_7")
                .values(customer="Saved meanwhile", version=Invoice.version + 1)
            )
            other.commit()
        return seen

    monkeypatch.setattr(invoices_api, "version_seen", check_then_someone_saves)


@pytest.mark.parametrize("if_match", [None, "*"])
@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
def test_a_write_without_if_match_is_unconditional_but_still_atomic(
    app: Flask,
    client: FlaskClient,
    db: Session,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    if_match: str | None,
) -> None:
    raw = make_token(app, "ada@acme.test", "acme")
    _a_write_lands_between_read_and_write(monkeypatch, app)
    headers = bearer(raw) if if_match is None else bearer(raw, **{"If-Match": if_match})
    body = {"customer": "Lost"} if method == "PATCH" else None
    response = client.open("/api/v1/invoices/inv_7", method=method, json=body, headers=headers)
    assert response.status_code == 409  # as the edit form's stale save
    assert error_of(response)["code"] == "conflict"
    stored = invoice(db, "inv_7")
    assert stored.deleted_at is None
    assert (stored.customer, stored.version) == ("Saved meanwhile", 2)


def test_an_if_match_that_goes_stale_after_the_check_is_still_412(
    app: Flask, client: FlaskClient, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = make_token(app, "ada@acme.test", "acme")
    _a_write_lands_between_read_and_write(monkeypatch, app)
    response = client.patch(
        "/api/v1/invoices/inv_7",
        json={"customer": "Lost"},
        headers=bearer(raw, **{"If-Match": '"1"'}),
    )
    assert response.status_code == 412
    assert error_of(response)["code"] == "precondition_failed"
    assert invoice(db, "inv_7").customer == "Saved meanwhile"


def _owner_of_acme(app: Flask, credentials: str) -> tuple[FlaskClient, dict[str, str]]:
    """Ada's client and the headers a contract check sends: cookie + X-CSRFToken, or a token."""
    if credentials == "bearer":
        return app.test_client(), bearer(make_token(app, "ada@acme.test", "acme"))
    ada = app.test_client()
    page = ada.get("/sign-in").get_data(as_text=True)
    signed_in = ada.post(
        "/sign-in",
        data={"email": "ada@acme.test", "password": PASSWORD, "csrf_token": csrf_token_from(page)},
    )
    assert signed_in.status_code == 303
    return ada, {"X-CSRFToken": api_csrf_token(ada)}


@pytest.mark.parametrize("credentials", ["cookie", "bearer"])
def test_an_owner_s_delete_without_if_match_is_204_and_the_invoice_is_gone(
    csrf_app: Flask, db: Session, credentials: str
) -> None:
    ada, headers = _owner_of_acme(csrf_app, credentials)
    response = ada.delete("/api/v1/invoices/inv_7", headers=headers)
    assert response.status_code == 204, response.get_data(as_text=True)
    assert response.get_data() == b""
    stored = invoice(db, "inv_7")
    assert stored.deleted_at is not None and stored.version == 2  # soft: the row stays
    assert ada.get("/api/v1/invoices/inv_7", headers=headers).get_json() == NOT_FOUND
    listed = ada.get("/api/v1/invoices?limit=100", headers=headers).get_json()["items"]
    assert "inv_7" not in [item["id"] for item in listed]


def test_a_member_s_delete_without_if_match_is_still_403_scope_and_policy_come_first(
    app: Flask, client: FlaskClient, db: Session
) -> None:
    linus = make_token(app, "linus@acme.test", "acme")
    for headers in (bearer(linus), bearer(linus, **{"If-Match": '"9"'})):
        refused = client.delete("/api/v1/invoices/inv_7", headers=headers)
        assert refused.status_code == 403  # not 204, and not 412 for the stale If-Match
        assert error_of(refused)["code"] == "forbidden"
        hidden = client.delete("/api/v1/invoices/inv_42", headers=headers)  # Globex's
        assert hidden.get_json() == NOT_FOUND
    assert invoice(db, "inv_7").deleted_at is None
    assert invoice(db, "inv_42").deleted_at is None


def test_member_may_patch_only_their_own_draft(app: Flask, client: FlaskClient) -> None:
    raw = make_token(app, "linus@acme.test", "acme")
    mine = client.post("/api/v1/invoices", json=NEW_INVOICE, headers=bearer(raw)).get_json()
    ok = client.patch(
        f"/api/v1/invoices/{mine['id']}",
        json={"customer": "Mine Ltd"},
        headers=bearer(raw, **{"If-Match": '"1"'}),
    )
    assert ok.status_code == 200
    others = client.patch(
        "/api/v1/invoices/inv_7",
        json={"customer": "Not mine"},
        headers=bearer(raw, **{"If-Match": '"1"'}),
    )
    assert others.status_code == 403


def test_a_membership_role_change_applies_to_the_token_on_the_next_request(
    app: Flask, client: FlaskClient, db: Session
) -> None:
    raw = make_token(app, "linus@acme.test", "acme")
    assert client.get("/api/v1/orgs/acme/audit", headers=bearer(raw)).status_code == 403
    linus = user(db, "linus@acme.test")
    membership = db.scalar(select(Membership).where(Membership.user_id == linus.id))
    assert membership is not None
    membership.role = "admin"
    db.commit()
    assert client.get("/api/v1/orgs/acme/audit", headers=bearer(raw)).status_code == 200


def test_tokens_expire_after_their_days(app: Flask, db: Session) -> None:
    make_token(app, "ada@acme.test", "acme", days=90)
    db.expire_all()
    token = db.scalars(select(PersonalAccessToken)).one()
    assert token.expires_at - token.created_at == timedelta(days=90)
    assert len(token.token_hash) == 64


def test_a_status_without_a_contract_code_still_gets_the_error_shape(database_file: Path) -> None:
    from werkzeug.exceptions import ImATeapot

    app = make_test_app(database_file)

    @app.get("/api/v1/_teapot")
    def teapot() -> str:
        raise ImATeapot()

    response = app.test_client().get("/api/v1/_teapot")
    assert response.status_code == 418
    assert error_of(response)["code"] == "bad_request"
    app.extensions["db_engine"].dispose()
