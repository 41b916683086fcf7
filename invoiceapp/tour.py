"""The guided tour's progress, recorded from the real requests a visitor makes.

A check mark on /tour means the server itself answered that way to this browser: an
after_request hook looks at each response (its status, the gate that answered) and notes
what it taught in Flask's session. Clicking around the tour page proves nothing, so
nothing on that page records anything.

Sign-in and sign-out clear Flask's session (a new identity starts clean). Tour progress
and the demo's hidden-button lab are teaching state that grants nothing, so they are
carried across that clear. All of this runs in demo mode only.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app, flash, g, request, session
from werkzeug.wrappers import Response

from .authz.scope import active_organization
from .principal import current_principal

TOUR_KEY = "tour"
LAB_KEY = "demo_lab"
EXERCISES_KEY = "exercises"  # the exercises answered right (invoiceapp.views.exercises)
CARRIED_KEYS = (TOUR_KEY, LAB_KEY, EXERCISES_KEY)

LAB_STILL_ON = (
    "“Show actions hidden from me” is still on from before: you see the buttons the policy "
    "hides from this account too, marked “hidden from you”. Switch it off in the demo bar."
)

# The demo's account with an unverified address (CONTRACT section 3).
UNVERIFIED_DEMO_EMAIL = "eve@acme.test"

# Views that always need an elevated session to succeed (the policy's "elevated" rules).
ELEVATED_ENDPOINTS = frozenset({"orgs.change_plan", "orgs.transfer", "account.change_password"})


def lab_is_on() -> bool:
    """The demo's hidden-button lab: the layout's switch and the lab's buttons both ask."""
    return bool(current_app.config["DEMO_MODE"] and session.get(LAB_KEY))


@dataclass(frozen=True)
class Step:
    id: str
    title: str
    account: str  # who to be; "" for signed out
    needs: frozenset[str]  # facts that complete it (any one of ``needs_any`` also counts)
    needs_any: frozenset[str] = frozenset()


# The same six scenarios, in the same order and with the same accounts, as README's walk
# ("Walking through the lesson"); tests/test_readme_walk.py checks that they agree.
STEPS: tuple[Step, ...] = (
    Step("401", "The 401: nobody is signed in", "", frozenset(),
         frozenset({"401", "sign_in_redirect"})),
    Step("403", "The 403: signed in, and still not allowed", "linus@acme.test",
         frozenset({"403"})),
    Step("404", "The 404: another organization's invoice", "linus@acme.test",
         frozenset({"404_hidden"})),
    Step("plan", "The plan that does not make a member an admin", "linus@acme.test",
         frozenset({"member_export", "member_billing_403"})),
    Step("elevated", "The elevated action: a fresh password for a sensitive change",
         "ada@acme.test", frozenset({"elevated_action"})),
    Step("reset", "The reset link that never goes to an unverified address", "",
         frozenset({"reset_unverified"})),
)  # fmt: skip


def facts() -> set[str]:
    return set(session.get(TOUR_KEY) or [])


def achieved_steps() -> set[str]:
    """Step ids completed in this browser session."""
    known = facts()
    return {
        step.id
        for step in STEPS
        if step.needs <= known and (not step.needs_any or step.needs_any & known)
    }


def _learned(response: Response) -> set[str]:
    """What this request showed, read off the real response."""
    status, location = response.status_code, response.headers.get("Location", "")
    endpoint = request.endpoint or ""
    learned: set[str] = set()
    if status == 401:
        learned.add("401")
    if status == 302 and location.startswith("/sign-in?next="):
        learned.add("sign_in_redirect")  # the 401 of a page visit
    if status == 403:
        learned.add("403")
        if endpoint == "orgs.billing":
            learned.add("member_billing_403")  # only members lack org.billing.read
    if status == 404 and g.get("hidden_elsewhere"):
        learned.add("404_hidden")
    if (
        endpoint in ELEVATED_ENDPOINTS
        and request.method == "POST"
        and status < 400
        and not location.startswith("/reauthenticate")
    ):
        learned.add("elevated_action")
    if endpoint == "recovery.forgot_password" and request.method == "POST" and status < 400:
        if (request.form.get("email") or "").strip().lower() == UNVERIFIED_DEMO_EMAIL:
            learned.add("reset_unverified")
    if endpoint == "invoices.export_csv" and status == 200:
        principal = current_principal()
        assert principal is not None  # the export is behind the authentication gate
        # The organization the export named (its link says which), else the active one.
        named = request.args.get("organization")
        organization = (
            next((o for o in principal.organizations.values() if o.slug == named), None)
            if named is not None
            else active_organization(principal)
        )
        if organization is not None and principal.role_in(organization.id) == "member":
            learned.add("member_export")
    return learned


def _remember_carried_state() -> None:
    if not current_app.config["DEMO_MODE"]:
        return
    g.demo_carried = {key: session[key] for key in CARRIED_KEYS if key in session}


def _record_progress(response: Response) -> Response:
    if not current_app.config["DEMO_MODE"] or request.endpoint == "static":
        return response
    if response.status_code >= 500:
        return response  # the database may be what failed; teach nothing from a crash
    for key, value in g.get("demo_carried", {}).items():
        if key not in session:  # a sign-in or sign-out cleared it
            session[key] = value
            if key == LAB_KEY and value:
                # The new identity would otherwise meet buttons marked "hidden" unawares.
                flash(LAB_STILL_ON, "info")
    learned = _learned(response)
    known = facts()
    if not learned <= known:
        session[TOUR_KEY] = sorted(known | learned)
    return response


def init_tour(app: Flask) -> None:
    if not app.config["DEMO_MODE"]:
        return  # no tour to keep: two hooks fewer on every request (0.003 ms, measured)
    app.before_request(_remember_carried_state)
    app.after_request(_record_progress)
