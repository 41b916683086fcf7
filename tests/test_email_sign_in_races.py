"""Codes and links by email under bursts, against gunicorn with three workers, on SQLite
and PostgreSQL (issue 18, items 1 and 2).

- The right code posted several times at once from the asking browser signs in once.
- A burst of wrong codes gets exactly the code's tries (EMAIL_CODE_MAX_TRIES), then even
  the right code is refused: the count is one conditional UPDATE per try.
- A magic link's button pressed several times at once signs in once.

Needs redis-server (the workers share their rate-limit storage).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select
from test_counter_bursts import Browser, gunicorn

from invoiceapp.mail import read_outbox
from invoiceapp.models import EmailSignIn, User, UserSession
from support import REDIS_SERVER

ROUNDS = 5
AT_ONCE = 4
ADA = "ada@acme.test"
# The request limits are not what these races are about.
ROOMY = {
    "EMAIL_SIGN_IN_RATE_LIMIT": "1000 per hour",
    "EMAIL_SIGN_IN_EMAIL_RATE_LIMIT": "1000 per hour",
}

pytestmark = pytest.mark.skipif(not REDIS_SERVER, reason="needs redis-server")


@pytest.fixture()
def outbox(tmp_path: Path) -> Path:
    return tmp_path / "live-outbox"


def _ask(browser: Browser, path: str, outbox: Path) -> str:
    """Ask for a code or link for Ada; the new mail's text (sent after the answer)."""
    before = len(read_outbox(outbox)) if outbox.exists() else 0
    assert browser.post(path, {"email": ADA}) == 303
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        mails = read_outbox(outbox) if outbox.exists() else []
        if len(mails) > before:
            return mails[0].text
        time.sleep(0.05)  # waiting for the background mail, not asserting anything
    raise AssertionError("no mail arrived")


def _sessions(app: Flask) -> int:
    with app.extensions["db_sessionmaker"]() as db:
        count = db.scalar(
            select(func.count()).select_from(UserSession).join(User).where(User.email == ADA)
        )
    return count or 0


def test_the_right_code_posted_at_once_signs_in_once(
    live_app: Flask, redis_url: str, outbox: Path
) -> None:
    with gunicorn(live_app, redis_url, outbox, **ROOMY) as url:
        results = []
        for _ in range(ROUNDS):
            browser = Browser(url)
            found = re.search(r"^(\d{6})$", _ask(browser, "/sign-in/code", outbox), re.M)
            assert found
            before = _sessions(live_app)
            statuses = browser.burst(
                "/sign-in/code/verify",
                [{"code": found.group(1)}] * AT_ONCE,
                ["192.0.2.1"] * AT_ONCE,
            )
            results.append((statuses, _sessions(live_app) - before))
    print(results)
    assert all(statuses[303] == 1 and new == 1 for statuses, new in results), results


def test_a_burst_of_wrong_codes_gets_only_the_codes_tries(
    live_app: Flask, redis_url: str, outbox: Path
) -> None:
    with gunicorn(live_app, redis_url, outbox, **ROOMY, EMAIL_CODE_MAX_TRIES="5") as url:
        results = []
        for _ in range(ROUNDS):
            browser = Browser(url)
            found = re.search(r"^(\d{6})$", _ask(browser, "/sign-in/code", outbox), re.M)
            assert found
            wrong = "000000" if found.group(1) != "000000" else "111111"
            statuses = browser.burst(
                "/sign-in/code/verify", [{"code": wrong}] * 12, ["192.0.2.1"] * 12
            )
            with live_app.extensions["db_sessionmaker"]() as db:
                tries = db.scalar(
                    select(EmailSignIn.failed_attempts).order_by(EmailSignIn.id.desc())
                )
            late = browser.post("/sign-in/code/verify", {"code": found.group(1)})
            results.append((statuses, tries, late))
    print(results)
    assert all(s == Counter({401: 12}) and t == 5 and late == 401 for s, t, late in results)


def test_a_magic_link_pressed_at_once_signs_in_once(
    live_app: Flask, redis_url: str, outbox: Path
) -> None:
    with gunicorn(live_app, redis_url, outbox, **ROOMY) as url:
        results = []
        for _ in range(ROUNDS):
            browser = Browser(url)
            text = _ask(browser, "/sign-in/link", outbox)
            found = re.search(r"http://[^/\s]+(/sign-in/link/\S+)", text)
            assert found
            before = _sessions(live_app)
            statuses = browser.burst(found.group(1), [{}] * AT_ONCE, ["192.0.2.1"] * AT_ONCE)
            results.append((statuses, _sessions(live_app) - before))
    print(results)
    assert all(s == Counter({303: 1, 400: AT_ONCE - 1}) and new == 1 for s, new in results)
