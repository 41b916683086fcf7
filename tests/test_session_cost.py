"""What "who is asking" costs per request (issue 21): the session cookie's statement,
Flask-Login, and the principal. Each saving keeps its guarantee; none is timed here."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import delete, select

from conftest import POSTGRES_URL, app_on_postgres
from invoiceapp.authn.sessions import current_session
from invoiceapp.db import get_db
from invoiceapp.extensions import login_manager
from invoiceapp.models import Membership, User
from invoiceapp.principal import require_principal
from support import (
    AUTH_COOKIE,
    bearer,
    drop_the_pooled_connection,
    make_token,
    signed_in_client,
    statements_run,
)


def _no_flask_login_loader(*_args: object) -> None:
    raise AssertionError("Flask-Login's loader ran: the gate should have set the user")


def test_a_protected_page_never_runs_flask_logins_own_loader(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The authentication gate loads the user once and leaves it where current_user looks,
    so @login_required and every current_user after it skip Flask-Login's loader (signals,
    session-protection hash, reads of the cookie session). Who gets in is unchanged."""
    client = signed_in_client(app, "ada@acme.test")
    monkeypatch.setattr(login_manager, "_load_user", _no_flask_login_loader)
    page = client.get("/invoices/inv_7")
    assert page.status_code == 200 and "Ada Lovelace" in page.get_data(as_text=True)

    anonymous = app.test_client()
    assert anonymous.get("/invoices/inv_7").status_code == 302  # to the sign-in page
    assert anonymous.post("/invoices/inv_7/delete").status_code == 401


def test_a_revoked_cookie_on_a_protected_page_is_still_refused(app: Flask) -> None:
    """The gate's own lookup is the same server-side check: a cookie whose session row is
    gone is anonymous on the very next request."""
    client = signed_in_client(app, "ada@acme.test")
    cookie = client.get_cookie(AUTH_COOKIE)
    assert cookie is not None and client.get("/invoices/inv_7").status_code == 200
    assert client.post("/sign-out").status_code == 303
    copied = app.test_client()
    copied.set_cookie(AUTH_COOKIE, cookie.value)
    assert copied.get("/invoices/inv_7").status_code == 302


def test_the_session_statement_brings_its_user_without_a_statement_of_its_own(
    app: Flask,
) -> None:
    """The user is a separate entity of the session's statement (not contains_eager), and
    is handed to ``auth_session.user``: reading it costs no second statement."""
    client = signed_in_client(app, "ada@acme.test")
    cookie = client.get_cookie(AUTH_COOKIE)
    assert cookie is not None
    headers = {"Cookie": f"{AUTH_COOKIE}={cookie.value}"}
    with app.test_request_context("/dashboard", headers=headers), statements_run(app) as seen:
        auth_session = current_session()
        assert auth_session is not None
        assert auth_session.user.display_name == "Ada Lovelace"
        assert auth_session.user is auth_session.user  # the same object each time
    assert len(seen) == 1 and "FROM sessions" in seen[0], seen


def test_the_invoice_page_runs_two_statements_on_sqlite_too(app: Flask) -> None:
    """Who is asking (session, user, roles) is one statement, the invoice the other."""
    client = signed_in_client(app, "ada@acme.test")
    assert client.get("/invoices/inv_7").status_code == 200  # "last seen" written here
    with statements_run(app) as seen:
        assert client.get("/invoices/inv_7").status_code == 200
    assert len(seen) == 2, seen
    assert "FROM sessions" in seen[0] and "FROM invoices" in seen[1]


def test_the_principal_holds_the_user_itself_not_the_current_user_proxy(app: Flask) -> None:
    """principal.user is read about eight times a page; through the current_user proxy each
    read would run Flask-Login's lookup again."""
    client = signed_in_client(app, "ada@acme.test")
    cookie = client.get_cookie(AUTH_COOKIE)
    assert cookie is not None
    headers = {"Cookie": f"{AUTH_COOKIE}={cookie.value}"}
    with app.test_request_context("/dashboard", headers=headers):
        principal = require_principal()
        assert type(principal.user) is User
        auth_session = current_session()
        assert auth_session is not None and principal.user is auth_session.user
        assert require_principal() is principal  # built once per request


def test_a_token_its_user_and_its_role_are_one_statement(app: Flask) -> None:
    """The API's bearer path reads like the session's: the token, its user, its organization
    and the user's role there in one statement (it was three)."""
    raw = make_token(app, "ada@acme.test", "acme")
    client = app.test_client()
    assert client.get("/api/v1/me", headers=bearer(raw)).status_code == 200  # "last used"
    with statements_run(app) as seen:
        me = client.get("/api/v1/me", headers=bearer(raw))
    assert me.status_code == 200, me.get_json()
    assert [o["slug"] for o in me.get_json()["organizations"]] == ["acme"]
    assert me.get_json()["authentication"]["token"]["organization"] == "acme"
    who_asks = [s for s in seen if any(f"FROM {t}" in s for t in WHO_ASKS_TABLES)]
    assert len(who_asks) == 1 and "FROM personal_access_tokens" in who_asks[0], seen


WHO_ASKS_TABLES = ("personal_access_tokens", "users", "memberships")


def test_a_token_of_a_removed_member_still_reaches_nothing(app: Flask) -> None:
    """The role comes from the token's statement now: once its user has left the token's
    organization, the token is as good as a stranger's there (the API says so: no
    organizations), on its very next request."""
    raw = make_token(app, "ada@acme.test", "acme")
    client = app.test_client()
    assert [o["slug"] for o in client.get("/api/v1/me", headers=bearer(raw)).get_json()[
        "organizations"]] == ["acme"]  # fmt: skip
    with app.app_context():
        db = get_db()
        ada = db.scalar(select(User).where(User.email == "ada@acme.test"))
        assert ada is not None
        db.execute(delete(Membership).where(Membership.user_id == ada.id))
        db.commit()
    me = client.get("/api/v1/me", headers=bearer(raw))
    assert me.status_code == 200 and me.get_json()["organizations"] == []
    assert client.get("/api/v1/invoices/inv_7", headers=bearer(raw)).status_code == 404


@pytest.mark.skipif(not POSTGRES_URL, reason="needs PostgreSQL")
def test_a_token_request_that_meets_a_dropped_connection_is_tried_again() -> None:
    """The token's statement is the request's first read, so like the session's it is tried
    once more on a fresh connection when the pooled one was dropped (a restart)."""
    with app_on_postgres() as app:
        raw = make_token(app, "ada@acme.test", "acme")
        client = app.test_client()
        assert client.get("/api/v1/me", headers=bearer(raw)).status_code == 200
        drop_the_pooled_connection(app)
        me = client.get("/api/v1/me", headers=bearer(raw))
        assert me.status_code == 200, me.get_data(as_text=True)
        assert [o["slug"] for o in me.get_json()["organizations"]] == ["acme"]
