"""Hypothesis throws arbitrary input at every form and every id of the HTML app.

Whatever arrives — any Unicode, huge or negative numbers, odd dates, wrong shapes —
the answer is never a 5xx, and nothing of another organization changes. Examples are
bounded so the whole file stays within seconds; `make test` runs it.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from invoiceapp.models import Invoice, Membership, Organization
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
