"""Faults an outside review found in the foundation, each proven fixed.

Bodies that are not forms, busy databases, spreadsheet formulas, guessing at
re-authentication, cheap hashing in production and customer data in cookies.
Parallel creates and double submits against a live server are in test_concurrency.py.
"""

from __future__ import annotations

import csv
import io
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request_started
from flask.testing import FlaskClient
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError, PendingRollbackError
from sqlalchemy.orm import Session

from conftest import make_test_app
from invoiceapp import create_app
from invoiceapp import principal as principal_module
from invoiceapp.authn import passwords
from invoiceapp.extensions import limiter
from invoiceapp.invoicing import csv_safe
from invoiceapp.models import Invoice, UserSession
from invoiceapp.views.invoice_forms import InvoiceForm
from support import (
    AUTH_COOKIE,
    PASSWORD,
    VALID_INVOICE_FORM,
    csrf_token_from,
    invoice,
    sign_in,
    signed_in_client,
    user,
)

# --- 1. Only form posts reach a form ------------------------------------------------------

NOT_FORMS: list[dict[str, Any]] = [
    {"json": {"email": 1, "password": ["x"]}},
    {"json": {"customer": {"a": 1}, "amount": 12, "issue_date": 20240501}},
    {"json": ["customer", "amount"]},
    {"json": "customer"},
    {"data": "null", "content_type": "application/json"},
    {"data": "customer=Evil", "content_type": "text/plain"},
    {"data": "<x/>", "content_type": "application/xml"},
]


