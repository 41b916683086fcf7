"""Configuration defaults; every key can be overridden by a ``FLASK_<KEY>`` variable."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

import click
from flask import Flask

from .authn.passwords import profile_too_weak
from .deployment import (
    derive_passkey_settings,
    mail_stays_on_the_server,
    serving,
    undelivered_mail_problem,
)


class Defaults:
    """Documented defaults (README, "Configuration"). Times are in seconds."""

    DEMO_MODE = False

    # Elevated session: how long after a password entry sensitive actions are allowed.
    FRESH_AGE_SECONDS = 600

    # Server-side session lifetimes (OWASP session management: idle and absolute).
    SESSION_IDLE_SECONDS = 30 * 60
    SESSION_ABSOLUTE_SECONDS = 8 * 60 * 60
    # "Keep me signed in" stretches only these; it never makes a session elevated.
    REMEMBER_IDLE_SECONDS = 14 * 24 * 60 * 60
    REMEMBER_ABSOLUTE_SECONDS = 30 * 24 * 60 * 60
    # last_seen_at is written at most this often, so reads do not turn into writes.
    SESSION_TOUCH_SECONDS = 60
    # None: "__Host-invoiceapp_sid" when cookies are Secure (the browser then refuses it
    # from subdomains and over HTTP), plain "invoiceapp_sid" in development.
    AUTH_COOKIE_NAME = None

    # Flask's own signed cookie only carries the CSRF token and flash messages.
    SESSION_COOKIE_NAME = "invoiceapp_flash"
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    # None means "decide from the environment": Secure everywhere but development.
    SESSION_COOKIE_SECURE = None
    AUTH_COOKIE_SECURE = None

    # argon2-cffi profile name (argon2.profiles); RFC 9106 low-memory is the library's default.
    PASSWORD_HASH_PROFILE = "RFC_9106_LOW_MEMORY"

    # Flask-WTF: the CSRF check is run by invoiceapp.gates, after the authentication gate.
    WTF_CSRF_CHECK_DEFAULT = False
    # WTF_CSRF_TIME_LIMIT: unset means SESSION_IDLE_SECONDS, so a form lives as long as an
    # idle session (a stale one comes back filled in: invoiceapp/stale_forms.py).

    MAX_CONTENT_LENGTH = 256 * 1024
    INVOICES_PER_PAGE = 25

    RATELIMIT_STORAGE_URI = "memory://"
    RATELIMIT_ENABLED = True
    # When Redis is down, each worker counts in its own memory meanwhile: limits still
    # hold (per worker, so looser), and nothing answers 500. Found by `make load`.
    RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True
    RATELIMIT_HEADERS_ENABLED = True
    # Flask-Limiter would put Retry-After on every limited response, a 200 or a 404 too;
    # its own copy gets this name, and Retry-After stays on 429s and 503s (errors.py).
    RATELIMIT_HEADER_RETRY_AFTER = "X-RateLimit-Retry-After"
    # Per client address, and per account (only failed attempts count there), against
    # guessing from one machine and credential stuffing from many.
    SIGN_IN_RATE_LIMIT = "10 per minute"
    SIGN_IN_ACCOUNT_RATE_LIMIT = "20 per hour"
    # Before that hard limit, a growing delay (invoiceapp.authn.counters): from the 10th
    # failure for an account in 15 minutes, each attempt waits 1, 2, 4 … seconds (at most
    # 60). It slows guessing down and locks nobody out.
    SIGN_IN_SLOWDOWN_AFTER = 10
    SIGN_IN_SLOWDOWN_WINDOW_SECONDS = 15 * 60
    SIGN_IN_SLOWDOWN_MAX_SECONDS = 60
    # How many reverse proxies in front of the app set X-Forwarded-For/-Proto. 0 trusts none.
    TRUSTED_PROXY_HOPS = 0
    # Re-authentication: wrong passwords per account (any session), and how many wrong
    # passwords one session may type before it is revoked (a stolen cookie cannot guess).
    REAUTH_ACCOUNT_RATE_LIMIT = "10 per hour"
    REAUTH_MAX_FAILURES = 5
    # Accounts (per client address unless named otherwise).
    SIGN_UP_RATE_LIMIT = "10 per hour"
    FORGOT_PASSWORD_RATE_LIMIT = "10 per hour"
    FORGOT_PASSWORD_EMAIL_RATE_LIMIT = "3 per hour"  # per address asked about
    VERIFY_RESEND_RATE_LIMIT = "3 per hour"  # per account
    EMAIL_CHANGE_RATE_LIMIT = "5 per hour"  # per account
    # Audit log: repeated refusals of one actor, for one action, in one organization within
    # this window are one record with a count (invoiceapp.audit), not one each.
    AUDIT_REPEAT_WINDOW_SECONDS = 10 * 60

    # SQLite waits this long for another writer's lock before the request gets a 503.
    SQLITE_BUSY_TIMEOUT_SECONDS = 5.0
    # What a 503 tells clients to wait when the database is busy or unreachable.
    DATABASE_RETRY_AFTER_SECONDS = 5

    # Mail (invoiceapp.mail). Links in mail are built from BASE_URL only, never from Host.
    BASE_URL = "http://127.0.0.1:5000"
    MAIL_BACKEND = "file"  # "file": .eml files in MAIL_OUTBOX_DIR; "smtp": the keys below
    # Outside development a server refuses the "file" backend (nobody would get the mail)
    # unless this says files are really wanted; /readyz then says that mail stays here.
    MAIL_FILE_BACKEND_ALLOWED = False
    MAIL_FROM = "InvoiceApp <no-reply@invoiceapp.test>"
    MAIL_SMTP_HOST = "localhost"
    MAIL_SMTP_PORT = 587
    MAIL_SMTP_STARTTLS = True
    MAIL_SMTP_USERNAME: str | None = None
    MAIL_SMTP_PASSWORD: str | None = None
    MAIL_SMTP_TIMEOUT_SECONDS = 10

    # Accounts: passwords (NIST SP 800-63B) and the lifetimes of the links mail carries.
    PASSWORD_MIN_LENGTH = 15
    PASSWORD_MAX_LENGTH = 256
    PASSWORD_MIN_STRENGTH = 3  # zxcvbn score, 0 to 4
    VERIFY_EMAIL_SECONDS = 2 * 24 * 60 * 60
    RESET_TOKEN_SECONDS = 30 * 60
    EMAIL_CHANGE_SECONDS = 24 * 60 * 60
    INVITATION_SECONDS = 7 * 24 * 60 * 60
    # Sign-in by mail (invoiceapp.authn.email_codes, magic_links): a code or a link lives
    # this long, a code takes this many wrong tries; requests are limited per client and
    # per address asked about (mail is sent only to verified addresses).
    EMAIL_SIGN_IN_SECONDS = 10 * 60
    EMAIL_CODE_MAX_TRIES = 5
    EMAIL_SIGN_IN_RATE_LIMIT = "10 per hour"
    EMAIL_SIGN_IN_EMAIL_RATE_LIMIT = "5 per hour"

    # Work done after the answer is sent (invoiceapp.background): "threads", a small pool
    # per process, so the request worker is free at once; "inline" runs it in the worker
    # as the response closes (the tests, which then know it is done).
    BACKGROUND_JOBS = "threads"
    BACKGROUND_THREADS = 2

    # Second factors (invoiceapp.authn: totp, passkeys, second_factor).
    # Root key for TOTP secrets at rest and recovery-code hashes. Unset: SECRET_KEY.
    # Set it to rotate SECRET_KEY without losing everybody's authenticator.
    TOTP_ENCRYPTION_KEY: str | None = None
    # How long a right password waits for its second factor at /sign-in/two-factor.
    TWO_FACTOR_PENDING_SECONDS = 300
    # Wrong codes per account at the second step (whatever the address); the per-address
    # limit is SIGN_IN_RATE_LIMIT.
    TWO_FACTOR_ACCOUNT_RATE_LIMIT = "10 per hour"
    # Wrong codes in a row before the account's authenticator codes stop working, until
    # a password reset or a recovery code (NIST SP 800-63B allows at most 100).
    TWO_FACTOR_MAX_FAILURES = 100
    # WebAuthn: passkeys belong to a domain name (never an IP address). None: from
    # BASE_URL (invoiceapp.deployment); an IP address there becomes localhost, so the demo
    # on 127.0.0.1:5000 has its passkeys on http://localhost:5000. Set to something that
    # disagrees with BASE_URL, the app refuses to start.
    WEBAUTHN_RP_ID: str | None = None
    WEBAUTHN_ORIGIN: str | None = None
    WEBAUTHN_RP_NAME = "InvoiceApp"
    WEBAUTHN_CHALLENGE_SECONDS = 300
    # Challenges are database rows: anonymous clients may not ask for unlimited ones.
    PASSKEY_OPTIONS_RATE_LIMIT = "30 per minute"
    # A factor added by a session without a second factor is flagged on the security pages
    # and in the password-change mail for this long.
    NEW_FACTOR_NOTICE_DAYS = 7

    # The JSON API (invoiceapp.api): per token (or per signed-in user for cookie
    # requests), and per user across all their tokens and sessions, so ten tokens do not
    # buy ten times more.
    API_RATE_LIMIT = "300 per minute"
    API_USER_RATE_LIMIT = "600 per minute"
    # A token's last_used_at is written at most this often, so reads do not all turn
    # into writes.
    API_TOKEN_TOUCH_SECONDS = 60
    # Personal access tokens per account: at most this many live (neither expired nor
    # revoked) at once, and at most this many made, per account (a scanner once made 357).
    MAX_LIVE_API_TOKENS = 20
    API_TOKEN_CREATE_RATE_LIMIT = "10 per hour"


def load_config(app: Flask, overrides: dict[str, Any] | None) -> None:
    """Defaults, then ``FLASK_*`` environment variables, then explicit overrides (tests)."""
    app.config.from_object(Defaults)
    app.config["MAIL_OUTBOX_DIR"] = str(Path(app.instance_path) / "outbox")
    app.config.from_prefixed_env()
    if overrides:
        app.config.update(overrides)

    app.config.setdefault("WTF_CSRF_TIME_LIMIT", app.config["SESSION_IDLE_SECONDS"])
    app.config.setdefault(
        "DATABASE_URL", f"sqlite:///{Path(app.instance_path) / 'invoiceapp.sqlite3'}"
    )
    # "Development" is the debugger, the demo, the tests or Flask's development server
    # (`flask run`); anything else, gunicorn included, is a deployment.
    development = is_development(app)
    # Cookies travel only over HTTPS outside development.
    for key in ("SESSION_COOKIE_SECURE", "AUTH_COOKIE_SECURE"):
        if app.config[key] is None:
            app.config[key] = not development
    if (
        app.config["SESSION_COOKIE_SECURE"]
        and app.config["SESSION_COOKIE_NAME"] == "invoiceapp_flash"
    ):
        # The cookie holding the CSRF secret gets the same __Host- lock as the session's.
        app.config["SESSION_COOKIE_NAME"] = "__Host-invoiceapp_flash"
    if app.config.get("TRUSTED_HOSTS") is None:
        app.config["TRUSTED_HOSTS"] = _trusted_hosts(app.config["BASE_URL"], development)
    if app.config["AUTH_COOKIE_NAME"] is None:
        secure = app.config["AUTH_COOKIE_SECURE"]
        app.config["AUTH_COOKIE_NAME"] = "__Host-invoiceapp_sid" if secure else "invoiceapp_sid"
    if not app.config.get("SECRET_KEY"):
        if not development and _listing_commands():
            # `flask --help`: the app is built only to list its commands, and signs nothing.
            app.config["SECRET_KEY"] = secrets.token_hex(32)
        elif not development:
            raise ConfigurationError(
                "SECRET_KEY is not set. Set FLASK_SECRET_KEY to a long random value "
                "(python -c 'import secrets; print(secrets.token_hex(32))'), "
                "or run with FLASK_DEBUG=1 / FLASK_DEMO_MODE=true for a generated development key."
            )
        app.config["SECRET_KEY"] = _development_secret_key(Path(app.instance_path))
    weak = profile_too_weak(app.config["PASSWORD_HASH_PROFILE"], testing=app.testing)
    if weak:
        raise ConfigurationError(weak)
    passkeys_elsewhere = derive_passkey_settings(app.config)
    if passkeys_elsewhere:
        raise ConfigurationError(passkeys_elsewhere)


def is_development(app: Flask) -> bool:
    """The debugger, the demo, the tests or Flask's development server (`flask run`)."""
    return bool(app.debug or app.config["DEMO_MODE"] or app.testing or _under_flask_run())


