"""Two app instances behind one address behave as one (PostgreSQL + Redis, real gunicorn).

Sessions, CSRF, elevation and rate limits live in the database and in Redis, never in
one process: a browser signed in on one instance is recognised by the other, and a rate
limit spent on one is spent on both. Needs a PostgreSQL URL (INVOICEAPP_TEST_POSTGRES_URL)
and Debian's redis-server; .ci/run provides both.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import seed
from conftest import TEST_CONFIG
from invoiceapp import create_app
from invoiceapp.db import get_db
from support import PASSWORD, REDIS_SERVER, Browser, free_port, postgres_schema, wait_until_up

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get("INVOICEAPP_TEST_POSTGRES_URL")

pytestmark = pytest.mark.skipif(
    not (POSTGRES_URL and REDIS_SERVER),
    reason="needs INVOICEAPP_TEST_POSTGRES_URL and redis-server (.ci/run provides both)",
)


@pytest.fixture(scope="module")
def instances(redis_url: str) -> Iterator[tuple[str, str]]:
    """Two gunicorn servers, two ports, one PostgreSQL schema, one Redis."""
    assert POSTGRES_URL
    with postgres_schema(POSTGRES_URL) as database_url:
        seed.migrate(database_url)
        app = create_app({**TEST_CONFIG, "DATABASE_URL": database_url})
        with app.app_context():
            seed.seed(get_db())
        app.extensions["db_engine"].dispose()

        environment = {
            **{k: v for k, v in os.environ.items() if not k.startswith("FLASK_")},
            "FLASK_SECRET_KEY": "one-key-for-both-instances-" + "k" * 20,
            "FLASK_DATABASE_URL": database_url,
            "FLASK_RATELIMIT_STORAGE_URI": redis_url,
            "FLASK_SIGN_IN_RATE_LIMIT": "4 per minute",
            "FLASK_PASSWORD_HASH_PROFILE": "CHEAPEST",
            "FLASK_TESTING": "true",  # the cheap hash profile is allowed only in tests
            "FLASK_AUTH_COOKIE_SECURE": "false",  # plain HTTP on loopback
            "FLASK_SESSION_COOKIE_SECURE": "false",
            "WEB_CONCURRENCY": "2",
        }
        processes, urls = [], []
        try:
            for _ in range(2):
                port = free_port()
                process = subprocess.Popen(
                    [str(Path(sys.executable).parent / "gunicorn"), "--no-control-socket",
                     "-c", "gunicorn.conf.py", "invoiceapp:create_app()"],
                    cwd=ROOT, env={**environment, "BIND": f"127.0.0.1:{port}"},
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                processes.append(process)
                urls.append(f"http://127.0.0.1:{port}")
            for url, process in zip(urls, processes, strict=True):
                wait_until_up(url + "/readyz", process)
            yield urls[0], urls[1]
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=20)


def _token(browser: Browser, path: str) -> str:
    _, _, html = browser.request(path)
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html)
    assert match, html[:300]
    return match.group(1)


def test_signed_in_on_one_instance_is_recognised_on_the_other(
    instances: tuple[str, str],
) -> None:
    first, second = instances
    browser = Browser(first)
    token = _token(browser, "/sign-in")
    status, _, _ = browser.request(
        "/sign-in", {"email": "ada@acme.test", "password": PASSWORD, "csrf_token": token}
    )
    assert status == 303

    browser.base = second  # the load balancer sends the next request elsewhere
    status, _, html = browser.request("/dashboard")
    assert status == 200
    assert "Ada Lovelace" in html
    # The CSRF token issued by the first instance is good on the second.
    token = _token(browser, "/invoices/new")
    browser.base = first
    status, _, _ = browser.request("/sign-out", {"csrf_token": token})
    assert status == 303
    browser.base = second
    assert browser.request("/dashboard")[0] == 302  # signed out everywhere


def test_a_rate_limit_is_spent_across_both_instances(instances: tuple[str, str]) -> None:
    first, second = instances
    statuses = []
    for attempt in range(5):
        browser = Browser(first if attempt % 2 == 0 else second)
        token = _token(browser, "/sign-in")
        status, _, _ = browser.request(
            "/sign-in",
            {"email": f"nobody{attempt}@example.test", "password": "wrong", "csrf_token": token},
        )
        statuses.append(status)
    # Four failures per minute per address, counted in Redis whichever instance answered.
    assert statuses == [401, 401, 401, 401, 429]