def _form_routes(app: Flask) -> list[tuple[str, bool]]:
    """Every POST route of the HTML app with sample ids filled in, and whether it is gated."""
    routes = []
    for rule in app.url_map.iter_rules():
        if "POST" not in (rule.methods or ()) or rule.rule.startswith("/api/"):
            continue
        path = re.sub(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>", _sample_argument, rule.rule)
        view = app.view_functions[rule.endpoint]
        routes.append((path, getattr(view, "requires_principal", False)))
    assert len(routes) >= 6, routes  # sign-in, sign-out, reauthenticate, invoices, orgs
    return routes


def _sample_argument(match: re.Match[str]) -> str:
    converter, name = match.groups()
    if converter == "int":
        return "1"
    return {"invoice_id": "inv_7", "slug": "acme"}.get(name, "sample")


def _snapshot(db: Session) -> list[tuple[Any, ...]]:
    db.expire_all()
    rows = db.execute(
        select(Invoice.public_id, Invoice.customer, Invoice.amount_minor, Invoice.status,
               Invoice.deleted_at, Invoice.updated_at).order_by(Invoice.id)
    ).all()  # fmt: skip
    sessions = db.scalar(select(func.count()).select_from(UserSession))
    return [*map(tuple, rows), ("sessions", sessions)]


@pytest.mark.parametrize("body", NOT_FORMS, ids=lambda body: repr(body)[:40])
def test_json_or_text_posted_to_any_form_route_is_refused_and_changes_nothing(
    app: Flask, db: Session, body: dict[str, Any]
) -> None:
    anonymous = app.test_client()
    ada = signed_in_client(app, "ada@acme.test")
    before = _snapshot(db)
    for path, gated in _form_routes(app):
        response = anonymous.post(path, **body)
        # Anonymous: the authentication gate answers first where there is one.
        assert response.status_code == (401 if gated else 415), (path, "anonymous")
        response = ada.post(path, **body)
        assert response.status_code == 415, (path, "signed in")
        assert "form submissions only" in response.get_data(as_text=True)
    assert _snapshot(db) == before


def test_json_sign_in_with_a_real_csrf_token_is_a_415_not_a_500(csrf_app: Flask) -> None:
    client = csrf_app.test_client()
    token = csrf_token_from(client.get("/sign-in").get_data(as_text=True))
    response = client.post(
        "/sign-in", json={"email": 1, "password": 2}, headers={"X-CSRFToken": token}
    )
    assert response.status_code == 415


def test_a_file_upload_in_place_of_a_field_is_a_form_error(app: Flask, db: Session) -> None:
    ada = signed_in_client(app, "ada@acme.test")
    before = _snapshot(db)
    data = {**VALID_INVOICE_FORM, "customer": (io.BytesIO(b"=cmd"), "evil.csv")}
    response = ada.post("/invoices/new", data=data, content_type="multipart/form-data")
    assert response.status_code == 422
    assert "Enter the customer" in response.get_data(as_text=True)
    assert _snapshot(db) == before


def test_invoice_form_never_reads_a_json_body_even_past_the_gate(app: Flask) -> None:
    """The second line of defence: the form itself ignores JSON (Flask-WTF would not)."""
    with app.test_request_context("/invoices/new", method="POST", json={"customer": 5}):
        form = InvoiceForm()
        assert form.customer.data is None
        assert not form.validate()


# --- 4. A busy database is a 503, never a 500 ---------------------------------------------


@pytest.fixture()
def busy_app(database_file: Path) -> Any:
    app = make_test_app(database_file, SQLITE_BUSY_TIMEOUT_SECONDS=0.2, SESSION_TOUCH_SECONDS=0)

    @app.post("/api/v1/_probe")
    def probe() -> str:  # a stand-in for the API's writes, which come with the API issue
        from invoiceapp.db import get_db

        get_db().execute(Invoice.__table__.update().values(customer=Invoice.customer))
        get_db().commit()
        return "written"

    yield app
    app.extensions["db_engine"].dispose()


def _hold_write_lock(database_file: Path) -> sqlite3.Connection:
    """Another writer: a connection that took the write lock and keeps it."""
    other = sqlite3.connect(database_file, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    return other


def test_locked_sqlite_database_reads_still_work_and_writes_get_503_with_retry_after(
    busy_app: Flask, database_file: Path, db: Session
) -> None:
    ada = signed_in_client(busy_app, "ada@acme.test")
    count = db.scalar(select(func.count()).select_from(Invoice))
    other = _hold_write_lock(database_file)
    try:
        # Write-ahead logging: readers do not wait for the writer.
        assert ada.get("/dashboard").status_code == 200
        response = ada.post("/invoices/new", data=VALID_INVOICE_FORM)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        body = response.get_data(as_text=True)
        assert "Nothing was changed" in body
        assert "locked" not in body and "Traceback" not in body
        api = ada.post("/api/v1/_probe")
        assert api.status_code == 503
        assert api.headers["Retry-After"] == "5"
        assert api.get_json()["error"]["code"] == "unavailable"
    finally:
        other.rollback()
        other.close()
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(Invoice)) == count
    # Once the other writer is done, the same request goes through.
    assert ada.post("/invoices/new", data=VALID_INVOICE_FORM).status_code == 303


def test_unreachable_database_server_is_a_503_not_a_500(tmp_path: Path) -> None:
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "x",
            "PASSWORD_HASH_PROFILE": "CHEAPEST",
            # Nothing listens on port 1: the connection is refused at once.
            "DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/nothing",
            "PROPAGATE_EXCEPTIONS": False,
        }
    )
    client = app.test_client()
    client.set_cookie(AUTH_COOKIE, "a-session-token-the-app-must-look-up")
    response = client.get("/dashboard")
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert "psycopg" not in response.get_data(as_text=True)


