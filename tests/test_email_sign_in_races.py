"""Codes and links by email under bursts, against gunicorn with three workers, on SQLite
and PostgreSQL (issue 18, items 1 and 2).

- The right code posted several times at once from the asking browser signs in once.
- A burst of wrong codes gets exactly the code's tries (EMAIL_CODE_MAX_TRIES), then even
  the right code is refused: the count is one conditional UPDATE per try.
- A magic link's button pressed several times at once signs in once.

Measured with the "used_at IS NULL" condition taken out of the UPDATE that spends a code
or a link, 4 rounds each: SQLite signed in more than once in 3 of 4 code rounds and 3 of 4
link rounds (up to 3 sessions from one code), PostgreSQL in 4 of 4 link rounds. With it:
exactly one session in every round, on both engines.

Needs redis-server (the workers share their rate-limit storage). The servers are conftest's
shared ones (``served``, whose sign-in budgets are out of the way), not gunicorns of the
test's own.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select
from test_counter_bursts import Browser

from invoiceapp.models import EmailSignIn, User, UserSession
from support import REDIS_SERVER, outbox_mails

ROUNDS = 4
AT_ONCE = 4
ADA = "ada@acme.test"

pytestmark = pytest.mark.skipif(not REDIS_SERVER, reason="needs redis-server")


@pytest.fixture()
def outbox(served: tuple[str, Flask]) -> Path:
    """Where the shared servers' mail lands (the file backend)."""
    return Path(served[1].config["MAIL_OUTBOX_DIR"])


def _ask(browser: Browser, path: str, outbox: Path) -> str:
    """Ask for a code or link for Ada; the new mail's text (sent after the answer)."""
    before = len(outbox_mails(outbox))
    assert browser.post(path, {"email": ADA}) == 303
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        mails = outbox_mails(outbox)
        if len(mails) > before:
            return mails[0].text
        time.sleep(0.05)  # waiting for the background mail, not asserting anything
    raise AssertionError("no mail arrived")


def _sessions(app: Flask) -> int:
    with app.extensions["db_sessionmaker"]() as db:
        count = db.scalar(
            select(func.count())
            .select_from(UserSession)
            .join(User, UserSession.user_id == User.id)
            .where(User.email == ADA)
        )
    return count or 0


def _right_code_at_once(url: str, app: Flask, outbox: Path) -> tuple[Counter[int], int]:
    """The asking browser posts the right code AT_ONCE times at once: statuses, new sessions."""
    browser = Browser(url)
    found = re.search(r"^(\d{6})$", _ask(browser, "/sign-in/code", outbox), re.M)
    assert found
    before = _sessions(app)
    forms, addresses = [{"code": found.group(1)}] * AT_ONCE, ["192.0.2.1"] * AT_ONCE
    statuses = browser.burst("/sign-in/code/verify", forms, addresses)
    return statuses, _sessions(app) - before


def _wrong_codes_at_once(url: str, app: Flask, outbox: Path) -> tuple[Counter[int], int, int]:
    """Twelve wrong codes at once: statuses, the tries counted, then the right code's status."""
    browser = Browser(url)
    found = re.search(r"^(\d{6})$", _ask(browser, "/sign-in/code", outbox), re.M)
    assert found
    wrong = "000000" if found.group(1) != "000000" else "111111"
    statuses = browser.burst("/sign-in/code/verify", [{"code": wrong}] * 12, ["192.0.2.1"] * 12)
    with app.extensions["db_sessionmaker"]() as db:
        tries = db.scalar(select(EmailSignIn.failed_attempts).order_by(EmailSignIn.id.desc()))
    return statuses, tries or 0, browser.post("/sign-in/code/verify", {"code": found.group(1)})


def _link_at_once(url: str, app: Flask, outbox: Path) -> tuple[Counter[int], int]:
    """The asking browser presses the link's button AT_ONCE times at once."""
    browser = Browser(url)
    found = re.search(r"http://[^/\s]+(/sign-in/link/\S+)", _ask(browser, "/sign-in/link", outbox))
    assert found
    before = _sessions(app)
    statuses = browser.burst(found.group(1), [{}] * AT_ONCE, ["192.0.2.1"] * AT_ONCE)
    return statuses, _sessions(app) - before


def test_codes_and_links_work_once_and_wrong_codes_get_only_their_tries_under_bursts(
    served: tuple[str, Flask], outbox: Path
) -> None:
    """One server per engine for the three scenarios, ROUNDS rounds each; a code allows
    EMAIL_CODE_MAX_TRIES (5) tries."""
    url, app = served
    assert app.config["EMAIL_CODE_MAX_TRIES"] == 5
    codes = [_right_code_at_once(url, app, outbox) for _ in range(ROUNDS)]
    wrong = [_wrong_codes_at_once(url, app, outbox) for _ in range(ROUNDS)]
    links = [_link_at_once(url, app, outbox) for _ in range(ROUNDS)]
    print(codes, wrong, links, sep="\n")
    assert all(s == Counter({303: 1, 401: AT_ONCE - 1}) and new == 1 for s, new in codes)
    assert all(s == Counter({401: 12}) and t == 5 and late == 401 for s, t, late in wrong)
    assert all(s == Counter({303: 1, 400: AT_ONCE - 1}) and new == 1 for s, new in links)
