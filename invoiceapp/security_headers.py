"""Response headers that keep pages from being framed, sniffed, leaked or cached."""

from __future__ import annotations

from flask import Flask, Response

from .request_locals import request_g, this_app

# Everything the pages load comes from this origin; no inline scripts exist.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


# Powerful browser features this app never uses are switched off for its pages.
PERMISSIONS_POLICY = (
    "camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()"
)


# Every answer's headers, built once. Each is added only where the view set none of its
# own; HSTS only where the app is served over HTTPS (AUTH_COOKIE_SECURE).
EVERY_ANSWER: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Permissions-Policy", PERMISSIONS_POLICY),
)
# Once seen over HTTPS, browsers refuse plain HTTP to this host and its subdomains for a
# year (OWASP): a plain-HTTP subdomain could otherwise set cookies for it.
HSTS = ("Strict-Transport-Security", "max-age=31536000; includeSubDomains")


def _add_security_headers(response: Response) -> Response:
    headers = response.headers
    # One pass over what the view set, instead of one search per header added.
    present = {name.lower() for name, _ in headers.items()}
    for name, value in EVERY_ANSWER:
        if name.lower() not in present:
            headers.add(name, value)
    if this_app().config["AUTH_COOKIE_SECURE"] and "strict-transport-security" not in present:
        headers.add(*HSTS)
    request_globals = request_g()  # without the proxies (invoiceapp.request_locals)
    if (
        request_globals.get("auth_session") is not None
        or request_globals.get("auth_cookie") is not None
    ):
        # Pages for a signed-in user must not be kept by shared or back-button caches.
        headers["Cache-Control"] = "no-store"
    return response


def init_security_headers(app: Flask) -> None:
    app.after_request(_add_security_headers)
