"""Fixtures: a fresh app and database per test, seeded with the contract's demo data.

The seeded database is built once per test run and copied for each test, so every
test starts from the same state and none can see another's changes.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

import seed as seed_module
from compiled_once import reuse_compiled_sql, reuse_compiled_templates, reuse_compiled_url_builders
from invoiceapp import create_app
from invoiceapp.db import Base, get_db, make_engine
from seeded_rows import forget, reseed
from support import REDIS_SERVER, free_port, live_server, postgres_schema, wait_until_up

# Most tests build an app of their own; compile its URL rules, templates and SQL once per
# worker (compiled_once.py).
reuse_compiled_url_builders()

TEST_CONFIG: dict[str, Any] = {
    "TESTING": True,
    "SECRET_KEY": "test-secret-key-not-for-production",
    "PASSWORD_HASH_PROFILE": "CHEAPEST",  # real Argon2id, cheap parameters
    "WTF_CSRF_ENABLED": False,  # tests that prove CSRF switch it back on
    "RATELIMIT_ENABLED": False,  # tests that prove rate limits switch it back on
    "DEMO_MODE": False,
    # Work after the answer runs as the test closes the response (invoiceapp.background).
    "BACKGROUND_JOBS": "inline",
}


def make_test_app(database_file: Path, **overrides: Any) -> Flask:
    """The app on ``database_file``; its mail goes to an ``outbox`` folder beside it."""
    settings = {
        **TEST_CONFIG,
        "DATABASE_URL": f"sqlite:///{database_file}",
        "MAIL_OUTBOX_DIR": str(database_file.parent / "outbox"),
    }
    return reuse_compiled_sql(reuse_compiled_templates(create_app({**settings, **overrides})))


POSTGRES_URL = os.environ.get("INVOICEAPP_TEST_POSTGRES_URL")

# Every gunicorn the tests start imports the app once and forks its workers from it
# (--preload; gunicorn.conf.py's post_fork gives each worker its own database connections):
# half the CPU of a start with three workers, and the suite starts dozens. A test that sets
# GUNICORN_CMD_ARGS itself replaces this.
os.environ.setdefault("GUNICORN_CMD_ARGS", "--preload")


@contextmanager
def app_on_postgres(*, seeded: bool = True, **overrides: Any) -> Iterator[Flask]:
    """The app on a throwaway PostgreSQL schema that the migrations built, as a deployment's
    is; seeded unless ``seeded=False``. Skips the test without INVOICEAPP_TEST_POSTGRES_URL."""
    if not POSTGRES_URL:
        pytest.skip("set INVOICEAPP_TEST_POSTGRES_URL to run the PostgreSQL variant")
    with postgres_schema(POSTGRES_URL) as url:
        seed_module.migrate(url)
        # An outbox of its own, as make_test_app's beside its file: the default (the
        # checkout's instance/outbox) is shared by every worker, and a test counting the
        # mails it caused would count another worker's too.
        outbox = tempfile.mkdtemp(prefix="invoiceapp-outbox-")
        settings = {**TEST_CONFIG, "MAIL_OUTBOX_DIR": outbox, **overrides, "DATABASE_URL": url}
        app = reuse_compiled_templates(create_app(settings))
        try:
            if seeded:
                with app.app_context():
                    seed_module.seed(get_db())
            yield app
        finally:
            forget(app)
            app.extensions["db_engine"].dispose()
            shutil.rmtree(outbox, ignore_errors=True)


@pytest.fixture(scope="module")
def app_context() -> Iterator[None]:
    """A bare app context for asking the policy directly (the matrix tests): is_fresh()
    reads FRESH_AGE_SECONDS from the app's configuration, as authorize() does."""
    app = Flask(__name__)
    app.config["FRESH_AGE_SECONDS"] = 600
    with app.app_context():
        yield


@pytest.fixture(scope="session")
def seeded_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "seeded.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    engine.dispose()
    app = make_test_app(path)
    with app.app_context():
        seed_module.seed(get_db())
    app.extensions["db_engine"].dispose()
    return path


