"""Helpers shared by the tests: signing in, reading tokens, looking at the database."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import re
import secrets
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import cbor2
import pyotp
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, event, func, make_url, pool, select, text
from sqlalchemy.orm import Session
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from werkzeug.serving import make_server

import seed as seed_module
from invoiceapp.authn import recovery_codes
from invoiceapp.authn.access_tokens import issue_access_token
from invoiceapp.db import get_db
from invoiceapp.invoicing import allocate_invoice_number, new_public_id
from invoiceapp.mail import StoredMail, read_mail, read_outbox
from invoiceapp.models import (
    Invoice,
    InvoiceStatus,
    Organization,
    TokenScope,
    User,
    UserSession,
)

if TYPE_CHECKING:
    from conftest import Clock  # conftest imports this module

PASSWORD = "correct-horse-battery-staple"

# Several gunicorn workers share rate limits through Redis (the redis_url fixture).
REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_up(
    url: str,
    process: subprocess.Popen[bytes],
    timeout: float = 30,
    context: ssl.SSLContext | None = None,
) -> None:
    """Poll ``url`` until it answers 200; fail at once if the server process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as response:
                if response.status == 200:
                    return
        except OSError:  # refused, reset or timed out while booting
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def sign_in(client: FlaskClient, email: str, password: str = PASSWORD, **extra: Any) -> Any:
    response = client.post("/sign-in", data={"email": email, "password": password, **extra})
    assert response.status_code == 303, f"sign-in as {email} failed: {response.status_code}"
    return response


def signed_in_client(app: Flask, email: str) -> FlaskClient:
    client = app.test_client()
    sign_in(client, email)
    return client


