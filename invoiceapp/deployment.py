"""Settings a deployment gets from BASE_URL, and start-up refusals of what would fail its users.

A deployment states its public address once, in BASE_URL. Passkeys belong to that address
too, so WEBAUTHN_RP_ID and WEBAUTHN_ORIGIN follow it unless set; set to something else, the
app would tell real users that their passkeys live on another site, so it refuses to start.
Mail written to files on the server reaches nobody: a server people reach over HTTPS (its
BASE_URL) refuses the ``file`` backend unless MAIL_FILE_BACKEND_ALLOWED says that is really
wanted. On a plain-HTTP BASE_URL (CONTRACT §2's default, a loopback check or a rehearsal)
the contract's ``gunicorn "invoiceapp:create_app()"`` starts with its default ``file`` mail,
and /readyz says the mail stays on the server.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

import click

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str:
    """``scheme://host[:port]``, lowercase, without a default port: how browsers compare."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    return (
        f"{scheme}://{host}"
        if port in (None, DEFAULT_PORTS.get(scheme))
        else (f"{scheme}://{host}:{port}")
    )


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _passkey_origin_for(base_url: str) -> str:
    """BASE_URL's origin; a loopback or IP address becomes ``localhost`` on the same port,
    since passkeys belong to a domain name, never to an IP address (the demo's case)."""
    origin = origin_of(base_url)
    host = (urlsplit(base_url).hostname or "").lower()
    if _is_ip_address(host):
        port = urlsplit(origin).port
        scheme = urlsplit(origin).scheme
        return f"{scheme}://localhost" + (f":{port}" if port else "")
    return origin


def derive_passkey_settings(config: dict[str, Any]) -> str | None:
    """Fill in WEBAUTHN_ORIGIN and WEBAUTHN_RP_ID from BASE_URL when unset.

    Returns what is wrong when set values disagree with BASE_URL (the caller refuses to
    start), else None.
    """
    base_url = config["BASE_URL"]
    if not config.get("WEBAUTHN_ORIGIN"):
        config["WEBAUTHN_ORIGIN"] = _passkey_origin_for(base_url)
    origin = origin_of(config["WEBAUTHN_ORIGIN"])
    origin_host = urlsplit(origin).hostname or ""
    if not config.get("WEBAUTHN_RP_ID"):
        config["WEBAUTHN_RP_ID"] = origin_host
    rp_id = config["WEBAUTHN_RP_ID"].lower()

    allowed = {origin_of(base_url), _passkey_origin_for(base_url)}
    if origin not in allowed:
        return (
            f"WEBAUTHN_ORIGIN is {config['WEBAUTHN_ORIGIN']!r} but BASE_URL is {base_url!r}: "
            "passkeys would belong to another site than the one users open. Unset "
            "FLASK_WEBAUTHN_ORIGIN (it follows BASE_URL) or make the two agree."
        )
    if rp_id != origin_host and not origin_host.endswith("." + rp_id):
        return (
            f"WEBAUTHN_RP_ID {rp_id!r} is neither the host of WEBAUTHN_ORIGIN ({origin!r}) nor "
            "a domain it belongs to, so browsers would refuse every passkey. Unset "
            "FLASK_WEBAUTHN_RP_ID (it follows BASE_URL) or make the two agree."
        )
    # Spelled as browsers report them ("https://x.example", no slash), for the exact
    # comparison the passkey check makes.
    config["WEBAUTHN_ORIGIN"], config["WEBAUTHN_RP_ID"] = origin, rp_id
    return None


def serving() -> bool:
    """True when the app is loaded to answer requests: by a WSGI server (gunicorn: no
    ``flask`` command around it) or by ``flask run``. Other ``flask`` commands (policy,
    prune-sessions) send no mail and may run with any mail settings."""
    from flask.cli import run_command

    context = click.get_current_context(silent=True)
    return context is None or context.command is run_command


def undelivered_mail_problem(config: dict[str, Any], development: bool) -> str | None:
    """Outside development the ``file`` backend keeps mail on the server, where nobody
    reads it, while pages tell people to check their inbox: say so, unless allowed. Only
    where people are served (an https BASE_URL): CONTRACT §2 makes ``file`` the default."""
    if development or config["MAIL_BACKEND"] != "file" or config["MAIL_FILE_BACKEND_ALLOWED"]:
        return None
    if not str(config["BASE_URL"]).lower().startswith("https://"):
        return None
    return (
        "MAIL_BACKEND is 'file': mail would be written to files on this server and nobody "
        "would receive it. Set FLASK_MAIL_BACKEND=smtp and the FLASK_MAIL_SMTP_* settings, "
        "or FLASK_MAIL_FILE_BACKEND_ALLOWED=true if files really are what you want."
    )


def mail_stays_on_the_server(config: dict[str, Any], development: bool) -> bool:
    """Allowed explicitly, outside development: /readyz says so to whoever deploys."""
    return not development and config["MAIL_BACKEND"] == "file"
