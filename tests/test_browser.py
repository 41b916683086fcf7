"""The lesson in a real browser: Chromium, real cookies, real forms with CSRF on.

Only a few tests live here; everything else is proven faster with the test client.
They drive the system's Chromium (Debian's ``chromium`` package), which .ci/run installs.
Any script error on a page, or anything the Content-Security-Policy blocks, fails the test
that opened the page (see ``pages``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from conftest import demo_server
from invoiceapp.models import Invoice
from support import PASSWORD, browser_sign_in, invoice

pytestmark = pytest.mark.browser


def answered_gate(page: Any) -> str:
    return page.inner_text("[data-testid=gates] [aria-current=step] .gate-name")


def principal_state(page: Any) -> str:
    return " ".join(page.inner_text("[data-testid=principal-state]").split())


def test_lesson_in_the_browser_member_refused_owner_deletes(
    pages: Callable[..., Any], live_server: tuple[str, Session]
) -> None:
    base, db = live_server
    page = pages()

    # Anonymous: a protected page sends the browser to sign in, remembering where it was.
    page.goto(base + "/invoices/inv_7")
    page.wait_for_url(base + "/sign-in?next=/invoices/inv_7")
    assert "anonymous" in principal_state(page)
    assert answered_gate(page) == "Authentication"

    # Linus signs in, lands back on inv_7, his name in the corner, no delete button.
    page.fill("#email", "linus@acme.test")
    page.fill("#password", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(base + "/invoices/inv_7")
    assert page.inner_text("[data-testid=user-name]") == "Linus Torvalds"
    assert "Signed in as Linus Torvalds — member of Acme Inc" in principal_state(page)
    assert page.locator("text=Delete this invoice").count() == 0
    delete_row = page.locator("[data-testid=trace] tr[data-action='invoice.delete']")
    assert "403" in delete_row.inner_text()

    # The lab shows the hidden buttons, marked; pressing one meets the server's real 403.
    page.click("button:has-text('Show actions hidden from me')")
    page.wait_for_url(base + "/invoices/inv_7")
    hidden_delete = page.locator("a.lab-hidden", has_text="Delete this invoice")
    assert "hidden from you" in hidden_delete.inner_text().lower()
    with page.expect_response(base + "/invoices/inv_7/delete") as refused:
        hidden_delete.click()
    assert refused.value.status == 403
    assert "invoice.delete" in page.inner_text("main")
    assert answered_gate(page) == "Authorization"
    page.go_back()
    with page.expect_response(base + "/invoices/inv_7/mark-paid") as refused:
        page.click("button.lab-hidden:has-text('Mark paid')")  # a real POST, CSRF token and all
    assert refused.value.status == 403
    assert invoice(db, "inv_7").status == "sent"

    # Globex's invoice is not there for him, exactly like one that never existed; demo
    # mode alone says why.
    assert page.goto(base + "/invoices/inv_42").status == 404
    assert answered_gate(page) == "Scope"
    assert "hidden on purpose" in page.inner_text("[data-testid=hidden-elsewhere]")
    assert page.goto(base + "/invoices/inv_999999").status == 404
    assert page.locator("[data-testid=hidden-elsewhere]").count() == 0

    # The tour checked off what the server really answered.
    page.goto(base + "/tour")
    for step in ("401", "403", "404"):
        assert page.inner_text(f"[data-testid=mark-{step}]") == "✓ done"
    assert page.inner_text("[data-testid=mark-elevated]") == "not yet"

    # Sign out through the header form (a POST with its CSRF token).
    page.goto(base + "/dashboard")
    page.click("header button:has-text('Sign out')")
    page.wait_for_url(base + "/")
    assert page.goto(base + "/dashboard").url.startswith(base + "/sign-in")

    # Ada, the owner, deletes it through the confirmation step.
    browser_sign_in(page, base, "ada@acme.test")
    page.goto(base + "/invoices/inv_7")
    page.click(".actions a:has-text('Delete this invoice')")
    page.wait_for_url(base + "/invoices/inv_7/delete")
    page.click("main button:has-text('Delete this invoice')")
    page.wait_for_url(base + "/invoices?organization=acme")
    assert "was deleted" in page.inner_text(".flashes")
    assert invoice(db, "inv_7").deleted_at is not None

    # Reset the demo from the tour: inv_7 is back, everyone signed out, marks kept.
    page.goto(base + "/tour")
    page.click("a:has-text('Reset the demo')")  # it asks first
    page.click("button:has-text('Yes, reset everything')")
    page.wait_for_url(base + "/")
    assert "The demo was reset" in page.inner_text(".flashes")
    assert invoice(db, "inv_7").deleted_at is None
    page.goto(base + "/tour")
    assert page.inner_text("[data-testid=mark-403]") == "✓ done"


def test_switching_organization_changes_grace_s_role_and_buttons(
    pages: Callable[..., Any], live_server: tuple[str, Session]
) -> None:
    base, _db = live_server
    page = pages(viewport={"width": 390, "height": 844})
    browser_sign_in(page, base, "grace@acme.test")
    assert page.inner_text(".role") == "ADMIN"  # shown in capitals by the stylesheet
    page.select_option("#org-switch", "globex")
    page.click("header button:has-text('Switch')")
    page.wait_for_url(base + "/dashboard")  # back where she was, now in Globex
    assert "Globex Corporation" in page.inner_text("main .lead")
    assert page.inner_text(".role") == "MEMBER"
    page.goto(base + "/invoices/inv_42")
    assert page.locator("text=Delete this invoice").count() == 0

    # Acme's invoice, with Globex active: the page says whose it is and which role counts.
    page.goto(base + "/invoices/inv_7")
    context = " ".join(page.inner_text("[data-testid=context-line]").split())
    assert context.startswith("Acme Inc · you are admin here")
    assert "not your active organization" in context
    assert page.locator(".actions a:has-text('Delete this invoice')").count() == 1
    page.select_option("#org-switch", "acme")
    page.click("header button:has-text('Switch')")
    page.wait_for_url(base + "/invoices/inv_7")  # switching keeps her on the page
    assert "not your active organization" not in page.inner_text("[data-testid=context-line]")
    # Nothing on a phone-sized screen is wider than the screen.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_two_tabs_a_form_opened_for_acme_lands_in_acme_after_the_other_tab_switched(
    browser: Any, live_server: tuple[str, Session]
) -> None:
    """Issue 15: one browser, one session, two tabs. The form names its organization."""
    base, db = live_server
    context = browser.new_context()  # two tabs of one browser share its cookies
    problems: list[str] = []
    context.on("weberror", lambda error: problems.append(f"script error: {error.error}"))
    context.on(
        "console",
        lambda message: (
            problems.append(f"CSP: {message.text}")
            if "Content Security Policy" in message.text
            else None
        ),
    )
    try:
        first = context.new_page()
        browser_sign_in(first, base, "grace@acme.test")
        first.goto(base + "/invoices/new")  # Acme is active: the form is Acme's
        assert "New invoice Acme Inc" in " ".join(first.inner_text("main h1").split())
        first.fill("#customer", "Two Tabs Trading")
        first.fill("#amount", "99.50")

        second = context.new_page()
        second.goto(base + "/dashboard")
        second.select_option("#org-switch", "globex")
        second.click("header button:has-text('Switch')")
        second.wait_for_url(base + "/dashboard")
        assert "Globex Corporation" in second.inner_text("main .lead")

        # Back in the first tab, the form still says Acme, and Acme is where it lands.
        first.click("main button:has-text('Create invoice')")
        first.wait_for_url(re.compile(re.escape(base) + r"/invoices/inv_[a-z0-9]{16}$"))
        notes = " ".join(first.inner_text(".flashes").split())
        assert "It was created in Acme Inc, the organization this form was opened for." in notes
        assert "Your active organization is still Globex Corporation." in notes
        line = " ".join(first.inner_text("[data-testid=context-line]").split())
        assert line.startswith("Acme Inc · you are admin here")
        db.expire_all()
        made = db.scalar(select(Invoice).where(Invoice.customer == "Two Tabs Trading"))
        assert made is not None
        assert made.organization.slug == "acme"

        # The second tab's choice stands: its next page is Globex's.
        second.goto(base + "/invoices")
        assert "Invoices Globex Corporation" in " ".join(second.inner_text("main h1").split())
    finally:
        context.close()
    assert problems == [], problems


def test_elevation_counts_down_ends_and_comes_back_with_the_password(
    pages: Callable[..., Any], live_server: tuple[str, Session]
) -> None:
    base, _db = live_server
    page = pages()
    browser_sign_in(page, base, "ada@acme.test")

    # Signed in a moment ago: elevated, and the script ticks the server's "10 min" down.
    assert "elevated" in principal_state(page)
    countdown = page.locator("[data-testid=principal-state] [data-countdown-left]")
    first = countdown.inner_text()
    assert re.fullmatch(r"\d+:\d\d", first), first
    time.sleep(1.1)
    assert countdown.inner_text() != first

    # End it early: the owner's plan change now asks for the password first.
    page.click("button:has-text('End elevation')")
    assert "elevated" not in principal_state(page)
    page.goto(base + "/orgs/acme/billing")
    row = page.locator("[data-testid=trace] tr[data-action='org.billing.update']")
    assert "re-authenticate" in row.inner_text()
    page.select_option("#plan", "pro")
    page.click("main button:has-text('Change plan')")
    assert page.url.startswith(base + "/reauthenticate?next=")
    assert answered_gate(page) == "Elevation"
    page.fill("#password", PASSWORD)
    page.click("main button:has-text('Confirm')")
    page.wait_for_url(base + "/orgs/acme/billing")
    assert "elevated" in principal_state(page)
    page.select_option("#plan", "pro")
    page.click("main button:has-text('Change plan')")
    assert "Nothing changed" in page.inner_text(".flashes")
    page.goto(base + "/tour")
    assert page.inner_text("[data-testid=mark-elevated]") == "✓ done"


def test_countdown_says_when_elevation_is_over(
    pages: Callable[..., Any], database_file: Path
) -> None:
    with demo_server(database_file, FRESH_AGE_SECONDS=2) as (base, _db):
        page = pages()
        browser_sign_in(page, base, "linus@acme.test")
        assert "elevated" in principal_state(page)
        page.wait_for_selector("text=elevation ended", timeout=6000)
        assert page.locator("button:has-text('End elevation')").is_hidden()
        page.reload()
        assert "elevated" not in principal_state(page)  # the server agrees
