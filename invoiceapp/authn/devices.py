"""Device cookies (OWASP): a stranger guessing passwords cannot lock the owner out.

A browser that signed in to an account successfully gets a signed cookie naming that
account. Failed sign-ins are counted per account *and per kind of client*: browsers
holding a valid device cookie for the account each have their own count, everybody
else shares one. An attacker exhausts the shared count and is held back; the owner's
browser still signs in.
"""

from __future__ import annotations

import hashlib
import secrets

from flask import current_app, request
from itsdangerous import BadSignature, URLSafeSerializer
from werkzeug.wrappers import Response

DEVICE_COOKIE_MAX_AGE = 180 * 24 * 60 * 60


def _cookie_name() -> str:
    prefix = "__Host-" if current_app.config["AUTH_COOKIE_SECURE"] else ""
    return prefix + "invoiceapp_device"


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="device-cookie")


def _account_digest(email: str) -> str:
    """The cookie is signed, not encrypted: it names the account by a digest only."""
    return hashlib.sha256(email.encode()).hexdigest()[:32]


def trusted_device_for(email: str) -> str | None:
    """This browser's device id when it holds a valid device cookie for ``email``."""
    raw = request.cookies.get(_cookie_name())
    if not raw or len(raw) > 512:
        return None
    try:
        content = _serializer().loads(raw)
    except BadSignature:
        return None
    if not isinstance(content, dict) or content.get("account") != _account_digest(email):
        return None
    nonce = content.get("nonce")
    return nonce if isinstance(nonce, str) else None


def issue_device_cookie(response: Response, email: str) -> None:
    """After a successful sign-in: this browser is now a known device for the account."""
    value = _serializer().dumps(
        {"account": _account_digest(email), "nonce": secrets.token_urlsafe(12)}
    )
    response.set_cookie(
        _cookie_name(),
        value,
        max_age=DEVICE_COOKIE_MAX_AGE,
        secure=current_app.config["AUTH_COOKIE_SECURE"],
        httponly=True,
        samesite="Lax",
    )


def trust_browser_after_reset(response: Response, email: str) -> None:
    """A completed password reset proves the mailbox, which is more than a password does:
    the browser that did it becomes a known device for the account. Strangers who used up
    the shared count of failures cannot then keep the owner out of their own account."""
    issue_device_cookie(response, email)
