"""Accessibility in a real Chromium: axe-core on every main page, widths, the keyboard.

axe (axe-playwright-python) must find no serious or critical violation on any page the
demo shows, in demo mode with the lab on, so every teaching panel is scanned too. The
same pages must fit a 320 px phone and a 1440 px desktop without sideways scrolling,
with a long customer name and a right-to-left one in the data. A script error or a CSP
violation on any page fails the test (the ``pages`` fixture of test_browser).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from conftest import demo_server
from invoiceapp.invoicing import allocate_invoice_number, new_public_id
from invoiceapp.models import Invoice, Organization, User
from support import browser_sign_in

pytestmark = pytest.mark.browser

# Chromium and the pages that fail on script errors or CSP violations, shared with
# test_browser (pytest finds fixtures by their name in this module).

LONG_CUSTOMER = "Consolidated" + "Holdings" * 20  # no spaces: it must wrap anyway
RTL_CUSTOMER = "شركة الأمل للتجارة"

ANONYMOUS_PAGES = ["/", "/sign-in", "/tour", "/forgot-password", "/invoices/inv_7?x", "/exercises"]
# Grace: admin in Acme, member in Globex (so the organization switcher shows).
GRACE_PAGES = [
    "/dashboard",
    "/invoices",
    "/invoices/inv_7",
    "/invoices/new",
    "/orgs/acme/members",
    "/orgs/acme/billing",
    "/orgs/acme/audit",
    "/account",
    "/tour",
    "/invoices/inv_42/delete",  # 403: a member in Globex
    "/invoices/inv_999999",  # 404
]


@pytest.fixture()
def served(database_file: Path) -> Iterator[tuple[str, Session]]:
    with demo_server(database_file) as (base, db):
        _add_invoices_with_awkward_names(db)
        yield base, db


def _add_invoices_with_awkward_names(db: Session) -> None:
    acme = db.scalar(select(Organization).where(Organization.slug == "acme"))
    ada = db.scalar(select(User).where(User.email == "ada@acme.test"))
    assert acme is not None and ada is not None
    for customer in (LONG_CUSTOMER, RTL_CUSTOMER):
        db.add(
            Invoice(
                public_id=new_public_id(),
                organization_id=acme.id,
                number=allocate_invoice_number(db, acme.id),
                customer=customer,
                amount_minor=123456789,
                currency="EUR",
                status="draft",
                issue_date=date(2024, 5, 1),
                due_date=date(2024, 5, 31),
                created_by_id=ada.id,
            )
        )
        db.commit()


def serious_violations(page: Any) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        f"{page.url}: {violation['id']} ({violation['impact']}): {violation['help']} "
        f"at {[node['target'] for node in violation['nodes']][:3]}"
        for violation in results.response["violations"]
        if violation["impact"] in ("serious", "critical")
    ]


def too_wide(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth > window.innerWidth"))


def visit(page: Any, base: str, path: str) -> None:
    page.goto(base + path)
    page.wait_for_load_state("load")


def test_every_main_page_passes_axe_and_fits_from_320_to_1440_px(
    pages: Callable[..., Any], served: tuple[str, Session]
) -> None:
    base, db = served
    awkward = db.scalar(select(Invoice.public_id).where(Invoice.customer == RTL_CUSTOMER))
    problems: list[str] = []

    def check(page: Any, paths: list[str]) -> None:
        for path in paths:
            visit(page, base, path)
            problems.extend(serious_violations(page))
            for width in (320, 1440):
                page.set_viewport_size({"width": width, "height": 900})
                if too_wide(page):
                    problems.append(f"{path}: wider than a {width} px screen")
            page.set_viewport_size({"width": 1280, "height": 900})

    anonymous = pages(viewport={"width": 1280, "height": 900})
    check(anonymous, ANONYMOUS_PAGES)

    grace = pages(viewport={"width": 1280, "height": 900})
    browser_sign_in(grace, base, "grace@acme.test")
    with grace.expect_navigation():  # the switch is a form post; let it land first
        grace.click("button:has-text('Show actions hidden from me')")  # scan the lab too
    check(grace, [*GRACE_PAGES, f"/invoices/{awkward}"])

    # The password prompt: end the elevation, then ask for a sensitive page.
    with grace.expect_navigation():
        grace.click("button:has-text('End elevation')")
    visit(grace, base, "/account/password")
    assert "/reauthenticate" in grace.url
    problems.extend(serious_violations(grace))
    assert problems == [], "\n".join(problems)


def test_keyboard_reaches_the_content_first_and_sees_where_focus_is(
    pages: Callable[..., Any], served: tuple[str, Session]
) -> None:
    base, _db = served
    page = pages()
    browser_sign_in(page, base, "linus@acme.test")
    visit(page, base, "/invoices")

    # The first Tab lands on the skip link, which is visible once focused.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    assert page.locator(".skip-link").bounding_box()["y"] >= 0  # type: ignore[index]
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"

    # A blue button focused from the keyboard shows our own ring, not only the browser's.
    page.keyboard.press("Tab")
    while page.evaluate("document.activeElement.textContent.trim()") != "New invoice":
        page.keyboard.press("Tab")
    ring = page.evaluate(
        "(() => { const s = getComputedStyle(document.activeElement);"
        " return [s.outlineStyle, s.outlineWidth]; })()"
    )
    assert ring == ["solid", "3px"]

    # The organization switcher and every action work without a mouse: submit with Enter.
    page.keyboard.press("Enter")
    page.wait_for_url(base + "/invoices/new?organization=acme")
    described = page.get_attribute("#amount", "aria-describedby")
    assert described and "amount-hint" in described.split()