def test_an_outage_met_inside_a_rate_limit_key_is_a_503_not_a_500(
    database_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Flask-Limiter computes the API's keys from the principal, so a request's first
    failing statement can be inside a key function. `make load` found a 500 there during a
    PostgreSQL restart: the limiter caught the error, asked again, and met SQLAlchemy's
    PendingRollbackError. Now the key falls back to the address and the view answers 503,
    even if what it meets is that PendingRollbackError (an outage's after-effect)."""
    app = make_test_app(database_file, RATELIMIT_ENABLED=True, PROPAGATE_EXCEPTIONS=False)
    client = signed_in_client(app, "ada@acme.test")
    outage = OperationalError("SELECT …", {}, sqlite3.OperationalError("database is locked"))
    calls = []

    def failing_memberships(*_args: Any, **_kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise outage
        try:
            raise outage
        except OperationalError:
            # Chained implicitly (__context__), as SQLAlchemy raises it.
            raise PendingRollbackError("Can't reconnect until invalid transaction is rolled back")  # noqa: B904

    monkeypatch.setattr(principal_module, "_memberships_of", failing_memberships)
    response = client.get("/api/v1/invoices")
    assert len(calls) >= 2  # the view met the outage again after the key function
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "unavailable"
    assert response.headers["Retry-After"]
    # The limiter never saw the error, so it did not give up on its storage (which
    # would have moved every limit to in-memory counting).
    assert not limiter._storage_dead


def test_an_outage_in_a_rate_limit_key_cannot_spread_an_account_s_guesses(
    database_file: Path,
) -> None:
    """Someone with Tess's password guesses her second factor from many addresses. If a
    database error inside the per-account key fell back to a per-address key, every
    address would get a fresh allowance; the outage bucket is shared, so it fails closed."""
    app = make_test_app(
        database_file, RATELIMIT_ENABLED=True, TWO_FACTOR_ACCOUNT_RATE_LIMIT="5 per hour"
    )
    client = app.test_client()
    response = client.post("/sign-in", data={"email": "tess@acme.test", "password": PASSWORD})
    assert response.headers["Location"].startswith("/sign-in/two-factor")

    first_user_read = {"pending": True}

    def each_request(*_args: Any, **_kwargs: Any) -> None:
        first_user_read["pending"] = True

    request_started.connect(each_request, app)

    def fail_the_key_s_read(_c: Any, _cur: Any, statement: str, *_rest: Any) -> None:
        # The key function reads the pending user first; the view's own read then works.
        if first_user_read["pending"] and "FROM users WHERE users.id" in " ".join(
            statement.split()
        ):
            first_user_read["pending"] = False
            raise OperationalError(statement, {}, sqlite3.OperationalError("database is locked"))

    event.listen(app.extensions["db_engine"], "before_cursor_execute", fail_the_key_s_read)
    statuses = [
        client.post(
            "/sign-in/two-factor",
            data={"code": "000000"},
            environ_base={"REMOTE_ADDR": f"10.0.0.{n}"},
        ).status_code
        for n in range(1, 13)
    ]
    assert statuses == [401] * 5 + [429] * 7


# --- 5. CSV cells never start a formula, whatever the separator ---------------------------

FORMULA_STARTS = ("=", "+", "-", "@")


@pytest.mark.parametrize(
    "customer",
    [
        "Acme;=cmd|' /C calc'!A0;",
        "Acme,=1+1",
        "Acme\t@SUM(A1)",
        '=HYPERLINK("http://evil.example")',
        "Acme; \u200b+1",
        "Acme|-2+3",
    ],
)
def test_csv_export_is_formula_safe_with_any_separator(
    app: Flask, db: Session, customer: str
) -> None:
    ada = signed_in_client(app, "ada@acme.test")
    ada.post("/invoices/new", data={**VALID_INVOICE_FORM, "customer": customer})
    raw = ada.get("/invoices/export.csv").get_data()
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 byte-order mark
    text = raw.decode("utf-8-sig")
    for separator in (",", ";", "\t", "|"):
        for row in csv.reader(io.StringIO(text), delimiter=separator):
            for cell in row:
                visible = cell.lstrip(' "\u200b\ufeff')
                assert not visible.startswith(FORMULA_STARTS), (separator, cell)


def test_csv_safe_keeps_harmless_text_as_it_is() -> None:
    assert csv_safe("Wayne Enterprises, Gotham") == "Wayne Enterprises, Gotham"
    assert csv_safe("Smith-Jones; Ltd") == "Smith-Jones; Ltd"
    assert csv_safe("Acme;=cmd") == "Acme;'=cmd"


def test_csv_fields_are_all_quoted(app: Flask) -> None:
    ada = signed_in_client(app, "ada@acme.test")
    text = ada.get("/invoices/export.csv").get_data().decode("utf-8-sig")
    header = text.splitlines()[0]
    assert header.startswith('"id","number","customer"')


# --- 6. Re-authentication cannot be brute-forced with a stolen cookie ---------------------


def _reauthenticate(client: FlaskClient, password: str) -> Any:
    return client.post("/reauthenticate", data={"password": password, "next": "/dashboard"})


def test_fifth_wrong_reauthentication_password_ends_the_session(app: Flask, db: Session) -> None:
    client = signed_in_client(app, "linus@acme.test")
    for _ in range(4):
        response = _reauthenticate(client, "wrong password guess")
        assert response.status_code == 422
        assert "not right" in response.get_data(as_text=True)
    linus = user(db, "linus@acme.test")
    assert db.scalar(select(UserSession.failed_reauthentications).where(
        UserSession.user_id == linus.id)) == 4  # fmt: skip
    response = _reauthenticate(client, "wrong password guess")
    assert response.status_code == 303
    assert response.headers["Location"] == "/sign-in"
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(UserSession).where(
        UserSession.user_id == linus.id)) == 0  # fmt: skip
    # The stolen cookie is worthless now, even with the right password.
    assert client.get("/dashboard").status_code == 302
    assert _reauthenticate(client, "correct-horse-battery-staple").status_code == 401


def test_right_reauthentication_password_resets_the_count(app: Flask, db: Session) -> None:
    client = signed_in_client(app, "linus@acme.test")
    for _ in range(3):
        _reauthenticate(client, "wrong password guess")
    assert _reauthenticate(client, "correct-horse-battery-staple").status_code == 303
    for _ in range(4):
        assert _reauthenticate(client, "wrong password guess").status_code == 422
    assert client.get("/dashboard").status_code == 200


def test_wrong_reauthentication_passwords_are_limited_per_account_across_sessions(
    database_file: Path,
) -> None:
    app = make_test_app(
        database_file, RATELIMIT_ENABLED=True, REAUTH_ACCOUNT_RATE_LIMIT="3 per hour"
    )
    first, second = (signed_in_client(app, "linus@acme.test") for _ in range(2))
    assert _reauthenticate(first, "guess one").status_code == 422
    assert _reauthenticate(first, "guess two").status_code == 422
    assert _reauthenticate(second, "guess three").status_code == 422
    limited = _reauthenticate(second, "guess four")
    assert limited.status_code == 429
    assert "Retry-After" in limited.headers
    # One budget for every way of proving it: the code form is refused as well.
    code_form = second.post("/reauthenticate/code", data={"password": "guess", "code": "000000"})
    assert code_form.status_code == 429
    # Another account is not affected.
    ada = signed_in_client(app, "ada@acme.test")
    assert _reauthenticate(ada, "correct-horse-battery-staple").status_code == 303
    app.extensions["db_engine"].dispose()


# --- 7. No cheap hashing in production; no customer data in the readable cookie -----------


def test_cheapest_hash_profile_is_refused_outside_the_tests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = {
        "SECRET_KEY": "x" * 32,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}",
        "MAIL_BACKEND": "smtp",
    }
    with pytest.raises(RuntimeError, match="below OWASP's Argon2id minimum"):
        create_app({**settings, "PASSWORD_HASH_PROFILE": "CHEAPEST"})
    # The default (RFC 9106 low memory: 64 MiB, 3 passes) and the high-memory one pass.
    create_app({**settings, "PASSWORD_HASH_PROFILE": "RFC_9106_LOW_MEMORY"})
    # Its start-up dummy hash takes 2 GiB and most of this test's time; what is checked here
    # is that the profile is accepted, so that hash is left out.
    monkeypatch.setattr(passwords, "_dummy_hash_for", lambda profile_name: "")
    create_app({**settings, "PASSWORD_HASH_PROFILE": "RFC_9106_HIGH_MEMORY"})


def _flash_cookie(app: Flask, client: FlaskClient) -> str:
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert cookie is not None
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    return repr(serializer.loads(cookie.value))


def test_flash_messages_carry_no_customer_data(app: Flask, db: Session) -> None:
    ada = signed_in_client(app, "ada@acme.test")
    ada.post("/invoices/new", data={**VALID_INVOICE_FORM, "customer": "Secret Customer GmbH"})
    cookie = _flash_cookie(app, ada)
    assert "was created" in cookie
    assert "Secret Customer" not in cookie
    ada.post("/invoices/inv_7/delete")
    cookie = _flash_cookie(app, ada)
    assert "was deleted" in cookie
    assert invoice(db, "inv_7").customer not in cookie


def test_sign_in_flash_does_not_carry_the_name(app: Flask) -> None:
    client = app.test_client()
    sign_in(client, "ada@acme.test")
    assert "Lovelace" not in _flash_cookie(app, client)
