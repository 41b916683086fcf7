"""One implementation per invoice operation: the pages and the API call invoicing.py alike.

Before, each had its own, and they differed. The page's delete checked only the status,
so an invoice edited after its confirmation page was opened was deleted unseen, while the
API's DELETE checked the version. The API's create had no idempotency key, so a retried
POST made a second invoice, while the page's form carried a creation key. Each difference
is tested here through both doors, page and API, on SQLite and (when
INVOICEAPP_TEST_POSTGRES_URL is set) on PostgreSQL; the races run against gunicorn with
several workers (conftest's ``shared_served``, which tests/test_delete_races.py uses too).
"""

from __future__ import annotations

import re
import secrets
from collections import Counter
from collections.abc import Callable

import pytest
import requests
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from invoiceapp.db import get_db
from invoiceapp.invoicing import soft_delete
from invoiceapp.models import Invoice
from support import (
    NEW_INVOICE,
    ROUNDS,
    VALID_INVOICE_FORM,
    all_at_once,
    bearer,
    count_invoices,
    invoice,
    make_token,
    sent_invoice,
    signed_in_client,
    signed_in_session,
)

DOORS = ["page", "api"]
EDIT = {k: v for k, v in VALID_INVOICE_FORM.items() if k != "status"}
VERSION_FIELD = re.compile(r'name="version" type="hidden" value="(\d+)"')


@pytest.fixture()
def app(app_on_each_engine: Flask) -> Flask:
    """These tests run on SQLite and again on PostgreSQL (conftest.py)."""
    return app_on_each_engine


def create_with_key(app: Flask, door: str, email: str, key: str) -> Callable[[], tuple[int, str]]:
    """A create through ``door`` carrying ``key``; each call answers (status, invoice id)."""
    if door == "page":
        client = signed_in_client(app, email)
        form = {**VALID_INVOICE_FORM, "creation_key": key, "organization": "acme"}

        def post_form() -> tuple[int, str]:
            response = client.post("/invoices/new", data=form)
            return response.status_code, response.headers.get("Location", "").split("/")[-1]

        return post_form
    raw = make_token(app, email, "acme")
    client = app.test_client()

    def post_json() -> tuple[int, str]:
        response = client.post(
            "/api/v1/invoices", json=NEW_INVOICE, headers=bearer(raw, **{"Idempotency-Key": key})
        )
        return response.status_code, (response.get_json() or {}).get("id", "")

    return post_json


# --- Create: one invoice per key, through either door ------------------------------------


@pytest.mark.parametrize("door", DOORS)
def test_a_create_sent_twice_with_one_key_makes_one_invoice(
    app: Flask, db: Session, door: str
) -> None:
    before = count_invoices(db)
    create = create_with_key(app, door, "linus@acme.test", secrets.token_urlsafe(24))
    first, again = create(), create()
    assert first[0] == again[0] == (303 if door == "page" else 201)
    assert first[1] == again[1] and first[1].startswith("inv_")
    assert count_invoices(db) == before + 1
    made = invoice(db, first[1])
    assert (made.customer, made.status) == ("Stark Industries", "draft")


def test_the_api_says_when_it_answers_a_repeat(app: Flask) -> None:
    raw = make_token(app, "linus@acme.test", "acme")
    headers = bearer(raw, **{"Idempotency-Key": '"' + "k" * 20 + '"'})  # the draft's quoted form
    client = app.test_client()
    first = client.post("/api/v1/invoices", json=NEW_INVOICE, headers=headers)
    again = client.post("/api/v1/invoices", json=NEW_INVOICE, headers=headers)
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert again.headers["Location"] == first.headers["Location"]


@pytest.mark.parametrize("door", DOORS)
def test_someone_else_s_key_is_409_and_shows_nothing_of_their_invoice(
    app: Flask, db: Session, door: str
) -> None:
    key = secrets.token_urlsafe(24)
    status, adas = create_with_key(app, door, "ada@acme.test", key)()
    assert status in (201, 303)
    before = count_invoices(db)
    status, shown = create_with_key(app, door, "grace@acme.test", key)()
    assert status == 409
    assert shown != adas
    assert count_invoices(db) == before


