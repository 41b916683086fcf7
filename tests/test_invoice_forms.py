"""Creating and editing invoices through the form.

Every refusal is a 422 with the message beside the field that caused it, and
nothing saved. Whatever people type is stored as typed and shown escaped.
"""

from __future__ import annotations

import html
import re
from datetime import date
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from markupsafe import escape
from sqlalchemy import select
from sqlalchemy.orm import Session

from invoiceapp.models import Invoice, Organization
from seed import demo_invoice_id
from support import (
    NEW_INVOICE_LOCATION,
    VALID_INVOICE_FORM,
    count_invoices,
    csrf_token_from,
    invoice,
    signed_in_client,
    signed_in_through_the_form,
    user,
)


def form(**changes: str) -> dict[str, str]:
    return {**VALID_INVOICE_FORM, **changes}


def create(client: FlaskClient, **changes: str) -> Any:
    return client.post("/invoices/new", data=form(**changes))


def created(db: Session, response: Any) -> Invoice:
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    match = NEW_INVOICE_LOCATION.fullmatch(response.headers["Location"])
    assert match, response.headers["Location"]
    return invoice(db, match.group(1))


def field_error(page: str, field: str) -> str:
    """The message shown beside one field (the form macro's <p id="<field>-error">)."""
    match = re.search(rf'<p class="field-error" id="{field}-error">(.*?)</p>', page, re.S)
    assert match, f"no error shown beside {field}"
    return html.unescape(match.group(1))


@pytest.fixture()
def ada(app: Flask) -> FlaskClient:
    return signed_in_client(app, "ada@acme.test")


@pytest.fixture()
def linus_draft(db: Session) -> str:
    """Blue Mountain Coffee Roasters, by Linus (demo ids are random: look it up)."""
    return demo_invoice_id(db, "acme", 8)


@pytest.fixture()
def eve_draft(db: Session) -> str:
    """Kastrup Design ApS, by Eve (another member)."""
    return demo_invoice_id(db, "acme", 9)


# --- Valid input ------------------------------------------------------------------------


def test_owner_creates_invoice_with_next_number_and_sees_it_listed(
    ada: FlaskClient, db: Session
) -> None:
    before = count_invoices(db)
    response = create(ada)
    new = created(db, response)
    assert count_invoices(db) == before + 1
    acme = db.scalar(select(Organization).where(Organization.slug == "acme"))
    assert acme is not None
    assert new.organization_id == acme.id
    assert new.number == 10  # Acme's seed goes up to #0009
    assert new.created_by_id == user(db, "ada@acme.test").id
    assert (new.customer, new.amount_minor, new.currency, new.status) == (
        "Stark Industries", 125_000, "EUR", "draft")  # fmt: skip
    assert (new.issue_date, new.due_date) == (date(2024, 5, 1), date(2024, 5, 31))
    assert new.public_id != str(new.id)

    detail = ada.get(response.headers["Location"]).get_data(as_text=True)
    assert "#0010" in detail and "1,250.00 EUR" in detail and "Ada Lovelace" in detail
    listing = ada.get("/invoices").get_data(as_text=True)
    assert f'href="/invoices/{new.public_id}"' in listing
    assert "Stark Industries" in listing


def test_invoice_numbers_count_per_organization(app: Flask, db: Session) -> None:
    # Grace creates one in Acme (up to #9 seeded) and one in Globex (up to #8 seeded).
    grace = signed_in_client(app, "grace@acme.test")
    in_acme = created(db, create(grace, customer="For Acme"))
    assert grace.post("/orgs/switch", data={"organization": "globex"}).status_code == 303
    in_globex = created(db, create(grace, customer="For Globex"))
    assert (in_acme.number, in_globex.number) == (10, 9)
    assert in_acme.organization_id != in_globex.organization_id
    assert created(db, create(grace, customer="Again Globex")).number == 10


def test_deleted_invoices_number_is_never_reused(ada: FlaskClient, db: Session) -> None:
    latest = demo_invoice_id(db, "acme", 9)
    assert ada.post(f"/invoices/{latest}/delete").status_code == 303
    assert created(db, create(ada)).number == 10  # #0009 stays taken in the books


def test_member_creates_invoice_in_their_organization(app: Flask, db: Session) -> None:
    linus = signed_in_client(app, "linus@acme.test")
    new = created(db, create(linus))
    assert new.created_by_id == user(db, "linus@acme.test").id
    # And, as his own draft, he may open it for editing.
    assert linus.get(f"/invoices/{new.public_id}/edit").status_code == 200


