"""Opening a mailed link with GET never changes anything (CONTRACT section 8).

Mail scanners, link previews and antivirus gateways open every link in a message before
its reader does. If a GET spent a token, the scanner would verify an address nobody read,
confirm an email change, or use up a reset link. So every mailed link shows a page with
a button, and only the button (a POST) acts. Before the second review's fix, opening the
verification link verified the address and opening the email-change link changed it.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from invoiceapp.db import Base
from invoiceapp.mail import read_outbox
from invoiceapp.models import User
from support import PASSWORD, csrf_token_from, proofs, signed_in_client, user

BASE = "http://127.0.0.1:5000"
STRONG = "a long and unusual passphrase 4 tests"
KINDS = ("/verify-email/", "/account/email/confirm/", "/reset-password/", "/claim-address/",
         "/invitations/", "/sign-in/link/")  # fmt: skip


def _finished(response: object) -> None:
    """Close the response, as a server does: background work (the reset mail) runs then."""
    response.get_data()  # type: ignore[attr-defined]
    response.close()  # type: ignore[attr-defined]


def _every_kind_of_mail(app: Flask) -> FlaskClient:
    """Sign-up (verify), sign-up on an unverified address (claim), forgot-password (reset),
    an email change, an invitation and a magic link; returns the browser that asked for
    the magic link (only it may use the link)."""
    visitor = app.test_client()
    form = {"name": "New Person", "password": STRONG, "organization_name": "Np"}
    _finished(visitor.post("/sign-up", data={**form, "email": "new@example.org"}))
    _finished(visitor.post("/sign-up", data={**form, "email": "eve@acme.test"}))
    _finished(visitor.post("/forgot-password", data={"email": "grace@acme.test"}))
    ada = signed_in_client(app, "ada@acme.test")
    _finished(ada.post("/account/email", data={"email": "ada.new@example.org"}))
    _finished(ada.post("/orgs/acme/invitations", data={"email": "hank@globex.test"}))
    link_asker = app.test_client()
    _finished(link_asker.post("/sign-in/link", data={"email": "linus@acme.test"}))
    return link_asker


def _database(app: Flask) -> dict[str, list[tuple[str, ...]]]:
    """Every row of every table, as text: what "nothing changed" is compared on."""
    with app.extensions["db_engine"].connect() as connection:
        return {
            table.name: sorted(
                tuple(str(value) for value in row) for row in connection.execute(select(table))
            )
            for table in Base.metadata.sorted_tables
        }


def test_opening_every_mailed_link_with_get_changes_nothing(app: Flask, outbox: Path) -> None:
    _every_kind_of_mail(app)
    links = [link for mail in read_outbox(outbox) for link in mail.links
             if any(kind in link for kind in KINDS)]  # fmt: skip
    assert sorted({kind for kind in KINDS for link in links if kind in link}) == sorted(KINDS)
    before, mails_before = _database(app), len(read_outbox(outbox))

    scanner = app.test_client()  # a mail scanner: nobody signed in
    answers = {link: scanner.get(link.removeprefix(BASE)) for link in links}

    assert _database(app) == before
    assert len(read_outbox(outbox)) == mails_before
    for link, response in answers.items():
        # A page (or the sign-in page, for an invitation): never a dead link, so the
        # GET did not spend the token either.
        assert response.status_code in (200, 302), (link, response.status_code)
        if response.status_code == 200:
            assert response.headers["Cache-Control"] == "no-store", link
            assert response.headers["Referrer-Policy"] == "same-origin", link
            assert 'method="post"' in response.get_data(as_text=True), link


def test_the_verify_button_works_in_a_browser_with_csrf_on_and_nothing_else_does(
    csrf_app: Flask, outbox: Path
) -> None:
    """The button is a real form: its CSRF token comes from the page the link opened, in
    another browser than the one that signed up. A forged post without it changes nothing."""
    signup = csrf_app.test_client()
    token = csrf_token_from(signup.get("/sign-up").get_data(as_text=True))
    form = {"name": "New Person", "password": STRONG, "organization_name": "Np"}
    signup.post("/sign-up", data={**form, "email": "new@example.org", "csrf_token": token})
    [link] = [
        link for mail in read_outbox(outbox) for link in mail.links if "/verify-email/" in link
    ]
    path = link.removeprefix(BASE)

    def verified() -> bool:
        with csrf_app.extensions["db_sessionmaker"]() as db:
            user = db.scalar(select(User).where(User.email == "new@example.org"))
            return user is not None and user.email_verified

    reader = csrf_app.test_client()
    page = reader.get(path)
    assert reader.post(path).status_code == 400  # no CSRF token: refused
    assert not verified()
    pressed = reader.post(path, data={"csrf_token": csrf_token_from(page.get_data(as_text=True))})
    assert pressed.status_code == 200 and "Your email is verified" in pressed.get_data(as_text=True)
    assert verified()


def test_every_mailed_link_still_works_by_post_after_a_scanner_opened_it(
    app: Flask, outbox: Path
) -> None:
    """The GETs above spent nothing: afterwards each link's button (a POST) still acts."""
    link_asker = _every_kind_of_mail(app)
    links = {kind: link.removeprefix(BASE) for mail in read_outbox(outbox)
             for link in mail.links for kind in KINDS if kind in link}  # fmt: skip
    assert sorted(links) == sorted(KINDS)
    scanner = app.test_client()
    for path in links.values():
        scanner.get(path)

    reader = app.test_client()
    new_password = {"new_password": STRONG, "confirm_password": STRONG}
    verified = reader.post(links["/verify-email/"])
    assert verified.status_code == 200 and "Your email is verified" in verified.get_data(True)
    assert reader.post(links["/account/email/confirm/"]).status_code in (200, 303)
    assert reader.post(links["/reset-password/"], data=new_password).status_code == 303
    assert app.test_client().post(links["/claim-address/"], data=new_password).status_code == 303
    hank = signed_in_client(app, "hank@globex.test")
    assert hank.post(links["/invitations/"]).status_code == 303
    assert link_asker.post(links["/sign-in/link/"]).status_code == 303

    with app.extensions["db_sessionmaker"]() as db:
        assert user(db, "new@example.org").email_verified
        assert user(db, "ada.new@example.org").email_verified
        assert user(db, "eve@acme.test").email_verified  # claimed
        assert any(m.organization.slug == "acme" for m in user(db, "hank@globex.test").memberships)
        assert "magic_link" in proofs(db, "linus@acme.test")
    # Grace's reset took: the old password no longer signs in.
    old = app.test_client().post(
        "/sign-in", data={"email": "grace@acme.test", "password": PASSWORD}
    )
    assert old.status_code == 401
