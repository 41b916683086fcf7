"""Sign-up and email verification: accounts are created without telling anyone which
addresses are taken, and a verification link proves an address exactly once.

Every app here writes its mail to the test's own outbox, never into instance/.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask, render_template
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from conftest import Clock, make_test_app
from invoiceapp.mail import read_outbox
from invoiceapp.models import (
    AccountToken,
    Membership,
    Organization,
    SecurityEvent,
    TokenPurpose,
    User,
    UserSession,
)
from invoiceapp.organizations import slug_base
from invoiceapp.organizations import unique_slug as free_slug
from invoiceapp.views.account import signup
from invoiceapp.views.account.signup import CHECK_YOUR_INBOX
from support import AUTH_COOKIE, SLUG_SHAPE, csrf_token_from, latest_mail_to, signed_in_client
from support import user as user_by_email

NEW_EMAIL = "new.person@example.com"
STRONG = "lagoon heron juniper fjord 7"
FORM = {
    "name": "Sample Person",
    "email": NEW_EMAIL,
    "password": STRONG,
    "organization_name": "Sample Studio",
}
INVALID_PAGE = "This link is no longer valid"


def counts(db: Session) -> tuple[int, int, int]:
    db.expire_all()
    return (
        db.scalar(select(func.count()).select_from(User)) or 0,
        db.scalar(select(func.count()).select_from(Organization)) or 0,
        db.scalar(select(func.count()).select_from(Membership)) or 0,
    )


def flashes(client: FlaskClient) -> list[Any]:
    with client.session_transaction() as cookie_session:
        return list(cookie_session.get("_flashes", []))


def sign_up(client: FlaskClient, **changes: str) -> Any:
    return client.post("/sign-up", data={**FORM, **changes})


def verify_link(outbox: Path, address: str = NEW_EMAIL) -> str:
    mail = latest_mail_to(outbox, address)
    assert mail is not None, f"no mail to {address}"
    links = [link for link in mail.links if "/verify-email/" in link]
    assert len(links) == 1
    return links[0]


def path_of(link: str) -> str:
    return "/" + link.split("://", 1)[1].split("/", 1)[1]


def events(db: Session, email: str, kind: str) -> int:
    db.expire_all()
    found = db.scalar(
        select(func.count())
        .select_from(SecurityEvent)
        .join(User, User.id == SecurityEvent.user_id)
        .where(User.email == email, SecurityEvent.kind == kind)
    )
    return found or 0


# --- the form -----------------------------------------------------------------------------


def test_sign_up_page_has_the_contract_fields(client: FlaskClient) -> None:
    response = client.get("/sign-up")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    for name in ("name", "email", "password", "organization_name"):
        assert f'name="{name}"' in page
    assert 'autocomplete="new-password"' in page


def test_signed_in_user_visiting_sign_up_is_sent_to_the_dashboard(app: Flask, db: Session) -> None:
    client = signed_in_client(app, "ada@acme.test")
    before = counts(db)
    assert client.get("/sign-up").status_code == 303
    response = sign_up(client)
    assert response.status_code == 303
    assert response.headers["Location"] == "/dashboard"
    assert counts(db) == before


# --- a new account ------------------------------------------------------------------------


def test_sign_up_creates_an_unverified_owner_of_a_free_org_mails_a_link_then_sign_in(
    client: FlaskClient, db: Session, outbox: Path
) -> None:
    before = counts(db)
    response = sign_up(client)

    assert response.status_code == 303
    assert response.headers["Location"] == "/sign-in"
    assert flashes(client) == [("info", CHECK_YOUR_INBOX)]
    assert counts(db) == (before[0] + 1, before[1] + 1, before[2] + 1)

    new_user = user_by_email(db, NEW_EMAIL)
    assert new_user.display_name == "Sample Person"
    assert new_user.email_verified_at is None
    assert new_user.password_hash.startswith("$argon2id$")
    assert STRONG not in new_user.password_hash
    (membership,) = new_user.memberships
    assert membership.role == "owner"
    assert membership.organization.name == "Sample Studio"
    assert membership.organization.slug == "sample-studio"
    assert membership.organization.plan == "free"
    assert events(db, NEW_EMAIL, "signed_up") == 1

    link = verify_link(outbox)
    assert link.startswith("http://127.0.0.1:5000/verify-email/")
    mail = latest_mail_to(outbox, NEW_EMAIL)
    assert mail is not None and "2 days" in mail.text
    assert "Sample" not in mail.text  # nothing typed into the form goes into the mail
    token = db.scalar(select(AccountToken).where(AccountToken.user_id == new_user.id))
    assert token is not None and token.purpose == TokenPurpose.VERIFY_EMAIL.value
    assert token.email == NEW_EMAIL

    # Not signed in: a session cookie for new addresses only would say which are taken.
    assert client.get_cookie(AUTH_COOKIE) is None
    assert db.scalar(select(UserSession).where(UserSession.user_id == new_user.id)) is None
    assert CHECK_YOUR_INBOX in client.get("/sign-in").get_data(as_text=True)
    signed_in = client.post("/sign-in", data={"email": NEW_EMAIL, "password": STRONG})
    assert signed_in.headers["Location"] == "/dashboard"
    page = client.get("/dashboard").get_data(as_text=True)
    assert "Sample Person" in page and "Sample Studio" in page


def test_verification_links_come_from_base_url_never_the_host_header(
    database_file: Path, outbox: Path, db: Session
) -> None:
    app = make_test_app(
        database_file,
        MAIL_OUTBOX_DIR=str(outbox),
        BASE_URL="https://invoices.example",
        TRUSTED_HOSTS=["evil.example"],  # let the request through: only BASE_URL is tested
    )
    response = app.test_client().post("/sign-up", data=FORM, headers={"Host": "evil.example"})
    assert response.status_code == 303
    assert verify_link(outbox).startswith("https://invoices.example/verify-email/")
    app.extensions["db_engine"].dispose()


# --- an address that is taken -------------------------------------------------------------


def verify(app: Flask, outbox: Path, address: str = NEW_EMAIL) -> None:
    """Open the link and press its button (the GET alone changes nothing)."""
    assert app.test_client().post(path_of(verify_link(outbox, address))).status_code == 200


def test_sign_up_with_a_taken_email_answers_alike_mails_the_owner_and_signs_nobody_in(
    app: Flask, db: Session, outbox: Path
) -> None:
    first = app.test_client()
    new = sign_up(first)
    verify(app, outbox)  # an unverified holder is mailed a claim link instead (test_claims)
    before = counts(db)
    original_hash = user_by_email(db, NEW_EMAIL).password_hash

    second = app.test_client()
    taken = sign_up(
        second,
        name="Mallory",
        organization_name="Mallory Ltd",
        password="glacier kelp mesa indigo 42",
    )

    assert (taken.status_code, taken.headers["Location"]) == (
        new.status_code,
        new.headers["Location"],
    )
    assert flashes(second) == flashes(first) == [("info", CHECK_YOUR_INBOX)]
    assert taken.get_data() == new.get_data()
    # The same cookies too: a session cookie for new addresses only would tell them apart.
    cookie_names = [
        sorted(header.split("=", 1)[0] for header in answer.headers.getlist("Set-Cookie"))
        for answer in (new, taken)
    ]
    assert cookie_names[0] == cookie_names[1]
    # Nothing created, nothing changed, nobody signed in.
    assert counts(db) == before
    assert user_by_email(db, NEW_EMAIL).password_hash == original_hash
    assert user_by_email(db, NEW_EMAIL).display_name == "Sample Person"
    assert second.get_cookie(AUTH_COOKIE) is None
    dashboard = second.get("/dashboard")
    assert dashboard.status_code == 302
    assert dashboard.headers["Location"].startswith("/sign-in")

    notice = latest_mail_to(outbox, NEW_EMAIL)
    assert notice is not None
    assert notice.subject == "Someone tried to sign up with your email address"
    assert "http://127.0.0.1:5000/sign-in" in notice.links
    assert "http://127.0.0.1:5000/forgot-password" in notice.links
    assert "Mallory" not in notice.text and "Mallory" not in notice.html
    assert not any("/verify-email/" in link for link in notice.links)


def test_taken_email_in_another_case_is_the_same_account(
    app: Flask, db: Session, outbox: Path
) -> None:
    sign_up(app.test_client())
    verify(app, outbox)
    before = counts(db)
    response = sign_up(app.test_client(), email="NEW.Person@Example.COM")
    assert response.status_code == 303
    assert response.headers["Location"] == "/sign-in"
    assert counts(db) == before
    notice = latest_mail_to(outbox, NEW_EMAIL)
    assert notice is not None and notice.subject.startswith("Someone tried to sign up")


def test_double_submit_creates_one_account(app: Flask, db: Session, outbox: Path) -> None:
    before = counts(db)
    responses = [sign_up(app.test_client()) for _ in range(2)]
    assert [r.status_code for r in responses] == [303, 303]
    assert counts(db) == (before[0] + 1, before[1] + 1, before[2] + 1)
    assert len([m for m in read_outbox(outbox) if m.to == NEW_EMAIL]) == 2  # link, then notice


def test_sign_up_that_loses_a_race_for_the_address_is_the_taken_branch(
    app: Flask, db: Session, outbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unique email constraint decides when two submits pass the look-up together."""
    real_free_slug = free_slug

    def other_request_commits_first(session: Session, name: str) -> str:
        with app.extensions["db_sessionmaker"]() as other:
            other.add(User(email=NEW_EMAIL, display_name="Racer", password_hash="x"))
            other.commit()
        monkeypatch.setattr(signup, "unique_slug", real_free_slug)
        return real_free_slug(session, name)

    monkeypatch.setattr(signup, "unique_slug", other_request_commits_first)
    before = counts(db)
    client = app.test_client()
    response = sign_up(client)

    assert response.status_code == 303
    assert response.headers["Location"] == "/sign-in"
    assert flashes(client) == [("info", CHECK_YOUR_INBOX)]
    assert counts(db) == (before[0] + 1, before[1], before[2])  # only the racer's row
    assert user_by_email(db, NEW_EMAIL).display_name == "Racer"
    assert client.get_cookie(AUTH_COOKIE) is None
    notice = latest_mail_to(outbox, NEW_EMAIL)  # the racer never verified: a claim link
    assert notice is not None and notice.subject == "Claim your email address on InvoiceApp"


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"password": "Sh0rt!pass"}, "password", "Use at least 15 characters"),
        ({"password": "password12345678"}, "password", "too easy to guess"),
        ({"password": "a" * 257}, "password", "Use at most 256 characters"),
        ({"password": "new.person lagoon heron"}, "password", "Leave your email address out"),
        ({"password": ""}, "password", "Choose a password."),
        ({"email": "not-an-email"}, "email", "Enter a valid email address."),
        ({"email": ""}, "email", "Enter your email address."),
        ({"email": "a" * 250 + "@example.com"}, "email", "at most 254 characters"),
        ({"name": ""}, "name", "Enter your name."),
        ({"name": "   "}, "name", "Enter your name."),
        ({"name": "x" * 101}, "name", "Use at most 100 characters."),
        ({"name": "Bobby\nTables"}, "name", "Use letters, digits, spaces and punctuation only."),
        ({"name": "Nul\x00Byte"}, "name", "Use letters, digits, spaces and punctuation only."),
        ({"organization_name": ""}, "organization_name", "Enter your organization"),
        ({"organization_name": "y" * 101}, "organization_name", "Use at most 100 characters."),
    ],
)
def test_bad_input_is_a_422_with_the_error_beside_the_field_and_nothing_saved(
    client: FlaskClient,
    db: Session,
    outbox: Path,
    changes: dict[str, str],
    field: str,
    message: str,
) -> None:
    before = counts(db)
    response = sign_up(client, **changes)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    error = re.search(rf'<p class="field-error" id="{field}-error">(.*?)</p>', page, re.S)
    assert error is not None, f"no error beside {field}"
    assert message in error.group(1).replace("&#39;", "'")
    assert STRONG not in page  # the password is never echoed back
    assert counts(db) == before
    assert read_outbox(outbox) == []
    assert client.get_cookie(AUTH_COOKIE) is None


