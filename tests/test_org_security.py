"""The organization's security policy, /orgs/<slug>/security (issue 18, items 5 and 6).

The page: owner only, elevated with the second factor; an owner without one reaches it and
learns saving needs one. Each setting, allowed and refused over HTTP: the proof rule, the
session age, the elevation window, invitation domains (inviting and accepting), who may
hold API tokens and for how long, and whether tokens read under a strict rule. Refusals
are 403s (never 401s: the session is signed in) that name the rule and the way out.
Every change is audited and mailed to the owner. The exhaustive version of the same rules
is tests/test_policy_matrix.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from conftest import Clock, make_test_app
from invoiceapp.authn.totp import encrypt_secret
from invoiceapp.models import (
    AuditEvent,
    Invitation,
    Organization,
    PersonalAccessToken,
    User,
    UserSession,
)
from support import (
    NEW_INVOICE,
    PASSWORD,
    bearer,
    code,
    csrf_token_from,
    latest_mail_to,
    make_token,
    signed_in_client,
    user,
)

ADA = "ada@acme.test"  # the owner of acme
PAGE = "/orgs/acme/security"
ADA_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # an authenticator app for Ada, in the tests
# What the form posts when nothing is changed: the defaults.
DEFAULTS = {
    "proof_rule": "any",
    "max_session_hours": "",
    "elevation_minutes": "",
    "invitation_domains": "",
    "token_creators": "everyone",
    "token_max_days": "",
}


def acme(db: Session) -> Organization:
    db.expire_all()
    found = db.scalar(select(Organization).where(Organization.slug == "acme"))
    assert found is not None
    return found


def set_policy(db: Session, **columns: Any) -> None:
    db.execute(update(Organization).where(Organization.slug == "acme").values(**columns))
    db.commit()


def prove_with(db: Session, email: str, proof: str) -> None:
    """Make the user's sessions proven by ``proof``, as the other sign-in methods would
    (passkey, and the emailed code and link another engineer adds)."""
    user_id = db.scalar(select(User.id).where(User.email == email))
    db.execute(update(UserSession).where(UserSession.user_id == user_id).values(proof=proof))
    db.commit()


def owner_with_second_factor(app: Flask, db: Session, clock: Clock) -> FlaskClient:
    """Ada with an authenticator app, signed in with password and code just now (through
    the real forms, CSRF tokens included when the app checks them)."""
    with app.app_context():
        ada = user(db, ADA)
        ada.totp_secret_encrypted = encrypt_secret(ADA_SECRET, ada.id)
        ada.totp_enabled_at = clock.now
        db.commit()
    client = app.test_client()

    def token(path: str) -> str:
        if not app.config["WTF_CSRF_ENABLED"]:
            return ""
        return csrf_token_from(client.get(path).get_data(as_text=True))

    signing_in = {"email": ADA, "password": PASSWORD, "csrf_token": token("/sign-in")}
    assert client.post("/sign-in", data=signing_in).status_code == 303
    second = {"code": code(clock, ADA_SECRET), "csrf_token": token("/sign-in/two-factor")}
    assert client.post("/sign-in/two-factor", data=second).status_code == 303
    return client


def audit_reasons(db: Session) -> list[str]:
    return list(
        db.scalars(
            select(AuditEvent.reason)
            .where(AuditEvent.action == "org.security.update", AuditEvent.decision == "allowed")
            .order_by(AuditEvent.id)
        )
    )


# --- The page itself -----------------------------------------------------------------------


def test_the_owner_sets_the_policy_and_each_change_is_audited_and_mailed(
    app: Flask, db: Session, clock: Clock, outbox: Path
) -> None:
    ada = owner_with_second_factor(app, db, clock)
    page = ada.get(PAGE)
    assert page.status_code == 200
    assert 'name="proof_rule"' in page.get_data(as_text=True)

    wanted = {
        **DEFAULTS,
        "proof_rule": "second_factor",
        "max_session_hours": "8",
        "elevation_minutes": "5",
        "invitation_domains": "acme.test\n@Acme-Partners.test",
        "token_creators": "managers",
        "token_max_days": "30",
        "tokens_may_read": "on",
    }
    saved = ada.post(PAGE, data=wanted)
    assert saved.status_code == 303 and saved.headers["Location"] == PAGE

    org = acme(db)
    assert org.requires_two_factor and org.proof_rule == "second_factor"
    assert (org.max_session_hours, org.elevation_minutes, org.token_max_days) == (8, 5, 30)
    assert org.invitation_domains == "acme.test acme-partners.test"
    assert org.token_creators == "managers" and org.tokens_may_read

    reasons = audit_reasons(db)
    assert len(reasons) == 7  # one record per changed setting
    assert "sign-in proofs: any sign-in method → a second factor" in reasons[0]
    assert "longest session: the account's own limit → 8 hours" in reasons
    mail = latest_mail_to(outbox, ADA)
    assert mail is not None and "Security policy changed" in mail.subject
    assert "invitation domains: any → acme.test acme-partners.test" in mail.text
    assert "changed by ada@acme.test" in mail.text
    assert "http://127.0.0.1:5000/orgs/acme/audit" in mail.links

    # The settings page shows the same rule, and links here.
    overview = ada.get("/orgs/acme").get_data(as_text=True)
    assert 'data-testid="requires-two-factor">on<' in overview
    assert 'href="/orgs/acme/security"' in overview

    # Saving the same again changes nothing and records nothing.
    assert ada.post(PAGE, data=wanted).status_code == 303
    assert len(audit_reasons(db)) == 7


def test_admins_and_members_get_403_and_other_organizations_404(app: Flask) -> None:
    for email in ("grace@acme.test", "linus@acme.test"):
        client = signed_in_client(app, email)
        for response in (client.get(PAGE), client.post(PAGE, data=DEFAULTS)):
            assert response.status_code == 403
            assert "org.security.update" in response.get_data(as_text=True)
    hank = signed_in_client(app, "hank@globex.test")  # the owner of globex only
    assert hank.get(PAGE).status_code == 404
    assert hank.get("/orgs/no-such-org/security").status_code == 404


def test_an_owner_without_a_second_factor_reaches_the_page_and_learns_saving_needs_one(
    app: Flask, db: Session
) -> None:
    ada = signed_in_client(app, ADA)
    page = ada.get(PAGE)
    assert page.status_code == 200
    assert 'data-testid="needs-second-factor"' in page.get_data(as_text=True)

    refused = ada.post(PAGE, data={**DEFAULTS, "max_session_hours": "8"})
    assert refused.status_code == 422
    body = refused.get_data(as_text=True)
    assert "Set up a second factor for your own account first" in body
    assert 'value="8"' in body  # the form keeps what was typed
    assert acme(db).max_session_hours is None
    assert audit_reasons(db) == []


def test_a_stale_session_confirms_with_the_second_factor_first(
    app: Flask, db: Session, clock: Clock
) -> None:
    ada = owner_with_second_factor(app, db, clock)
    clock.advance(minutes=11)
    response = ada.get(PAGE)
    assert response.status_code == 302
    assert response.headers["Location"] == "/reauthenticate?next=/orgs/acme/security&factor=second"


def test_bad_input_is_refused_with_clear_messages_and_nothing_is_lost(
    app: Flask, db: Session, clock: Clock
) -> None:
    ada = owner_with_second_factor(app, db, clock)
    typed = {
        **DEFAULTS,
        "max_session_hours": "eight",
        "elevation_minutes": "60",
        "invitation_domains": "acme.test not_a_domain",
        "token_max_days": "0",
    }
    refused = ada.post(PAGE, data=typed)
    assert refused.status_code == 422
    body = refused.get_data(as_text=True)
    assert "Enter a whole number of hours between 1 and 720, or leave it empty." in body
    assert "Enter a whole number of minutes between 1 and 10, or leave it empty." in body
    assert "These are not domain names: not_a_domain." in body
    assert "Enter a whole number of days between 1 and" in body
    for value in ('value="eight"', 'value="60"', "acme.test not_a_domain", 'value="0"'):
        assert value in body
    org = acme(db)
    assert org.max_session_hours is None and org.invitation_domains == ""


def test_the_owner_cannot_choose_a_proof_rule_their_own_session_would_fail(
    app: Flask, db: Session, clock: Clock
) -> None:
    ada = owner_with_second_factor(app, db, clock)  # password and code: not a passkey
    refused = ada.post(PAGE, data={**DEFAULTS, "proof_rule": "passkey"})
    assert refused.status_code == 422
    assert "Sign in with a passkey first" in refused.get_data(as_text=True)
    assert acme(db).proof_rule == "any"


# --- Which proofs reach the data -------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "proof", "status", "named"),
    [
        ("any", "magic_link", 200, None),
        ("no_mailed", "password", 200, None),
        ("no_mailed", "email_code", 403, "Sign in with your password or a passkey"),
        ("no_mailed", "magic_link", 403, "Sign in with your password or a passkey"),
        ("second_factor", "email_code", 403, "requires two-factor"),
        ("second_factor", "password+totp", 200, None),
        ("passkey", "password+totp", 403, "Sign in with a passkey"),
        ("passkey", "passkey", 200, None),
    ],
)
def test_the_proof_rule_lets_in_only_the_proofs_it_names(
    app: Flask, db: Session, rule: str, proof: str, status: int, named: str | None
) -> None:
    set_policy(db, proof_rule=rule, requires_two_factor=rule in ("second_factor", "passkey"))
    linus = signed_in_client(app, "linus@acme.test")
    prove_with(db, "linus@acme.test", proof)
    response = linus.get("/invoices/inv_7")
    assert response.status_code == status  # a 403 when refused: signed in, never a 401
    if named:
        assert named in response.get_data(as_text=True)


def test_a_refusal_over_the_api_names_the_rule_as_its_reason(app: Flask, db: Session) -> None:
    set_policy(db, proof_rule="passkey", requires_two_factor=True)
    linus = signed_in_client(app, "linus@acme.test")
    response = linus.get("/api/v1/invoices")
    assert response.status_code == 403
    error = response.get_json()["error"]
    assert error["code"] == "forbidden" and error["reason"] == "passkey_required"
    assert "Sign in with a passkey" in error["message"]


# --- Session age and the elevation window ----------------------------------------------------


def test_a_session_older_than_the_limit_is_refused_here_only(
    app: Flask, db: Session, clock: Clock
) -> None:
    set_policy(db, max_session_hours=8)
    grace = app.test_client()  # admin in acme, member in globex; "remember me" keeps it 30 days
    grace.post(
        "/sign-in", data={"email": "grace@acme.test", "password": PASSWORD, "remember": "on"}
    )
    assert grace.get("/invoices/inv_7").status_code == 200
    for _ in range(9):  # nine hours of use: idle never, but signed in long ago
        clock.advance(hours=1)
        grace.get("/dashboard")
    refused = grace.get("/invoices/inv_7")
    assert refused.status_code == 403
    assert "within the last 8 hours" in refused.get_data(as_text=True)
    assert grace.get("/invoices/inv_42").status_code == 200  # globex has no such limit


def test_the_organizations_elevation_window_is_shorter_than_the_apps(
    app: Flask, db: Session, clock: Clock
) -> None:
    ada = signed_in_client(app, ADA)
    clock.advance(minutes=3)  # inside the app's 10 minutes
    # acme is on pro already: "nothing changed", but only past the elevation gate.
    assert ada.post("/orgs/acme/billing", data={"plan": "pro"}).status_code == 303
    set_policy(db, elevation_minutes=2)
    response = ada.post("/orgs/acme/billing", data={"plan": "free"})
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/reauthenticate?next=/orgs/acme/billing")
    assert acme(db).plan == "pro"


# --- Invitations ---------------------------------------------------------------------------


def test_invitations_go_only_to_the_organizations_domains(app: Flask, db: Session) -> None:
    set_policy(db, invitation_domains="acme.test")
    ada = signed_in_client(app, ADA)
    refused = ada.post("/orgs/acme/invitations", data={"email": "mallory@acme.test.evil.example"})
    assert refused.status_code == 422
    assert "This organization invites only addresses at acme.test." in refused.get_data(
        as_text=True
    )
    assert db.scalar(select(func.count()).select_from(Invitation)) == 0
    sent = ada.post("/orgs/acme/invitations", data={"email": "newcomer@acme.test"})
    assert sent.status_code == 303
    assert db.scalar(select(func.count()).select_from(Invitation)) == 1


def test_an_invitation_sent_before_the_domains_narrowed_cannot_be_accepted(
    app: Flask, db: Session, outbox: Path
) -> None:
    ada = signed_in_client(app, ADA)
    assert (
        ada.post("/orgs/acme/invitations", data={"email": "marge@globex.test"}).status_code == 303
    )
    mail = latest_mail_to(outbox, "marge@globex.test")
    assert mail is not None
    (link,) = [link for link in mail.links if "/invitations/" in link]
    set_policy(db, invitation_domains="acme.test")

    marge = signed_in_client(app, "marge@globex.test")
    refused = marge.post(link.removeprefix("http://127.0.0.1:5000"))
    assert refused.status_code == 403
    assert "only from its own email domains" in refused.get_data(as_text=True)
    assert marge.get("/invoices/inv_7").status_code == 404  # not a member
    reason = db.scalar(
        select(AuditEvent.reason).where(
            AuditEvent.action == "member.accept", AuditEvent.decision == "denied"
        )
    )
    assert reason == "the address is outside the organization's invitation domains"


# --- API tokens ----------------------------------------------------------------------------


def new_token(client: FlaskClient, **fields: str) -> Any:
    data = {"name": "script", "organization": "acme", "scope": "read", "expires_days": "30"}
    return client.post("/account/tokens", data={**data, **fields})


def test_only_the_allowed_roles_create_tokens_and_only_short_ones(app: Flask, db: Session) -> None:
    set_policy(db, token_creators="managers", token_max_days=7)
    linus = signed_in_client(app, "linus@acme.test")  # a member
    refused = new_token(linus, expires_days="7")
    assert refused.status_code == 422
    assert "allows API tokens for owners and admins only" in refused.get_data(as_text=True)
    grace = signed_in_client(app, "grace@acme.test")  # an admin
    too_long = new_token(grace, expires_days="30")
    assert too_long.status_code == 422
    assert "allows API tokens that live at most 7 days" in too_long.get_data(as_text=True)
    assert new_token(grace, expires_days="7").status_code == 201
    assert db.scalar(select(func.count()).select_from(PersonalAccessToken)) == 1

    set_policy(db, token_creators="nobody")
    assert new_token(grace, expires_days="7").status_code == 422


def test_existing_tokens_stop_working_here_when_the_policy_leaves_them_out(
    app: Flask, db: Session
) -> None:
    member_token = make_token(app, "linus@acme.test", "acme", "read", days=7)
    long_token = make_token(app, "grace@acme.test", "acme", "read", days=90)
    assert (
        app.test_client().get("/api/v1/invoices", headers=bearer(member_token)).status_code == 200
    )

    set_policy(db, token_creators="managers", token_max_days=30)
    refused = app.test_client().get("/api/v1/invoices", headers=bearer(member_token))
    assert refused.status_code == 403
    assert refused.get_json()["error"]["reason"] == "tokens_not_allowed"
    too_long = app.test_client().get("/api/v1/invoices", headers=bearer(long_token))
    assert too_long.status_code == 403
    assert too_long.get_json()["error"]["reason"] == "token_lifetime_too_long"
    assert "Revoke it and create a shorter one" in too_long.get_json()["error"]["message"]

    # The owner sees them listed on the policy page, to revoke them.
    listed = signed_in_client(app, ADA).get(PAGE).get_data(as_text=True)
    assert 'data-testid="refused-tokens"' in listed
    assert "linus@acme.test" in listed and "organization&#39;s API token holders" in listed
    assert "grace@acme.test" in listed and "organization&#39;s API token lifetime" in listed


def test_a_token_never_counts_as_a_stronger_proof_and_reads_only_if_the_policy_says(
    app: Flask, db: Session
) -> None:
    token = make_token(app, "grace@acme.test", "acme", "write")  # made by a 2FA-less session
    api = app.test_client()
    set_policy(db, proof_rule="passkey", requires_two_factor=True)
    refused = api.get("/api/v1/invoices", headers=bearer(token))
    assert refused.status_code == 403
    assert refused.get_json()["error"]["reason"] == "stronger_sign_in_required"
    assert "never counts as one" in refused.get_json()["error"]["message"]

    set_policy(db, tokens_may_read=True)
    assert api.get("/api/v1/invoices", headers=bearer(token)).status_code == 200
    write = api.post("/api/v1/invoices", headers=bearer(token), json=NEW_INVOICE)
    assert write.status_code == 403
    assert "tokens may only read" in write.get_json()["error"]["message"]


# --- The decision trace ----------------------------------------------------------------------


def test_the_trace_lists_the_policy_and_names_the_rule_that_refused(
    database_file: Path, db: Session
) -> None:
    demo = make_test_app(database_file, DEMO_MODE=True)
    set_policy(db, proof_rule="no_mailed", max_session_hours=8, token_creators="managers")
    linus = signed_in_client(demo, "linus@acme.test")
    trace = linus.get("/invoices/inv_7").get_data(as_text=True)
    assert "sign-in proofs: no sign-in by emailed code or magic link" in trace
    assert "sessions signed in at most 8 h ago" in trace
    assert "API tokens: owners and admins only" in trace

    prove_with(db, "linus@acme.test", "magic_link")
    refused = linus.get("/invoices/inv_7")
    assert refused.status_code == 403
    assert "organization refuses mailed sign-in codes and links" in refused.get_data(as_text=True)
    demo.extensions["db_engine"].dispose()


def test_under_a_second_factor_rule_elevation_asks_for_the_second_factor(
    app: Flask, db: Session, clock: Clock
) -> None:
    """A password alone would make the session password-only, which the rule then refuses."""
    ada = owner_with_second_factor(app, db, clock)
    clock.advance(minutes=11)
    plain = ada.post("/orgs/acme/billing", data={"plan": "pro"})
    assert plain.headers["Location"] == "/reauthenticate?next=/orgs/acme/billing"
    set_policy(db, proof_rule="second_factor", requires_two_factor=True)
    strong = ada.post("/orgs/acme/billing", data={"plan": "pro"})
    assert strong.headers["Location"] == "/reauthenticate?next=/orgs/acme/billing&factor=second"


def test_the_owner_cannot_set_a_session_limit_their_own_session_is_past(
    app: Flask, db: Session, clock: Clock
) -> None:
    ada = owner_with_second_factor(app, db, clock)
    for _ in range(6):  # two hours of use, never idle for long
        clock.advance(minutes=20)
        ada.get("/dashboard")
    ada.post(
        "/reauthenticate/code",
        data={"password": PASSWORD, "code": code(clock, ADA_SECRET), "next": PAGE},
    )
    refused = ada.post(PAGE, data={**DEFAULTS, "max_session_hours": "1"})
    assert refused.status_code == 422
    assert "You signed in more than 1 hours ago" in refused.get_data(as_text=True)
    assert acme(db).max_session_hours is None
    assert ada.post(PAGE, data={**DEFAULTS, "max_session_hours": "3"}).status_code == 303


def test_the_settings_checkbox_and_the_proof_rule_stay_one_rule(
    app: Flask, db: Session, clock: Clock
) -> None:
    """Unticking "requires two-factor" ends passkeys-only too; ticking it again means "a
    second factor", not whatever stricter rule was stored before."""
    ada = owner_with_second_factor(app, db, clock)
    prove_with(db, ADA, "passkey")
    set_policy(db, proof_rule="passkey", requires_two_factor=True)
    assert ada.post("/orgs/acme/settings", data={}).status_code == 303
    org = acme(db)
    assert (org.requires_two_factor, org.proof_rule) == (False, "any")
    on = ada.post("/orgs/acme/settings", data={"requires_two_factor": "on"})
    assert on.status_code == 303
    org = acme(db)
    assert (org.requires_two_factor, org.proof_rule) == (True, "second_factor")
    page = ada.get(PAGE).get_data(as_text=True)
    assert re.search(r'<input checked[^>]*value="second_factor"', page)


def test_the_real_form_with_csrf_on_saves_and_without_a_token_changes_nothing(
    csrf_app: Flask, clock: Clock
) -> None:
    db = csrf_app.extensions["db_sessionmaker"]()
    ada = owner_with_second_factor(csrf_app, db, clock)
    token = csrf_token_from(ada.get(PAGE).get_data(as_text=True))
    assert ada.post(PAGE, data={**DEFAULTS, "proof_rule": "no_mailed"}).status_code == 400
    assert acme(db).proof_rule == "any"
    saved = ada.post(PAGE, data={**DEFAULTS, "proof_rule": "no_mailed", "csrf_token": token})
    assert saved.status_code == 303
    assert acme(db).proof_rule == "no_mailed"
    db.close()