def test_amount_with_thousands_separator_and_spaces_is_accepted(
    ada: FlaskClient, db: Session
) -> None:
    assert created(db, create(ada, amount=" 1,000,000,000 ")).amount_minor == 100_000_000_000


def test_due_date_on_issue_date_is_accepted(ada: FlaskClient, db: Session) -> None:
    new = created(db, create(ada, issue_date="2024-05-01", due_date="2024-05-01"))
    assert new.due_date == new.issue_date


# --- Invalid input: 422, the message beside the field, nothing saved --------------------

BAD_INPUT = [
    pytest.param("customer", "", "Enter the customer's name.", id="customer-empty"),
    pytest.param("customer", "   ", "Enter the customer's name.", id="customer-blank"),
    pytest.param("customer", "x" * 201, "200 characters or fewer", id="customer-201-chars"),
    pytest.param("customer", "Ac\x00me", "control characters", id="customer-nul"),
    pytest.param("customer", "Acme\x07Inc", "control characters", id="customer-bell"),
    pytest.param("customer", "Acme\x1b[31mInc", "control characters", id="customer-ansi-escape"),
    pytest.param("customer", "Acme\nInc", "control characters", id="customer-newline-inside"),
    pytest.param("customer", "Acme\x7fInc", "control characters", id="customer-del"),
    # Invisible format characters (category Cf), which the Cc check above lets through:
    pytest.param(
        "customer", "\u200b", "at least one visible character", id="customer-only-zero-width-space"
    ),
    pytest.param(
        "customer", "Acme\u202eInc", "text-direction characters", id="customer-bidi-override"
    ),
    pytest.param("amount", "", "Enter an amount.", id="amount-empty"),
    pytest.param("amount", "0", "greater than zero", id="amount-zero"),
    pytest.param("amount", "-5", "greater than zero", id="amount-negative"),
    pytest.param("amount", "1.005", "two decimal places", id="amount-three-decimals"),
    pytest.param("amount", "1e-3", "two decimal places", id="amount-tiny-exponent"),
    pytest.param("amount", "abc", "as a number", id="amount-letters"),
    pytest.param("amount", "NaN", "not NaN or Infinity", id="amount-nan"),
    pytest.param("amount", "Infinity", "not NaN or Infinity", id="amount-infinity"),
    pytest.param("amount", "-Infinity", "not NaN or Infinity", id="amount-minus-infinity"),
    pytest.param("amount", "1e400", "at most 1,000,000,000", id="amount-1e400"),
    pytest.param("amount", "1000000000.01", "at most 1,000,000,000", id="amount-over-a-billion"),
    pytest.param("amount", "9" * 40, "too long", id="amount-too-long"),
    pytest.param("currency", "XXX", "Not a valid choice", id="currency-unknown"),
    pytest.param("currency", "eur", "Not a valid choice", id="currency-lowercase"),
    pytest.param("issue_date", "2024-13-45", "Not a valid date", id="issue-date-malformed"),
    pytest.param("issue_date", "yesterday", "Not a valid date", id="issue-date-words"),
    pytest.param("due_date", "2024-02-30", "Not a valid date", id="due-date-impossible"),
    pytest.param(
        "due_date", "2024-04-30", "cannot be before the issue date", id="due-before-issue"
    ),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD_INPUT)
def test_bad_input_is_a_form_error_beside_the_field_and_nothing_is_saved(
    ada: FlaskClient, db: Session, field: str, value: str, message: str
) -> None:
    before = count_invoices(db)
    response = create(ada, **{field: value})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Nothing was saved" in page
    assert message in field_error(page, field)
    assert 'aria-invalid="true"' in page
    # Only the bad field is marked: the others were fine.
    assert page.count('class="field-error"') == 1
    assert count_invoices(db) == before


def test_bad_edit_is_422_and_the_invoice_is_unchanged(ada: FlaskClient, db: Session) -> None:
    before = invoice(db, "inv_7")
    snapshot = (before.customer, before.amount_minor, before.updated_at)
    response = ada.post("/invoices/inv_7/edit", data=form(customer="New name", amount="NaN"))
    assert response.status_code == 422
    assert "not NaN or Infinity" in field_error(response.get_data(as_text=True), "amount")
    after = invoice(db, "inv_7")
    assert (after.customer, after.amount_minor, after.updated_at) == snapshot