def test_a_name_of_exactly_100_characters_in_any_script_is_accepted(
    client: FlaskClient, db: Session
) -> None:
    response = sign_up(client, name="Ŝ" * 100, organization_name="東京" * 50)
    assert response.status_code == 303
    created = user_by_email(db, NEW_EMAIL)
    assert created.display_name == "Ŝ" * 100
    assert created.memberships[0].organization.name == "東京" * 50


# --- organization slugs -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Sample Studio", "sample-studio"),
        ("  Ünïcorn & Co. ", "unicorn-co"),
        ("東京", "org"),
        ("---", "org"),
        ("ÆON Straße 2024", "aeon-strasse-2024"),
        ("İstanbul Łódź", "istanbul-lodz"),
        ("x" * 100, "x" * 64),
    ],
)
def test_slug_base_is_lowercase_ascii_letters_digits_and_hyphens(name: str, expected: str) -> None:
    assert slug_base(name) == expected
    assert SLUG_SHAPE.fullmatch(slug_base(name))


def test_a_taken_or_reserved_slug_gets_the_next_free_number(app: Flask, db: Session) -> None:
    with app.app_context():
        assert free_slug(db, "Acme") == "acme-2"  # the seed has acme
        assert free_slug(db, "New") == "new-2"  # /orgs/new is a page
        assert free_slug(db, "Switch") == "switch-2"
        db.add(Organization(slug="acme-2", name="Acme Two", plan="free"))
        db.add(Organization(slug="org", name="東京", plan="free"))
        db.flush()
        assert free_slug(db, "ACME") == "acme-3"
        assert free_slug(db, "大阪") == "org-2"
        long_name = "z" * 100
        db.add(Organization(slug="z" * 64, name=long_name, plan="free"))
        db.flush()
        numbered = free_slug(db, long_name)
        assert numbered == "z" * 62 + "-2"
        assert SLUG_SHAPE.fullmatch(numbered)


