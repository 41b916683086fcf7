"""The lesson's three exercises, and the real requests that answer them (GET /exercises).

The data lives here, without HTML: the steps to sort, the scenarios whose status code
the visitor picks, the true-or-false statements, and the list of the lesson's claims with
where to see each one and the test that proves it (tests/test_exercises.py checks that
every named test exists).

Answers are not taken on trust from this file alone. In demo mode, after an answer the
page sends the real request through a sandbox: a fresh client of this same app, with its
own cookies, signed in (with the published demo password) as the scenario's person, or
as nobody. The visitor's own session is never used and never changes; the sandbox signs
out when it is done, so no session of it outlives the answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from flask import Flask, current_app, url_for
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from .demo_data import DEMO_PASSWORD  # published in the README

Layer = Literal["identification", "authentication", "authorization"]
LAYERS: tuple[Layer, ...] = ("identification", "authentication", "authorization")

MEMBER = "linus@acme.test"  # a member of Acme (CONTRACT section 3)
SANDBOX_AGENT = "InvoiceApp exercises sandbox"

# Headers worth reading next to a status: who may retry, where to go, what came back.
SHOWN_HEADERS = ("Location", "WWW-Authenticate", "Content-Type", "Retry-After")


@dataclass(frozen=True)
class Link:
    """A demo page a teaching row links to, named by endpoint: a renamed route fails
    loudly (url_for raises) instead of leaving a dead link on the page."""

    endpoint: str
    anchor: str | None = None
    values: tuple[tuple[str, str], ...] = ()

    def url(self) -> str:
        values: dict[str, Any] = dict(self.values)
        return url_for(self.endpoint, _anchor=self.anchor, **values)


def link(endpoint: str, anchor: str | None = None, **values: str) -> Link:
    return Link(endpoint, anchor, tuple(values.items()))


# ---------------------------------------------------------------------------
# Exercise 1: sort the steps into claim, proof and permission
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SortItem:
    key: str
    text: str
    layer: Layer
    why: str
    file: str  # where this app does the step
    function: str
    demo: Link | None = None  # a page that shows it live, if there is one
    demo_label: str = ""


SORT_ITEMS: tuple[SortItem, ...] = (
    SortItem(
        "email", "Typing your email into the sign-in form", "identification",
        "An email names an account. Anyone can type anyone's; nothing is proven yet.",
        "invoiceapp/views/account/sign_in.py", "sign_in()",
        link("authn.sign_in_form"), "The sign-in form",
    ),
    SortItem(
        "url", "A username sitting in a URL, like /u/ada", "identification",
        "A name in an address is a claim too. Here the demo panel puts one in the URL "
        "(?email=…): it fills in the form and signs nobody in.",
        "invoiceapp/views/account/sign_in.py", "sign_in_form()",
        link("authn.sign_in_form", email="ada@acme.test"), "/sign-in?email=ada@acme.test",
    ),
    SortItem(
        "hash", "The server checks that your password matches its stored hash", "authentication",
        "The proof of the claim. The server keeps only an Argon2id hash and checks the "
        "password against it; an unknown email costs the same check.",
        "invoiceapp/authn/passwords.py", "verify_password()",
    ),
    SortItem(
        "passkey", "The passkey on your phone signs the sign-in challenge", "authentication",
        "Also a proof: the device signs a fresh, single-use challenge with a key that "
        "never leaves it.",
        "invoiceapp/authn/passkeys.py", "authenticate()", link("authn.sign_in_form"),
        "“Sign in with a passkey” (open the demo at localhost)",
    ),
    SortItem(
        "role", "The handler checks your role is admin before deleting", "authorization",
        "The person is known; the question now is whether this role may do this action. "
        "No is a 403.",
        "invoiceapp/authz/enforce.py", "authorize()",
        link("exercises.exercises", "status"), "Exercise 2 sends it as a member",
    ),
    SortItem(
        "owner", "Looking up whether you own this invoice", "authorization",
        "A permission on one record: only your organizations' invoices are found at all "
        "(404 for the rest), and a member may edit only their own drafts.",
        "invoiceapp/authz/scope.py", "invoice_in_my_orgs_or_404()",
        link("invoices.show", invoice_id="inv_42"), "inv_42, another organization's invoice",
    ),
)  # fmt: skip


# ---------------------------------------------------------------------------
# The sandbox: real requests as someone else, never as the visitor
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One request for the sandbox to send."""

    method: str
    path: str
    as_whom: str | None  # an email, or None for nobody signed in
    form: bool = False  # a form post: send the CSRF token a browser would


