"""/account/tokens: personal access tokens made, shown once, listed and revoked."""

from __future__ import annotations

import hashlib
import re

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from conftest import Clock
from invoiceapp.models import PersonalAccessToken
from support import (
    PASSWORD,
    bearer,
    csrf_token_from,
    make_token,
    signed_in_client,
    signed_in_through_the_form,
)

TOKEN = re.compile(r"ia_pat_[A-Za-z0-9_-]{43}")
FORM = {"name": "nightly export", "organization": "acme", "scope": "read", "expires_days": "30"}


def post_form(client: FlaskClient, path: str, data: dict[str, str]) -> object:
    token = csrf_token_from(client.get("/account/tokens").get_data(as_text=True))
    return client.post(path, data={**data, "csrf_token": token})


def tokens(db: Session) -> list[PersonalAccessToken]:
    db.expire_all()
    return list(db.scalars(select(PersonalAccessToken).order_by(PersonalAccessToken.id)))


def test_tokens_page_needs_a_sign_in(client: FlaskClient) -> None:
    response = client.get("/account/tokens")
    assert response.status_code == 302
    assert response.headers["Location"] == "/sign-in?next=/account/tokens"
    assert client.post("/account/tokens", data=FORM).status_code == 401


def test_a_new_token_is_shown_once_and_only_its_hash_is_stored(
    csrf_app: Flask, db: Session
) -> None:
    ada = signed_in_through_the_form(csrf_app, "ada@acme.test")
    response = post_form(ada, "/account/tokens", FORM)
    assert response.status_code == 201
    page = response.get_data(as_text=True)
    (raw,) = TOKEN.findall(page)
    assert response.headers["Cache-Control"] == "no-store"
    assert raw not in str(response.headers)  # not in a cookie (flash messages are readable)
    (stored,) = tokens(db)
    assert stored.token_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert (stored.name, stored.scope, stored.organization.slug) == (
        "nightly export",
        "read",
        "acme",
    )
    assert raw not in {stored.public_id, stored.name, stored.token_hash}
    later = ada.get("/account/tokens").get_data(as_text=True)
    assert raw not in later and not TOKEN.search(later)
    assert "nightly export" in later and stored.public_id in later
    # It works, without a cookie and without a CSRF token.
    me = csrf_app.test_client().get("/api/v1/me", headers=bearer(raw))
    assert me.status_code == 200
    assert me.get_json()["authentication"]["token"]["scope"] == "read"


def test_the_list_shows_scope_organization_dates_last_use_and_state(app: Flask) -> None:
    raw = make_token(app, "grace@acme.test", "globex", "write")
    grace = signed_in_client(app, "grace@acme.test")
    page = grace.get("/account/tokens").get_data(as_text=True)
    row = page[page.index('data-testid="tokens"') : page.index("</table>")]
    assert "globex" in row and "write" in row and "active" in row
    assert '<td data-label="Last used" data-testid="last-used">never</td>' in row
    app.test_client().get("/api/v1/me", headers=bearer(raw))
    page = grace.get("/account/tokens").get_data(as_text=True)
    assert '<td data-label="Last used" data-testid="last-used"><time' in page


def test_bad_fields_are_422_and_make_no_token(csrf_app: Flask, db: Session) -> None:
    ada = signed_in_through_the_form(csrf_app, "ada@acme.test")
    for change in [
        {"name": ""},
        {"name": "x" * 101},
        {"name": "tab\tname"},
        {"organization": "globex"},  # not one of Ada's organizations
        {"organization": "nope"},
        {"scope": "admin"},
        {"expires_days": "0"},
        {"expires_days": "91"},
        {"expires_days": "ten"},
    ]:
        response = post_form(ada, "/account/tokens", {**FORM, **change})
        assert response.status_code == 422, change
        assert not TOKEN.search(response.get_data(as_text=True))
    assert tokens(db) == []


