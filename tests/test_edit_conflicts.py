"""Two people editing one invoice: the second save is a 409 that shows both versions.

The edit form carries the invoice's version in a hidden field. A save based on an older
version changes nothing and answers 409 with the saved values in the form and what this
person typed beside them. Every change bumps the version: edits, status actions,
deletes and API PATCHes alike.
"""

from __future__ import annotations

import html as html_lib
import re

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from support import (
    PASSWORD,
    VALID_INVOICE_FORM,
    all_at_once,
    bearer,
    invoice,
    live_server,
    make_token,
    signed_in_client,
)

EDIT = {k: v for k, v in VALID_INVOICE_FORM.items() if k != "status"}


def version_in(page: str) -> str:
    match = re.search(r'name="version" type="hidden" value="(\d+)"', page) or re.search(
        r'id="version" name="version" type="hidden" value="(\d+)"', page
    )
    assert match, "no version field in the form"
    return match.group(1)


def value_of(page: str, name: str) -> str:
    match = re.search(rf'name="{name}"[^>]*value="([^"]*)"', page)
    assert match, name
    return html_lib.unescape(match.group(1))


def open_edit_form(client: FlaskClient, public_id: str) -> dict[str, str]:
    page = client.get(f"/invoices/{public_id}/edit").get_data(as_text=True)
    return {**EDIT, "version": version_in(page)}


def test_the_edit_form_carries_the_invoice_s_version(app: Flask) -> None:
    page = signed_in_client(app, "ada@acme.test").get("/invoices/inv_7/edit")
    assert version_in(page.get_data(as_text=True)) == "1"
    new = signed_in_client(app, "ada@acme.test").get("/invoices/new").get_data(as_text=True)
    assert 'name="version"' not in new


def test_a_save_bumps_the_version(app: Flask, db: Session) -> None:
    ada = signed_in_client(app, "ada@acme.test")
    response = ada.post("/invoices/inv_7/edit", data=open_edit_form(ada, "inv_7"))
    assert response.status_code == 303
    assert invoice(db, "inv_7").version == 2
    assert version_in(ada.get("/invoices/inv_7/edit").get_data(as_text=True)) == "2"


def test_the_second_of_two_edits_gets_a_409_with_both_versions_and_saves_nothing(
    app: Flask, db: Session
) -> None:
    ada = signed_in_client(app, "ada@acme.test")
    grace = signed_in_client(app, "grace@acme.test")
    adas_form = open_edit_form(ada, "inv_7")
    graces_form = open_edit_form(grace, "inv_7")

    saved = ada.post("/invoices/inv_7/edit", data={**adas_form, "customer": "Ada's Customer"})
    assert saved.status_code == 303

    conflict = grace.post(
        "/invoices/inv_7/edit",
        data={**graces_form, "customer": "Grace's Customer", "amount": "99.50"},
    )
    assert conflict.status_code == 409
    page = conflict.get_data(as_text=True)
    assert 'data-testid="edit-conflict"' in page
    assert "Someone else saved this invoice" in page
    assert "Grace&#39;s Customer" in page and "99.50" in page  # what she typed, beside...
    assert value_of(page, "customer") == "Ada's Customer"  # ...the saved values, in the form
    assert version_in(page) == "2"
    stored = invoice(db, "inv_7")
    assert stored.customer == "Ada's Customer" and stored.version == 2

    # Having seen the current version, she may save over it deliberately.
    again = grace.post(
        "/invoices/inv_7/edit", data={**graces_form, "customer": "Grace's", "version": "2"}
    )
    assert again.status_code == 303
    assert invoice(db, "inv_7").customer == "Grace's"


