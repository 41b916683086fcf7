"""Hypothesis throws arbitrary input at every form and every id of the HTML app.

Whatever arrives — any Unicode, huge or negative numbers, odd dates, wrong shapes —
the answer is never a 5xx, and nothing of another organization changes. Examples are
bounded so the whole file stays within seconds; `make test` runs it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from conftest import app_on_postgres
from invoiceapp.api.pagination import InvalidCursor, decode_cursor
from invoiceapp.models import Invoice, Membership, Organization, Passkey
from support import signed_in_client

FIELDS = [
    "customer", "amount", "currency", "issue_date", "due_date", "email", "password",
    "name", "organization_name", "organization", "role", "plan", "code", "next", "version",
    "new_password", "confirm_password", "current_password", "scope", "expires_days",
    "user_id", "invoice_duplication", "creation_key", "remember",
]  # fmt: skip

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

odd_text = st.one_of(
    st.text(max_size=300),
    st.sampled_from(["", " ", "0", "-1", "1e999", "NaN", "١٢٣", "9" * 40, "2024-02-30",
                     "0000-01-01", "9999-12-31", "inv_42", "globex", "owner", "\u202e", "%00",
                     "../../etc/passwd", "<script>", "' OR 1=1 --", "x" * 5000]),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.dates().map(str),
)  # fmt: skip

form_bodies = st.dictionaries(st.sampled_from(FIELDS), odd_text, max_size=8)


def _globex_snapshot(db: Session) -> list[tuple[Any, ...]]:
    db.expire_all()
    globex = db.scalar(select(Organization.id).where(Organization.slug == "globex"))
    invoices = db.execute(
        select(Invoice.public_id, Invoice.customer, Invoice.amount_minor, Invoice.status,
               Invoice.deleted_at, Invoice.version).where(Invoice.organization_id == globex)
        .order_by(Invoice.id)
    ).all()  # fmt: skip
    members = db.execute(
        select(Membership.user_id, Membership.role)
        .where(Membership.organization_id == globex)
        .order_by(Membership.user_id)
    ).all()
    organization = db.execute(select(Organization).where(Organization.id == globex)).one()
    plan = organization[0].plan
    return [*map(tuple, invoices), *map(tuple, members), ("plan", plan)]


def _sample(match: re.Match[str]) -> str:
    converter, name = match.groups()
    if converter == "int":
        return "3"
    return {"invoice_id": "inv_7", "slug": "acme"}.get(name, "sample")


def _post_routes(app: Flask) -> list[str]:
    paths = []
    for rule in app.url_map.iter_rules():
        if "POST" in (rule.methods or ()) and not rule.rule.startswith("/api/"):
            paths.append(re.sub(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>", _sample, rule.rule))
    return sorted(set(paths))


def test_every_form_survives_arbitrary_input_and_globex_is_untouched(
    app: Flask, db: Session
) -> None:
    routes = _post_routes(app)
    before = _globex_snapshot(db)

    @SETTINGS
    @given(route=st.sampled_from(routes), body=form_bodies)
    def post_anything(route: str, body: dict[str, str]) -> None:
        grace = signed_in_client(app, "grace@acme.test")  # admin in acme, member in globex
        response = grace.post(route, data=body)
        assert response.status_code < 500, (route, body, response.status_code)

    post_anything()
    assert _globex_snapshot(db) == before


def test_every_id_in_a_url_is_a_clean_answer(app: Flask) -> None:
    pages = sorted(
        {
            rule.rule
            for rule in app.url_map.iter_rules()
            if "GET" in (rule.methods or ()) and rule.arguments and rule.endpoint != "static"
        }
    )
    ids = st.one_of(
        st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=80),
        st.integers(min_value=-(10**20), max_value=10**20).map(str),
    )

    @SETTINGS
    @given(page=st.sampled_from(pages), value=ids)
    def get_anything(page: str, value: str) -> None:
        from urllib.parse import quote

        path = re.sub(r"<[^>]+>", quote(value, safe=""), page)
        response = signed_in_client(app, "linus@acme.test").get(path)
        assert response.status_code < 500, (path, response.status_code)

    get_anything()


# --- Ids from a path, on both engines ----------------------------------------------------
#
# Every id a URL path carries is shape-checked (invoiceapp.path_ids) before a query sees it:
# a malformed id is the same 404 as a well-formed one that does not exist, byte for byte,
# and PostgreSQL never gets the chance to refuse a NUL byte with an error (a 500).

# A well-formed id that names nothing, per route argument; the baseline a malformed id is
# compared with. The slug is acme's when the route has another id to look up inside it.
MISSING = {
    "invoice_id": "inv_999999",
    "user_id": "999999",
    "token": "A" * 43,
    "mail_id": "nothing-here",
    "part": "no-such-part",  # /exercises/<part>: the router itself answers 404
    "share_id": "0123456789abcdef",  # /orgs/<slug>/shares/<share_id>/revoke
    "key": "no-such-role",  # /orgs/<slug>/roles/<key>: a custom role's key
    "grant_id": "999999",  # /support/<grant_id>/end, /orgs/<slug>/support/<grant_id>/…
}
MISSING_PUBLIC_ID = {
    "/account/sessions/": "0123456789abcdef",
    "/account/passkeys/": "0123456789abcdef",
    "/account/tokens/": "pat_0123456789abcdef",
    "/orgs/<slug>/invitations/": "0123456789abcdef",
    "/orgs/<slug>/members/": "pat_0123456789abcdef",  # a member's token
}
MALFORMED = ["\x00", "0123456789abcde\x00", "x" * 5000, "\u202e", "..", "inv_7 ", "ÄCME", "-1"]


def _missing_value(rule: str, argument: str) -> str:
    if argument == "slug":
        return "acme" if rule.count("<") > 1 else "no-such-org"
    if argument == "public_id":
        return next(v for prefix, v in MISSING_PUBLIC_ID.items() if rule.startswith(prefix))
    return MISSING[argument]


def _routes_with_a_path_id(app: Flask) -> list[tuple[str, str, list[str]]]:
    """(method, rule, argument names) for every route that takes something from its path."""
    routes = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or not rule.arguments:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            names = re.findall(r"<(?:[^>:]+:)?(\w+)>", rule.rule)
            routes.append((method, rule.rule, names))
    return sorted(routes)


def _path(rule: str, values: dict[str, str]) -> str:
    from urllib.parse import quote

    def fill(match: re.Match[str]) -> str:
        return quote(values[match.group(1)], safe="")

    return re.sub(r"<(?:[^>:]+:)?(\w+)>", fill, rule)


def _request(client: Any, method: str, path: str) -> Any:
    if path.startswith("/api/") and method in ("PATCH", "DELETE", "POST"):
        return client.open(path, method=method, json={})
    return client.open(path, method=method)


def test_a_nul_byte_in_a_session_or_passkey_id_is_the_same_404_as_a_missing_one(
    live_app: Flask,
) -> None:
    grace = signed_in_client(live_app, "grace@acme.test")
    grace.get("/dashboard")  # uses up the "signed in" notice, so the pages compare equal
    for route in ("/account/sessions/{}/revoke", "/account/passkeys/{}/remove"):
        missing = grace.post(route.format("0123456789abcdef"))
        assert missing.status_code == 404
        for malformed in ("%00", "0123456789abcde%00", "x%00y"):
            response = grace.post(route.format(malformed))
            assert response.status_code == 404, (route, malformed)
            assert response.get_data() == missing.get_data()
    # Nothing was revoked: Grace is still signed in.
    assert grace.get("/account/sessions").status_code == 200


def test_every_malformed_path_id_is_the_same_404_as_a_missing_one(live_app: Flask) -> None:
    """Each argument of each route in turn gets malformed values, the others stay well
    formed: the answer is the one a well-formed id that names nothing gets."""
    grace = signed_in_client(live_app, "grace@acme.test")  # admin in acme, member in globex
    grace.get("/dashboard")  # uses up the "signed in" notice, so the pages compare equal
    checked = 0
    for method, rule, names in _routes_with_a_path_id(live_app):
        baseline_values = {name: _missing_value(rule, name) for name in names}
        baseline = _request(grace, method, _path(rule, baseline_values))
        assert baseline.status_code < 500, (method, rule)
        for name in names:
            for malformed in MALFORMED:
                path = _path(rule, {**baseline_values, name: malformed})
                response = _request(grace, method, path)
                assert response.status_code == baseline.status_code, (method, rule, malformed)
                if name != "token":  # a token page's forms carry its own path (next=…)
                    assert response.get_data() == baseline.get_data(), (method, rule, malformed)
                checked += 1
    assert checked > 300  # every route with an id was reached, not skipped


@pytest.fixture(scope="module")
def postgres_fuzz_app() -> Iterator[Flask]:
    with app_on_postgres() as app:
        yield app


def test_every_path_id_survives_arbitrary_input_on_postgresql(postgres_fuzz_app: Flask) -> None:
    app = postgres_fuzz_app
    routes = _routes_with_a_path_id(app)
    grace = signed_in_client(app, "grace@acme.test")
    values = st.one_of(
        # Any Unicode but lone surrogates (no URL can carry those), NUL included.
        st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=80),
        st.sampled_from(["%00", "\x00", "%", "..", "/", " ", "x" * 5000, "9" * 40, "-1"]),
        st.integers(min_value=-(10**20), max_value=10**20).map(str),
    )

    @settings(
        max_examples=120,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(route=st.sampled_from(routes), value=values, which=st.integers(0, 2))
    def open_anything(route: tuple[str, str, list[str]], value: str, which: int) -> None:
        method, rule, names = route
        ids = {name: _missing_value(rule, name) for name in names}
        ids[names[which % len(names)]] = value  # one argument fuzzed, the others well formed
        response = _request(grace, method, _path(rule, ids))
        assert response.status_code < 500, (method, rule, ids, response.status_code)

    open_anything()


# --- JSON nested too deep for the parser ---------------------------------------------------

DEEP = "[" * 5000 + "]" * 5000


def test_a_deeply_nested_passkey_credential_is_refused_like_any_garbage(
    app: Flask, db: Session
) -> None:
    """5,000 nested brackets fit in the size limit and exhaust json's stack: the answer
    is the one any malformed credential gets, never a 500."""
    anonymous = app.test_client()
    linus = signed_in_client(app, "linus@acme.test")  # just signed in: fresh enough to add
    for client, route, garbage_answer in [
        (anonymous, "/sign-in/passkey", 401),
        (linus, "/account/passkeys", 400),
        (linus, "/reauthenticate/passkey", 422),  # a wrong proof; the session is fine
    ]:
        assert client.post(route, data={"credential": "not json"}).status_code == garbage_answer
        for credential in (DEEP, '{"id": ' + DEEP + "}"):
            response = client.post(route, data={"credential": credential})
            assert response.status_code == garbage_answer, route
            assert response.get_json()["error"]["code"] != "internal"
    assert db.scalars(select(Passkey)).all() == []


def test_deeply_nested_json_in_the_api_is_a_client_error(app: Flask) -> None:
    import base64

    ada = signed_in_client(app, "ada@acme.test")
    body = ada.post(
        "/api/v1/invoices", data='{"customer": ' + DEEP + "}", content_type="application/json"
    )
    assert body.status_code == 400
    assert body.get_json()["error"]["code"] == "bad_request"
    cursor = base64.urlsafe_b64encode(DEEP.encode()).decode().rstrip("=")
    for listing in ("/api/v1/invoices", "/api/v1/orgs/acme/audit"):
        response = ada.get(f"{listing}?cursor={cursor}")
        # Far longer than any cursor we make, and than any query string the API reads.
        assert response.status_code == 400, listing
        assert response.get_json()["error"]["reason"] == "query_too_long"
    # Behind the length limit, the decoder itself refuses a cursor nested too deep.
    with pytest.raises(InvalidCursor):
        decode_cursor("invoice", cursor, str)
