"""The fixed cost of every request (issue 21): work Flask, the hooks and the database
session did on each request that this app never needed. Each test fails if its saving
is undone; none measures time (bench/ and the stage measurements do that)."""

from __future__ import annotations

import inspect
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import flask
import flask.app
import psycopg
import pytest
import werkzeug.local
from flask import Blueprint, Flask, request
from flask.json.tag import TaggedJSONSerializer
from itsdangerous import URLSafeTimedSerializer

from conftest import app_on_postgres, make_test_app
from invoiceapp import cookie_session
from invoiceapp.authn.sessions import current_session
from invoiceapp.body_limit import ChunkedBodyLimit
from invoiceapp.db import get_db
from invoiceapp.extensions import limiter, login_manager
from invoiceapp.flask_app import InvoiceApp, refuse_async_functions
from invoiceapp.health_hosts import HealthChecksForAnyHost
from invoiceapp.pg_cursor import ColumnsOnDemand, DescribedOnDemandCursor
from invoiceapp.principal import current_principal
from invoiceapp.templating import csrf_token
from support import arguments_given, signed_in_client


def test_no_function_is_inspected_for_async_on_a_request(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Flask's ensure_sync asked iscoroutinefunction about 17 times per page."""
    asked: list[Any] = []

    def counting(function: Any) -> bool:
        asked.append(function)
        return inspect.iscoroutinefunction(function)

    monkeypatch.setattr(flask.app, "iscoroutinefunction", counting)
    client = signed_in_client(app, "ada@acme.test")
    assert client.get("/invoices/inv_7").status_code == 200
    assert client.get("/no-such-page").status_code == 404
    assert asked == []


def test_an_async_view_is_refused_when_it_is_registered(app: Flask) -> None:
    async def view() -> str:
        return "never"

    with pytest.raises(TypeError, match="async"):
        app.add_url_rule("/async", "async_view", view)
    blueprint = Blueprint("async_blueprint", __name__)
    blueprint.add_url_rule("/async-too", "view", view)
    with pytest.raises(TypeError, match="async"):
        app.register_blueprint(blueprint)


@pytest.mark.parametrize("register", ["before_request", "after_request", "teardown_request",
                                      "teardown_appcontext", "errorhandler"])  # fmt: skip
def test_an_async_hook_is_refused_when_the_app_is_built(register: str) -> None:
    app = InvoiceApp(__name__)

    async def hook(*_args: Any) -> Any:
        return None

    if register == "errorhandler":
        app.register_error_handler(404, hook)
    else:
        getattr(app, register)(hook)
    refuse_async_functions(InvoiceApp(__name__))  # nothing async: nothing refused
    with pytest.raises(TypeError, match="async"):
        refuse_async_functions(app)


# ---------------------------------------------------------------------------
# Flask's signed-cookie session (invoiceapp/cookie_session.py)
# ---------------------------------------------------------------------------

FLASH_AND_TOKEN = {"csrf_token": "a" * 40, "_flashes": [("info", "Saved.")]}


def _open(app: Flask, cookie_value: str) -> Any:
    name = app.config["SESSION_COOKIE_NAME"]
    with app.test_request_context(headers={"Cookie": f"{name}={cookie_value}"}) as context:
        return app.session_interface.open_session(app, context.request)


def _signed(app: Flask, data: dict[str, Any]) -> str:
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    return str(serializer.dumps(data))


def _count_signature_checks(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    return arguments_given(monkeypatch, URLSafeTimedSerializer, "loads")  # cookies checked


def test_the_cookie_serializer_is_built_once_per_secret_key(app: Flask) -> None:
    interface = app.session_interface
    first = interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    assert interface.get_signing_serializer(app) is first  # type: ignore[attr-defined]
    app.secret_key = "another-key"
    assert interface.get_signing_serializer(app) is not first  # type: ignore[attr-defined]


def test_a_session_cookie_is_verified_and_decoded_once_each_request_gets_its_own_copy(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second request with the same cookie skips the signature check and the
    decoding (same cookie, same key, same verdict) but gets a session of its own: one
    request changing its flashes never changes what the next one reads."""
    value = _signed(app, FLASH_AND_TOKEN)
    checked = _count_signature_checks(monkeypatch)
    decoded: list[str] = []
    original_loads = TaggedJSONSerializer.loads

    def decoding(self: TaggedJSONSerializer, text: str) -> Any:
        decoded.append(text)
        return original_loads(self, text)

    monkeypatch.setattr(TaggedJSONSerializer, "loads", decoding)
    first = _open(app, value)
    assert dict(first) == FLASH_AND_TOKEN
    first["_flashes"].append(("info", "Changed by the first request."))
    second = _open(app, value)
    assert dict(second) == FLASH_AND_TOKEN
    assert second["_flashes"] is not first["_flashes"]
    second["_flashes"].clear()
    assert dict(_open(app, value)) == FLASH_AND_TOKEN
    assert len(checked) == 1 and len(decoded) == 1


def test_a_forged_or_foreign_session_cookie_opens_an_empty_session(app: Flask) -> None:
    value = _signed(app, FLASH_AND_TOKEN)
    assert dict(_open(app, value)) == FLASH_AND_TOKEN  # verified and remembered
    other_content = _signed(app, {"csrf_token": "b" * 40}).rsplit(".", 1)[0]
    forged = other_content + "." + value.rsplit(".", 1)[1]  # a signature of other content
    assert dict(_open(app, forged)) == {}
    app.secret_key = "a-rotated-key"  # what the old key signed no longer counts
    assert dict(_open(app, value)) == {}


def test_a_remembered_session_cookie_still_expires(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = _signed(app, FLASH_AND_TOKEN)
    assert dict(_open(app, value)) == FLASH_AND_TOKEN
    lifetime = int(app.permanent_session_lifetime.total_seconds())
    later = time.time() + lifetime + 2
    monkeypatch.setattr(cookie_session, "time", SimpleNamespace(time=lambda: later))
    assert dict(_open(app, value)) == {}


def test_flask_login_no_longer_reads_the_cookie_session_after_every_request(app: Flask) -> None:
    """Its remember-me hook found nothing to do here on every request; every answer still
    says "Vary: Cookie", as when that hook's read made Flask add it."""
    after = app.after_request_funcs[None]
    assert login_manager._update_remember_cookie not in after
    client = app.test_client()
    for path in ("/", "/sign-in", "/healthz", "/no-such-page", "/api/v1/me", "/invoices/inv_7"):
        vary = client.get(path).headers.get("Vary", "")
        assert "Cookie" in [value.strip() for value in vary.split(",")], path


def test_an_unchanged_session_sends_no_cookie_and_still_varies_on_cookies(app: Flask) -> None:
    client = signed_in_client(app, "ada@acme.test")
    client.get("/invoices/inv_7")  # the sign-in's flash is shown, and gone from the cookie
    again = client.get("/invoices/inv_7")
    assert again.status_code == 200
    assert "Cookie" in again.headers.get("Vary", "")
    assert not [value for value in again.headers.getlist("Set-Cookie")
                if value.startswith(app.config["SESSION_COOKIE_NAME"] + "=")]  # fmt: skip


# ---------------------------------------------------------------------------
# PostgreSQL: columns described only when read (invoiceapp/pg_cursor.py)
# ---------------------------------------------------------------------------


def test_a_page_seen_before_builds_no_column_descriptions(monkeypatch: pytest.MonkeyPatch) -> None:
    """psycopg built a Column object for each of the page's 64 result columns on every
    request; SQLAlchemy only asks whether rows came back for a statement it knows."""
    with app_on_postgres() as app:
        client = signed_in_client(app, "ada@acme.test")
        assert client.get("/invoices/inv_7").status_code == 200  # statements compiled
        described: list[int] = []
        original = psycopg.Column.__init__

        def counting(self: Any, cursor: Any, index: int) -> None:
            described.append(index)
            original(self, cursor, index)

        monkeypatch.setattr(psycopg.Column, "__init__", counting)
        assert client.get("/invoices/inv_7").status_code == 200
        assert described == []


def test_columns_read_on_demand_are_psycopgs_own() -> None:
    with app_on_postgres(seeded=False) as app:
        engine = app.extensions["db_engine"]
        with engine.connect() as connection:
            dbapi_connection = connection.connection.dbapi_connection
            assert dbapi_connection is not None
            assert dbapi_connection.cursor_factory is DescribedOnDemandCursor
            query = "SELECT 1 AS one, 'x'::text AS two, now() AS three"
            ours = dbapi_connection.cursor()
            ours.execute(query)
            plain = psycopg.Cursor(dbapi_connection)
            plain.execute(query)
            described = ours.description
            assert isinstance(described, ColumnsOnDemand) and len(described) == 3
            assert [tuple(column) for column in described] == [
                tuple(column) for column in plain.description or []
            ]
            assert described[1].name == "two"
            assert [column.name for column in described[-2:]] == ["two", "three"]
            late = ours.description
            ours.execute("SELECT 2 AS other")
            with pytest.raises(RuntimeError):
                list(late)  # never another statement's columns under this one's name
            ours.execute("UPDATE users SET email = email WHERE false")
            assert ours.description is None and plain.description is not None


# ---------------------------------------------------------------------------
# Rate limits: pages without any never enter Flask-Limiter (invoiceapp/extensions.py)
# ---------------------------------------------------------------------------


def test_a_page_without_limits_never_enters_the_limiter_before_or_after(
    database_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its before-request check, rate-limit headers, refund and teardown all skip such a
    page; a limited route (the API) still gets its headers."""
    app = make_test_app(database_file, RATELIMIT_ENABLED=True)
    client = signed_in_client(app, "ada@acme.test")
    entered: list[str] = []
    original = type(limiter).context.fget  # type: ignore[attr-defined]

    def counting(self: Any) -> Any:
        entered.append(request.path)
        return original(self)

    monkeypatch.setattr(type(limiter), "context", property(counting))
    page = client.get("/invoices/inv_7")
    assert page.status_code == 200 and "X-RateLimit-Limit" not in page.headers
    assert entered == []
    api = client.get("/api/v1/me")
    assert api.status_code == 200 and "X-RateLimit-Limit" in api.headers
    assert entered and set(entered) == {"/api/v1/me"}


def test_whether_a_page_has_limits_is_worked_out_per_request_not_per_context(
    database_file: Path,
) -> None:
    """Requests sharing one app context (and its ``g``, as in tests) each get their own
    answer: an unlimited page first never lets the API after it go unlimited."""
    app = make_test_app(database_file, RATELIMIT_ENABLED=True)
    client = signed_in_client(app, "ada@acme.test")
    with app.app_context():
        assert "X-RateLimit-Limit" not in client.get("/invoices/inv_7").headers
        assert "X-RateLimit-Limit" in client.get("/api/v1/me").headers


def test_an_app_without_the_demo_runs_no_tour_hooks(app: Flask) -> None:
    hooks = [*app.before_request_funcs[None], *app.after_request_funcs[None]]
    assert not [hook for hook in hooks if hook.__module__ == "invoiceapp.tour"]
    demo = make_test_app(Path(str(app.config["DATABASE_URL"]).removeprefix("sqlite:///")),
                         DEMO_MODE=True)  # fmt: skip
    assert [hook for hook in demo.after_request_funcs[None] if hook.__module__ == "invoiceapp.tour"]


def test_the_middlewares_read_the_config_only_for_the_requests_they_change(app: Flask) -> None:
    """The chunked-body limit for chunked bodies, the health checks' host for /healthz."""
    health = app.wsgi_app
    assert isinstance(health, HealthChecksForAnyHost)
    body = health.app
    assert isinstance(body, ChunkedBodyLimit)
    asked: list[str] = []
    trusted_hosts, max_bytes = health.trusted_hosts, body.max_bytes
    health.trusted_hosts = lambda: asked.append("hosts") or trusted_hosts()  # type: ignore[func-returns-value]
    body.max_bytes = lambda: asked.append("limit") or max_bytes()  # type: ignore[func-returns-value]
    client = app.test_client()
    client.get("/sign-in")
    assert asked == []
    client.get("/healthz")
    assert asked == ["hosts"]


def test_the_principal_the_session_and_the_csrf_token_are_read_without_flask_s_proxies(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each read through ``g``, ``request`` or ``current_app`` costs about 0.6 µs, and these
    are asked several times a page (invoiceapp/request_locals.py): once built, asking again
    reads no proxy at all."""
    client = signed_in_client(app, "ada@acme.test")
    cookie = client.get_cookie(app.config["AUTH_COOKIE_NAME"])
    assert cookie is not None
    headers = {"Cookie": f"{cookie.key}={cookie.value}"}
    with app.test_request_context("/invoices/inv_7", headers=headers):
        principal = current_principal()
        assert principal is not None and principal.user.email == "ada@acme.test"
        token, db, auth_session = csrf_token(), get_db(), current_session()
        reads: list[str] = []
        real = werkzeug.local._ProxyLookup.__get__

        def counting(self: Any, instance: Any, owner: Any = None) -> Any:
            if instance is not None:
                reads.append(self.name)
            return real(self, instance, owner)

        monkeypatch.setattr(werkzeug.local._ProxyLookup, "__get__", counting)
        for _ in range(3):
            assert current_principal() is principal
            assert get_db() is db
            assert current_session() is auth_session
            assert csrf_token() == token
        monkeypatch.undo()
        assert reads == []
        assert flask.g.get("principal") is principal  # the very objects the proxies stand for