def test_two_sign_ups_with_one_organization_name_get_two_slugs(app: Flask, db: Session) -> None:
    sign_up(app.test_client())
    sign_up(app.test_client(), email="other.person@example.com")
    slugs = sorted(
        org.slug
        for org in db.scalars(select(Organization).where(Organization.name == "Sample Studio"))
    )
    assert slugs == ["sample-studio", "sample-studio-2"]


# --- verifying the address ----------------------------------------------------------------


def test_verify_link_marks_the_email_verified_once(app: Flask, db: Session, outbox: Path) -> None:
    sign_up(app.test_client())
    link = verify_link(outbox)

    visitor = app.test_client()  # mail is often opened in another browser
    # Opening the link shows a button and changes nothing: mail scanners open links too.
    opened = visitor.get(path_of(link))
    assert opened.status_code == 200
    page = opened.get_data(as_text=True)
    assert "Verify my email address" in page
    assert f'<form method="post" action="{path_of(link)}"' in page
    assert opened.headers["Cache-Control"] == "no-store"
    assert opened.headers["Referrer-Policy"] == "same-origin"
    assert user_by_email(db, NEW_EMAIL).email_verified_at is None
    assert events(db, NEW_EMAIL, "email_verified") == 0

    response = visitor.post(path_of(link))  # the button
    assert response.status_code == 200
    assert "Your email is verified" in response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "same-origin"
    verified_at = user_by_email(db, NEW_EMAIL).email_verified_at
    assert verified_at is not None
    assert events(db, NEW_EMAIL, "email_verified") == 1

    for again in (visitor.post(path_of(link)), visitor.get(path_of(link))):
        assert again.status_code == 400
        assert INVALID_PAGE in again.get_data(as_text=True)
    assert user_by_email(db, NEW_EMAIL).email_verified_at == verified_at
    assert events(db, NEW_EMAIL, "email_verified") == 1