@dataclass(frozen=True)
class Observed:
    """What the server really answered to one probe."""

    probe: Probe
    status: int
    headers: tuple[tuple[str, str], ...]
    gate: str  # the gate that answered, in the error page's own words


def _gate_of(status: int, location: str, body: str) -> str:
    if status in (301, 302, 303) and location.startswith("/sign-in"):
        return "Authentication (a page visit is sent to sign in: the page form of a 401)"
    if status in (301, 302, 303) and location.startswith("/reauthenticate"):
        return "Elevation (the password was entered too long ago)"
    found = re.search(r'aria-current="step">\s*<span class="gate-name">([^<]+)</span>', body)
    if found:
        return found.group(1)
    return "none: every gate let it through" if status < 400 else "not named"


class Sandbox:
    """Fresh clients of this app, one per person, each with its own cookies.

    Each request runs in an application context of its own: Flask would otherwise reuse
    the visitor's, and with it ``g`` (the visitor's principal and database session).
    """

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.clients: dict[str | None, FlaskClient] = {}

    def _client(self, email: str | None) -> FlaskClient:
        if email not in self.clients:
            client = self.app.test_client()
            client.environ_base["HTTP_USER_AGENT"] = SANDBOX_AGENT
            if email is not None:
                self._sign_in(client, email)
            self.clients[email] = client
        return self.clients[email]

    def _call(self, client: FlaskClient, method: str, path: str, **options: Any) -> TestResponse:
        with self.app.app_context():
            return client.open(path, method=method, **options)

    def _token(self, client: FlaskClient, page: str) -> str:
        html = self._call(client, "GET", page).get_data(as_text=True)
        found = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html)
        return found.group(1) if found else ""

    def _sign_in(self, client: FlaskClient, email: str) -> None:
        data = {"email": email, "password": DEMO_PASSWORD}
        sign_in = url_for("authn.sign_in_form")
        data["csrf_token"] = self._token(client, sign_in)
        response = self._call(client, "POST", sign_in, data=data)
        if response.status_code != 303:
            raise SandboxError(f"the sandbox could not sign in as {email}")

    def send(self, probe: Probe) -> Observed:
        client = self._client(probe.as_whom)
        data = {"csrf_token": self._token(client, url_for("tour.tour"))} if probe.form else {}
        response = self._call(client, probe.method, probe.path, data=data or None)
        body = response.get_data(as_text=True)
        location = response.headers.get("Location", "")
        headers = tuple((name, response.headers[name]) for name in SHOWN_HEADERS
                        if name in response.headers)  # fmt: skip
        return Observed(probe, response.status_code, headers, _gate_of(
            response.status_code, location, body))  # fmt: skip

    def end_elevation(self, email: str) -> None:
        """Make this person's sandbox session as old as a forgotten tab's."""
        client = self._client(email)
        token = self._token(client, url_for("tour.tour"))
        self._call(client, "POST", url_for("account.end_elevation"), data={"csrf_token": token})

    def close(self) -> None:
        """Sign every sandbox session out: none outlives the answer it served."""
        for email, client in self.clients.items():
            if email is not None:
                token = self._token(client, url_for("tour.tour"))
                self._call(client, "POST", url_for("authn.sign_out"), data={"csrf_token": token})
        self.clients.clear()


class SandboxError(RuntimeError):
    """A demo account was missing or changed (say, its password): no evidence today."""


Group = tuple[tuple[Probe, ...], tuple[str, ...]]  # probes, and whose elevation ends first


