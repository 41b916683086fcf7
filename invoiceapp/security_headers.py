"""Response headers that keep pages from being framed, sniffed, leaked or cached."""

from __future__ import annotations

from flask import Flask, Response, current_app, g

# Everything the pages load comes from this origin; no inline scripts exist.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


# Powerful browser features this app never uses are switched off for its pages.
PERMISSIONS_POLICY = (
    "camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()"
)


def _add_security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    response.headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
    if current_app.config["AUTH_COOKIE_SECURE"]:
        # Once seen over HTTPS, browsers refuse plain HTTP to this host and its subdomains
        # for a year (OWASP): a plain-HTTP subdomain could otherwise set cookies for it.
        response.headers.setdefault(
            "Strict-Transport-Security", "max-age=31536000; includeSubDomains"
        )
    if g.get("auth_session") is not None or g.get("auth_cookie") is not None:
        # Pages for a signed-in user must not be kept by shared or back-button caches.
        response.headers["Cache-Control"] = "no-store"
    return response


def init_security_headers(app: Flask) -> None:
    app.after_request(_add_security_headers)