def sign_in_through_the_form(client: FlaskClient, email: str = "ada@acme.test") -> None:
    """Sign in as a browser does: the sign-in page's own CSRF token, then the POST. For an
    app with CSRF on, where sign_in()'s token-less POST would be a 400."""
    token = csrf_token_from(client.get("/sign-in").get_data(as_text=True))
    response = client.post(
        "/sign-in", data={"email": email, "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 303


def signed_in_through_the_form(app: Flask, email: str = "ada@acme.test") -> FlaskClient:
    client = app.test_client()
    sign_in_through_the_form(client, email)
    return client


def csrf_token_from(html: str) -> str:
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', html
    )
    assert match, "no CSRF token in the page"
    return match.group(1)


def invoice(db: Session, public_id: str) -> Invoice:
    db.expire_all()
    found = db.scalar(select(Invoice).where(Invoice.public_id == public_id))
    assert found is not None
    return found


def count_invoices(db: Session) -> int:
    """Every invoice row, deleted ones too, as the database has them now."""
    db.expire_all()
    return db.scalar(select(func.count()).select_from(Invoice)) or 0


def flashes(client: FlaskClient) -> list[str]:
    """The flash messages waiting in the (signed, but readable) session cookie."""
    with client.session_transaction() as session:
        return [message for _category, message in session.get("_flashes", [])]


def user(db: Session, email: str) -> User:
    db.expire_all()
    found = db.scalar(select(User).where(User.email == email))
    assert found is not None
    return found


AUTH_COOKIE = "invoiceapp_sid"

# A complete, valid invoice form; tests change one field at a time.
VALID_INVOICE_FORM = {
    "customer": "Stark Industries",
    "amount": "1250.00",
    "currency": "EUR",
    "status": "draft",
    "issue_date": "2024-05-01",
    "due_date": "2024-05-31",
}
NEW_INVOICE_LOCATION = re.compile(r"/invoices/(inv_[a-z0-9]{16})")


def mentions(text: str, public_id: str) -> bool:
    """Whether ``public_id`` appears as a whole id (so "inv_7" is not found in "inv_7k2…")."""
    return re.search(rf"\b{re.escape(public_id)}\b", text) is not None


@contextmanager
def postgres_schema(admin_url: str) -> Iterator[str]:
    """A database URL whose connections all live in a fresh, throwaway PostgreSQL schema."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, poolclass=pool.NullPool)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(admin_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def all_at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run ``calls`` on as many threads, released together; their results, in order."""
    start = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        start.wait()
        results[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@contextmanager
def live_server(app: Flask, *, threaded: bool = True) -> Iterator[str]:
    """Serve ``app`` on a free loopback port, with a thread per request or (``threaded=False``)
    one request at a time, like one sync worker; yields its URL."""
    server = make_server("127.0.0.1", 0, app, threaded=threaded)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


# Organization slugs as they appear in URLs (/orgs/<slug>): what slug making must produce.
SLUG_SHAPE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")


# Parsed outbox files by path. The file backend renames each message into place whole and
# never changes it again, so a file is parsed once per test process; the race tests poll a
# shared server's growing outbox many times a second while the mail of a burst arrives.
_parsed_mails: dict[Path, StoredMail] = {}


def outbox_mails(directory: str | Path) -> list[StoredMail]:
    """What ``read_outbox`` returns (newest first), each file parsed only the first time."""
    folder = Path(directory)
    if not folder.exists():
        return []
    mails = []
    for path in sorted(folder.glob("*.eml"), key=lambda path: path.name, reverse=True):
        mail = _parsed_mails.get(path)
        if mail is None:
            mail = read_mail(folder, path.stem)
            if mail is None:  # deleted since the listing
                continue
            _parsed_mails[path] = mail
        mails.append(mail)
    return mails


def latest_mail_to(directory: str | Path, address: str) -> StoredMail | None:
    """The newest message in the file outbox to ``address`` (compared without case), or None."""
    wanted = address.strip().lower()
    for mail in read_outbox(directory):
        if parseaddr(mail.to)[1].lower() == wanted:
            return mail
    return None


def bearer(raw: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}", **headers}


def make_token(
    app: Flask, email: str, organization: str, scope: str = "write", *, days: int = 30
) -> str:
    """A real token, issued as /account/tokens would; returns the raw ia_pat_… value."""
    with app.app_context():
        db = get_db()
        owner = db.scalar(select(User).where(User.email == email))
        org = db.scalar(select(Organization).where(Organization.slug == organization))
        assert owner is not None and org is not None
        _row, raw = issue_access_token(
            db, owner, org, name=f"{scope} token", scope=TokenScope(scope), expires_days=days
        )
        db.commit()
    return raw


def api_csrf_token(client: FlaskClient) -> str:
    """What a cookie client sends as X-CSRFToken: /api/v1/me hands it out."""
    token = client.get("/api/v1/me").get_json()["csrf_token"]
    assert token
    return token


NEW_INVOICE = {
    "customer": "Stark Industries",
    "amount": "1250.00",
    "currency": "EUR",
    "issue_date": "2024-05-01",
    "due_date": "2024-05-31",
}


NEW_PASSWORD = "glacier kelp mesa indigo 42"


def finished(response: Any) -> Any:
    """Close the response, as a server does once it is sent: the reset work runs then."""
    response.get_data()
    response.close()
    return response


def ask_for_reset(client: FlaskClient, email: str, **options: Any) -> Any:
    return finished(client.post("/forgot-password", data={"email": email}, **options))


def reset_path(outbox: Path, email: str = "ada@acme.test") -> str:
    mail = latest_mail_to(outbox, email)
    assert mail is not None, f"no mail to {email}"
    (link,) = [link for link in mail.links if "/reset-password/" in link]
    assert link.startswith("http://127.0.0.1:5000/reset-password/")
    return link.removeprefix("http://127.0.0.1:5000")


def choose(
    client: FlaskClient, path: str, new: str = NEW_PASSWORD, confirm: str | None = None
) -> Any:
    data = {"new_password": new, "confirm_password": new if confirm is None else confirm}
    return client.post(path, data=data)


# Two-factor: Tess has an authenticator app in the demo data.
TESS = "tess@acme.test"
TESS_SECRET = seed_module.DEMO_TOTP_SECRET
STEP = timedelta(seconds=30)


def code(clock: Clock, secret: str = TESS_SECRET, steps: int = 0) -> str:
    """The code an authenticator app shows at the test clock's now, ``steps`` away."""
    return pyotp.TOTP(secret).at(clock.now + steps * STEP)


def password_step(client: FlaskClient, email: str = TESS, **extra: str) -> None:
    response = client.post("/sign-in", data={"email": email, "password": PASSWORD, **extra})
    assert response.status_code == 303
    assert response.headers["Location"] == "/sign-in/two-factor"


def give_recovery_codes(app: Flask, db: Session, email: str) -> list[str]:
    with app.app_context():
        codes = recovery_codes.replace_codes(db, user(db, email))
        db.commit()
    return codes


def enrol(client: FlaskClient, clock: Clock) -> tuple[str, list[str]]:
    """Set up TOTP through the pages; returns the secret and the recovery codes shown."""
    assert client.post("/account/two-factor/start").status_code == 303  # "Set up"
    page = client.get("/account/two-factor")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    uri = re.search(r'data-testid="totp-uri">([^<]+)<', html).group(1).replace("&amp;", "&")
    secret = parse_qs(urlsplit(uri).query)["secret"][0]
    confirm = client.post("/account/two-factor", data={"code": code(clock, secret)})
    assert confirm.status_code == 200
    shown = re.findall(r"<code>([a-z0-9]{5}-[a-z0-9]{5})</code>", confirm.get_data(as_text=True))
    assert len(shown) == 10
    return secret, shown


def signed_in_tess(app: Flask, clock: Clock) -> FlaskClient:
    client = app.test_client()
    password_step(client)
    assert client.post("/sign-in/two-factor", data={"code": code(clock)}).status_code == 303
    return client


# Passkeys: authenticator data flags (user present, user verified, attested credential).
UP, UV, AT = 0x01, 0x04, 0x40


class SoftAuthenticator:
    """A passkey in software: one discoverable credential, a sign counter, and knobs to
    misbehave (no user verification, a counter that goes backwards, another origin)."""

    def __init__(self, rp_id: str, origin: str, *, counter: int | None = 1) -> None:
        self.rp_id, self.origin = rp_id, origin
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = secrets.token_bytes(16)
        self.user_handle = b""
        # None: an authenticator that always reports 0 (many platform passkeys do).
        self.counter = counter

    def _cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps(
            {
                1: 2,
                3: -7,
                -1: 1,
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )

    def _auth_data(self, flags: int, count: int, attested: bytes = b"") -> bytes:
        rp_hash = hashlib.sha256(self.rp_id.encode()).digest()
        return rp_hash + bytes([flags]) + struct.pack(">I", count) + attested

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": origin or self.origin}
        ).encode()

    def create(self, options: dict[str, Any]) -> dict[str, Any]:
        self.user_handle = base64url_to_bytes(options["user"]["id"])
        attested = (
            bytes(16)  # AAGUID: "none" attestation says nothing about the model
            + struct.pack(">H", len(self.credential_id))
            + self.credential_id
            + self._cose_key()
        )
        auth_data = self._auth_data(UP | UV | AT, 0, attested)
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = self._client_data("webauthn.create", options["challenge"], None)
        return self._credential(
            {
                "clientDataJSON": bytes_to_base64url(client_data),
                "attestationObject": bytes_to_base64url(attestation),
                "transports": ["internal"],
            }
        )

    def get(
        self,
        options: dict[str, Any],
        *,
        flags: int = UP | UV,
        count: int | None = None,
        origin: str | None = None,
    ) -> dict[str, Any]:
        if count is None:
            if self.counter is not None:
                self.counter += 1
            count = self.counter or 0
        auth_data = self._auth_data(flags, count)
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        signature = self.key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return self._credential(
            {
                "clientDataJSON": bytes_to_base64url(client_data),
                "authenticatorData": bytes_to_base64url(auth_data),
                "signature": bytes_to_base64url(signature),
                "userHandle": bytes_to_base64url(self.user_handle),
            }
        )

    def _credential(self, response: dict[str, Any]) -> dict[str, Any]:
        """The PublicKeyCredential a browser posts, around the authenticator's response."""
        credential_id = bytes_to_base64url(self.credential_id)
        return {
            "id": credential_id,
            "rawId": credential_id,
            "type": "public-key",
            "response": response,
        }


def options(client: FlaskClient, url: str) -> dict[str, Any]:
    response = client.post(url)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    return response.get_json()


def add_passkey(client: FlaskClient, authenticator: SoftAuthenticator, name: str = "") -> None:
    credential = authenticator.create(options(client, "/account/passkeys/options"))
    response = client.post(
        "/account/passkeys", data={"credential": json.dumps(credential), "name": name}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"redirect": "/account/passkeys"}


def passkey_sign_in(client: FlaskClient, authenticator: SoftAuthenticator, **misbehave: Any) -> Any:
    assertion = authenticator.get(options(client, "/sign-in/passkey/options"), **misbehave)
    return client.post("/sign-in/passkey", data={"credential": json.dumps(assertion)})


def proofs(db: Session, email: str) -> list[str]:
    db.expire_all()
    return list(
        db.scalars(select(UserSession.proof).join(UserSession.user).where(User.email == email))
    )


def new_authenticator(app: Flask) -> SoftAuthenticator:
    return SoftAuthenticator(app.config["WEBAUTHN_RP_ID"], app.config["WEBAUTHN_ORIGIN"])


def step_up_with_passkey(client: FlaskClient, device: SoftAuthenticator, next_path: str) -> None:
    assertion = device.get(options(client, "/reauthenticate/passkey/options"))
    response = client.post(
        "/reauthenticate/passkey", data={"credential": json.dumps(assertion), "next": next_path}
    )
    assert response.get_json() == {"redirect": next_path}


class Browser:
    """A minimal cookie-keeping client over real HTTP (no redirects followed)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies: dict[str, str] = {}
        self.lock = threading.Lock()

    def request(self, path: str, data: dict[str, str] | None = None) -> tuple[int, str, str]:
        with self.lock:
            cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.base + path, data=body, headers={"Cookie": cookie})
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            response = opener.open(request, timeout=60)
        except urllib.error.HTTPError as error:
            response = error
        with self.lock:
            for header in response.headers.get_all("Set-Cookie") or []:
                name, _, rest = header.partition("=")
                self.cookies[name] = rest.split(";", 1)[0]
        return response.status, response.headers.get("Location", ""), response.read().decode()

    def new_invoice_form(self) -> dict[str, str]:
        _, _, html = self.request("/invoices/new")
        fields = dict(
            re.findall(r'name="(csrf_token|creation_key)" type="hidden" value="([^"]+)"', html)
        )
        assert set(fields) == {"csrf_token", "creation_key"}, html[:300]
        return {**VALID_INVOICE_FORM, **fields}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def signed_in_browser(base: str, email: str) -> Browser:
    browser = Browser(base)
    _, _, html = browser.request("/sign-in")
    form = {"email": email, "password": PASSWORD}
    # The form holds a CSRF token only where the server checks one (a server with CSRF off,
    # like conftest's shared race servers, renders none); a missing one fails the sign-in.
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html)
    if token:
        form["csrf_token"] = token.group(1)
    status, _, _ = browser.request("/sign-in", form)
    assert status == 303
    return browser


# One row of the explainer page: the action and the status it would get.
EXPLAINER_ROW = re.compile(r'<tr data-action="([a-z_.]+)" data-status="([a-z0-9-]+)">')


def traces_of(page: str) -> dict[str, str]:
    return dict(EXPLAINER_ROW.findall(page))


def real_status(response: object) -> str:
    """What a request got, in the words of explain(): 200, 403, 404, re-authenticate…"""
    code = response.status_code  # type: ignore[attr-defined]
    location = response.headers.get("Location", "")  # type: ignore[attr-defined]
    if code == 302 and location.startswith("/reauthenticate"):
        return "re-authenticate"
    if code in (200, 303):
        return "200"
    return str(code)


def browser_sign_in(page: Any, base: str, email: str) -> None:
    page.goto(base + "/sign-in")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("main button[type=submit]")
    # The click starts a navigation; wait for it, or the next check may read the old page.
    page.wait_for_url(lambda url: "/sign-in" not in url)


# Races: how many times each race is run against the live server, per engine.
ROUNDS = 30


def signed_in_session(base: str, email: str) -> requests.Session:
    client = requests.Session()
    response = client.post(
        base + "/sign-in",
        data={"email": email, "password": PASSWORD},
        allow_redirects=False,
        timeout=30,
    )
    assert response.status_code == 303
    return client


def sent_invoice(app: Flask) -> str:
    """A fresh sent Acme invoice: one that either action may start from."""
    with app.extensions["db_sessionmaker"]() as db:
        acme = db.scalar(select(Organization).where(Organization.slug == "acme"))
        ada = db.scalar(select(User).where(User.email == "ada@acme.test"))
        assert acme is not None and ada is not None
        today = date.today()
        row = Invoice(
            public_id=new_public_id(),
            organization_id=acme.id,
            number=allocate_invoice_number(db, acme.id),
            customer="Race Condition Ltd",
            amount_minor=10_000,
            currency="EUR",
            status=InvoiceStatus.SENT.value,
            issue_date=today,
            due_date=today + timedelta(days=30),
            created_by_id=ada.id,
        )
        db.add(row)
        db.commit()
        return row.public_id


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A throwaway certificate and key for localhost and 127.0.0.1, valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@contextmanager
def statements_run(app: Flask) -> Iterator[list[str]]:
    """The SQL of every statement the app sends while the block runs."""
    seen: list[str] = []

    def note(_connection: object, _cursor: object, statement: str, *_: object) -> None:
        seen.append(" ".join(statement.split()))

    engine = app.extensions["db_engine"]
    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


def drop_the_pooled_connection(app: Flask) -> None:
    """What a database restart does to a pooled PostgreSQL connection: the server ends it."""
    engine = app.extensions["db_engine"]
    with engine.connect() as connection:  # the pooled connection the last request used
        pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
    admin = create_engine(engine.url, poolclass=pool.NullPool)
    with admin.begin() as connection:
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    admin.dispose()


def calls_of(
    monkeypatch: Any,
    owner: Any,
    name: str,
    keep: Callable[[tuple[Any, ...]], Any] = lambda arguments: arguments,
) -> list[Any]:
    """Every call of ``owner.name`` from now until the test ends, as ``keep`` makes it of the
    call's positional arguments (all of them by default); the calls still happen. For tests
    that prove a cost is no longer paid: a token signed, a URL built, a key looked up."""
    calls: list[Any] = []
    real = getattr(owner, name)

    def recording(*args: Any, **kwargs: Any) -> Any:
        calls.append(keep(args))
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, recording)
    return calls


def arguments_given(monkeypatch: Any, owner: Any, method: str) -> list[object]:
    """The first argument (after ``self``) of every call of the method ``owner.method``."""
    return calls_of(monkeypatch, owner, method, keep=lambda arguments: arguments[1])


def keys_chainmaps_are_asked(monkeypatch: Any, method: str) -> list[object]:
    """The keys every ChainMap is asked through ``method`` ("__getitem__", "__contains__")
    from now until the test ends: Jinja reads template globals through ChainMaps, one
    Python call per key, which the template tests prove it no longer does."""
    from collections import ChainMap

    return arguments_given(monkeypatch, ChainMap, method)