def refuse_undelivered_mail(app: Flask) -> None:
    """A server outside development must send its mail (seed.py and `flask policy` send
    none, so they are not asked)."""
    development = is_development(app)
    problem = undelivered_mail_problem(app.config, development)
    if problem and serving():
        raise ConfigurationError(problem)
    # Decided once, here: /readyz says so when it was allowed outside development.
    app.extensions["mail_stays_on_the_server"] = mail_stays_on_the_server(app.config, development)


def _under_flask_run() -> bool:
    """True while Flask's own `flask run` loads the app to serve it on a loopback address:
    Werkzeug's server is for development only, so it gets a generated key and cookies
    that work over plain HTTP on 127.0.0.1. `flask run --host 0.0.0.0` is not this."""
    from flask.cli import run_command

    context = click.get_current_context(silent=True)
    return (
        context is not None
        and context.command is run_command
        and context.params.get("host") in ("127.0.0.1", "localhost", "::1")
    )


def _listing_commands() -> bool:
    """True while `flask --help` (or a bare `flask`) loads the app to list its commands.

    Flask loads it in FlaskGroup.list_commands, which only help screens and shell
    completion call; running a command (`flask policy`) loads it elsewhere, and still
    needs a real key. The stack is the one place that tells the two apart.
    """
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "list_commands" and frame.f_globals["__name__"] == "flask.cli":
            return True
        frame = frame.f_back
    return False


class ConfigurationError(click.ClickException, RuntimeError):
    """A setting that must be fixed before the app can run: one clear line, no traceback
    (the ``flask`` command prints it as "Error: …")."""


def _trusted_hosts(base_url: str, development: bool) -> list[str]:
    """Requests naming another Host get a 400, so no redirect or link is built from it.

    By default the host of BASE_URL, plus the loopback names in development.
    """
    host = urlsplit(base_url).hostname or "localhost"
    return [host, "localhost", "127.0.0.1"] if development else [host]


def _development_secret_key(instance: Path) -> str:
    """Generate the key once and keep it, so restarts do not sign everybody out."""
    instance.mkdir(parents=True, exist_ok=True)
    key_file = instance / "secret_key"
    if not key_file.exists():
        # Written whole under a temporary name, then linked into place: two processes
        # starting at once never read a half-written key, and the first one wins.
        temporary = instance / f".secret_key.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
        try:
            os.link(temporary, key_file)
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    return key_file.read_text().strip()
