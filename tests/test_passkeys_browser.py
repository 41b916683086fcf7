"""Passkeys in a real Chromium, through its virtual authenticator (Chrome DevTools Protocol).

The only test that runs static/passkeys.js: a browser-made key pair, a real origin check,
the CSRF header, and the page flow around it. WebAuthn refuses IP addresses, so the app
is opened as http://localhost:<port>, with WEBAUTHN_RP_ID and WEBAUTHN_ORIGIN to match.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from conftest import make_test_app
from invoiceapp.models import Passkey, UserSession
from support import PASSWORD
from support import live_server as serve

pytestmark = pytest.mark.browser


@pytest.fixture()
def localhost_server(database_file: Path) -> Iterator[tuple[str, Session]]:
    app = make_test_app(database_file, WTF_CSRF_ENABLED=True, WEBAUTHN_RP_ID="localhost")
    db = app.extensions["db_sessionmaker"]()
    try:
        with serve(app) as served:
            base = f"http://localhost:{urlsplit(served).port}"
            app.config["WEBAUTHN_ORIGIN"] = base  # known only once the port is
            yield base, db
    finally:
        db.close()
        app.extensions["db_engine"].dispose()


@pytest.fixture()
def page(localhost_server: tuple[str, Session], browser: Any) -> Iterator[Any]:
    """A fresh profile with Chromium's virtual authenticator (the browser is conftest's)."""
    context = browser.new_context()
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
            }
        },
    )
    yield page
    context.close()


def proofs(db: Session) -> list[str]:
    db.expire_all()
    return list(db.scalars(select(UserSession.proof)))


def sign_out(page: Any, base: str) -> None:
    page.goto(base + "/dashboard")
    page.click("header button:has-text('Sign out')")
    page.wait_for_url(base + "/")


def test_add_a_passkey_sign_in_with_it_remove_it_and_it_stops_working(
    page: Any, localhost_server: tuple[str, Session]
) -> None:
    base, db = localhost_server
    p = page  # Playwright's Page

    # Something you know: a password sign-in, fresh enough to add a passkey.
    p.goto(base + "/sign-in")
    p.fill("#email", "linus@acme.test")
    p.fill("#password", PASSWORD)
    p.click("main form[action='/sign-in'] button[type=submit]")
    p.wait_for_url(base + "/dashboard")

    # Add a passkey: static/passkeys.js runs navigator.credentials.create().
    p.goto(base + "/account/passkeys")
    p.fill("#passkey-name", "Virtual authenticator")
    p.click("button:has-text('Add a passkey')")
    p.wait_for_selector("[data-testid=passkeys] >> text=Virtual authenticator")
    assert "Passkey added" in p.inner_text(".flashes")
    assert len(db.scalars(select(Passkey)).all()) == 1

    # The passkey alone signs in: no email, no password typed.
    sign_out(p, base)
    p.goto(base + "/sign-in")
    p.click("button:has-text('Sign in with a passkey')")
    p.wait_for_url(base + "/dashboard")
    assert p.inner_text("[data-testid=user-name]") == "Linus Torvalds"
    assert proofs(db) == ["passkey"]

    # Remove it (the passkey sign-in was fresh proof) ...
    p.goto(base + "/account/passkeys")
    p.click("[data-testid=passkeys] button:has-text('Remove')")
    p.wait_for_selector("text=You have no passkeys yet.")
    assert db.scalars(select(Passkey)).all() == []

    # ... and the device still holds the key, but the server no longer knows it.
    sign_out(p, base)
    p.goto(base + "/sign-in")
    p.click("button:has-text('Sign in with a passkey')")
    p.wait_for_selector("[data-passkey-status]:has-text('not accepted')")
    assert p.url == base + "/sign-in"
    assert proofs(db) == []