def test_a_status_action_in_between_is_a_conflict_too(app: Flask, db: Session) -> None:
    ada = signed_in_client(app, "ada@acme.test")
    draft = ada.post("/invoices/new", data=VALID_INVOICE_FORM).headers["Location"].split("/")[-1]
    form = open_edit_form(ada, draft)
    grace = signed_in_client(app, "grace@acme.test")
    assert grace.post(f"/invoices/{draft}/send").status_code == 303
    conflict = ada.post(f"/invoices/{draft}/edit", data={**form, "customer": "Too late"})
    assert conflict.status_code == 409
    row = re.search(r"Status.*?</tr>", conflict.get_data(as_text=True), re.S)
    assert row and "sent" in row.group(0)
    assert invoice(db, draft).customer == VALID_INVOICE_FORM["customer"]


def test_an_api_patch_in_between_is_a_conflict(app: Flask, db: Session) -> None:
    ada = signed_in_client(app, "ada@acme.test")
    form = open_edit_form(ada, "inv_7")
    raw = make_token(app, "grace@acme.test", "acme")
    patched = app.test_client().patch(
        "/api/v1/invoices/inv_7",
        json={"customer": "From a script"},
        headers=bearer(raw, **{"If-Match": '"1"'}),
    )
    assert patched.status_code == 200
    assert ada.post("/invoices/inv_7/edit", data=form).status_code == 409
    assert invoice(db, "inv_7").customer == "From a script"


def test_a_version_that_never_existed_is_a_conflict(app: Flask, db: Session) -> None:
    ada = signed_in_client(app, "ada@acme.test")
    for version in ("0", "7"):
        response = ada.post("/invoices/inv_7/edit", data={**EDIT, "version": version})
        assert response.status_code == 409
    assert invoice(db, "inv_7").version == 1


def test_a_post_without_the_version_field_still_saves(app: Flask, db: Session) -> None:
    # Scripts that post the form by hand (and older tabs) keep working, as an API write
    # without If-Match does: checked against the version the request read.
    ada = signed_in_client(app, "ada@acme.test")
    assert ada.post("/invoices/inv_7/edit", data=EDIT).status_code == 303
    assert invoice(db, "inv_7").version == 2


@pytest.mark.parametrize("version", ["abc", "-1", "1.5", "9" * 12])
def test_a_damaged_version_field_is_a_422(app: Flask, db: Session, version: str) -> None:
    ada = signed_in_client(app, "ada@acme.test")
    response = ada.post("/invoices/inv_7/edit", data={**EDIT, "customer": "X", "version": version})
    assert response.status_code == 422
    assert invoice(db, "inv_7").customer == "Wayne Enterprises"


def test_a_deleted_invoice_is_404_not_a_conflict(app: Flask, db: Session) -> None:
    grace = signed_in_client(app, "grace@acme.test")
    form = open_edit_form(grace, "inv_7")
    ada = signed_in_client(app, "ada@acme.test")
    assert ada.post("/invoices/inv_7/delete").status_code == 303
    assert invoice(db, "inv_7").version == 2
    assert grace.post("/invoices/inv_7/edit", data=form).status_code == 404


# --- Both at once, over real HTTP --------------------------------------------------------


def test_two_saves_of_the_same_version_at_once_one_wins_one_conflicts(live_app: Flask) -> None:
    with live_server(live_app) as base:
        browsers = []
        for email in ("ada@acme.test", "grace@acme.test"):
            browser = requests.Session()
            response = browser.post(
                base + "/sign-in",
                data={"email": email, "password": PASSWORD},
                allow_redirects=False,
            )
            assert response.status_code == 303
            browsers.append(browser)
        forms = [{**EDIT, "customer": f"Saved by {n}", "version": "1"} for n in ("Ada", "Grace")]

        def save(browser: requests.Session, form: dict[str, str]) -> requests.Response:
            return browser.post(base + "/invoices/inv_7/edit", data=form, allow_redirects=False)

        results = all_at_once(
            [lambda b=b, f=f: save(b, f) for b, f in zip(browsers, forms, strict=True)]
        )
    statuses = sorted(response.status_code for response in results)
    assert statuses == [303, 409]
    winner = forms[[r.status_code for r in results].index(303)]["customer"]
    with live_app.extensions["db_sessionmaker"]() as db:
        stored = invoice(db, "inv_7")
        assert stored.customer == winner and stored.version == 2
