"""Account pages: profile, password change, sessions, security events, email change.

Each test names the scenario it proves and checks the status, the page and the database.
Time moves with the ``clock`` fixture, never by sleeping.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from flask import Flask, render_template_string
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from conftest import Clock, make_test_app
from invoiceapp.authn.events import EventKind
from invoiceapp.authn.gate import login_required
from invoiceapp.authn.tokens import issue_token
from invoiceapp.mail import StoredMail, read_outbox
from invoiceapp.models import AccountToken, SecurityEvent, TokenPurpose, UserSession
from support import (
    AUTH_COOKIE,
    PASSWORD,
    csrf_token_from,
    latest_mail_to,
    sign_in,
    signed_in_client,
    user,
)

NEW_PASSWORD = "violet tugboat orchard lantern"
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:131.0) Gecko/20100101 Firefox/131.0"
CHROME_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/129.0.0.0 Safari/537.36"
)
REAUTH_FOR = "/reauthenticate?next=/account/"


@pytest.fixture()
def outbox(tmp_path: Path) -> Path:
    return tmp_path / "outbox"


@pytest.fixture()
def app(database_file: Path, outbox: Path) -> Iterator[Flask]:
    app = make_test_app(database_file, MAIL_OUTBOX_DIR=str(outbox), FRESH_AGE_SECONDS=600)

    @login_required
    def session_state_probe() -> str:
        # What the lead's base.html will render in the header.
        return render_template_string('{% include "account/_session_state.html" %}')

    app.add_url_rule("/test/session-state", view_func=session_state_probe)
    yield app
    app.extensions["db_engine"].dispose()


@pytest.fixture()
def csrf_app(database_file: Path, outbox: Path) -> Iterator[Flask]:
    app = make_test_app(database_file, MAIL_OUTBOX_DIR=str(outbox), WTF_CSRF_ENABLED=True)
    yield app
    app.extensions["db_engine"].dispose()


def client_with_agent(app: Flask, email: str, agent: str, **extra: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = agent
    sign_in(client, email, **extra)
    return client


def sessions_of(db: Session, email: str) -> list[UserSession]:
    db.expire_all()
    owner = user(db, email)
    return list(db.scalars(select(UserSession).where(UserSession.user_id == owner.id)))


def events_of(db: Session, email: str) -> list[str]:
    """Event kinds of the account, oldest first."""
    db.expire_all()
    owner = user(db, email)
    query = select(SecurityEvent.kind).where(SecurityEvent.user_id == owner.id)
    return list(db.scalars(query.order_by(SecurityEvent.id)))


def is_signed_in(client: FlaskClient) -> bool:
    response = client.get("/dashboard")
    assert response.status_code in (200, 302)
    return response.status_code == 200


def change_password(client: FlaskClient, **fields: str) -> object:
    data = {
        "current_password": PASSWORD,
        "new_password": NEW_PASSWORD,
        "confirm_password": NEW_PASSWORD,
        **fields,
    }
    return client.post("/account/password", data=data)


def flashes(html: str) -> list[str]:
    return re.findall(r'<p class="flash [^"]*">(.*?)</p>', html)


def set_email(db: Session, old: str, new: str) -> None:
    user(db, old).email = new
    db.commit()


def mail_to(outbox: Path, address: str) -> StoredMail:
    found = latest_mail_to(outbox, address)
    assert found is not None, f"no mail to {address}"
    return found


def confirm_path(mail: StoredMail) -> str:
    [link] = [link for link in mail.links if "/account/email/confirm/" in link]
    assert link.startswith("http://127.0.0.1:5000/")  # BASE_URL, never the Host header
    return urlsplit(link).path


# --- The profile --------------------------------------------------------------------------


def test_account_page_shows_name_email_verification_state_and_links(app: Flask) -> None:
    page = signed_in_client(app, "ada@acme.test").get("/account")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Ada Lovelace" in html and "ada@acme.test" in html
    assert "Verified" in html and "Not verified yet" not in html
    for link in ("/account/password", "/account/sessions", "/account/security", "/account/email"):
        assert f'href="{link}"' in html


def test_account_page_says_when_the_email_is_not_verified_yet(app: Flask) -> None:
    html = signed_in_client(app, "eve@acme.test").get("/account").get_data(as_text=True)
    assert "Not verified yet" in html


@pytest.mark.parametrize(
    "path", ["/account", "/account/password", "/account/sessions", "/account/security",
             "/account/email"],
)  # fmt: skip
def test_anonymous_visit_to_an_account_page_is_sent_to_sign_in(
    client: FlaskClient, path: str
) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/sign-in?next=")


@pytest.mark.parametrize(
    "path", ["/account/password", "/account/sessions/abc/revoke", "/account/sessions/revoke-others",
             "/account/email", "/account/elevation/end"],
)  # fmt: skip
def test_anonymous_post_to_an_account_action_is_401(client: FlaskClient, path: str) -> None:
    response = client.post(path)
    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers


# --- Changing the password ----------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "post"])
def test_change_password_with_a_stale_session_is_sent_to_reauthenticate(
    app: Flask, db: Session, clock: Clock, method: str
) -> None:
    client = signed_in_client(app, "ada@acme.test")
    before = user(db, "ada@acme.test").password_hash
    clock.advance(seconds=601)
    if method == "get":
        response = client.get("/account/password")
    else:
        response = change_password(client)
    assert response.status_code == 302
    assert response.headers["Location"] == REAUTH_FOR + "password"
    assert user(db, "ada@acme.test").password_hash == before


def test_change_password_after_reauthenticating_shows_the_form(app: Flask, clock: Clock) -> None:
    client = signed_in_client(app, "ada@acme.test")
    clock.advance(seconds=601)
    client.post("/reauthenticate", data={"password": PASSWORD, "next": "/account/password"})
    page = client.get("/account/password")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for name in ("current_password", "new_password", "confirm_password"):
        assert f'name="{name}"' in html


def test_wrong_current_password_is_422_and_changes_nothing(app: Flask, db: Session) -> None:
    client = signed_in_client(app, "ada@acme.test")
    other = signed_in_client(app, "ada@acme.test")
    before = user(db, "ada@acme.test").password_hash
    response = change_password(client, current_password="not my password at all")
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "That is not your current password." in html
    assert NEW_PASSWORD not in html  # passwords are never echoed into the page
    assert user(db, "ada@acme.test").password_hash == before
    assert len(sessions_of(db, "ada@acme.test")) == 2 and is_signed_in(other)
    assert EventKind.PASSWORD_CHANGED not in events_of(db, "ada@acme.test")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"new_password": "short one", "confirm_password": "short one"}, "at least 15"),
        (
            {"new_password": "passwordpassword", "confirm_password": "passwordpassword"},
            "too easy to guess",
        ),
        (
            {"new_password": "lovelace orchard lantern", "confirm_password":
             "lovelace orchard lantern"},
            "Leave your name out",
        ),
        ({"confirm_password": "violet tugboat orchard lanterns"}, "are not the same"),
        ({"new_password": PASSWORD, "confirm_password": PASSWORD}, "different from your current"),
        ({"current_password": ""}, "Enter your current password."),
    ],
    ids=["short", "guessable", "contains-name", "mismatched", "unchanged", "no-current"],
)  # fmt: skip
def test_weak_or_mismatched_new_password_is_422_and_changes_nothing(
    app: Flask, db: Session, fields: dict[str, str], message: str
) -> None:
    client = signed_in_client(app, "ada@acme.test")
    before = user(db, "ada@acme.test").password_hash
    response = change_password(client, **fields)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert user(db, "ada@acme.test").password_hash == before


def test_changing_the_password_signs_out_other_sessions_and_keeps_this_one_with_a_new_token(
    app: Flask, db: Session, outbox: Path
) -> None:
    client = signed_in_client(app, "ada@acme.test")
    other = signed_in_client(app, "ada@acme.test")
    bob = signed_in_client(app, "linus@acme.test")  # someone else entirely
    ada = user(db, "ada@acme.test")
    issue_token(db, ada, TokenPurpose.RESET_PASSWORD, 1800, email=ada.email)
    db.commit()
    old_cookie = client.get_cookie(AUTH_COOKIE).value

    response = change_password(client)

    assert response.status_code == 303 and response.headers["Location"] == "/account"
    # The other browser is out; this one is in, with a new cookie token.
    assert not is_signed_in(other)
    assert is_signed_in(client) and is_signed_in(bob)
    new_cookie = client.get_cookie(AUTH_COOKIE).value
    assert new_cookie != old_cookie
    stale = app.test_client()
    stale.set_cookie(AUTH_COOKIE, old_cookie)
    assert not is_signed_in(stale)
    [kept] = sessions_of(db, "ada@acme.test")
    # The old password no longer signs in; the new one does.
    fresh = app.test_client()
    assert (
        fresh.post("/sign-in", data={"email": ada.email, "password": PASSWORD}).status_code == 401
    )
    sign_in(fresh, ada.email, NEW_PASSWORD)
    # The pending reset link died with the old password.
    db.expire_all()
    pending = db.scalars(select(AccountToken).where(AccountToken.user_id == ada.id)).all()
    assert [t for t in pending if t.purpose == TokenPurpose.RESET_PASSWORD.value] == []
    # The account holder is told, with a way back if it was not them.
    notice = mail_to(outbox, "ada@acme.test")
    assert "password" in notice.subject.lower()
    assert "http://127.0.0.1:5000/forgot-password" in notice.links
    assert EventKind.PASSWORD_CHANGED in events_of(db, "ada@acme.test")
    assert kept.user_id == ada.id


def test_changing_the_password_through_the_real_form_rotates_the_csrf_token(
    csrf_app: Flask,
) -> None:
    client = csrf_app.test_client()
    token = csrf_token_from(client.get("/sign-in").get_data(as_text=True))
    sign_in(client, "ada@acme.test", csrf_token=token)
    before = csrf_token_from(client.get("/account/password").get_data(as_text=True))
    response = change_password(client, csrf_token=before)
    assert response.status_code == 303
    assert (
        client.post("/account/sessions/revoke-others", data={"csrf_token": before}).status_code
        == 400
    )
    after = csrf_token_from(client.get("/account/sessions").get_data(as_text=True))
    assert after != before
    assert (
        client.post("/account/sessions/revoke-others", data={"csrf_token": after}).status_code
        == 303
    )


def test_a_password_change_without_a_csrf_token_is_400_and_changes_nothing(
    csrf_app: Flask,
) -> None:
    client = csrf_app.test_client()
    token = csrf_token_from(client.get("/sign-in").get_data(as_text=True))
    sign_in(client, "ada@acme.test", csrf_token=token)
    assert change_password(client).status_code == 400
    with csrf_app.app_context():
        db = csrf_app.extensions["db_sessionmaker"]()
        assert (
            db.scalar(
                select(func.count())
                .select_from(SecurityEvent)
                .where(SecurityEvent.kind == EventKind.PASSWORD_CHANGED.value)
            )
            == 0
        )
        db.close()


# --- Sessions -----------------------------------------------------------------------------


def test_sessions_page_lists_each_browser_and_marks_this_one(app: Flask, db: Session) -> None:
    laptop = client_with_agent(app, "ada@acme.test", CHROME_MAC, remember="y")
    firefox = client_with_agent(app, "ada@acme.test", FIREFOX)
    client_with_agent(app, "linus@acme.test", FIREFOX)  # not Ada's: never listed

    response = firefox.get("/account/sessions")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Firefox 131 on Windows" in html
    assert "Chrome 129 on macOS" in html
    assert html.count('data-testid="this-browser"') == 1
    assert "127.0.0.1" in html
    ada_sessions = sessions_of(db, "ada@acme.test")
    assert len(ada_sessions) == 2
    for stored in ada_sessions:
        assert f"/account/sessions/{stored.public_id}/revoke" in html
    linus_session = sessions_of(db, "linus@acme.test")[0]
    assert linus_session.public_id not in html
    # "This browser" sits in the Firefox row, and the laptop's row says it stays signed in.
    rows = re.findall(r"<tr>(.*?)</tr>", html, flags=re.S)
    [this_row] = [row for row in rows if "this-browser" in row]
    assert "Firefox" in this_row and ">No<" in this_row
    [laptop_row] = [row for row in rows if "Chrome" in row]
    assert ">Yes<" in laptop_row
    assert is_signed_in(laptop)


def test_sessions_page_lists_the_most_recently_used_first(
    app: Flask, db: Session, clock: Clock
) -> None:
    first = client_with_agent(app, "ada@acme.test", CHROME_MAC)
    clock.advance(seconds=5)
    second = client_with_agent(app, "ada@acme.test", FIREFOX)
    clock.advance(seconds=120)
    assert is_signed_in(second)
    clock.advance(seconds=30)
    assert is_signed_in(first)  # the older session is now the one used last
    html = second.get("/account/sessions").get_data(as_text=True)
    assert html.index("Chrome 129") < html.index("Firefox 131")


def test_expired_sessions_are_not_listed(app: Flask, db: Session, clock: Clock) -> None:
    client_with_agent(app, "ada@acme.test", CHROME_MAC)
    clock.advance(seconds=app.config["SESSION_IDLE_SECONDS"] + 1)
    current = client_with_agent(app, "ada@acme.test", FIREFOX)
    html = current.get("/account/sessions").get_data(as_text=True)
    assert "Firefox 131" in html and "Chrome 129" not in html


def test_revoking_another_session_signs_that_browser_out_on_its_next_request(
    app: Flask, db: Session
) -> None:
    mine = client_with_agent(app, "ada@acme.test", FIREFOX)
    other = client_with_agent(app, "ada@acme.test", CHROME_MAC)
    assert is_signed_in(other)
    [target] = [s for s in sessions_of(db, "ada@acme.test") if s.user_agent == CHROME_MAC]

    response = mine.post(f"/account/sessions/{target.public_id}/revoke")

    assert response.status_code == 303 and response.headers["Location"] == "/account/sessions"
    assert not is_signed_in(other)
    assert is_signed_in(mine)
    assert [s.user_agent for s in sessions_of(db, "ada@acme.test")] == [FIREFOX]
    assert events_of(db, "ada@acme.test")[-1] == EventKind.SESSION_REVOKED


@pytest.mark.parametrize("whose", ["someone else's", "unknown"])
def test_revoking_a_session_that_is_not_yours_is_404_and_deletes_nothing(
    app: Flask, db: Session, whose: str
) -> None:
    ada = signed_in_client(app, "ada@acme.test")
    hank = signed_in_client(app, "hank@globex.test")
    public_id = sessions_of(db, "hank@globex.test")[0].public_id if whose != "unknown" else "0" * 16
    response = ada.post(f"/account/sessions/{public_id}/revoke")
    assert response.status_code == 404
    assert "There is nothing here, or it is not yours to see." in response.get_data(as_text=True)
    assert len(sessions_of(db, "hank@globex.test")) == 1 and is_signed_in(hank)
    assert len(sessions_of(db, "ada@acme.test")) == 1 and is_signed_in(ada)
    assert EventKind.SESSION_REVOKED not in events_of(db, "ada@acme.test")


def test_revoking_this_session_signs_you_out(app: Flask, db: Session) -> None:
    client = signed_in_client(app, "ada@acme.test")
    [mine] = sessions_of(db, "ada@acme.test")
    response = client.post(f"/account/sessions/{mine.public_id}/revoke")
    assert response.status_code == 303 and response.headers["Location"] == "/"
    assert not is_signed_in(client)
    assert sessions_of(db, "ada@acme.test") == []
    assert events_of(db, "ada@acme.test")[-1] == EventKind.SIGNED_OUT


def test_revoke_others_keeps_only_this_session(app: Flask, db: Session) -> None:
    mine = client_with_agent(app, "ada@acme.test", FIREFOX)
    others = [client_with_agent(app, "ada@acme.test", CHROME_MAC) for _ in range(2)]
    linus = signed_in_client(app, "linus@acme.test")

    response = mine.post("/account/sessions/revoke-others")

    assert response.status_code == 303
    assert "Signed out 2 other sessions." in mine.get("/account/sessions").get_data(as_text=True)
    assert [is_signed_in(other) for other in others] == [False, False]
    assert is_signed_in(mine) and is_signed_in(linus)
    assert [s.user_agent for s in sessions_of(db, "ada@acme.test")] == [FIREFOX]
    assert events_of(db, "ada@acme.test")[-1] == EventKind.SESSION_REVOKED


# --- Security events ----------------------------------------------------------------------


def test_security_page_shows_events_newest_first_with_address_and_device(
    app: Flask, clock: Clock
) -> None:
    client = client_with_agent(app, "ada@acme.test", FIREFOX)
    clock.advance(seconds=30)
    assert change_password(client).status_code == 303
    clock.advance(seconds=30)
    client.post("/account/elevation/end")

    response = client.get("/account/security")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    html = html[html.index("<main") :]  # the header says "Signed in" too
    order = [
        html.index("Sensitive-changes mode ended"),
        html.index("Password changed"),
        html.index("Signed in"),
    ]
    assert order == sorted(order)
    assert "Firefox 131 on Windows" in html and "127.0.0.1" in html


def test_security_page_paginates_25_per_page(app: Flask, db: Session, clock: Clock) -> None:
    client = signed_in_client(app, "ada@acme.test")
    ada = user(db, "ada@acme.test")
    db.execute(SecurityEvent.__table__.delete().where(SecurityEvent.user_id == ada.id))
    start = clock.now
    for minute in range(30):
        db.add(
            SecurityEvent(
                user_id=ada.id,
                kind=EventKind.SIGN_IN_FAILED.value,
                detail="",
                created_at=start - timedelta(minutes=minute),
            )
        )
    db.commit()

    first = client.get("/account/security").get_data(as_text=True)
    second = client.get("/account/security?page=2").get_data(as_text=True)
    assert first.count("Failed sign-in (wrong password)") == 25
    assert second.count("Failed sign-in (wrong password)") == 5
    assert "Page 1 of 2 · 30 events" in first and 'href="/account/security?page=2"' in first
    assert start.strftime("%Y-%m-%d %H:%M") in first
    assert (start - timedelta(minutes=29)).strftime("%Y-%m-%d %H:%M") in second


@pytest.mark.parametrize("page", ["0", "-1", "abc", "²", "1e3", "99999999", "", "3"])
def test_security_page_is_robust_to_junk_page_numbers(app: Flask, page: str) -> None:
    response = signed_in_client(app, "ada@acme.test").get(f"/account/security?page={page}")
    assert response.status_code == 200
    assert "Signed in" in response.get_data(as_text=True)


def test_security_page_has_an_empty_state(app: Flask, db: Session) -> None:
    client = signed_in_client(app, "ada@acme.test")
    db.execute(SecurityEvent.__table__.delete())
    db.commit()
    html = client.get("/account/security").get_data(as_text=True)
    assert "Nothing recorded yet" in html


def test_security_page_shows_only_your_own_events(app: Flask, db: Session) -> None:
    signed_in_client(app, "hank@globex.test").post("/account/elevation/end")
    html = signed_in_client(app, "ada@acme.test").get("/account/security").get_data(as_text=True)
    assert "Sensitive-changes mode ended" not in html


# --- Email change -------------------------------------------------------------------------


def test_email_change_end_to_end_through_the_outbox(app: Flask, db: Session, outbox: Path) -> None:
    client = signed_in_client(app, "ada@acme.test")
    response = client.post("/account/email", data={"email": "  Ada@Analytical.Example "})
    assert response.status_code == 303 and response.headers["Location"] == "/account"
    assert "Check the new inbox" in client.get("/account").get_data(as_text=True)
    assert EventKind.EMAIL_CHANGE_REQUESTED in events_of(db, "ada@acme.test")
    # The old address stays in effect until the new one answers.
    confirmation = mail_to(outbox, "ada@analytical.example")
    assert latest_mail_to(outbox, "ada@acme.test") is None
    assert user(db, "ada@acme.test").email == "ada@acme.test"
    sign_in(app.test_client(), "ada@acme.test")

    # Opened in another browser, signed out: the link is the proof.
    elsewhere = app.test_client()
    # Opening it shows a button and changes nothing: mail scanners open links too.
    opened = elsewhere.get(confirm_path(confirmation))
    assert opened.status_code == 200
    page = opened.get_data(as_text=True)
    assert "ada@analytical.example" in page and "Use this email address" in page
    assert f'<form method="post" action="{confirm_path(confirmation)}"' in page
    assert opened.headers["Cache-Control"] == "no-store"
    assert opened.headers["Referrer-Policy"] == "same-origin"
    assert user(db, "ada@acme.test").email == "ada@acme.test"
    assert EventKind.EMAIL_CHANGED not in events_of(db, "ada@acme.test")

    pressed = elsewhere.post(confirm_path(confirmation))  # the button
    assert pressed.status_code == 200
    assert "Your email is now ada@analytical.example" in pressed.get_data(as_text=True)
    assert pressed.headers["Cache-Control"] == "no-store"
    assert pressed.headers["Referrer-Policy"] == "same-origin"

    changed = user(db, "ada@analytical.example")
    assert changed.email_verified_at is not None
    assert EventKind.EMAIL_CHANGED in events_of(db, "ada@analytical.example")
    notice = mail_to(outbox, "ada@acme.test")
    assert "ada@analytical.example" in notice.text
    # Sign-in now takes the new address only.
    fresh = app.test_client()
    assert (
        fresh.post("/sign-in", data={"email": "ada@acme.test", "password": PASSWORD}).status_code
        == 401
    )
    sign_in(fresh, "ada@analytical.example")
    assert is_signed_in(client)  # the session that asked is still fine

    # A link works once.
    for again in (
        elsewhere.post(confirm_path(confirmation)),
        elsewhere.get(confirm_path(confirmation)),
    ):
        assert again.status_code == 400
        assert "This link is no longer valid" in again.get_data(as_text=True)


def test_email_change_to_an_address_in_use_answers_the_same_and_mails_nobody(
    app: Flask, db: Session, outbox: Path
) -> None:
    # The seed's .test addresses are special-use names that no new address may have.
    set_email(db, "grace@acme.test", "grace@hopper.example")
    client = signed_in_client(app, "ada@acme.test")
    client.get("/account")  # shows (and so clears) the sign-in flash
    free = client.post("/account/email", data={"email": "ada@analytical.example"})
    free_flash = flashes(client.get("/account").get_data(as_text=True))
    taken = client.post("/account/email", data={"email": "Grace@Hopper.example"})
    taken_flash = flashes(client.get("/account").get_data(as_text=True))

    assert (free.status_code, free.headers["Location"]) == (
        taken.status_code,
        taken.headers["Location"],
    )
    assert free_flash == taken_flash and "Check the new inbox" in free_flash[0]
    assert latest_mail_to(outbox, "grace@hopper.example") is None
    db.expire_all()
    ada = user(db, "ada@acme.test")
    pending = db.scalars(
        select(AccountToken).where(AccountToken.user_id == ada.id, AccountToken.used_at.is_(None))
    ).all()
    # The latest request replaced the first one, and it issued no link.
    assert pending == []
    assert user(db, "grace@hopper.example").display_name == "Grace Hopper"


@pytest.mark.parametrize(
    ("address", "message"),
    [("not an address", "Enter a valid email address."), ("", "Enter the new address."),
     ("ADA@Lovelace.example", "already your email address"),
     ("ada@mail.invalid", "special-use or reserved name")],
)  # fmt: skip
def test_email_change_to_an_invalid_or_unchanged_address_is_422(
    app: Flask, db: Session, outbox: Path, address: str, message: str
) -> None:
    set_email(db, "ada@acme.test", "ada@lovelace.example")
    client = signed_in_client(app, "ada@lovelace.example")
    response = client.post("/account/email", data={"email": address})
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert read_outbox(outbox) == []


@pytest.mark.parametrize("method", ["get", "post"])
def test_email_change_with_a_stale_session_is_sent_to_reauthenticate(
    app: Flask, clock: Clock, outbox: Path, method: str
) -> None:
    client = signed_in_client(app, "ada@acme.test")
    clock.advance(seconds=601)
    response = getattr(client, method)("/account/email", data={"email": "ada@new.example"})
    assert response.status_code == 302
    assert response.headers["Location"] == REAUTH_FOR + "email"
    assert read_outbox(outbox) == []


def test_an_older_link_stops_working_when_a_newer_one_is_asked_for(
    app: Flask, db: Session, outbox: Path, clock: Clock
) -> None:
    client = signed_in_client(app, "ada@acme.test")
    client.post("/account/email", data={"email": "first@new.example"})
    first = mail_to(outbox, "first@new.example")
    clock.advance(seconds=1)
    client.post("/account/email", data={"email": "second@new.example"})
    assert app.test_client().get(confirm_path(first)).status_code == 400
    assert app.test_client().post(confirm_path(first)).status_code == 400
    assert user(db, "ada@acme.test").email == "ada@acme.test"
    assert (
        app.test_client().post(confirm_path(mail_to(outbox, "second@new.example"))).status_code
        == 200
    )
    assert user(db, "second@new.example").display_name == "Ada Lovelace"


def test_a_password_change_kills_a_pending_email_change_link(
    app: Flask, db: Session, outbox: Path
) -> None:
    # Whoever asked for the change from a stolen session must not finish it afterwards.
    client = signed_in_client(app, "ada@acme.test")
    client.post("/account/email", data={"email": "attacker@evil.example"})
    link = confirm_path(mail_to(outbox, "attacker@evil.example"))
    assert change_password(client).status_code == 303
    assert app.test_client().get(link).status_code == 400
    assert app.test_client().post(link).status_code == 400
    assert user(db, "ada@acme.test").email == "ada@acme.test"


def test_an_address_taken_before_confirmation_makes_the_link_invalid(
    app: Flask, db: Session, outbox: Path
) -> None:
    ada = signed_in_client(app, "ada@acme.test")
    linus = signed_in_client(app, "linus@acme.test")
    ada.post("/account/email", data={"email": "shared@new.example"})
    linus.post("/account/email", data={"email": "shared@new.example"})
    links = [confirm_path(mail) for mail in read_outbox(outbox)]  # newest (Linus's) first
    assert app.test_client().post(links[0]).status_code == 200
    assert app.test_client().get(links[1]).status_code == 400
    response = app.test_client().post(links[1])
    assert response.status_code == 400
    assert user(db, "ada@acme.test").email == "ada@acme.test"
    assert user(db, "shared@new.example").display_name == "Linus Torvalds"


def test_confirming_the_change_revokes_links_mailed_to_the_old_address(
    app: Flask, db: Session, outbox: Path
) -> None:
    client = signed_in_client(app, "ada@acme.test")
    ada = user(db, "ada@acme.test")
    issue_token(db, ada, TokenPurpose.RESET_PASSWORD, 1800, email=ada.email)
    db.commit()
    client.post("/account/email", data={"email": "ada@new.example"})
    assert (
        app.test_client().post(confirm_path(mail_to(outbox, "ada@new.example"))).status_code == 200
    )
    db.expire_all()
    unused = db.scalars(
        select(AccountToken).where(AccountToken.user_id == ada.id, AccountToken.used_at.is_(None))
    ).all()
    assert unused == []


@pytest.mark.parametrize(
    "token",
    ["x", "A" * 43, "A" * 44, "%00" * 10, "a" * 5000],
    ids=["short", "unknown", "too-long", "nul", "huge"],
)
def test_malformed_or_unknown_confirmation_links_are_a_clear_400(
    client: FlaskClient, db: Session, token: str
) -> None:
    response = client.get(f"/account/email/confirm/{token}")
    assert response.status_code == 400
    assert "This link is no longer valid" in response.get_data(as_text=True)
    assert user(db, "ada@acme.test").email == "ada@acme.test"


def test_a_confirmation_link_with_slashes_is_another_route_so_a_404(
    client: FlaskClient, db: Session
) -> None:
    response = client.get("/account/email/confirm/../../etc/passwd")
    assert response.status_code == 404
    assert user(db, "ada@acme.test").email == "ada@acme.test"


def test_an_expired_confirmation_link_is_a_clear_400(
    app: Flask, db: Session, outbox: Path, clock: Clock
) -> None:
    client = signed_in_client(app, "ada@acme.test")
    client.post("/account/email", data={"email": "ada@new.example"})
    clock.advance(seconds=app.config["EMAIL_CHANGE_SECONDS"] + 1)
    link = confirm_path(mail_to(outbox, "ada@new.example"))
    for response in (app.test_client().get(link), app.test_client().post(link)):
        assert response.status_code == 400
        assert "This link is no longer valid" in response.get_data(as_text=True)
    assert user(db, "ada@acme.test").email == "ada@acme.test"


def test_a_confirmation_link_for_another_purpose_is_refused(app: Flask, db: Session) -> None:
    ada = user(db, "ada@acme.test")
    raw = issue_token(db, ada, TokenPurpose.RESET_PASSWORD, 1800, email="evil@new.example")
    db.commit()
    assert app.test_client().get(f"/account/email/confirm/{raw}").status_code == 400
    assert app.test_client().post(f"/account/email/confirm/{raw}").status_code == 400
    assert user(db, "ada@acme.test").email == "ada@acme.test"


def test_email_change_requests_are_rate_limited_per_account(
    database_file: Path, outbox: Path
) -> None:
    limited = make_test_app(
        database_file,
        MAIL_OUTBOX_DIR=str(outbox),
        RATELIMIT_ENABLED=True,
        EMAIL_CHANGE_RATE_LIMIT="2 per hour",
    )
    client = signed_in_client(limited, "ada@acme.test")
    # A form error does not use up the allowance.
    assert client.post("/account/email", data={"email": "nope"}).status_code == 422
    statuses = [
        client.post("/account/email", data={"email": f"ada{n}@new.example"}).status_code
        for n in range(3)
    ]
    assert statuses == [303, 303, 429]
    assert len(read_outbox(outbox)) == 2
    limited.extensions["db_engine"].dispose()


# --- Elevation ----------------------------------------------------------------------------


def test_ending_elevation_sends_sensitive_pages_to_reauthenticate(app: Flask, db: Session) -> None:
    client = signed_in_client(app, "ada@acme.test")
    assert client.get("/account/password").status_code == 200

    response = client.post("/account/elevation/end")

    assert response.status_code == 303 and response.headers["Location"] == "/account"
    assert client.get("/account/password").headers["Location"] == REAUTH_FOR + "password"
    assert client.get("/account/email").headers["Location"] == REAUTH_FOR + "email"
    assert is_signed_in(client)  # still signed in, just no longer elevated
    assert events_of(db, "ada@acme.test")[-1] == EventKind.ELEVATION_ENDED


@pytest.mark.parametrize(
    ("next_path", "location"),
    [("/account/sessions", "/account/sessions"), ("//evil.example", "/account"),
     ("https://evil.example/", "/account")],
)  # fmt: skip
def test_ending_elevation_returns_only_to_a_page_on_this_site(
    app: Flask, next_path: str, location: str
) -> None:
    client = signed_in_client(app, "ada@acme.test")
    response = client.post("/account/elevation/end", data={"next": next_path})
    assert response.headers["Location"] == location


def test_ending_elevation_on_a_stale_session_records_nothing(
    app: Flask, db: Session, clock: Clock
) -> None:
    client = signed_in_client(app, "ada@acme.test")
    clock.advance(seconds=601)
    assert client.post("/account/elevation/end").status_code == 303
    assert EventKind.ELEVATION_ENDED not in events_of(db, "ada@acme.test")


def test_session_state_snippet_counts_down_and_offers_to_end_elevation(
    app: Flask, clock: Clock
) -> None:
    client = signed_in_client(app, "ada@acme.test")
    html = client.get("/test/session-state").get_data(as_text=True)
    assert "Elevated — 10 min left" in html
    assert 'action="/account/elevation/end"' in html
    assert 'name="next" value="/test/session-state"' in html
    clock.advance(seconds=301)
    assert "Elevated — 5 min left" in client.get("/test/session-state").get_data(as_text=True)
    clock.advance(seconds=300)
    html = client.get("/test/session-state").get_data(as_text=True)
    assert "Signed in" in html and "Elevated" not in html
    assert "/account/elevation/end" not in html


def test_session_state_snippet_is_empty_without_a_principal(app: Flask) -> None:
    with app.test_request_context("/"):
        html = render_template_string('{% include "account/_session_state.html" %}', principal=None)
    assert html.strip() == ""


# --- Secrets stay out of the record -------------------------------------------------------


def test_no_password_token_or_hash_reaches_security_events_or_logs(
    app: Flask, db: Session, outbox: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        client = signed_in_client(app, "ada@acme.test")
        old_hash = user(db, "ada@acme.test").password_hash
        change_password(client, current_password="a wrong guess at it")
        assert change_password(client).status_code == 303
        client.post("/account/email", data={"email": "ada@new.example"})
        link = confirm_path(mail_to(outbox, "ada@new.example"))
        app.test_client().get(link)
        app.test_client().post(link)
        app.test_client().post(link)
        new_hash = user(db, "ada@new.example").password_hash

    token = link.rsplit("/", 1)[1]
    secrets = [PASSWORD, NEW_PASSWORD, "a wrong guess at it", token, old_hash, new_hash]
    db.expire_all()
    for event in db.scalars(select(SecurityEvent)):
        stored = " ".join(
            str(v) for v in (event.kind, event.detail, event.ip_address, event.user_agent)
        )
        for secret in secrets:
            assert secret not in stored
    for secret in secrets:
        assert secret not in caplog.text