def observe(groups: list[Group]) -> list[list[Observed]]:
    """Send each group's probes through one sandbox, in order; before a group, the people
    it names lose their elevation (so put such groups last). One sign-in per person."""
    sandbox = Sandbox(current_app._get_current_object())  # type: ignore[attr-defined]
    try:
        results = []
        for probes, stale in groups:
            for email in stale:
                sandbox.end_elevation(email)
            results.append([sandbox.send(probe) for probe in probes])
        return results
    finally:
        sandbox.close()


# ---------------------------------------------------------------------------
# Exercise 2: pick the status code
# ---------------------------------------------------------------------------

CODES = ("200", "400", "401", "403", "404")


@dataclass(frozen=True)
class Scenario:
    key: str
    text: str
    answer: str
    why: str
    probe: Probe


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "anonymous_delete", "A visitor who never signed in sends a delete for inv_7.", "401",
        "Nobody is proven, so the first gate answers, before anything else is asked. "
        "Signing in would fix it: that is what a 401 means.",
        Probe("POST", "/invoices/inv_7/delete", None),
    ),
    Scenario(
        "member_admin_only", "Linus, a member of Acme, opens Acme's audit log, which only "
        "owners and admins may read.", "403",
        "The server knows exactly who he is; his role does not include audit.read. Signing "
        "in again changes nothing: someone would have to give him the permission.",
        Probe("GET", "/orgs/acme/audit", MEMBER),
    ),
    Scenario(
        "other_org_invoice", "Linus, signed in, asks for inv_42, an invoice of Globex, an "
        "organization he is not in.", "404",
        "The lookup searches only his organizations and finds nothing, exactly as for an "
        "invoice that never existed. A 403 would confirm that inv_42 is there.",
        Probe("GET", "/invoices/inv_42", MEMBER),
    ),
)  # fmt: skip


# ---------------------------------------------------------------------------
# Exercise 3: true or false
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    key: str
    text: str
    answer: bool
    why: str
    probes: tuple[Probe, ...] = ()
    stale: tuple[str, ...] = field(default=())  # people whose elevation ends first


STATEMENTS: tuple[Statement, ...] = (
    Statement(
        "email_means_authenticated",
        "If your email is in the users table, you are authenticated.", False,
        "An account existing is not a proof. Eve has a row in the users table; a request "
        "that only names her is still a request from nobody, and the dashboard sends it "
        "to sign in.",
        (Probe("GET", "/dashboard", None),),
    ),
    Statement(
        "401_fixed_by_signing_in", "A 401 might be fixed by signing in.", True,
        "The same page, asked twice: by nobody (sent to sign in, the page form of a 401), "
        "then by Linus once he has signed in (200).",
        (Probe("GET", "/invoices/inv_7", None), Probe("GET", "/invoices/inv_7", MEMBER)),
    ),
    Statement(
        "delete_what_you_see", "A signed-in user may delete any invoice they can see.", False,
        "Seeing and deleting are two actions, decided separately. Linus reads inv_7 (200) "
        "and is refused its delete (403).",
        (Probe("GET", "/invoices/inv_7", MEMBER),
         Probe("POST", "/invoices/inv_7/delete", MEMBER, form=True)),
    ),
    Statement(
        "old_session_changes_password",
        "Any valid session may change the password, however old it is.", False,
        "A password change wants a password entered in the last few minutes. Linus's "
        "session is valid but no longer fresh, so the page asks for the password first.",
        (Probe("GET", "/account/password", MEMBER),),
        (MEMBER,),
    ),
    Statement(
        "401_403_interchangeable", "401 and 403 mean the same thing; either will do.", False,
        "The same delete, sent by nobody (401, with a WWW-Authenticate header saying how "
        "to prove who you are) and by Linus (403, no such header: proving it again would "
        "not help).",
        (Probe("POST", "/invoices/inv_7/delete", None),
         Probe("POST", "/invoices/inv_7/delete", MEMBER, form=True)),
    ),
)  # fmt: skip