def test_form_keeps_what_was_typed_after_an_error(ada: FlaskClient) -> None:
    page = create(ada, customer="Keep Me GmbH", amount="abc").get_data(as_text=True)
    assert 'value="Keep Me GmbH"' in page


def test_body_larger_than_max_content_length_is_413_and_nothing_saved(
    app: Flask, ada: FlaskClient, db: Session
) -> None:
    before = count_invoices(db)
    huge = "x" * (app.config["MAX_CONTENT_LENGTH"] + 1)
    response = create(ada, customer=huge)
    assert response.status_code == 413
    assert huge[:1000] not in response.get_data(as_text=True)
    assert count_invoices(db) == before


# --- Whatever people type: stored intact, shown escaped ---------------------------------

UNICODE_CUSTOMERS = [
    pytest.param("🧾 Café", id="emoji-and-accent"),
    pytest.param("شركة الأمل", id="right-to-left"),
    pytest.param("A\u030aström", id="combining-ring"),
    pytest.param("東京トレーディング株式会社", id="cjk"),
    pytest.param("👩\u200d👩\u200d👧 Family Bakery", id="zwj-sequence"),
    pytest.param("کتاب\u200cخانه", id="persian-zero-width-non-joiner"),
]


@pytest.mark.parametrize("customer", UNICODE_CUSTOMERS)
def test_unicode_customer_is_stored_and_shown_intact(
    ada: FlaskClient, db: Session, customer: str
) -> None:
    response = create(ada, customer=customer)
    new = created(db, response)
    assert new.customer == customer  # byte for byte: no normalisation, nothing dropped
    detail = ada.get(response.headers["Location"])
    assert detail.content_type == "text/html; charset=utf-8"
    assert f"<bdi>{customer}</bdi>" in detail.get_data(as_text=True)
    assert f"<bdi>{customer}</bdi>" in ada.get("/invoices").get_data(as_text=True)
    edit_form = ada.get(f"/invoices/{new.public_id}/edit").get_data(as_text=True)
    assert f'value="{customer}"' in edit_form


SCRIPT = "<script>alert(1)</script>"
ESCAPED_SCRIPT = "&lt;script&gt;alert(1)&lt;/script&gt;"


def test_script_in_customer_is_always_escaped(ada: FlaskClient, db: Session) -> None:
    response = create(ada, customer=SCRIPT)
    new = created(db, response)
    assert new.customer == SCRIPT  # stored as typed; escaping is the template's job
    pages = {
        "detail (with the 'created' flash)": ada.get(response.headers["Location"]),
        "list": ada.get("/invoices"),
        "edit form": ada.get(f"/invoices/{new.public_id}/edit"),
        "delete confirmation": ada.get(f"/invoices/{new.public_id}/delete"),
        "dashboard": ada.get("/dashboard"),
    }
    for name, page in pages.items():
        body = page.get_data(as_text=True)
        assert page.status_code == 200, name
        assert SCRIPT not in body, f"raw script on the {name} page"
        if name != "dashboard":
            assert ESCAPED_SCRIPT in body, name


def test_script_in_a_rejected_form_is_escaped_too(ada: FlaskClient) -> None:
    response = create(ada, customer=SCRIPT, amount="abc")
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert SCRIPT not in body
    assert ESCAPED_SCRIPT in body


def test_quote_in_customer_cannot_break_out_of_the_value_attribute(
    ada: FlaskClient, db: Session
) -> None:
    payload = '" autofocus onfocus="alert(1)'
    new = created(db, create(ada, customer=payload))
    assert new.customer == payload
    edit_form = ada.get(f"/invoices/{new.public_id}/edit").get_data(as_text=True)
    assert 'onfocus="alert(1)' not in edit_form
    assert "&#34; autofocus onfocus=&#34;alert(1)" in edit_form


@pytest.mark.parametrize(
    "customer",
    [
        pytest.param("'; DROP TABLE invoices; --", id="drop-table"),
        pytest.param("Robert'); DELETE FROM invoices WHERE ('1'='1", id="delete-all"),
        pytest.param('x" OR "1"="1', id="double-quote-or"),
        pytest.param("100% _discount_ \\ LIKE", id="like-wildcards"),
    ],
)
def test_sql_metacharacters_are_stored_literally(
    ada: FlaskClient, db: Session, customer: str
) -> None:
    before = count_invoices(db)
    new = created(db, create(ada, customer=customer))
    assert new.customer == customer
    assert count_invoices(db) == before + 1  # the table is still there, and whole
    assert invoice(db, "inv_7").deleted_at is None
    assert str(escape(customer)) in ada.get("/invoices").get_data(as_text=True)


