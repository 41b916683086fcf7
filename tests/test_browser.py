"""The lesson in a real browser: Chromium, real cookies, real forms with CSRF on.

Only a few tests live here; everything else is proven faster with the test client.
They drive the system's Chromium (Debian's ``chromium`` package), which .ci/run installs.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from conftest import make_test_app
from support import PASSWORD, invoice
from support import live_server as serve

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture()
def live_server(database_file: Path) -> Iterator[tuple[str, Session]]:
    app = make_test_app(database_file, WTF_CSRF_ENABLED=True, DEMO_MODE=True)
    db = app.extensions["db_sessionmaker"]()
    try:
        with serve(app) as base:
            yield base, db
    finally:
        db.close()
        app.extensions["db_engine"].dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); .ci/run installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


def sign_in(page: object, base: str, email: str) -> None:
    page.goto(base + "/sign-in")  # type: ignore[attr-defined]
    page.fill("#email", email)  # type: ignore[attr-defined]
    page.fill("#password", PASSWORD)  # type: ignore[attr-defined]
    page.click("main button[type=submit]")  # type: ignore[attr-defined]


def test_lesson_in_the_browser_member_refused_owner_deletes(
    browser: object, live_server: tuple[str, Session]
) -> None:
    base, db = live_server
    page = browser.new_page()  # type: ignore[attr-defined]

    # Anonymous: a protected page sends the browser to sign in, remembering where it was.
    page.goto(base + "/invoices/inv_7")
    assert page.url == base + "/sign-in?next=%2Finvoices%2Finv_7"

    # Linus signs in, lands back on inv_7, his name in the corner, no delete button.
    page.fill("#email", "linus@acme.test")
    page.fill("#password", PASSWORD)
    page.click("main button[type=submit]")
    assert page.url == base + "/invoices/inv_7"
    assert page.inner_text("[data-testid=user-name]") == "Linus Torvalds"
    assert page.locator("text=Delete this invoice").count() == 0

    # He types the delete URL anyway: the server asks the policy again and says 403.
    response = page.goto(base + "/invoices/inv_7/delete")
    assert response.status == 403
    assert "invoice.delete" in page.inner_text("main")

    # Globex's invoice is not there for him, exactly like one that never existed.
    assert page.goto(base + "/invoices/inv_42").status == 404
    assert page.goto(base + "/invoices/inv_999999").status == 404

    # Sign out through the header form (a POST with its CSRF token).
    page.goto(base + "/dashboard")
    page.click("header button:has-text('Sign out')")
    assert page.url == base + "/"
    assert page.goto(base + "/dashboard").url.startswith(base + "/sign-in")

    # Ada, the owner, deletes it through the confirmation step.
    sign_in(page, base, "ada@acme.test")
    page.goto(base + "/invoices/inv_7")
    page.click("text=Delete this invoice")
    assert page.url == base + "/invoices/inv_7/delete"
    page.click("main button:has-text('Delete this invoice')")
    assert page.url == base + "/invoices"
    assert "was deleted" in page.inner_text(".flashes")
    assert invoice(db, "inv_7").deleted_at is not None
    page.close()


def test_switching_organization_changes_grace_s_role_and_buttons(
    browser: object, live_server: tuple[str, Session]
) -> None:
    base, _db = live_server
    page = browser.new_page(viewport={"width": 390, "height": 844})  # type: ignore[attr-defined]
    sign_in(page, base, "grace@acme.test")
    assert page.inner_text(".role") == "ADMIN"  # shown in capitals by the stylesheet
    page.select_option("#org-switch", "globex")
    page.click("header button:has-text('Switch')")
    assert page.url == base + "/dashboard"  # back where she was, now in Globex
    assert "Globex Corporation" in page.inner_text("main .lead")
    assert page.inner_text(".role") == "MEMBER"
    page.goto(base + "/invoices/inv_42")
    assert page.locator("text=Delete this invoice").count() == 0
    # Nothing on a phone-sized screen is wider than the screen.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.close()