# ---------------------------------------------------------------------------
# Every claim of the lesson: where to see it, and the test that proves it
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    text: str
    see: Link  # a page of the demo
    see_label: str
    test: str  # "tests/<file>.py::<test name>"


CLAIMS: tuple[Claim, ...] = (
    Claim("Authentication is yes or no: a request has a principal, or it is nobody's.",
          link("pages.dashboard"), "/dashboard while signed out",
          "tests/test_lesson_scenarios.py::test_anonymous_page_visit_redirects_to_sign_in_with_next"),
    Claim("An email is a claim; only the password (or a passkey) proves it, and an unknown "
          "email gets the same answer as a wrong password.",
          link("authn.sign_in_form"), "the sign-in form",
          "tests/test_authentication.py::test_wrong_password_and_unknown_email_get_the_same_answer"),
    Claim("Passwords are kept only as slow, salted, one-way hashes (Argon2id).",
          link("authn.sign_in_form"), "the sign-in form",
          "tests/test_authentication.py::test_passwords_are_stored_only_as_argon2id_hashes"),
    Claim("A passkey proves possession by signing a fresh challenge, which works once.",
          link("two_factor.passkeys_page"), "/account/passkeys",
          "tests/test_passkeys.py::test_a_signed_challenge_works_once"),
    Claim("Authorization is asked per action and per record: the same person reads an "
          "invoice and may not delete it.",
          link("invoices.show", invoice_id="inv_7"), "inv_7 as Linus",
          "tests/test_lesson_scenarios.py::test_member_deletes_invoice_gets_403_and_invoice_survives"),
    Claim("Authentication runs first: an anonymous post is a 401 before its form is even checked.",
          link("tour.tour", "step-401"), "the tour's first step",
          "tests/test_csrf_and_gate_order.py::test_anonymous_post_without_csrf_token_gets_401_not_400"),
    Claim("A 401 says who to be, in a WWW-Authenticate header; signing in fixes it.",
          link("exercises.exercises", "status"), "exercise 2",
          "tests/test_lesson_scenarios.py::test_anonymous_post_delete_gets_401_with_www_authenticate"),
    Claim("A 403 is for a known person without the permission; signing in again does not help.",
          link("exercises.exercises", "status"), "exercise 2",
          "tests/test_csrf_and_gate_order.py::test_member_with_a_valid_token_still_gets_403"),
    Claim("Another organization's record is a 404, the same as one that never existed.",
          link("invoices.show", invoice_id="inv_42"), "inv_42",
          "tests/test_lesson_scenarios.py::test_other_org_invoice_is_404_like_a_missing_one"),
    Claim("A hidden button is courtesy; the server refuses the action anyway.",
          link("invoices.show", invoice_id="inv_7"), "inv_7 with “Show actions hidden from me” on",
          "tests/test_teaching.py::test_lab_shows_hidden_buttons_marked_and_pressing_one_gets_the_real_403"),
    Claim("Roles belong to an organization: one person, different answers in two of them.",
          link("pages.dashboard"), "Grace, switching organization",
          "tests/test_lesson_scenarios.py::test_same_user_two_roles_in_two_organizations"),
    Claim("A plan is one input to the decision, never the whole of it.",
          link("tour.tour", "step-plan"), "the tour's plan step",
          "tests/test_readme_walk.py::test_the_readme_walk_runs_as_written_twice_in_a_row"),
    Claim("Sensitive changes want a fresh password, even on a valid session.",
          link("orgs.billing", slug="acme"), "Acme's billing, as Ada",
          "tests/test_elevation.py::test_owner_with_stale_session_is_sent_to_reauthenticate"),
    Claim("An unverified address is only a claim: no reset link goes to it.",
          link("dev_mail.outbox"), "the outbox, after a reset for eve@acme.test",
          "tests/test_lesson_walk_pages.py::test_the_outbox_shows_a_reset_held_back_for_an_unverified_address"),
    Claim("Each exercise's answer is the server's own: the page sends the real request.",
          link("exercises.exercises"), "this page",
          "tests/test_exercises.py::test_each_status_answer_is_shown_next_to_the_real_request"),
)  # fmt: skip