# --- Editing ----------------------------------------------------------------------------


def test_member_edits_own_draft(app: Flask, db: Session, linus_draft: str) -> None:
    linus = signed_in_client(app, "linus@acme.test")
    page = linus.get(f"/invoices/{linus_draft}/edit")
    assert page.status_code == 200
    assert 'value="Blue Mountain Coffee Roasters"' in page.get_data(as_text=True)
    number = invoice(db, linus_draft).number

    response = linus.post(
        f"/invoices/{linus_draft}/edit", data=form(customer="Blue Mountain Coffee", amount="700.50")
    )
    assert response.status_code == 303
    assert response.headers["Location"] == f"/invoices/{linus_draft}"
    saved = invoice(db, linus_draft)
    assert (saved.customer, saved.amount_minor, saved.status) == (
        "Blue Mountain Coffee", 70_050, "draft")  # fmt: skip
    assert saved.number == number  # editing never renumbers
    assert saved.created_by_id == user(db, "linus@acme.test").id


def test_member_sends_own_draft_and_then_cannot_edit_it(
    app: Flask, db: Session, linus_draft: str
) -> None:
    linus = signed_in_client(app, "linus@acme.test")
    # Sending is its own action (the form has no status field): tests/test_invoice_actions.py.
    response = linus.post(f"/invoices/{linus_draft}/send")
    assert response.status_code == 303
    assert invoice(db, linus_draft).status == "sent"
    # Asked again on the next request: no longer a draft, so no longer his to edit.
    assert f'href="/invoices/{linus_draft}/edit"' not in linus.get(
        f"/invoices/{linus_draft}"
    ).get_data(as_text=True)
    assert linus.get(f"/invoices/{linus_draft}/edit").status_code == 403
    refused = linus.post(f"/invoices/{linus_draft}/edit", data=form(status="draft"))
    assert refused.status_code == 403
    assert invoice(db, linus_draft).status == "sent"


def test_member_edits_another_members_draft_gets_403(
    app: Flask, db: Session, eve_draft: str
) -> None:
    linus = signed_in_client(app, "linus@acme.test")
    before = invoice(db, eve_draft)
    snapshot = (before.customer, before.amount_minor, before.status, before.updated_at)
    assert 'href="/invoices/' + eve_draft + '/edit"' not in linus.get(
        f"/invoices/{eve_draft}"
    ).get_data(as_text=True)

    assert linus.get(f"/invoices/{eve_draft}/edit").status_code == 403
    response = linus.post(f"/invoices/{eve_draft}/edit", data=form(customer="Hijacked"))
    assert response.status_code == 403
    body = response.get_data(as_text=True)
    assert "invoice.update" in body
    assert "Kastrup Design" not in body
    after = invoice(db, eve_draft)
    assert (after.customer, after.amount_minor, after.status, after.updated_at) == snapshot


# --- Through the real form, CSRF on -----------------------------------------------------


def test_create_through_the_real_form_with_csrf(csrf_app: Flask, db: Session) -> None:
    client = signed_in_through_the_form(csrf_app, "ada@acme.test")
    page = client.get("/invoices/new")
    assert page.status_code == 200
    token = csrf_token_from(page.get_data(as_text=True))
    before = count_invoices(db)
    response = client.post("/invoices/new", data=form(csrf_token=token, customer="Via The Form"))
    assert created(db, response).customer == "Via The Form"
    assert count_invoices(db) == before + 1


def test_create_without_csrf_token_is_400_and_nothing_saved(csrf_app: Flask, db: Session) -> None:
    client = signed_in_through_the_form(csrf_app, "ada@acme.test")
    before = count_invoices(db)
    response = client.post("/invoices/new", data=form(customer="Forged"))
    assert response.status_code == 400
    assert count_invoices(db) == before


def test_edit_through_the_real_form_with_csrf(csrf_app: Flask, db: Session) -> None:
    client = signed_in_through_the_form(csrf_app, "ada@acme.test")
    page = client.get("/invoices/inv_7/edit").get_data(as_text=True)
    assert 'value="Wayne Enterprises"' in page and 'value="48000.00"' in page
    token = csrf_token_from(page)
    response = client.post(
        "/invoices/inv_7/edit", data=form(csrf_token=token, customer="Wayne Enterprises Ltd")
    )
    assert response.status_code == 303
    assert invoice(db, "inv_7").customer == "Wayne Enterprises Ltd"