@pytest.fixture()
def database_file(seeded_database: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "test.sqlite3"
    shutil.copyfile(seeded_database, copy)
    return copy


@pytest.fixture(params=["sqlite", "postgresql"])
def live_app(request: pytest.FixtureRequest, database_file: Path) -> Iterator[Flask]:
    """The seeded app on SQLite, then on PostgreSQL: for races that each engine decides."""
    if request.param == "postgresql":
        with app_on_postgres() as app:
            yield app
        return
    app = make_test_app(database_file)
    yield app
    app.extensions["db_engine"].dispose()


@pytest.fixture()
def outbox(database_file: Path) -> Path:
    """Where the test app's mail lands (the file backend: one .eml per message)."""
    return database_file.parent / "outbox"


@pytest.fixture()
def app(database_file: Path) -> Iterator[Flask]:
    app = make_test_app(database_file)
    yield app
    app.extensions["db_engine"].dispose()


@pytest.fixture()
def csrf_app(database_file: Path) -> Iterator[Flask]:
    """The app with CSRF protection on, as in production."""
    app = make_test_app(database_file, WTF_CSRF_ENABLED=True)
    yield app
    app.extensions["db_engine"].dispose()


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture()
def db(app: Flask) -> Iterator[Session]:
    """A database session of the test's own, for arranging and checking state.

    Deliberately not get_db() inside a pushed app context: requests made by the
    test client would then share that context (and its ``g``) with each other.
    """
    session = app.extensions["db_sessionmaker"]()
    yield session
    session.close()


class Clock:
    """A controllable "now" for invoiceapp.db.utcnow: expiry tests move time, never sleep."""

    def __init__(self) -> None:
        from invoiceapp.db import _system_time

        self.now = _system_time()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture()
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    import invoiceapp.db

    fake = Clock()
    monkeypatch.setattr(invoiceapp.db, "now_source", fake)
    return fake


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway redis-server for the tests that run several gunicorn workers."""
    if REDIS_SERVER is None:
        pytest.skip("needs redis-server (.ci/run installs it)")
    port = free_port()
    process = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path_factory.mktemp("redis"))],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


# --- Browser tests (Chromium through Playwright) ------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def demo_server(database_file: Path, **overrides: Any) -> Iterator[tuple[str, Session]]:
    """The app in demo mode, CSRF on, served on a free port; yields its URL and a session."""
    app = make_test_app(database_file, WTF_CSRF_ENABLED=True, DEMO_MODE=True, **overrides)
    db = app.extensions["db_sessionmaker"]()
    try:
        with live_server(app) as base:
            yield base, db
    finally:
        db.close()
        app.extensions["db_engine"].dispose()


@pytest.fixture(name="live_server")
def live_demo_server(database_file: Path) -> Iterator[tuple[str, Session]]:
    with demo_server(database_file) as served:
        yield served


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One Chromium per test worker (each page gets a context of its own)."""
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); .ci/run installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture()
def pages(browser: Any) -> Iterator[Callable[..., Any]]:
    """Opens pages that record script errors and CSP violations; any of them fails the test."""
    problems: list[str] = []
    opened: list[Any] = []

    def open_page(**options: Any) -> Any:
        page = browser.new_page(**options)
        page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
        page.on(
            "console",
            lambda message: (
                problems.append(f"CSP: {message.text}")
                if "Content Security Policy" in message.text
                else None
            ),
        )
        opened.append(page)
        return page

    yield open_page
    for page in opened:
        page.close()
    assert problems == [], problems


# --- Races against gunicorn with several workers, on both engines -------------------------

ROOT = Path(__file__).resolve().parent.parent
RACE_WORKERS = 3


@contextmanager
def _seeded_database_url(engine_name: str, tmp_path: Path) -> Iterator[str]:
    """A seeded database on ``engine_name``, built as a deployment's is; yields its URL."""
    if engine_name == "sqlite":
        url = f"sqlite:///{tmp_path / 'race.sqlite3'}"
        engine = make_engine(url)
        Base.metadata.create_all(engine)
        engine.dispose()
        app = create_app({**TEST_CONFIG, "DATABASE_URL": url})
        with app.app_context():
            seed_module.seed(get_db())
        app.extensions["db_engine"].dispose()
        yield url
        return
    if not POSTGRES_URL:
        pytest.skip("set INVOICEAPP_TEST_POSTGRES_URL to run the PostgreSQL variant")
    with postgres_schema(POSTGRES_URL) as url:
        seed_module.migrate(url)
        app = create_app({**TEST_CONFIG, "DATABASE_URL": url})
        with app.app_context():
            seed_module.seed(get_db())
        app.extensions["db_engine"].dispose()
        yield url


