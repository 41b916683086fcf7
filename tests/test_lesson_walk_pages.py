"""The pages the README walk leans on say what the walk promises (demo mode).

Each test is one sentence of the walk: the list names inv_7 the way the README does, the
sign-in page says why a signed-out visit landed there, and the outbox shows the reset that
was held back for an unverified address instead of looking empty.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from conftest import make_test_app
from invoiceapp.mail import read_outbox
from support import signed_in_client


@pytest.fixture()
def demo(database_file: Path) -> Iterator[Flask]:
    app = make_test_app(database_file, DEMO_MODE=True)
    yield app
    app.extensions["db_engine"].dispose()


def text(response: Any) -> str:
    return response.get_data(as_text=True)


def test_the_invoice_list_shows_each_reference_beside_its_number(demo: Flask) -> None:
    page = text(signed_in_client(demo, "linus@acme.test").get("/invoices"))
    assert re.search(r'>#0005</a> <code class="ref">inv_7</code>', page)
    assert '#0007</a> <code class="ref">inv_7</code>' not in page


def test_a_signed_out_visit_sent_to_sign_in_is_told_why_in_demo_mode(demo: Flask) -> None:
    client = demo.test_client()
    sent = client.get("/invoices")
    assert (sent.status_code, sent.headers["Location"]) == (302, "/sign-in?next=/invoices")
    page = text(client.get(sent.headers["Location"]))
    assert 'data-testid="why-sign-in"' in page
    assert "<code>/invoices</code> needs a principal" in page
    assert "page-friendly 401" in page
    assert "page-friendly 401" not in text(client.get("/sign-in"))  # no redirect, no note


def test_the_sign_in_page_outside_demo_mode_explains_nothing(app: Flask) -> None:
    assert "page-friendly 401" not in text(app.test_client().get("/sign-in?next=/invoices"))


def test_the_outbox_shows_a_reset_held_back_for_an_unverified_address(demo: Flask) -> None:
    client = demo.test_client()
    assert "Nothing held back yet" in text(client.get("/dev/mail"))
    answered = client.post("/forgot-password", data={"email": "eve@acme.test"})
    answered.get_data()
    answered.close()  # the reset work runs once the answer is sent
    assert answered.status_code == 200

    page = text(client.get("/dev/mail"))
    assert re.search(
        r"<td>eve@acme\.test</td>\s*<td>a password reset link</td>\s*"
        r"<td><strong>held back</strong>: the address was never verified</td>",
        page,
    )
    assert read_outbox(demo.config["MAIL_OUTBOX_DIR"]) == []  # shown, never sent


def test_a_reset_for_a_verified_address_is_mailed_not_listed_as_held_back(demo: Flask) -> None:
    client = demo.test_client()
    answered = client.post("/forgot-password", data={"email": "ada@acme.test"})
    answered.get_data()
    answered.close()
    page = text(client.get("/dev/mail"))
    assert "Nothing held back yet" in page
    assert [mail.to for mail in read_outbox(demo.config["MAIL_OUTBOX_DIR"])] == ["ada@acme.test"]
