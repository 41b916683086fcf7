"""Over HTTPS, as deployed: real Chromium, gunicorn serving TLS, production cookies.

Over HTTPS, Flask-WTF also insists on a same-site ``Referer`` on every form post (a
token alone is not enough there). Pages whose URL holds a mailed token must keep that
token out of Referers to other sites, and still let the browser send one to this site:
``Referrer-Policy: same-origin`` does both, ``no-referrer`` broke both forms here (issue
15, item 7). Only a real browser over real TLS shows it, hence this file.

The certificate is made here, for localhost, with the ``cryptography`` package; the
browser is told to accept it. The app runs as a deployment runs it: no debug, demo or
testing mode, so cookies are ``Secure`` and named ``__Host-…``, and the password hash
profile is the production one.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from invoiceapp.db import make_engine
from invoiceapp.models import Membership, Organization, User
from invoiceapp.organizations import new_invitation
from support import PASSWORD, free_port, latest_mail_to, self_signed_certificate, wait_until_up

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
NEW_PASSWORD = "tangerine-lighthouse-quietly-hums"


def _trusting_our_certificate() -> ssl.SSLContext:
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE  # our own throwaway certificate
    return unverified


class Served:
    """The HTTPS server's address, its database and its outbox."""

    def __init__(self, base: str, database_url: str, outbox: Path) -> None:
        self.base = base
        self.engine = make_engine(database_url)
        self.outbox = outbox

    def db(self) -> Session:
        return Session(self.engine)


@pytest.fixture(scope="module")
def https_server(
    seeded_database: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """gunicorn with --certfile/--keyfile on the seeded demo data, configured for production."""
    folder = tmp_path_factory.mktemp("https")
    database = folder / "app.sqlite3"
    shutil.copyfile(seeded_database, database)
    cert_file, key_file = self_signed_certificate(folder)
    port = free_port()
    base = f"https://localhost:{port}"
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLASK_")},
        "FLASK_SECRET_KEY": "https-test-key-" + "k" * 32,
        "FLASK_DATABASE_URL": f"sqlite:///{database}",
        "FLASK_BASE_URL": base,
        "FLASK_MAIL_OUTBOX_DIR": str(folder / "outbox"),
        "FLASK_MAIL_FILE_BACKEND_ALLOWED": "true",  # the tests read the outbox
        "WEB_CONCURRENCY": "1",
        "BIND": f"127.0.0.1:{port}",
    }
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "--no-control-socket",
         "-c", "gunicorn.conf.py", "--certfile", str(cert_file), "--keyfile", str(key_file),
         "invoiceapp:create_app()"],
        cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    served = Served(base, f"sqlite:///{database}", folder / "outbox")
    try:
        wait_until_up(base + "/healthz", process, context=_trusting_our_certificate())
        yield served
    finally:
        served.engine.dispose()
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser profile that accepts the test's self-signed certificate."""
    context = browser.new_context(ignore_https_errors=True)
    yield context.new_page()
    context.close()


def _wait_for_mail(outbox: Path, address: str, subject_has: str) -> Any:
    """The reset mail leaves after the answer was sent (recovery.py), so it may lag a little."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if outbox.exists():
            mail = latest_mail_to(outbox, address)
            if mail is not None and subject_has in mail.subject:
                return mail
        time.sleep(0.1)
    raise AssertionError(f"no mail to {address} about {subject_has!r}")


def _sign_in(page: Any, base: str, email: str, password: str) -> None:
    page.goto(base + "/sign-in")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("main button[type=submit]")
    page.wait_for_url(lambda url: "/sign-in" not in url)


def _secure_host_cookies(page: Any) -> dict[str, bool]:
    return {cookie["name"]: cookie["secure"] for cookie in page.context.cookies()}


def _answered(page: Any, action: Callable[[], None]) -> int:
    """Run ``action`` (a click that posts a form) and return the status of the answer."""
    with page.expect_response(lambda response: response.request.method == "POST") as posted:
        action()
    return posted.value.status


def test_over_https_a_password_reset_by_clicking_changes_the_password(
    page: Any, https_server: Served
) -> None:
    base = https_server.base
    page.goto(base + "/forgot-password")
    page.fill("#email", "linus@acme.test")
    assert _answered(page, lambda: page.click("main button[type=submit]")) == 200
    mail = _wait_for_mail(https_server.outbox, "linus@acme.test", "Reset")
    (link,) = [link for link in mail.links if "/reset-password/" in link]
    assert link.startswith(base + "/reset-password/")

    opened = page.goto(link)
    assert opened.headers["referrer-policy"] == "same-origin"
    assert opened.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    page.fill("#new_password", NEW_PASSWORD)
    page.fill("#confirm_password", NEW_PASSWORD)
    assert _answered(page, lambda: page.click("main button[type=submit]")) == 303
    page.wait_for_url(base + "/sign-in")
    assert "Your password has been changed" in page.inner_text("main")

    _sign_in(page, base, "linus@acme.test", NEW_PASSWORD)
    assert page.url == base + "/dashboard"
    cookies = _secure_host_cookies(page)
    assert cookies["__Host-invoiceapp_sid"] is True
    assert cookies["__Host-invoiceapp_flash"] is True


def test_over_https_an_invitation_is_accepted_by_clicking(page: Any, https_server: Served) -> None:
    with https_server.db() as db:
        acme = db.scalar(select(Organization).where(Organization.slug == "acme"))
        ada = db.scalar(select(User).where(User.email == "ada@acme.test"))
        assert acme is not None and ada is not None
        _, token = new_invitation(
            db, acme, email="marge@globex.test", role="member", invited_by=ada,
            lifetime_seconds=3600,
        )  # fmt: skip
        db.commit()
        acme_id = acme.id

    _sign_in(page, https_server.base, "marge@globex.test", PASSWORD)
    opened = page.goto(f"{https_server.base}/invitations/{token}")
    assert opened.headers["referrer-policy"] == "same-origin"
    accept = page.get_by_role("button", name="Accept the invitation")
    assert _answered(page, accept.click) == 303
    page.wait_for_url(https_server.base + "/orgs/acme")
    assert "You joined the organization" in page.inner_text("main")

    with https_server.db() as db:
        marge = db.scalar(select(User).where(User.email == "marge@globex.test"))
        assert marge is not None
        joined = db.scalar(
            select(Membership).where(
                Membership.user_id == marge.id, Membership.organization_id == acme_id
            )
        )
        assert joined is not None and joined.role == "member"