def test_verify_link_expires_after_verify_email_seconds(
    app: Flask, db: Session, outbox: Path, clock: Clock
) -> None:
    sign_up(app.test_client())
    link = verify_link(outbox)
    clock.advance(seconds=app.config["VERIFY_EMAIL_SECONDS"] + 1)
    for response in (app.test_client().get(path_of(link)), app.test_client().post(path_of(link))):
        assert response.status_code == 400
        assert INVALID_PAGE in response.get_data(as_text=True)
    assert user_by_email(db, NEW_EMAIL).email_verified_at is None


def test_verify_link_still_works_just_before_it_expires(
    app: Flask, db: Session, outbox: Path, clock: Clock
) -> None:
    sign_up(app.test_client())
    clock.advance(seconds=app.config["VERIFY_EMAIL_SECONDS"] - 5)
    assert app.test_client().post(path_of(verify_link(outbox))).status_code == 200
    assert user_by_email(db, NEW_EMAIL).email_verified


def test_verify_link_for_an_address_the_account_no_longer_has_verifies_nothing(
    app: Flask, db: Session, outbox: Path
) -> None:
    sign_up(app.test_client())
    link = verify_link(outbox)
    account = user_by_email(db, NEW_EMAIL)
    account.email = "changed@example.com"
    db.commit()
    for response in (app.test_client().get(path_of(link)), app.test_client().post(path_of(link))):
        assert response.status_code == 400
        assert INVALID_PAGE in response.get_data(as_text=True)
    assert user_by_email(db, "changed@example.com").email_verified_at is None