@contextmanager
def _race_server(engine_name: str, folder: Path, redis_url: str) -> Iterator[tuple[str, Flask]]:
    """gunicorn with RACE_WORKERS processes on a seeded database of its own; its URL, and an
    app on the same database for the test's own reads and writes."""
    with _seeded_database_url(engine_name, folder) as database_url:
        environment = {
            **{k: v for k, v in os.environ.items() if not k.startswith("FLASK_")},
            "FLASK_SECRET_KEY": "race-test-key-" + "k" * 30,
            "FLASK_DATABASE_URL": database_url,
            "FLASK_RATELIMIT_STORAGE_URI": redis_url,
            "FLASK_WTF_CSRF_ENABLED": "false",  # CSRF has tests of its own
            "FLASK_PASSWORD_HASH_PROFILE": "CHEAPEST",
            "FLASK_TESTING": "true",  # the cheap hash profile is allowed only in tests
            "FLASK_AUTH_COOKIE_SECURE": "false",  # plain HTTP on loopback
            "FLASK_SESSION_COOKIE_SECURE": "false",
            "WEB_CONCURRENCY": str(RACE_WORKERS),
            # Sign-in, sign-up and recovery budgets and the slow-down out of the way of races
            # that sign in or ask again and again (the email code and link bursts, the
            # recovery races); budgets have tests of their own (test_counter_bursts.py).
            "FLASK_SIGN_IN_RATE_LIMIT": "1000 per minute",
            "FLASK_SIGN_IN_ACCOUNT_RATE_LIMIT": "1000 per hour",
            "FLASK_SIGN_IN_SLOWDOWN_AFTER": "1000",
            "FLASK_EMAIL_SIGN_IN_RATE_LIMIT": "1000 per hour",
            "FLASK_EMAIL_SIGN_IN_EMAIL_RATE_LIMIT": "1000 per hour",
            "FLASK_FORGOT_PASSWORD_RATE_LIMIT": "1000 per hour",
            "FLASK_FORGOT_PASSWORD_EMAIL_RATE_LIMIT": "1000 per hour",
            "FLASK_SIGN_UP_RATE_LIMIT": "1000 per hour",
            # Mail the workers send lands where the test can count it (support access).
            "FLASK_MAIL_OUTBOX_DIR": str(folder / "outbox"),
        }
        port = free_port()
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "--no-control-socket",
             "-c", "gunicorn.conf.py", "invoiceapp:create_app()"],
            cwd=ROOT, env={**environment, "BIND": f"127.0.0.1:{port}"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        outbox = str(folder / "outbox")
        app = create_app({**TEST_CONFIG, "DATABASE_URL": database_url, "MAIL_OUTBOX_DIR": outbox})
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_up(base + "/readyz", process)
            yield base, app
        finally:
            process.terminate()
            process.wait(timeout=20)
            app.extensions["db_engine"].dispose()


@pytest.fixture()
def served(
    shared_served: tuple[str, Flask], seeded_database: Path, redis_url: str
) -> tuple[str, Flask]:
    """gunicorn with RACE_WORKERS processes on a seeded database, fresh for this test; its
    URL, and an app on the same database for the test's own reads and writes. The server
    is ``shared_served`` (starting gunicorn was most of such a test's time); the seeded
    data is put back and Redis emptied before the test."""
    _base, app = shared_served
    restore_seeded_data(app, seeded_database)
    redis.Redis.from_url(redis_url).flushdb()
    return shared_served


def restore_seeded_data(app: Flask, seeded_database: Path) -> None:
    """The seeded data again in ``app``'s database, while servers keep running on it: SQLite
    copies the seeded file's pages in with its backup API; PostgreSQL gets the seeded rows
    copied back (seeded_rows.py)."""
    engine = app.extensions["db_engine"]
    if engine.dialect.name != "sqlite":
        reseed(app)
        return
    engine.dispose()
    source, target = sqlite3.connect(seeded_database), sqlite3.connect(engine.url.database)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def shared_served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[tuple[str, Flask]]:
    """One server per engine for every test that asks for it, the data left as the last test
    left it (``served`` puts the seeded data back first): for races that each round run on
    rows of their own (a fresh invoice, a fresh key), and so cannot see another test's.
    Starting gunicorn is most of such a test's time (each xdist worker that runs such a
    test starts its own)."""
    folder = tmp_path_factory.mktemp(f"shared-served-{request.param}")
    with _race_server(request.param, folder, redis_url) as served:
        yield served


# --- The same tests on both engines ---------------------------------------------------------


@pytest.fixture(scope="module")
def postgres_app() -> Iterator[Flask]:
    with app_on_postgres(seeded=False) as app:
        yield app


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "postgresql",
            marks=pytest.mark.skipif(
                not POSTGRES_URL, reason="INVOICEAPP_TEST_POSTGRES_URL is not set"
            ),
        ),
    ]
)
def app_on_each_engine(request: pytest.FixtureRequest, database_file: Path) -> Iterator[Flask]:
    """The seeded app on SQLite, then on PostgreSQL (one schema per module, given the
    seeded rows again for each test)."""
    if request.param == "sqlite":
        app = make_test_app(database_file)
        yield app
        app.extensions["db_engine"].dispose()
        return
    app = request.getfixturevalue("postgres_app")
    reseed(app)  # the seeded rows copied back in (seeded_rows.py)
    yield app
