"""Bursts against a live server: no security counter gives a burst more than its budget.

Each test runs against gunicorn with three workers, rate limits in Redis and the seeded
database on SQLite, then on PostgreSQL, fires a burst of concurrent wrong proofs, and counts
how many were checked. Before the counters were atomic (issue 15, item 16), a burst of 30
wrong passwords from one address with a budget of 5 had 8 to 13 checked; a burst of 10
at /reauthenticate had all 10 checked and the session survived. Each race runs ROUNDS
times (the mail burst MAIL_ROUNDS). Needs redis-server (and INVOICEAPP_TEST_POSTGRES_URL for
the PostgreSQL half).

Starting gunicorn was most of a test's time (16 starts), so one server serves the tests
whose budgets cannot meet (SERVERS: two per engine), and each test starts all the same
from the seeded data, empty rate-limit counters and an empty outbox.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest
import redis
from flask import Flask
from sqlalchemy import func, select, update

import seed as seed_module
from conftest import TEST_CONFIG, app_on_postgres, make_test_app, restore_seeded_data
from invoiceapp.db import utcnow
from invoiceapp.models import SecurityCounter, SecurityEvent, User, UserSession
from support import PASSWORD, REDIS_SERVER, all_at_once, free_port, outbox_mails, wait_until_up

ROOT = Path(__file__).resolve().parent.parent
# Before the fix every round of a password, code or re-authentication burst got past its
# budget (8 to 13 of 30 checked; all 10), so three rounds catch it with room to spare. The
# mail burst got past in most rounds but not all (5 to 7 of 20, where 5 is right), so it
# keeps five.
ROUNDS = 3
MAIL_ROUNDS = 5
BURST = 20

pytestmark = pytest.mark.skipif(not REDIS_SERVER, reason="needs redis-server")


@contextmanager
def gunicorn(app: Flask, redis_url: str, outbox: Path, **config: str) -> Iterator[str]:
    """``app``'s database served by gunicorn with three workers sharing Redis limits."""
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLASK_")},
        "FLASK_SECRET_KEY": TEST_CONFIG["SECRET_KEY"],  # Tess's TOTP secret was sealed with it
        "FLASK_DATABASE_URL": app.config["DATABASE_URL"],
        "FLASK_RATELIMIT_STORAGE_URI": redis_url,
        "FLASK_RATELIMIT_KEY_PREFIX": uuid.uuid4().hex,
        "FLASK_PASSWORD_HASH_PROFILE": "CHEAPEST",
        "FLASK_TESTING": "true",
        "FLASK_WTF_CSRF_ENABLED": "false",  # CSRF is not what these races are about
        "FLASK_AUTH_COOKIE_SECURE": "false",
        "FLASK_SESSION_COOKIE_SECURE": "false",
        "FLASK_TRUSTED_PROXY_HOPS": "1",  # so a test can speak from many addresses
        "FLASK_MAIL_OUTBOX_DIR": str(outbox),
        # Budgets that a test does not set are out of the way.
        "FLASK_SIGN_IN_RATE_LIMIT": "1000 per minute",
        "FLASK_SIGN_IN_ACCOUNT_RATE_LIMIT": "1000 per hour",
        "FLASK_SIGN_IN_SLOWDOWN_AFTER": "1000",
        "FLASK_TWO_FACTOR_ACCOUNT_RATE_LIMIT": "1000 per hour",
        "FLASK_REAUTH_ACCOUNT_RATE_LIMIT": "1000 per hour",
        "FLASK_REAUTH_MAX_FAILURES": "1000",
        **{f"FLASK_{key}": value for key, value in config.items()},
        "WEB_CONCURRENCY": "3",
    }
    port = free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "--no-control-socket",
         "-c", "gunicorn.conf.py", "invoiceapp:create_app()"],
        cwd=ROOT, env={**environment, "BIND": f"127.0.0.1:{port}"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url + "/readyz", process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


class Browser:
    """Cookies kept across requests; each request may claim its own client address."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies: dict[str, str] = {}

    def post(self, path: str, data: dict[str, str], address: str = "192.0.2.1") -> int:
        headers = {"X-Forwarded-For": address}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = urllib.parse.urlencode(data).encode()
        request = urllib.request.Request(self.base + path, data=body, headers=headers)
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            response = opener.open(request, timeout=60)
        except urllib.error.HTTPError as error:
            response = error
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        response.read()
        return response.status

    def burst(self, path: str, forms: list[dict[str, str]], addresses: list[str]) -> Counter[int]:
        """Post every form at once (same cookies); how many answers of each status."""
        statuses = all_at_once(
            [
                lambda f=form, a=address: self.post(path, f, a)
                for form, address in zip(forms, addresses, strict=True)
            ]  # noqa: E501
        )
        return Counter(statuses)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _many(prefix: str, n: int = BURST) -> list[str]:
    return [f"{prefix}.{i}" for i in range(n)]


def _rounds(run: Callable[[int], Counter[int]], rounds: int = ROUNDS) -> list[Counter[int]]:
    results = [run(r) for r in range(rounds)]
    print("\n" + "\n".join(f"round {i}: {dict(c)}" for i, c in enumerate(results)))
    return results


# The budgets each server sets. A server holds the budgets of several tests when no test
# can meet another's budget: the rate limits in Redis (per address and per account at
# sign-in, per account at the second step and at re-authentication: each burst comes from
# fresh addresses, each test counts failures on its own account, and a success is never
# counted) on one server; the counters kept in the database (each test counts on an
# account, or a session, that no other touches) on the other. The two that would meet
# stay apart: the slow-down would answer a per-account sign-in burst before its budget
# did, and the code lock would refuse codes the second step's budget should count.
SERVERS: dict[str, dict[str, str]] = {
    "rate limits in Redis": {
        "SIGN_IN_RATE_LIMIT": "5 per minute",
        "SIGN_IN_ACCOUNT_RATE_LIMIT": "5 per hour",
        "TWO_FACTOR_ACCOUNT_RATE_LIMIT": "5 per hour",
        "REAUTH_ACCOUNT_RATE_LIMIT": "3 per hour",
    },
    "counters in the database": {
        "SIGN_IN_SLOWDOWN_AFTER": "3",
        "TWO_FACTOR_MAX_FAILURES": "5",
        "REAUTH_MAX_FAILURES": "5",
        "EMAIL_CHANGE_RATE_LIMIT": "5 per hour",
    },
}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live_app(
    request: pytest.FixtureRequest, seeded_database: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Flask]:
    """The seeded database on each engine, kept for the module (each test puts it back)."""
    if request.param == "postgresql":
        with app_on_postgres() as app:
            yield app
        return
    copy = tmp_path_factory.mktemp("bursts") / "bursts.sqlite3"
    shutil.copyfile(seeded_database, copy)
    app = make_test_app(copy)
    yield app
    app.extensions["db_engine"].dispose()


class Servers:
    """The servers of SERVERS on one engine's database, each started when first asked for
    and all stopped at the end of the module; they share one outbox."""

    def __init__(self, app: Flask, redis_url: str, outbox: Path, stack: ExitStack) -> None:
        self.app, self.redis_url, self.outbox, self.stack = app, redis_url, outbox, stack
        self.urls: dict[str, str] = {}

    def url_for(self, **budgets: str) -> str:
        """The URL of the server that sets ``budgets`` (one of SERVERS holds them all)."""
        (name,) = [name for name, held in SERVERS.items() if budgets.items() <= held.items()]
        if name not in self.urls:
            started = gunicorn(self.app, self.redis_url, self.outbox, **SERVERS[name])
            self.urls[name] = self.stack.enter_context(started)
        return self.urls[name]


@pytest.fixture(scope="module")
def servers(
    live_app: Flask, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Servers]:
    with ExitStack() as stack:
        yield Servers(live_app, redis_url, tmp_path_factory.mktemp("bursts-outbox"), stack)


@pytest.fixture()
def outbox(servers: Servers) -> Path:
    return servers.outbox


@pytest.fixture()
def server(
    servers: Servers, redis_url: str, outbox: Path, seeded_database: Path
) -> Callable[..., str]:
    """``server(SOME_LIMIT="5 per hour")``: the URL of the server with that budget, after
    putting back the seeded data and emptying the rate-limit counters and the outbox."""
    restore_seeded_data(servers.app, seeded_database)
    redis.Redis.from_url(redis_url).flushdb()
    shutil.rmtree(outbox, ignore_errors=True)
    outbox.mkdir()
    return servers.url_for


# --- Failure-only rate limits (Flask-Limiter, in Redis) --------------------------------------


def test_a_burst_of_wrong_passwords_from_one_address_gets_only_its_budget(
    live_app: Flask,
    redis_url: str,
    outbox: Path,
    server: Callable[..., str],
) -> None:
    url = server(SIGN_IN_RATE_LIMIT="5 per minute")

    def run(r: int) -> Counter[int]:
        forms = [{"email": f"nobody{i}@example.test", "password": "wrong"} for i in range(30)]
        return Browser(url).burst("/sign-in", forms, [f"203.0.113.{r}"] * 30)

    results = _rounds(run)
    assert all(c == Counter({401: 5, 429: 25}) for c in results)


def test_a_burst_of_wrong_passwords_for_one_account_gets_only_its_budget(
    live_app: Flask,
    redis_url: str,
    outbox: Path,
    server: Callable[..., str],
) -> None:
    url = server(SIGN_IN_ACCOUNT_RATE_LIMIT="5 per hour")
    accounts = ["ada@acme.test", "linus@acme.test", "grace@acme.test", "hank@globex.test"]

    def run(r: int) -> Counter[int]:
        email = accounts[r] if r < len(accounts) else "nobody@example.test"
        forms = [{"email": email, "password": f"guess {i}"} for i in range(BURST)]
        return Browser(url).burst("/sign-in", forms, _many(f"198.51.{r}"))

    results = _rounds(run)
    assert all(c == Counter({401: 5, 429: BURST - 5}) for c in results)


def test_a_burst_during_the_slow_down_gets_one_attempt_checked(
    live_app: Flask,
    redis_url: str,
    outbox: Path,
    server: Callable[..., str],
) -> None:
    url = server(SIGN_IN_SLOWDOWN_AFTER="3")

    def run(r: int) -> Counter[int]:
        email = f"victim{r}@example.test"
        browser = Browser(url)
        for i in range(3):
            assert browser.post("/sign-in", {"email": email, "password": f"x{i}"}) == 401
        _wait_is_over(live_app)
        forms = [{"email": email, "password": f"guess {i}"} for i in range(BURST)]
        return browser.burst("/sign-in", forms, _many(f"198.51.{r}"))

    results = _rounds(run)
    assert all(c == Counter({401: 1, 429: BURST - 1}) for c in results)


def _wait_is_over(live_app: Flask) -> None:
    """Move every delay into the past, as if the guesser had waited (no sleeping)."""
    with live_app.extensions["db_sessionmaker"]() as db:
        db.execute(update(SecurityCounter).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
        db.commit()


# --- The second step ----------------------------------------------------------------------


def _tess_at_the_second_step(url: str) -> Browser:
    browser = Browser(url)
    assert browser.post("/sign-in", {"email": "tess@acme.test", "password": PASSWORD}) == 303
    return browser


def _wrong_codes() -> list[dict[str, str]]:
    totp = pyotp.TOTP(seed_module.DEMO_TOTP_SECRET)
    now = time.time()
    accepted = {totp.at(now + offset) for offset in (-60, -30, 0, 30, 60)}
    wrong = [c for c in (f"{n:06d}" for n in range(100)) if c not in accepted and c != totp.now()]
    return [{"code": code} for code in wrong[:BURST]]


def test_a_burst_of_wrong_codes_gets_only_the_accounts_budget(
    live_app: Flask,
    redis_url: str,
    outbox: Path,
    server: Callable[..., str],
) -> None:
    limit = {"TWO_FACTOR_ACCOUNT_RATE_LIMIT": "5 per hour"}
    url = server(**limit)

    def run(r: int) -> Counter[int]:
        redis.Redis.from_url(redis_url).flushdb()  # a new hour for Tess's account
        browser = _tess_at_the_second_step(url)
        return browser.burst("/sign-in/two-factor", _wrong_codes(), _many(f"198.51.{r}"))

    results = _rounds(run)
    assert all(c == Counter({401: 5, 429: BURST - 5}) for c in results)


def test_a_burst_of_wrong_codes_locks_codes_at_the_limit_once(
    live_app: Flask,
    redis_url: str,
    outbox: Path,
    server: Callable[..., str],
) -> None:
    sessions = live_app.extensions["db_sessionmaker"]
    url = server(TWO_FACTOR_MAX_FAILURES="5")

    def run(r: int) -> Counter[int]:
        with sessions() as db:
            db.execute(update(User).values(second_factor_failures=0))
            db.commit()
        browser = _tess_at_the_second_step(url)
        statuses = browser.burst("/sign-in/two-factor", _wrong_codes(), _many(f"198.51.{r}"))
        with sessions() as db:
            failures = db.scalar(
                select(User.second_factor_failures).where(User.email == "tess@acme.test")
            )
        locked = [m for m in outbox_mails(outbox) if "locked" in m.subject]
        return statuses + Counter({f"counter {failures}": 1, f"mails {len(locked)}": 1})

    results = _rounds(run)
    assert results == [
        Counter({401: BURST, "counter 5": 1, f"mails {r + 1}": 1}) for r in range(ROUNDS)
    ]


# --- Re-authentication ----------------------------------------------------------------------


def _signed_in_as_ada(url: str) -> Browser:
    browser = Browser(url)
    assert browser.post("/sign-in", {"email": "ada@acme.test", "password": PASSWORD}) == 303
    return browser


def _reauth_failures(live_app: Flask) -> int:
    with live_app.extensions["db_sessionmaker"]() as db:
        return db.scalar(
            select(func.count()).where(SecurityEvent.kind == "reauthentication_failed")
        )


def _sessions(live_app: Flask) -> int:
    with live_app.extensions["db_sessionmaker"]() as db:
        return db.scalar(select(func.count()).select_from(UserSession))


def test_a_burst_at_reauthentication_ends_the_session_after_five_checked(
    live_app: Flask,
    redis_url: str,
    outbox: Path,
    server: Callable[..., str],
) -> None:
    url = server(REAUTH_MAX_FAILURES="5")

    def run(r: int) -> Counter[int]:
        browser = _signed_in_as_ada(url)
        before = _reauth_failures(live_app)
        forms = [{"password": f"guess {i}", "next": "/dashboard"} for i in range(10)]
        statuses = browser.burst("/reauthenticate", forms, _many(f"198.51.{r}", 10))
        checked = _reauth_failures(live_app) - before
        return statuses + Counter({f"checked {checked}": 1, f"sessions {_sessions(live_app)}": 1})

    results = _rounds(run)
    # Four wrong answers on the page, then the session ends: the fifth guess and those that
    # found no attempt left are sent to sign in (303), and any that arrive after it ended
    # are anonymous (401). Five were checked, and no session survives.
    for result in results:
        assert result[422] == 4 and result[303] + result[401] == 6
        assert result["checked 5"] == 1 and result["sessions 0"] == 1


def test_a_burst_at_reauthentication_gets_only_the_accounts_budget(
    live_app: Flask,
    redis_url: str,
    outbox: Path,
    server: Callable[..., str],
) -> None:
    url = server(REAUTH_ACCOUNT_RATE_LIMIT="3 per hour")

    def run(r: int) -> Counter[int]:
        redis.Redis.from_url(redis_url).flushdb()
        browser = _signed_in_as_ada(url)
        forms = [{"password": f"guess {i}", "next": "/dashboard"} for i in range(10)]
        return browser.burst("/reauthenticate", forms, _many(f"198.51.{r}", 10))

    results = _rounds(run)
    assert all(c == Counter({422: 3, 429: 7}) for c in results)


# --- Mail sent on request -------------------------------------------------------------------


def test_a_burst_of_email_change_requests_mails_only_the_accounts_budget(
    live_app: Flask,
    redis_url: str,
    outbox: Path,
    server: Callable[..., str],
) -> None:
    """The second review: the limit counted accepted requests only after the view ran, so
    parallel requests from one session outran it (in one process all 20 of 20 passed; here,
    with three workers, 5 to 7 of 20 per round on each engine, each mailing a stranger)."""
    url = server(EMAIL_CHANGE_RATE_LIMIT="5 per hour")

    def run(r: int) -> Counter[int]:
        redis.Redis.from_url(redis_url).flushdb()  # a new hour for Ada's account
        browser = _signed_in_as_ada(url)
        forms = [{"email": f"stranger{r}.{i}@example.org"} for i in range(BURST)]
        statuses = browser.burst("/account/email", forms, ["192.0.2.1"] * BURST)
        mailed = [m for m in outbox_mails(outbox) if f"stranger{r}." in str(m.to)]
        return statuses + Counter({f"mails {len(mailed)}": 1})

    results = _rounds(run, MAIL_ROUNDS)
    assert all(c == Counter({303: 5, 429: BURST - 5, "mails 5": 1}) for c in results)
