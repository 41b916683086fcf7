"""What rendering a page costs, without timing anything: each saving of issue 21 (the
template render of the invoice page and the layout every page shares) has a test here
that fails if the saving is undone, and shows the page still says and allows the same."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask_wtf import csrf as flask_wtf_csrf
from markupsafe import Markup
from werkzeug.routing import MapAdapter

from conftest import make_test_app
from invoiceapp import flask_app, templating
from invoiceapp.flask_app import InvoiceApp
from support import (
    arguments_given,
    calls_of,
    keys_chainmaps_are_asked,
    sign_in_through_the_form,
    signed_in_client,
    signed_in_through_the_form,
)

TOKEN = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def _count_signing(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Each call of Flask-WTF's generate_csrf() (the one that signs) from now on."""
    return calls_of(monkeypatch, flask_wtf_csrf, "generate_csrf")


def _tokens(page: Any) -> set[str]:
    assert page.status_code == 200
    return set(TOKEN.findall(page.get_data(as_text=True)))


@pytest.mark.parametrize("email", ["ada@acme.test", "grace@acme.test"])
def test_the_next_page_within_the_minute_shows_the_same_signed_token_without_signing(
    csrf_app: Flask, monkeypatch: pytest.MonkeyPatch, email: str
) -> None:
    """Signing a CSRF token costs about 75 µs a page. The token signed for this session
    a moment ago is shown again, and the CSRF check accepts it like a fresh one. (Grace
    belongs to two organizations: her header's first form is the switcher, whose
    csrf_token() is the page context's, which Flask-WTF had set to its own.)"""
    client = signed_in_through_the_form(csrf_app, email)
    signed = _count_signing(monkeypatch)
    first = _tokens(client.get("/invoices/inv_7"))
    second = _tokens(client.get("/invoices/inv_7"))
    third = _tokens(client.get("/dashboard"))
    assert len(signed) == 1  # the first page after sign-in signs; the next ones reuse it
    assert len(first) == 1 and first == second == third

    forged = client.post("/invoices/inv_7/mark-paid", data={"csrf_token": "forged"})
    assert forged.status_code == 400
    marked = client.post("/invoices/inv_7/mark-paid", data={"csrf_token": first.pop()})
    assert marked.status_code == 303