@pytest.mark.parametrize(
    "token",
    [
        "abc",
        "!" * 43,
        "A" * 43,  # the right shape, but not one of ours
        "x" * 5000,
        "../x",
        "..%2F..%2Fetc%2Fpasswd",
        "%00" * 10,
        "%FF%FE",
        "a/b/c",
        "ä" * 43,
    ],
)
def test_malformed_or_unknown_verify_links_get_the_invalid_page_never_a_500(
    client: FlaskClient, token: str
) -> None:
    response = client.get("/verify-email/" + token)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert INVALID_PAGE in page
    assert 'href="/forgot-password"' in page


def test_tampered_and_truncated_verify_links_are_invalid_and_leave_the_real_one_working(
    app: Flask, db: Session, outbox: Path
) -> None:
    sign_up(app.test_client())
    path = path_of(verify_link(outbox))
    token = path.rsplit("/", 1)[1]
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    client = app.test_client()
    for bad in (flipped, token[:-1], token + "A", token.upper() if token != token.upper() else ""):
        if bad:
            assert client.get("/verify-email/" + bad).status_code == 400
            assert client.post("/verify-email/" + bad).status_code == 400
    assert user_by_email(db, NEW_EMAIL).email_verified_at is None
    assert client.post(path).status_code == 200
    assert user_by_email(db, NEW_EMAIL).email_verified


# --- sending a new link -------------------------------------------------------------------


def test_unverified_user_can_have_a_new_link_sent(app: Flask, db: Session, outbox: Path) -> None:
    client = signed_in_client(app, "eve@acme.test")
    response = client.post("/account/verify-email/resend")
    assert response.status_code == 303
    assert response.headers["Location"] == "/dashboard"
    assert flashes(client)[-1][1].startswith("We have sent you a new verification link")
    link = verify_link(outbox, "eve@acme.test")
    assert client.post(path_of(link)).status_code == 200
    assert user_by_email(db, "eve@acme.test").email_verified


