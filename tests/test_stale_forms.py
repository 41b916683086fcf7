"""CSRF tokens expire with an idle session; a stale form says so and keeps what was typed.

Issue 15, item 8. The page's token is made "earlier" by moving the signing clock of
itsdangerous (the library that signs Flask-WTF's tokens) back while the page is fetched:
the token is then exactly one the app issued that long ago. No sleeping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
from flask import Flask
from itsdangerous import TimestampSigner
from sqlalchemy.orm import Session

from conftest import make_test_app
from support import PASSWORD, csrf_token_from, invoice, latest_mail_to, signed_in_through_the_form

HOUR = 3600
Earlier = Callable[[int], AbstractContextManager[None]]


@pytest.fixture()
def signed_earlier(monkeypatch: pytest.MonkeyPatch) -> Earlier:
    """``with signed_earlier(7200):`` tokens issued inside were signed two hours ago."""

    @contextmanager
    def shifted(seconds: int) -> Iterator[None]:
        real = TimestampSigner.get_timestamp
        with monkeypatch.context() as patch:
            patch.setattr(TimestampSigner, "get_timestamp", lambda self: real(self) - seconds)
            yield

    return shifted


def test_csrf_tokens_last_as_long_as_an_idle_session(database_file: Path) -> None:
    app = make_test_app(database_file, SESSION_IDLE_SECONDS=1200)
    assert app.config["WTF_CSRF_TIME_LIMIT"] == 1200
    assert make_test_app(database_file, WTF_CSRF_TIME_LIMIT=60).config["WTF_CSRF_TIME_LIMIT"] == 60


def test_a_delete_form_signed_two_hours_ago_no_longer_deletes(
    csrf_app: Flask, db: Session, signed_earlier: Earlier
) -> None:
    client = signed_in_through_the_form(csrf_app)
    with signed_earlier(2 * HOUR):
        old = csrf_token_from(client.get("/invoices/inv_7/delete").get_data(as_text=True))

    response = client.post("/invoices/inv_7/delete", data={"csrf_token": old})

    assert response.status_code == 400
    assert invoice(db, "inv_7").deleted_at is None  # still there
    page = response.get_data(as_text=True)
    assert "This form was open for more than 30 minutes" in page
    fresh = csrf_token_from(page)
    assert fresh != old
    # The page it came from, with a working token: one more click deletes.
    assert client.post("/invoices/inv_7/delete", data={"csrf_token": fresh}).status_code == 303
    assert invoice(db, "inv_7").deleted_at is not None


def test_a_form_a_little_younger_than_an_idle_session_still_works(
    csrf_app: Flask, db: Session, signed_earlier: Earlier
) -> None:
    client = signed_in_through_the_form(csrf_app)
    with signed_earlier(29 * 60):
        token = csrf_token_from(client.get("/invoices/inv_7/delete").get_data(as_text=True))
    assert client.post("/invoices/inv_7/delete", data={"csrf_token": token}).status_code == 303


def test_a_two_day_old_sign_in_form_refuses_and_keeps_the_email_not_the_password(
    csrf_app: Flask, signed_earlier: Earlier
) -> None:
    client = csrf_app.test_client()
    with signed_earlier(48 * HOUR):
        old = csrf_token_from(client.get("/sign-in?next=/invoices").get_data(as_text=True))

    typed = {"email": "ada@acme.test", "password": PASSWORD, "next": "/invoices"}
    response = client.post("/sign-in", data={**typed, "csrf_token": old})

    assert response.status_code == 400
    assert "invoiceapp_sid" not in (response.headers.get("Set-Cookie") or "")  # not signed in
    page = response.get_data(as_text=True)
    assert "This form was open for more than 30 minutes" in page
    assert 'value="ada@acme.test"' in page
    assert PASSWORD not in page
    assert 'value="/invoices"' in page
    fresh = csrf_token_from(page)
    assert fresh != old

    again = client.post("/sign-in", data={**typed, "csrf_token": fresh})
    assert again.status_code == 303
    assert again.headers["Location"] == "/invoices"


def test_a_stale_invoice_edit_comes_back_filled_in_and_changes_nothing(
    csrf_app: Flask, db: Session, signed_earlier: Earlier
) -> None:
    client = signed_in_through_the_form(csrf_app)
    with signed_earlier(HOUR):
        form_page = client.get("/invoices/inv_7/edit").get_data(as_text=True)
    before = invoice(db, "inv_7")
    customer_before, version_before = before.customer, before.version
    typed = {
        "customer": "Wayne Enterprises",
        "amount": "4321.00",
        "currency": "EUR",
        "status": "sent",
        "issue_date": "2024-05-01",
        "due_date": "2024-05-31",
        "version": str(version_before),
    }

    response = client.post(
        "/invoices/inv_7/edit", data={**typed, "csrf_token": csrf_token_from(form_page)}
    )

    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert 'value="Wayne Enterprises"' in page and 'value="4321.00"' in page
    after = invoice(db, "inv_7")
    assert (after.customer, after.version) == (customer_before, version_before)

    sent = client.post("/invoices/inv_7/edit", data={**typed, "csrf_token": csrf_token_from(page)})
    assert sent.status_code == 303
    assert invoice(db, "inv_7").customer == "Wayne Enterprises"


def test_a_stale_reset_form_keeps_the_link_working_and_the_old_password(
    csrf_app: Flask, outbox: Path, signed_earlier: Earlier
) -> None:
    client = csrf_app.test_client()
    token = csrf_token_from(client.get("/forgot-password").text)
    asked = client.post("/forgot-password", data={"email": "ada@acme.test", "csrf_token": token})
    asked.close()  # the mail leaves once the answer is sent
    mail = latest_mail_to(outbox, "ada@acme.test")
    assert mail is not None
    (link,) = [link for link in mail.links if "/reset-password/" in link]
    path = link.removeprefix(csrf_app.config["BASE_URL"])
    with signed_earlier(HOUR):
        old = csrf_token_from(client.get(path).text)
    new = "tangerine-lighthouse-quietly-hums"
    typed = {"new_password": new, "confirm_password": new}

    response = client.post(path, data={**typed, "csrf_token": old})

    assert response.status_code == 400
    assert new not in response.text
    assert "This form was open for more than 30 minutes" in response.text
    # The old password still works.
    assert signed_in_through_the_form(csrf_app).get("/dashboard").status_code == 200
    done = client.post(path, data={**typed, "csrf_token": csrf_token_from(response.text)})
    assert done.status_code == 303 and done.headers["Location"] == "/sign-in"


def test_someone_elses_expired_token_gets_the_plain_400_and_no_echo(
    csrf_app: Flask, db: Session, signed_earlier: Earlier
) -> None:
    # Another site cannot fill in our forms by posting its own old token with its values.
    stranger = csrf_app.test_client()
    with signed_earlier(2 * HOUR):
        theirs = csrf_token_from(stranger.get("/sign-in").get_data(as_text=True))
    victim = signed_in_through_the_form(csrf_app)

    response = victim.post(
        "/invoices/inv_7/edit",
        data={"customer": "Planted By Another Site", "amount": "1.00", "csrf_token": theirs},
    )

    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "Planted By Another Site" not in page
    assert 'name="customer"' not in page
    assert invoice(db, "inv_7").customer != "Planted By Another Site"


def test_a_stale_one_button_post_says_so_on_the_400_page(
    csrf_app: Flask, db: Session, signed_earlier: Earlier
) -> None:
    client = signed_in_through_the_form(csrf_app)
    with signed_earlier(2 * HOUR):
        old = csrf_token_from(client.get("/invoices/inv_7").get_data(as_text=True))

    response = client.post("/invoices/inv_7/void", data={"csrf_token": old})

    assert response.status_code == 400
    assert "This page was open for more than 30 minutes" in response.get_data(as_text=True)
    assert invoice(db, "inv_7").status == "sent"


def test_the_api_with_an_expired_token_keeps_its_json_400(
    csrf_app: Flask, db: Session, signed_earlier: Earlier
) -> None:
    client = signed_in_through_the_form(csrf_app)
    with signed_earlier(2 * HOUR):
        old = csrf_token_from(client.get("/dashboard").get_data(as_text=True))

    response = client.delete("/api/v1/invoices/inv_7", headers={"X-CSRFToken": old})

    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "bad_request" and error["reason"] == "csrf"
    assert "expired" in error["message"]
    assert invoice(db, "inv_7").status == "sent"
