"""The demo teaches in the browser: traces, gates, the lab, the tour, the reset.

Demo mode only. With it off, none of it renders and the 404 stays the same bytes for an
invoice of another organization and one that never existed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask, url_for
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from conftest import Clock, make_test_app
from invoiceapp.views.demo import INVOICE_BUTTONS
from support import (
    EXPLAINER_ROW,
    PASSWORD,
    csrf_token_from,
    invoice,
    real_status,
    sign_in,
    signed_in_client,
    traces_of,
)

ANSWERED = re.compile(
    r'<li class="gate gate-answered" aria-current="step">\s*<span class="gate-name">([^<]+)</span>'
)
GATE_NAMES = re.compile(r'<span class="gate-name">([^<]+)</span>')
GATE_ORDER = ["Authentication", "CSRF", "Scope", "Authorization", "Elevation", "Rate limit"]
HIDDEN = '<span class="lab-tag">hidden from you</span>'


@pytest.fixture()
def demo(database_file: Path) -> Iterator[Flask]:
    app = make_test_app(database_file, DEMO_MODE=True)
    yield app
    app.extensions["db_engine"].dispose()


@pytest.fixture()
def demo_db(demo: Flask) -> Iterator[Session]:
    session = demo.extensions["db_sessionmaker"]()
    yield session
    session.close()


def html(response: object) -> str:
    return response.get_data(as_text=True)  # type: ignore[attr-defined]


# --- Decision traces --------------------------------------------------------------------

TRACED_PAGES = [
    ("linus@acme.test", "/invoices/inv_7"),
    ("linus@acme.test", "/invoices"),
    ("linus@acme.test", "/orgs/acme/members"),
    ("linus@acme.test", "/account"),
    ("ada@acme.test", "/orgs/acme/billing"),
    ("ada@acme.test", "/orgs/acme/audit"),
]


@pytest.mark.parametrize(("email", "path"), TRACED_PAGES)
def test_pages_with_actions_show_traces_in_demo_mode_only(
    app: Flask, demo: Flask, email: str, path: str
) -> None:
    shown = html(signed_in_client(demo, email).get(path))
    assert 'data-testid="trace"' in shown and EXPLAINER_ROW.search(shown)
    assert 'data-testid="principal-state"' in shown
    plain = html(signed_in_client(app, email).get(path))
    assert 'data-testid="trace"' not in plain and not EXPLAINER_ROW.search(plain)
    assert 'data-testid="principal-state"' not in plain and "Show actions hidden" not in plain


def test_trace_names_the_inputs_the_rule_and_the_reason(demo: Flask) -> None:
    page = html(signed_in_client(demo, "linus@acme.test").get("/invoices/inv_7"))
    delete_row = page[page.index('data-action="invoice.delete"') :].split("</tr>")[0]
    assert "The member role does not include invoice.delete" in delete_row
    assert '<td data-label="Rule">no</td>' in delete_row
    assert "403 · forbidden" in delete_row
    first_row = page[page.index('data-action="invoice.read"') :].split("</tr>")[0]
    for shown in ("invoice inv_7", "Acme Inc", "role <strong>member</strong>", "plan pro",
                  "invoice duplication off", "requires two-factor off"):  # fmt: skip
        assert shown in first_row
    for label in ("Principal", "Signed in", "Password last entered", "Elevated", "Second factor"):
        assert f"<dt>{label}</dt>" in page


@pytest.mark.parametrize("email", ["linus@acme.test", "ada@acme.test"])
def test_each_trace_predicts_the_status_the_real_request_gets(demo: Flask, email: str) -> None:
    """The panel is not a second policy: for every action on inv_7, send the request."""
    client = signed_in_client(demo, email)
    for action, _label, method, endpoint in INVOICE_BUTTONS:
        predicted = traces_of(html(client.get("/invoices/inv_7")))[action]  # fresh each time
        with demo.test_request_context():
            path = url_for(endpoint, invoice_id="inv_7")
        response = client.open(path, method=method)
        assert real_status(response) == predicted, (email, action)


def test_stale_owner_is_told_billing_needs_a_fresh_password_and_gets_exactly_that(
    demo: Flask, clock: Clock
) -> None:
    client = signed_in_client(demo, "ada@acme.test")
    assert traces_of(html(client.get("/orgs/acme/billing")))["org.billing.update"] == "200"
    clock.advance(seconds=601)
    assert traces_of(html(client.get("/orgs/acme/billing")))["org.billing.update"] == (
        "re-authenticate"
    )
    response = client.post("/orgs/acme/billing", data={"plan": "pro"})
    assert real_status(response) == "re-authenticate"


# --- The header ---------------------------------------------------------------------------


def principal_state(page: str) -> str:
    match = re.search(r'data-testid="principal-state"[^>]*>(.*?)</p>', page, re.S)
    assert match, "no principal state in the header"
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", match.group(1))).strip()


def test_header_says_anonymous_signed_in_or_elevated_with_time_left(
    demo: Flask, clock: Clock
) -> None:
    assert "You are anonymous" in principal_state(html(demo.test_client().get("/")))
    client = signed_in_client(demo, "linus@acme.test")
    page = html(client.get("/dashboard"))
    state = principal_state(page)
    assert "Signed in as Linus Torvalds — member of Acme Inc" in state
    assert "elevated — 10 min left" in state  # a password entered just now
    assert 'data-countdown="600"' in page and "countdown.js" in page
    clock.advance(seconds=442)
    page = html(client.get("/dashboard"))
    assert 'data-countdown="158"' in page and "3 min" in principal_state(page)
    clock.advance(seconds=200)
    page = html(client.get("/dashboard"))
    assert "elevated" not in principal_state(page) and "countdown.js" not in page


def test_a_page_about_another_organization_names_it_and_the_role_there(demo: Flask) -> None:
    grace = signed_in_client(demo, "grace@acme.test")
    grace.post("/orgs/switch", data={"organization": "globex"})
    page = html(grace.get("/invoices/inv_7"))
    line = re.search(r'data-testid="context-line">(.*?)</p>', page, re.S)
    assert line
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", line.group(1)))
    assert "Acme Inc · you are admin here" in text
    assert "not your active organization" in text and "Globex Corporation" in text
    # The switcher posts where she is, and /orgs/switch brings her back there.
    assert '<input type="hidden" name="next" value="/invoices/inv_7">' in page
    response = grace.post("/orgs/switch", data={"organization": "acme", "next": "/invoices/inv_7"})
    assert response.headers["Location"] == "/invoices/inv_7"


def test_error_pages_keep_the_switcher_but_the_404_stays_plain(demo: Flask) -> None:
    grace = signed_in_client(demo, "grace@acme.test")
    refused = grace.post("/invoices/inv_42/delete")  # a member in Globex
    assert refused.status_code == 403
    assert 'action="/orgs/switch"' in html(refused)
    missing = grace.get("/invoices/inv_999999")
    assert 'action="/orgs/switch"' not in html(missing) and "<form" not in html(missing)


# --- Error pages: which gate answered -----------------------------------------------------


def answered_gate(page: str) -> str:
    assert GATE_NAMES.findall(page) == GATE_ORDER  # all six, in the order they run
    match = ANSWERED.search(page)
    assert match, "no gate marked as the one that answered"
    return match.group(1)


def test_each_error_page_names_the_gate_that_answered(demo: Flask, clock: Clock) -> None:
    anonymous = demo.test_client()
    response = anonymous.post("/invoices/inv_7/delete")
    assert response.status_code == 401 and answered_gate(html(response)) == "Authentication"
    sent_away = anonymous.get("/invoices/inv_7", follow_redirects=True)
    assert answered_gate(html(sent_away)) == "Authentication"  # the page form of a 401

    linus = signed_in_client(demo, "linus@acme.test")
    response = linus.post("/invoices/inv_7/delete")
    assert response.status_code == 403 and answered_gate(html(response)) == "Authorization"
    assert "but the policy said no: The member role does not include invoice.delete." in html(
        response
    )
    response = linus.get("/invoices/inv_42")
    assert response.status_code == 404 and answered_gate(html(response)) == "Scope"

    ada = signed_in_client(demo, "ada@acme.test")
    clock.advance(seconds=601)
    prompt = ada.post("/orgs/acme/billing", data={"plan": "pro"}, follow_redirects=True)
    assert "Confirm it" in html(prompt) and answered_gate(html(prompt)) == "Elevation"


def test_csrf_and_rate_limit_pages_name_their_gates(database_file: Path) -> None:
    app = make_test_app(
        database_file, DEMO_MODE=True, WTF_CSRF_ENABLED=True, RATELIMIT_ENABLED=True
    )
    linus = app.test_client()
    token = csrf_token_from(html(linus.get("/sign-in")))
    linus.post("/sign-in", data={"email": "linus@acme.test", "password": PASSWORD,
                                 "csrf_token": token})  # fmt: skip
    forged = linus.post("/invoices/inv_7/delete")  # no token
    assert forged.status_code == 400 and answered_gate(html(forged)) == "CSRF"

    guesser = app.test_client()
    token = csrf_token_from(html(guesser.get("/sign-in")))
    for n in range(11):
        guess = {"email": "ada@acme.test", "password": f"guess-{n}", "csrf_token": token}
        response = guesser.post("/sign-in", data=guess)
    assert response.status_code == 429 and answered_gate(html(response)) == "Rate limit"
    app.extensions["db_engine"].dispose()


def test_other_org_404_is_byte_identical_to_a_missing_one_without_demo_mode(app: Flask) -> None:
    linus = signed_in_client(app, "linus@acme.test")
    linus.get("/dashboard")  # shows (and uses up) the "signed in" flash
    other, missing = linus.get("/invoices/inv_42"), linus.get("/invoices/inv_999999")
    assert other.status_code == missing.status_code == 404
    assert other.get_data() == missing.get_data()
    assert "gate" not in html(other) and "hidden on purpose" not in html(other)
    assert html(other).endswith("</html>\n")


def test_demo_404_says_it_exists_and_differs_by_that_explanation_only(
    demo: Flask, demo_db: Session, clock: Clock
) -> None:
    linus = signed_in_client(demo, "linus@acme.test")
    linus.get("/dashboard")  # shows (and uses up) the "signed in" flash
    other, missing = html(linus.get("/invoices/inv_42")), html(linus.get("/invoices/inv_999999"))
    explanation = re.compile(r'<section class="demo-panel"[^>]*data-testid="hidden-elsewhere">.*?'
                             r"</section>\n", re.S)  # fmt: skip
    assert explanation.search(other) and not explanation.search(missing)
    assert "why not a 403" in other.lower()

    def squeeze(text: str) -> str:
        return re.sub(r"\s+", " ", text)

    assert squeeze(explanation.sub("", other)) == squeeze(missing)
    secret = invoice(demo_db, "inv_42")
    for leak in (secret.customer, "Globex", secret.label, "inv_42", "Hank"):
        assert leak not in other


def test_the_401_page_ends_with_a_newline(app: Flask) -> None:
    response = app.test_client().post("/invoices/inv_7/delete")
    assert response.status_code == 401
    assert response.get_data().endswith(b"\n")


# --- The hidden-button lab ----------------------------------------------------------------


def test_lab_shows_hidden_buttons_marked_and_pressing_one_gets_the_real_403(
    demo: Flask, demo_db: Session
) -> None:
    linus = signed_in_client(demo, "linus@acme.test")
    assert HIDDEN not in html(linus.get("/invoices/inv_7"))
    switched = linus.post("/demo/lab", data={"show": "on", "next": "/invoices/inv_7"})
    assert switched.headers["Location"] == "/invoices/inv_7"
    page = html(linus.get("/invoices/inv_7"))
    assert f"Delete this invoice {HIDDEN}" in page and f"Mark paid {HIDDEN}" in page
    assert 'action="/invoices/inv_7/mark-paid"' in page
    refused = linus.post("/invoices/inv_7/mark-paid")
    assert refused.status_code == 403
    assert invoice(demo_db, "inv_7").status == "sent"
    members = html(linus.get("/orgs/acme/members"))
    assert f"Remove {HIDDEN}" in members and f"Send invitation {HIDDEN}" in members
    linus.post("/demo/lab", data={"show": "off"})
    assert HIDDEN not in html(linus.get("/invoices/inv_7"))


def test_lab_shows_only_what_the_policy_hides(demo: Flask) -> None:
    ada = signed_in_client(demo, "ada@acme.test")
    ada.post("/demo/lab", data={"show": "on"})
    page = html(ada.get("/invoices/inv_7"))  # sent: the owner may do all but send/duplicate
    assert f"Send {HIDDEN}" in page and f"Duplicate {HIDDEN}" in page
    assert f"Delete this invoice {HIDDEN}" not in page and f"Void {HIDDEN}" not in page


def test_lab_and_tour_progress_survive_signing_in_as_someone_else(demo: Flask) -> None:
    client = demo.test_client()
    client.post("/demo/lab", data={"show": "on"})
    client.post("/invoices/inv_7/delete")  # the 401
    sign_in(client, "linus@acme.test")
    assert HIDDEN in html(client.get("/invoices/inv_7"))
    assert 'data-testid="mark-401">✓ done' in html(client.get("/tour"))


# --- The tour -----------------------------------------------------------------------------


def marks(client: FlaskClient) -> dict[str, bool]:
    page = html(client.get("/tour"))
    found = re.findall(r'data-testid="mark-([a-z0-9]+)">(✓ done|not yet)</span>', page)
    return {step: text == "✓ done" for step, text in found}


def done(client: FlaskClient) -> set[str]:
    return {step for step, finished in marks(client).items() if finished}


def test_tour_marks_come_only_from_the_real_requests(demo: Flask, clock: Clock) -> None:
    client = demo.test_client()
    assert marks(client) == dict.fromkeys(["401", "403", "404", "elevated", "reset", "plan"], False)
    client.get("/tour")
    client.get("/")
    assert done(client) == set()  # reading the tour teaches the server nothing

    assert client.post("/invoices/inv_7/delete").status_code == 401
    assert done(client) == {"401"}

    client.post("/forgot-password", data={"email": "ada@acme.test"}).close()
    assert "reset" not in done(client)  # a verified address: not the lesson
    client.post("/forgot-password", data={"email": "eve@acme.test"}).close()
    assert "reset" in done(client)

    sign_in(client, "linus@acme.test")
    client.get("/invoices/inv_999999")
    assert "404" not in done(client)  # a missing invoice proves nothing about tenants
    assert client.get("/invoices/inv_42").status_code == 404
    assert client.get("/invoices/inv_7/delete").status_code == 403
    assert client.get("/invoices/export.csv").status_code == 200
    assert "plan" not in done(client)  # the export alone: the plan's half of the lesson
    assert client.get("/orgs/acme/billing").status_code == 403
    assert done(client) == {"401", "reset", "403", "404", "plan"}

    client.post("/sign-out")
    sign_in(client, "ada@acme.test")
    clock.advance(seconds=601)
    asked = client.post("/orgs/acme/billing", data={"plan": "pro"})
    assert real_status(asked) == "re-authenticate"
    assert "elevated" not in done(client)
    client.post("/reauthenticate", data={"password": PASSWORD, "next": "/orgs/acme/billing"})
    assert client.post("/orgs/acme/billing", data={"plan": "pro"}).status_code == 303
    assert done(client) == {"401", "403", "404", "elevated", "reset", "plan"}
    assert "6 of 6 done" in html(client.get("/tour"))


def test_tour_watches_endpoints_that_exist(app: Flask) -> None:
    from invoiceapp.tour import ELEVATED_ENDPOINTS

    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    watched = ELEVATED_ENDPOINTS | {
        "recovery.forgot_password",
        "invoices.export_csv",
        "orgs.billing",
    }
    assert watched <= endpoints


def test_tour_outside_demo_mode_is_a_short_page_without_accounts_or_marks(app: Flask) -> None:
    client = app.test_client()
    client.post("/invoices/inv_7/delete")
    page = html(client.get("/tour"))
    assert "make demo" in page and "The 403" in page
    assert "correct-horse" not in page and 'data-testid="mark-' not in page


# --- Reset, and the demo routes outside demo mode -----------------------------------------


def test_demo_reset_brings_back_inv_7_after_ada_deleted_it(demo: Flask, demo_db: Session) -> None:
    ada = signed_in_client(demo, "ada@acme.test")
    assert ada.post("/invoices/inv_7/delete").status_code == 303
    assert invoice(demo_db, "inv_7").deleted_at is not None

    visitor = demo.test_client()
    response = visitor.post("/demo/reset", data={"confirm": "yes"})
    assert (response.status_code, response.headers["Location"]) == (303, "/")
    assert "The demo was reset" in html(visitor.get("/"))
    restored = invoice(demo_db, "inv_7")
    assert (restored.deleted_at, restored.status) == (None, "sent")
    assert invoice(demo_db, "inv_42").deleted_at is None
    assert ada.get("/dashboard").status_code == 302  # every session ended with the reset
    sign_in(ada, "ada@acme.test")  # and the seeded password works again
    assert ada.get("/invoices/inv_7").status_code == 200


def test_demo_reset_needs_a_csrf_token(database_file: Path) -> None:
    app = make_test_app(database_file, DEMO_MODE=True, WTF_CSRF_ENABLED=True)
    assert app.test_client().post("/demo/reset").status_code == 400
    app.extensions["db_engine"].dispose()


@pytest.mark.parametrize("path", ["/demo/lab", "/demo/reset"])
def test_demo_routes_are_404_outside_demo_mode(app: Flask, db: Session, path: str) -> None:
    ada = signed_in_client(app, "ada@acme.test")
    ada.post("/invoices/inv_7/delete")
    response = ada.post(path, data={"show": "on"})
    assert response.status_code == 404
    assert invoice(db, "inv_7").deleted_at is not None  # nothing was reset


# --- Markup that keeps the pages usable ---------------------------------------------------


def test_amount_hint_is_tied_to_its_field(demo: Flask) -> None:
    page = html(signed_in_client(demo, "linus@acme.test").get("/invoices/new"))
    field = re.search(r'<input[^>]*id="amount"[^>]*>', page)
    assert field and 'aria-describedby="amount-hint"' in field.group(0)
    assert '<p class="hint" id="amount-hint">' in page


DEMO_PAGES = ["/", "/tour", "/dashboard", "/invoices", "/invoices/inv_7", "/orgs/acme/members",
              "/account", "/invoices/inv_42"]  # fmt: skip


@pytest.mark.parametrize("path", DEMO_PAGES)
def test_demo_pages_have_no_inline_script_or_style(demo: Flask, path: str) -> None:
    """The CSP allows no inline code: every script has a src, no style attribute anywhere."""
    client = signed_in_client(demo, "grace@acme.test") if path != "/" else demo.test_client()
    client.post("/demo/lab", data={"show": "on"})
    page = html(client.get(path))
    assert "style=" not in page and "<style" not in page
    assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", page))
    assert not re.search(r"\son[a-z]+=", page)  # no inline event handlers either
