"""The walk's pages in a real Chromium: layouts that only a browser can measure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.orm import Session

from support import browser_sign_in

pytestmark = pytest.mark.browser


def too_wide(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth > window.innerWidth"))


def test_the_audit_log_keeps_words_whole_at_1280_and_its_filters_roomy_at_375(
    pages: Callable[..., Any],
    live_server: tuple[str, Session],
) -> None:
    base, _db = live_server
    linus = pages()
    browser_sign_in(linus, base, "linus@acme.test")
    linus.goto(base + "/invoices/inv_7/delete")  # a refusal, for the log to show
    ada = pages(viewport={"width": 1280, "height": 900})
    browser_sign_in(ada, base, "ada@acme.test")
    ada.goto(base + "/orgs/acme/audit")
    # One line box per action name, badge, time and address: nothing cut mid-word.
    lines = ada.evaluate(
        """[...document.querySelectorAll(
             '[data-testid=audit-log] code, [data-testid=audit-log] .badge,'
             + '[data-testid=audit-log] time, [data-testid=audit-log] bdi')]
           .map(node => [node.textContent, node.getClientRects().length])"""
    )
    assert lines and all(count == 1 for _text, count in lines), lines

    ada.set_viewport_size({"width": 375, "height": 900})
    widths = ada.evaluate(
        "[...document.querySelectorAll('.audit-filters .field')]"
        ".map(field => field.getBoundingClientRect().width)"
    )
    assert len(widths) == 6 and min(widths) > 250, widths  # one filter per line
    assert not too_wide(ada)


def test_the_api_reference_fits_a_375_px_phone(
    pages: Callable[..., Any],
    live_server: tuple[str, Session],
) -> None:
    base, _db = live_server
    page = pages(viewport={"width": 375, "height": 900})
    page.goto(base + "/api/v1/docs")
    page.wait_for_selector("#operations table")
    assert not too_wide(page)


def test_the_trace_and_the_demo_bar_tick_the_same_countdown(
    pages: Callable[..., Any],
    live_server: tuple[str, Session],
) -> None:
    base, _db = live_server
    page = pages()
    browser_sign_in(page, base, "ada@acme.test")
    page.goto(base + "/orgs/acme/billing")
    page.wait_for_function(
        "[...document.querySelectorAll('[data-countdown-left]')]"
        ".every(node => /^\\d+:\\d\\d$/.test(node.textContent))"
    )
    shown = page.evaluate(
        "[...document.querySelectorAll('[data-countdown-left]')].map(node => node.textContent)"
    )
    assert len(shown) == 2 and shown[0] == shown[1], shown


def test_the_exercises_swap_in_their_answers_with_javascript_and_pass_axe(
    pages: Callable[..., Any], live_server: tuple[str, Session]
) -> None:
    from test_accessibility import serious_violations

    base, _db = live_server
    page = pages(viewport={"width": 375, "height": 900})
    page.goto(base + "/exercises")
    page.check("input[name=anonymous_delete][value='401']")
    page.click("#status button[type=submit]")
    page.wait_for_selector("#status [data-testid=real-status]")
    assert page.url == base + "/exercises"  # swapped in place: no page load
    assert page.inner_text("#status [data-testid=real-status]") == "401"
    assert page.evaluate("document.activeElement.id") == "status-heading"
    assert serious_violations(page) == [] and not too_wide(page)
