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
    assert re.search(
        r'>#0005</a></td>\s*<td data-label="Reference"><code class="ref">inv_7</code>', page
    )


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
    # The reset is shown, never sent; the mailbox gets a claim link instead (never a reset).
    mails = read_outbox(demo.config["MAIL_OUTBOX_DIR"])
    assert [mail.subject for mail in mails] == ["Claim your email address on InvoiceApp"]
    assert "/reset-password/" not in mails[0].text and "/claim-address/" in mails[0].text


def test_a_reset_for_a_verified_address_is_mailed_not_listed_as_held_back(demo: Flask) -> None:
    client = demo.test_client()
    answered = client.post("/forgot-password", data={"email": "ada@acme.test"})
    answered.get_data()
    answered.close()
    page = text(client.get("/dev/mail"))
    assert "Nothing held back yet" in page
    assert [mail.to for mail in read_outbox(demo.config["MAIL_OUTBOX_DIR"])] == ["ada@acme.test"]


# --- Polish found on the walk -------------------------------------------------------------


def test_the_favicon_is_an_svg_not_a_404_on_every_page(demo: Flask) -> None:
    client = demo.test_client()
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
    assert b"<svg" in icon.data
    assert 'rel="icon" href="/static/favicon.svg"' in text(client.get("/"))


def test_reset_the_demo_asks_before_it_wipes_anything(demo: Flask) -> None:
    ada = signed_in_client(demo, "ada@acme.test")
    assert ada.post("/invoices/inv_7/delete").status_code == 303
    tour = text(ada.get("/tour"))
    assert 'href="/demo/reset"' in tour and 'action="/demo/reset"' not in tour

    page = text(ada.get("/demo/reset"))
    assert "everyone is signed out" in page and "Yes, reset everything" in page
    stray = ada.post("/demo/reset")  # no confirmation: an old tab, a stray form
    assert (stray.status_code, stray.headers["Location"]) == (303, "/demo/reset")
    assert ada.get("/invoices/inv_7").status_code == 404  # nothing was reset
    assert ada.get("/dashboard").status_code == 200  # nobody was signed out

    confirmed = ada.post("/demo/reset", data={"confirm": "yes"})
    assert (confirmed.status_code, confirmed.headers["Location"]) == (303, "/")
    assert ada.get("/dashboard").status_code == 302


def test_the_lab_says_it_is_still_on_after_a_change_of_account(demo: Flask) -> None:
    client = signed_in_client(demo, "linus@acme.test")
    client.post("/demo/lab", data={"show": "on", "next": "/dashboard"})
    client.post("/sign-out")
    signed = client.post(
        "/sign-in", data={"email": "ada@acme.test", "password": "correct-horse-battery-staple"}
    )
    assert signed.status_code == 303
    page = text(client.get(signed.headers["Location"]))
    assert "is still on from before" in page
    assert 'aria-pressed="true"' in page  # and it is on, as it says
    assert "is still on from before" not in text(client.get("/dashboard"))  # said once


def test_the_lab_switched_off_says_nothing_at_sign_in(demo: Flask) -> None:
    client = signed_in_client(demo, "linus@acme.test")
    client.post("/demo/lab", data={"show": "off", "next": "/dashboard"})
    client.post("/sign-out")
    client.post(
        "/sign-in", data={"email": "ada@acme.test", "password": "correct-horse-battery-staple"}
    )
    assert "is still on from before" not in text(client.get("/dashboard"))


def test_the_trace_counts_elevation_down_like_the_demo_bar(demo: Flask) -> None:
    page = text(signed_in_client(demo, "ada@acme.test").get("/orgs/acme/billing"))
    seconds = re.findall(r'data-countdown="(\d+)"', page)
    shown = re.findall(r"<span (?:class=\"countdown\" )?data-countdown-left>([^<]+)</span>", page)
    assert len(seconds) == 2 and len(set(seconds)) == 1  # the bar and the trace, one clock
    assert shown == ["10 min", "10 min"]