@pytest.mark.parametrize("key", ["short", "x" * 65, "has space in it ok", "ünïcode-key-ünïcode"])
def test_a_malformed_idempotency_key_is_400_and_makes_nothing(
    app: Flask, db: Session, key: str
) -> None:
    raw = make_token(app, "linus@acme.test", "acme")
    before = count_invoices(db)
    response = app.test_client().post(
        "/api/v1/invoices",
        json=NEW_INVOICE,
        headers=bearer(raw, **{"Idempotency-Key": key.encode().decode("latin-1")}),
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "bad_request"
    assert "Idempotency-Key" in response.get_json()["error"]["message"]
    assert count_invoices(db) == before


def test_a_create_without_a_key_still_makes_one_each_time(app: Flask, db: Session) -> None:
    raw = make_token(app, "linus@acme.test", "acme")
    before = count_invoices(db)
    client = app.test_client()
    ids = {
        client.post("/api/v1/invoices", json=NEW_INVOICE, headers=bearer(raw)).get_json()["id"]
        for _ in range(2)
    }
    assert len(ids) == 2 and count_invoices(db) == before + 2


# --- Delete: the version the person saw, through either door -----------------------------


def test_the_delete_page_carries_the_version_it_shows(app: Flask) -> None:
    page = signed_in_client(app, "ada@acme.test").get("/invoices/inv_7/delete")
    found = VERSION_FIELD.search(page.get_data(as_text=True))
    assert found and found.group(1) == "1"


@pytest.mark.parametrize("door", DOORS)
def test_an_invoice_edited_after_it_was_looked_at_is_not_deleted(
    app: Flask, db: Session, door: str
) -> None:
    ada = signed_in_client(app, "ada@acme.test")
    raw = make_token(app, "ada@acme.test", "acme")
    api = app.test_client()
    if door == "page":
        page = ada.get("/invoices/inv_7/delete").get_data(as_text=True)
        found = VERSION_FIELD.search(page)
        assert found
        seen = found.group(1)
    else:
        seen = api.get("/api/v1/invoices/inv_7", headers=bearer(raw)).headers["ETag"]

    grace = signed_in_client(app, "grace@acme.test")
    assert grace.post("/invoices/inv_7/edit", data={**EDIT, "version": "1"}).status_code == 303

    if door == "page":
        response = ada.post("/invoices/inv_7/delete", data={"version": seen})
        assert response.status_code == 409
        assert "was not deleted" in response.get_data(as_text=True)
    else:
        response = api.delete("/api/v1/invoices/inv_7", headers=bearer(raw, **{"If-Match": seen}))
        assert response.status_code == 412
        assert response.get_json()["error"]["code"] == "precondition_failed"
    stored = invoice(db, "inv_7")
    assert (stored.deleted_at, stored.customer, stored.version) == (None, "Stark Industries", 2)


@pytest.mark.parametrize("door", DOORS)
def test_a_delete_based_on_the_current_version_deletes(app: Flask, db: Session, door: str) -> None:
    if door == "page":
        ada = signed_in_client(app, "ada@acme.test")
        assert ada.post("/invoices/inv_7/delete", data={"version": "1"}).status_code == 303
    else:
        raw = make_token(app, "ada@acme.test", "acme")
        headers = bearer(raw, **{"If-Match": '"1"'})
        assert (
            app.test_client().delete("/api/v1/invoices/inv_7", headers=headers).status_code == 204
        )
    stored = invoice(db, "inv_7")
    assert stored.deleted_at is not None and stored.version == 2


def test_a_damaged_version_on_the_delete_form_is_422_and_deletes_nothing(
    app: Flask, db: Session
) -> None:
    ada = signed_in_client(app, "ada@acme.test")
    assert ada.post("/invoices/inv_7/delete", data={"version": "1; drop"}).status_code == 422
    assert invoice(db, "inv_7").deleted_at is None


def test_soft_delete_refuses_a_version_that_is_no_longer_current(app: Flask, db: Session) -> None:
    with app.app_context():
        request_db = get_db()
        seen = request_db.scalar(select(Invoice).where(Invoice.public_id == "inv_7"))
        assert seen is not None
        assert soft_delete(request_db, seen, seen.version - 1) is False
        assert soft_delete(request_db, seen, seen.version + 1) is False
        request_db.rollback()
    assert invoice(db, "inv_7").deleted_at is None


# --- Races, against gunicorn with several workers, on both engines ------------------------

RETRIES = 4


def test_one_key_sent_by_several_workers_at_once_makes_one_invoice(
    shared_served: tuple[str, Flask],
) -> None:
    """A client that retries before the first answer came: RETRIES posts, one key, at once."""
    base, live_app = shared_served
    linus = signed_in_session(base, "linus@acme.test")  # CSRF is off in ``served``: no header
    extra_invoices, split_answers, outcomes = 0, 0, Counter[str]()
    for _ in range(ROUNDS):
        key = secrets.token_urlsafe(24)

        customer = f"Retried {key[:12]}"  # counted by name: the old code kept no key

        def post(key: str = key, customer: str = customer) -> requests.Response:
            return linus.post(
                base + "/api/v1/invoices",
                json={**NEW_INVOICE, "customer": customer},
                headers={"Idempotency-Key": key},
                timeout=30,
            )

        answers = all_at_once([post] * RETRIES)
        outcomes.update(str(answer.status_code) for answer in answers)
        with live_app.extensions["db_sessionmaker"]() as db:
            made = db.scalar(
                select(func.count()).select_from(Invoice).where(Invoice.customer == customer)
            )
        extra_invoices += (made or 0) - 1
        ids = {answer.json().get("id") for answer in answers if answer.status_code == 201}
        split_answers += len(ids) > 1  # answers naming different invoices for one key
    engine = live_app.config["DATABASE_URL"].split(":")[0]
    print(f"\n{engine}: {dict(outcomes)}; extra invoices {extra_invoices} in {ROUNDS} rounds")
    assert (extra_invoices, split_answers) == (0, 0)
    assert outcomes == Counter({"201": ROUNDS * RETRIES})


def test_a_delete_racing_an_edit_never_deletes_what_the_deleter_did_not_see(
    shared_served: tuple[str, Flask],
) -> None:
    """Ada presses Delete on version 1 while Grace saves an edit of version 1: one wins."""
    base, live_app = shared_served
    ada, grace = (
        signed_in_session(base, "ada@acme.test"),
        signed_in_session(base, "grace@acme.test"),
    )
    outcomes: Counter[tuple[int, int]] = Counter()
    edited_and_deleted = 0
    for _ in range(ROUNDS):
        url = f"{base}/invoices/{sent_invoice(live_app)}"
        delete, edit = all_at_once([
            lambda url=url: ada.post(url + "/delete", data={"version": "1"}, allow_redirects=False),
            lambda url=url: grace.post(
                url + "/edit", data={**EDIT, "version": "1"}, allow_redirects=False
            ),
        ])  # fmt: skip
        outcomes[(delete.status_code, edit.status_code)] += 1
        edited_and_deleted += delete.status_code == 303 and edit.status_code == 303
    engine = live_app.config["DATABASE_URL"].split(":")[0]
    print(f"\n{engine}: {dict(outcomes)}; edited and deleted in {edited_and_deleted} of {ROUNDS}")
    assert edited_and_deleted == 0
    for pair in outcomes:  # one won; the other was told (409, or 404 for a deleted one)
        assert sorted(pair)[0] == 303 and sorted(pair)[1] in (404, 409), dict(outcomes)


def test_the_openapi_document_names_the_idempotency_key(app: Flask) -> None:
    document = app.test_client().get("/api/v1/openapi.json").get_json()
    create = document["paths"]["/api/v1/invoices"]["post"]
    headers = {p["name"]: p for p in create["parameters"] if p["in"] == "header"}
    assert headers["Idempotency-Key"]["required"] is False
    assert "409" in create["responses"]
    patch = document["paths"]["/api/v1/invoices/{invoice_id}"]["patch"]
    assert "Idempotency-Key" not in {p["name"] for p in patch["parameters"]}
