"""Parallel creates against a live server, on SQLite and on PostgreSQL.

Before invoice numbers came from a per-organization counter (UPDATE … RETURNING),
numbers were counted and retried: 3 of 20 parallel creates failed with 409 on SQLite,
20 of 40 on PostgreSQL. Now every honest create succeeds, numbers have no gaps, and a
form posted twice at once still makes one invoice.
"""

from __future__ import annotations

import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from conftest import app_on_postgres, make_test_app
from invoiceapp.models import Invoice, Organization
from support import PASSWORD, VALID_INVOICE_FORM, live_server

PARALLEL = 40


@pytest.fixture(params=["sqlite", "postgresql"])
def app(request: pytest.FixtureRequest, database_file: Path) -> Iterator[Flask]:
    overrides = {"WTF_CSRF_ENABLED": True}
    if request.param == "sqlite":
        app = make_test_app(database_file, **overrides)
        yield app
        app.extensions["db_engine"].dispose()
        return
    with app_on_postgres(**overrides) as app:
        yield app


class Browser:
    """A minimal cookie-keeping client over real HTTP (no redirects followed)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies: dict[str, str] = {}
        self.lock = threading.Lock()

    def request(self, path: str, data: dict[str, str] | None = None) -> tuple[int, str, str]:
        with self.lock:
            cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.base + path, data=body, headers={"Cookie": cookie})
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            response = opener.open(request, timeout=60)
        except urllib.error.HTTPError as error:
            response = error
        with self.lock:
            for header in response.headers.get_all("Set-Cookie") or []:
                name, _, rest = header.partition("=")
                self.cookies[name] = rest.split(";", 1)[0]
        return response.status, response.headers.get("Location", ""), response.read().decode()

    def new_invoice_form(self) -> dict[str, str]:
        _, _, html = self.request("/invoices/new")
        fields = dict(
            re.findall(r'name="(csrf_token|creation_key)" type="hidden" value="([^"]+)"', html)
        )
        assert set(fields) == {"csrf_token", "creation_key"}, html[:300]
        return {**VALID_INVOICE_FORM, **fields}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _signed_in(base: str, email: str) -> Browser:
    browser = Browser(base)
    _, _, html = browser.request("/sign-in")
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html)
    assert token
    status, _, _ = browser.request(
        "/sign-in", {"email": email, "password": PASSWORD, "csrf_token": token.group(1)}
    )
    assert status == 303
    return browser


def _post_all_at_once(browser: Browser, forms: list[dict[str, str]]) -> list[tuple[int, str]]:
    start = threading.Barrier(len(forms))
    results: list[tuple[int, str]] = [(0, "")] * len(forms)

    def post(index: int) -> None:
        start.wait()
        status, location, _ = browser.request("/invoices/new", forms[index])
        results[index] = (status, location)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(forms))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _acme_numbers(app: Flask) -> list[int]:
    with app.extensions["db_sessionmaker"]() as db:
        return list(
            db.scalars(
                select(Invoice.number)
                .join(Organization)
                .where(Organization.slug == "acme")
                .order_by(Invoice.number)
            )
        )


def test_forty_parallel_creates_all_succeed_with_distinct_gapless_numbers(app: Flask) -> None:
    before = _acme_numbers(app)
    with live_server(app) as base:
        ada = _signed_in(base, "ada@acme.test")
        forms = [ada.new_invoice_form() for _ in range(PARALLEL)]
        results = _post_all_at_once(ada, forms)
    statuses = [status for status, _ in results]
    assert statuses == [303] * PARALLEL, statuses
    assert len({location for _, location in results}) == PARALLEL
    after = _acme_numbers(app)
    new_numbers = after[len(before) :]
    assert new_numbers == list(range(max(before) + 1, max(before) + 1 + PARALLEL))


def test_the_same_form_posted_five_times_at_once_makes_one_invoice(app: Flask) -> None:
    before = _acme_numbers(app)
    with live_server(app) as base:
        ada = _signed_in(base, "ada@acme.test")
        form = ada.new_invoice_form()
        results = _post_all_at_once(ada, [form] * 5)
    assert [status for status, _ in results] == [303] * 5
    assert len({location for _, location in results}) == 1  # all sent to the same invoice
    assert len(_acme_numbers(app)) == len(before) + 1