def test_a_token_is_signed_again_once_the_reuse_window_has_passed(
    csrf_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default time limit is 30 minutes, so a token is reused for 30 s at most: a form
    expires at most a sixtieth of its life earlier than a freshly signed one would."""
    client = signed_in_through_the_form(csrf_app, "ada@acme.test")
    before = _tokens(client.get("/invoices/inv_7"))
    signed = _count_signing(monkeypatch)
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 29)
    assert _tokens(client.get("/invoices/inv_7")) == before
    assert signed == []
    monkeypatch.setattr(time, "time", lambda: real_time() + 31)
    after = _tokens(client.get("/invoices/inv_7"))
    assert len(signed) == 1 and after != before
    assert client.post("/sign-out", data={"csrf_token": after.pop()}).status_code == 303


@pytest.mark.parametrize("limit", [59, 1])
def test_a_short_time_limit_signs_every_page(
    database_file: Path, monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    """A time limit under an hour divided by 60 leaves no minute to spare: every page signs."""
    app = make_test_app(database_file, WTF_CSRF_ENABLED=True, WTF_CSRF_TIME_LIMIT=limit)
    client = signed_in_through_the_form(app, "ada@acme.test")
    signed = _count_signing(monkeypatch)
    client.get("/invoices/inv_7")
    client.get("/invoices/inv_7")
    assert len(signed) == 2
    app.extensions["db_engine"].dispose()


def test_a_signed_token_is_never_shown_to_another_session(
    csrf_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reuse is keyed by the session's own raw token: two sessions of the same person,
    one after the other, each get their own, and neither is accepted by the other."""
    ada = signed_in_through_the_form(csrf_app, "ada@acme.test")
    again = signed_in_through_the_form(csrf_app, "ada@acme.test")
    linus = signed_in_through_the_form(csrf_app, "linus@acme.test")
    mine = _tokens(ada.get("/invoices/inv_7"))
    other = _tokens(again.get("/invoices/inv_7"))
    theirs = _tokens(linus.get("/invoices/inv_7"))
    assert len(mine | other | theirs) == 3
    assert ada.post("/sign-out", data={"csrf_token": other.pop()}).status_code == 400
    assert ada.post("/sign-out", data={"csrf_token": theirs.pop()}).status_code == 400
    assert ada.post("/sign-out", data={"csrf_token": mine.pop()}).status_code == 303


def test_signing_in_again_signs_a_new_token(
    csrf_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sign-in clears the session, raw token included: the token kept for the old session
    is never shown again, and no longer accepted."""
    client = signed_in_through_the_form(csrf_app, "ada@acme.test")
    before = _tokens(client.get("/invoices/inv_7")).pop()
    assert client.post("/sign-out", data={"csrf_token": before}).status_code == 303
    sign_in_through_the_form(client, "ada@acme.test")
    after = _tokens(client.get("/invoices/inv_7"))
    assert before not in after
    assert client.post("/sign-out", data={"csrf_token": before}).status_code == 400


def test_a_render_copies_the_environment_s_globals_as_one_dict_not_key_by_key(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jinja copies a template's globals into every new context; read through a ChainMap
    that was one Python call per global (25 of them, 10 µs a render). A file template has
    no globals of its own, so the environment's are copied as they are; a template with
    some of its own still sees them over the environment's."""
    client = signed_in_client(app, "ada@acme.test")
    read = keys_chainmaps_are_asked(monkeypatch, "__getitem__")
    page = client.get("/invoices/inv_7")
    assert page.status_code == 200 and 'class="badge badge-sent"' in page.text
    assert read == []

    with app.test_request_context("/"):
        source = "{{ greeting }} {{ fixed_url('pages.dashboard') }}"
        assert app.jinja_env.from_string(source).render(greeting="hi") == "hi /dashboard"
        own = app.jinja_env.from_string(source, globals={"greeting": "hello"})
        assert own.render() == "hello /dashboard"
        assert own.render(greeting="hi") == "hi /dashboard"


def test_the_header_s_links_are_built_once_per_process_then_read_from_a_dict(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dozen url_for() calls from the header cost about 45 µs a page; `links` and
    `static_url` build each URL on first use and then only read it."""
    client = signed_in_client(app, "ada@acme.test")
    client.get("/invoices/inv_7")
    built: list[tuple[Any, ...]] = []
    real = templating.url_for

    def counting(*args: Any, **values: Any) -> str:
        built.append(args)
        return real(*args, **values)

    monkeypatch.setattr(templating, "url_for", counting)
    page = client.get("/invoices/inv_7").get_data(as_text=True)
    assert built == []
    assert '<link rel="stylesheet" href="/static/app.css">' in page
    assert '<a href="/invoices" aria-current="page">Invoices</a>' in page
    assert '<form method="post" action="/sign-out" class="inline-form">' in page
    assert '<form method="post" action="/account/elevation/end" class="inline-form">' in page

    anonymous = app.test_client().get("/sign-in").get_data(as_text=True)
    assert '<a href="/sign-up">Create an account</a>' in anonymous
    assert sorted(built) == [("authn.sign_in_form",), ("pages.landing",), ("signup.sign_up_form",)]
    app.test_client().get("/sign-in")
    assert len(built) == 3


def test_with_the_lab_off_the_invoice_page_never_asks_for_hidden_buttons(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hidden_buttons() answers nothing unless the demo's lab is on; the page asks
    `lab_on` (already in its context) first, and the members page does so on every row."""
    client = signed_in_client(app, "ada@acme.test")
    asked: list[object] = []
    real = app.jinja_env.globals["hidden_buttons"]

    def counting(resource: object) -> Any:
        asked.append(resource)
        return real(resource)

    monkeypatch.setitem(app.jinja_env.globals, "hidden_buttons", counting)
    page = client.get("/invoices/inv_7")
    assert page.status_code == 200 and "lab-hidden" not in page.text
    assert client.get("/orgs/acme/members").status_code == 200
    assert asked == []


def test_a_flash_message_is_escaped_and_only_right_to_left_runs_are_isolated() -> None:
    assert templating.isolate_rtl("Saved <b>") == Markup("Saved &lt;b&gt;")
    assert templating.isolate_rtl("Invited דוד כהן.") == Markup("Invited <bdi>דוד כהן</bdi>.")


def test_compiled_templates_are_kept_in_a_plain_dict(app: Flask) -> None:
    """Jinja's default cache is an LRU of 400 whose lookups lock and reorder a deque; the
    app's templates are a fixed set, so a dict keeps them (each still compiled once)."""
    client = signed_in_client(app, "ada@acme.test")
    assert client.get("/invoices/inv_7").status_code == 200
    cache = app.jinja_env.cache
    assert type(cache) is dict
    kept = {name for _loader, name in cache}
    assert {"invoices/show.html", "base.html", "macros.html"} <= kept
    compiled = dict(cache)
    assert client.get("/invoices/inv_7").status_code == 200
    assert all(cache[key] is template for key, template in compiled.items())


# --- url_for's short cut for one-value routes (invoiceapp/flask_app.py) --------------------

URL_VALUES = ("inv_7", "a b/c?d#e%f&g=h+i", "é", 42, "")


@pytest.mark.parametrize("mount_point", ["", "/billing"])
def test_every_one_value_route_gets_exactly_the_url_flask_builds(
    app: Flask, mount_point: str
) -> None:
    """Every route of the app with one value in its path, at the root and under a mount
    point, for values that need quoting: the short cut and Flask's own url_for agree, and
    where Flask refuses a value (a number route given text), so does the app."""
    checked = 0
    with app.test_request_context("/", base_url=f"http://localhost{mount_point}"):
        for rule in app.url_map.iter_rules():
            if len(rule.arguments) != 1:
                continue
            (name,) = rule.arguments
            for value in URL_VALUES:
                try:
                    expected = Flask.url_for(app, rule.endpoint, **{name: value})
                except ValueError:
                    with pytest.raises(ValueError):
                        app.url_for(rule.endpoint, **{name: value})
                    continue
                assert app.url_for(rule.endpoint, **{name: value}) == expected
                assert app.url_for(rule.endpoint, **{name: value}) == expected  # the pattern's
            checked += 1
        for rule in app.url_map.iter_rules():
            if rule.arguments or "GET" not in (rule.methods or ()):
                continue
            for value in (*URL_VALUES, ["a", "b"], None, True):
                expected = Flask.url_for(app, rule.endpoint, organization=value)
                assert app.url_for(rule.endpoint, organization=value) == expected
                assert app.url_for(rule.endpoint, organization=value) == expected
            checked += 1
    assert checked >= 60
    patterns = app.extensions["one_value_url_patterns"]
    assert patterns[(mount_point + "/", "", "invoices.index", "organization")] is not None
    assert patterns[(mount_point + "/", "", "invoices.send", "invoice_id")] is not None
    with app.test_request_context("/", base_url=f"http://localhost{mount_point}"):
        url = app.url_for("invoices.send", invoice_id="inv_7")
    assert url == f"{mount_point}/invoices/inv_7/send"


def test_pages_build_their_invoice_links_without_werkzeug(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five links on the invoice page, one per row of the list, went through Werkzeug's
    build (about 14 µs each). After a route's first URL they are its pattern with the value
    quoted in."""
    client = signed_in_client(app, "ada@acme.test")
    client.get("/invoices/inv_7")
    client.get("/invoices")
    built = arguments_given(monkeypatch, MapAdapter, "build")  # endpoints Werkzeug built
    page = client.get("/invoices/inv_7").get_data(as_text=True)
    assert 'href="/invoices/inv_7/edit"' in page
    assert 'action="/invoices/inv_7/void"' in page
    assert 'href="/invoices/inv_7/delete"' in page
    assert built == []  # "← All invoices" too: one query argument of a route without values
    listing = client.get("/invoices").get_data(as_text=True)
    rows = re.findall(r'<td><a href="/invoices/(inv_[^"/]+)">', listing)
    assert len(set(rows)) >= 5
    assert "invoices.show" not in built


def test_routes_the_short_cut_cannot_copy_are_left_to_flask() -> None:
    """A converter other than the default, a default value, several values, a query
    argument, an anchor or an external URL: Flask builds them, and they come out right."""
    app = InvoiceApp(__name__)
    app.add_url_rule("/n/<int:number>", "number", lambda number: "")
    defaulted = lambda name: ""  # noqa: E731 - one view for two rules
    app.add_url_rule("/d/", "defaulted", defaulted, defaults={"name": "x"})
    app.add_url_rule("/d/<name>", "defaulted", defaulted)
    app.add_url_rule("/p/<path:rest>", "path", lambda rest: "")
    app.add_url_rule("/t/<a>/<b>", "two", lambda a, b: "")
    app.add_url_rule("/s/<name>", "simple", lambda name: "")
    with app.test_request_context("/"):
        assert app.url_for("number", number=7) == "/n/7"
        assert app.url_for("path", rest="a b/c") == "/p/a%20b/c"
        assert app.url_for("two", a="1", b="2") == "/t/1/2"
        assert app.url_for("simple", name="a b") == "/s/a%20b"
        assert app.url_for("simple", name="x", _anchor="top") == "/s/x#top"
        assert app.url_for("simple", name="x", _external=True) == "http://localhost/s/x"
        assert app.url_for("defaulted", name="y") == "/d/y"
        patterns = app.extensions["one_value_url_patterns"]
        assert patterns[("/", "", "number", "number")] is None
        assert patterns[("/", "", "path", "rest")] is None
        assert patterns[("/", "", "defaulted", "name")] is None
        assert patterns[("/", "", "simple", "name")] is not None


def test_mount_points_a_client_may_choose_do_not_grow_the_kept_urls_forever(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SCRIPT_NAME can arrive as a header from a trusted forwarder (gunicorn's
    forwarder_headers), so the URL patterns and the header's links, kept per mount point,
    are bounded: past the bound they start again, and the URLs stay right."""
    monkeypatch.setattr(flask_app, "MAX_URL_PATTERNS", 8)
    monkeypatch.setattr(templating, "MAX_MOUNT_POINTS", 4)
    client = app.test_client()
    for index in range(30):
        with app.test_request_context("/", base_url=f"http://localhost/m{index}"):
            assert app.url_for("invoices.send", invoice_id="x") == f"/m{index}/invoices/x/send"
        page = client.get("/sign-in", base_url=f"http://localhost/m{index}")
        assert f'href="/m{index}/sign-up"' in page.get_data(as_text=True)
        assert len(app.extensions["one_value_url_patterns"]) <= 8
        assert len(app.extensions["fixed_urls"]) <= 4
