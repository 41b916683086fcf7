#!/usr/bin/env python
"""Screenshots of the demo's key pages for the README: `make screenshots`.

Starts the app in demo mode on a throwaway, freshly migrated and seeded SQLite database
(never instance/), drives the system's Chromium through the lesson, and writes one PNG
per page and size into docs/screenshots/: ``<page>-desktop.png`` (1280 px wide) and
``<page>-phone.png`` (375 px). Every page is captured whole, top to bottom.

Needs Chromium at /usr/bin/chromium (Debian's ``chromium`` package); no browser download.
"""

from __future__ import annotations

import secrets
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import seed  # noqa: E402
from invoiceapp import create_app  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
PASSWORD = seed.DEMO_PASSWORD
SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 375, "height": 812}}
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]


@contextmanager
def demo_app() -> Iterator[str]:
    """The app in demo mode on a temporary seeded database, served on a free port."""
    from werkzeug.serving import make_server

    with tempfile.TemporaryDirectory() as scratch:
        app = create_app(
            {
                "DEMO_MODE": True,
                "SECRET_KEY": secrets.token_hex(32),
                "DATABASE_URL": f"sqlite:///{scratch}/demo.sqlite3",
                "MAIL_OUTBOX_DIR": f"{scratch}/outbox",
                "RATELIMIT_ENABLED": False,
            }
        )
        seed.run(app, progress=False)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()
            app.extensions["db_engine"].dispose()


def sign_in(page: Any, base: str, email: str, next_path: str = "/dashboard") -> None:
    page.goto(f"{base}/sign-in?next={next_path}")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("main button[type=submit]")


LAB_SWITCH = "button:has-text('Show actions hidden from me')"


def lab_on(page: Any) -> None:
    if page.get_attribute(LAB_SWITCH, "aria-pressed") != "true":
        page.click(LAB_SWITCH)


# name -> how to get there (a fresh browser context per size: no state shared between them)
SCENES: list[tuple[str, Callable[[Any, str], None]]] = [
    ("landing", lambda page, base: page.goto(base + "/")),
    ("sign-in", lambda page, base: page.goto(base + "/sign-in?next=/invoices/inv_7")),
    ("dashboard", lambda page, base: sign_in(page, base, "grace@acme.test")),
    (
        "invoice-with-trace",
        lambda page, base: (
            sign_in(page, base, "linus@acme.test", "/invoices/inv_7"),
            lab_on(page),
        ),
    ),
    (
        "403",
        lambda page, base: (
            sign_in(page, base, "linus@acme.test", "/invoices/inv_7"),
            page.goto(base + "/invoices/inv_7/delete"),
        ),
    ),
    (
        "404",
        lambda page, base: (
            sign_in(page, base, "linus@acme.test"),
            page.goto(base + "/invoices/inv_42"),
        ),
    ),
    (
        "members",
        lambda page, base: (
            sign_in(page, base, "linus@acme.test", "/orgs/acme/members"),
            lab_on(page),
        ),
    ),
    (
        "tour",
        lambda page, base: (
            page.goto(base + "/invoices/inv_7"),  # the 401, as a page visit
            sign_in(page, base, "linus@acme.test", "/invoices/inv_7/delete"),  # the 403
            page.goto(base + "/invoices/inv_42"),  # the 404
            page.goto(base + "/tour"),
        ),
    ),
]


def main() -> int:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("make screenshots needs Chromium (apt-get install chromium)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    with demo_app() as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        for name, go in SCENES:
            for size, viewport in SIZES.items():
                context = browser.new_context(viewport=viewport)
                page = context.new_page()
                go(page, base)
                page.wait_for_load_state("load")
                path = OUT / f"{name}-{size}.png"
                page.screenshot(path=str(path), full_page=True)
                print(path.relative_to(ROOT))
                context.close()
        browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