def test_a_newer_verification_leaves_older_links_useless(
    app: Flask, db: Session, outbox: Path
) -> None:
    client = signed_in_client(app, "eve@acme.test")
    client.post("/account/verify-email/resend")
    older = verify_link(outbox, "eve@acme.test")
    client.post("/account/verify-email/resend")
    newer = verify_link(outbox, "eve@acme.test")
    assert older != newer
    assert client.post(path_of(newer)).status_code == 200
    assert client.post(path_of(older)).status_code == 400


def test_verified_user_asking_for_a_link_gets_none(app: Flask, outbox: Path) -> None:
    client = signed_in_client(app, "ada@acme.test")
    response = client.post("/account/verify-email/resend")
    assert response.status_code == 303
    assert flashes(client)[-1] == ("info", "Your email address is already verified.")
    assert read_outbox(outbox) == []


def test_anonymous_resend_is_a_401(client: FlaskClient, outbox: Path) -> None:
    response = client.post("/account/verify-email/resend")
    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers
    assert read_outbox(outbox) == []


def test_resend_is_limited_per_account(database_file: Path, outbox: Path) -> None:
    app = make_test_app(
        database_file,
        MAIL_OUTBOX_DIR=str(outbox),
        RATELIMIT_ENABLED=True,
        VERIFY_RESEND_RATE_LIMIT="2 per hour",
    )
    eve = signed_in_client(app, "eve@acme.test")
    statuses = [eve.post("/account/verify-email/resend").status_code for _ in range(3)]
    assert statuses == [303, 303, 429]
    assert len(read_outbox(outbox)) == 2
    # Another browser of the same account is the same account.
    other_browser = signed_in_client(app, "eve@acme.test")
    last = other_browser.post("/account/verify-email/resend")
    assert last.status_code == 429
    assert int(last.headers["Retry-After"]) > 0
    assert len(read_outbox(outbox)) == 2
    app.extensions["db_engine"].dispose()


def test_unverified_banner_offers_a_new_link_only_to_unverified_users(app: Flask) -> None:
    def banner(verified: bool) -> str:
        person = SimpleNamespace(email="eve@acme.test", email_verified=verified)
        with app.test_request_context("/dashboard"):
            return render_template(
                "authn/_unverified_banner.html", principal=SimpleNamespace(user=person)
            )

    unverified = banner(False)
    assert 'action="/account/verify-email/resend"' in unverified
    assert "eve@acme.test" in unverified
    assert "verify-email/resend" not in banner(True)
    with app.test_request_context("/"):
        assert render_template("authn/_unverified_banner.html", principal=None).strip() == ""


# --- limits and CSRF ----------------------------------------------------------------------


def test_sign_up_is_rate_limited_per_client(database_file: Path, outbox: Path, db: Session) -> None:
    app = make_test_app(
        database_file,
        MAIL_OUTBOX_DIR=str(outbox),
        RATELIMIT_ENABLED=True,
        SIGN_UP_RATE_LIMIT="2 per hour",
    )
    statuses = [
        app.test_client().post("/sign-up", data={**FORM, "email": f"p{n}@example.com"}).status_code
        for n in range(3)
    ]
    assert statuses == [303, 303, 429]
    db.expire_all()
    assert db.scalar(select(User).where(User.email == "p2@example.com")) is None
    assert latest_mail_to(outbox, "p2@example.com") is None
    blocked = app.test_client().post("/sign-up", data=FORM)
    assert int(blocked.headers["Retry-After"]) > 0
    assert app.test_client().get("/sign-up").status_code == 200  # the form itself is not limited
    app.extensions["db_engine"].dispose()


def test_sign_up_through_the_real_form_needs_its_csrf_token(csrf_app: Flask, db: Session) -> None:
    client = csrf_app.test_client()
    without = client.post("/sign-up", data=FORM)
    assert without.status_code == 400
    db.expire_all()
    assert db.scalar(select(User).where(User.email == NEW_EMAIL)) is None

    token = csrf_token_from(client.get("/sign-up").get_data(as_text=True))
    response = client.post("/sign-up", data={**FORM, "csrf_token": token})
    assert response.status_code == 303
    assert user_by_email(db, NEW_EMAIL).email_verified_at is None