def test_making_a_token_needs_fresh_proof(app: Flask, db: Session, clock: Clock) -> None:
    """A token is a credential that outlives the session: a stolen, stale session must
    not mint one (security review finding). Revoking needs no proof."""
    client = signed_in_client(app, "ada@acme.test")
    clock.advance(minutes=11)
    page = client.get("/account/tokens").get_data(as_text=True)
    assert 'href="/reauthenticate?next=/account/tokens"' in page
    assert 'action="/account/tokens"' not in page  # no form to fill in and then lose
    refused = client.post("/account/tokens", data=FORM)
    assert refused.headers["Location"] == "/reauthenticate?next=/account/tokens"
    assert tokens(db) == []

    client.post("/reauthenticate", data={"password": PASSWORD, "next": "/account/tokens"})
    assert client.post("/account/tokens", data=FORM).status_code == 201
    assert len(tokens(db)) == 1


def test_every_organization_of_the_user_can_be_chosen(app: Flask, db: Session) -> None:
    grace = signed_in_client(app, "grace@acme.test")
    page = grace.get("/account/tokens").get_data(as_text=True)
    assert 'value="acme"' in page and 'value="globex"' in page
    response = grace.post("/account/tokens", data={**FORM, "organization": "globex"})
    assert response.status_code == 201
    assert tokens(db)[0].organization.slug == "globex"


def test_a_forged_post_is_400_and_makes_no_token(csrf_app: Flask, db: Session) -> None:
    ada = signed_in_through_the_form(csrf_app, "ada@acme.test")
    assert ada.post("/account/tokens", data=FORM).status_code == 400
    assert tokens(db) == []


def test_revoking_stops_the_token_on_the_next_request(csrf_app: Flask, db: Session) -> None:
    raw = make_token(csrf_app, "ada@acme.test", "acme")
    api = csrf_app.test_client()
    assert api.get("/api/v1/invoices", headers=bearer(raw)).status_code == 200
    ada = signed_in_through_the_form(csrf_app, "ada@acme.test")
    (stored,) = tokens(db)
    response = post_form(ada, f"/account/tokens/{stored.public_id}/revoke", {})
    assert response.status_code == 303
    assert response.headers["Location"] == "/account/tokens"
    refused = api.get("/api/v1/invoices", headers=bearer(raw))
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == 'Bearer realm="InvoiceApp", error="invalid_token"'
    assert tokens(db)[0].revoked_at is not None
    assert "revoked" in ada.get("/account/tokens").get_data(as_text=True)


def test_another_user_s_token_cannot_be_revoked_or_seen(app: Flask, db: Session) -> None:
    raw = make_token(app, "hank@globex.test", "globex")
    (hanks,) = tokens(db)
    linus = signed_in_client(app, "linus@acme.test")
    assert hanks.public_id not in linus.get("/account/tokens").get_data(as_text=True)
    assert linus.post(f"/account/tokens/{hanks.public_id}/revoke").status_code == 404
    assert linus.post("/account/tokens/pat_0000000000000000/revoke").status_code == 404
    assert linus.post("/account/tokens/../revoke").status_code == 404
    assert tokens(db)[0].revoked_at is None
    assert app.test_client().get("/api/v1/me", headers=bearer(raw)).status_code == 200


def test_tokens_cannot_manage_tokens(app: Flask, db: Session) -> None:
    raw = make_token(app, "ada@acme.test", "acme")
    client = app.test_client()
    assert client.get("/account/tokens", headers=bearer(raw)).status_code == 302
    assert client.post("/account/tokens", data=FORM, headers=bearer(raw)).status_code == 401
    assert db.scalar(select(func.count()).select_from(PersonalAccessToken)) == 1


def test_creating_and_revoking_a_token_are_security_events(app: Flask, db: Session) -> None:
    from invoiceapp.models import SecurityEvent

    ada = signed_in_client(app, "ada@acme.test")
    assert ada.post("/account/tokens", data=FORM).status_code == 201
    (stored,) = tokens(db)
    assert ada.post(f"/account/tokens/{stored.public_id}/revoke").status_code == 303
    kinds = db.scalars(
        select(SecurityEvent.kind)
        .where(SecurityEvent.user_id == stored.user_id)
        .order_by(SecurityEvent.id)
    ).all()
    assert kinds[-2:] == ["api_token_created", "api_token_revoked"]
    page = ada.get("/account/security").get_data(as_text=True)
    assert "API token created" in page and "nightly export" not in page
