"""Health checks answer whatever Host a request names.

Every other request naming a host outside TRUSTED_HOSTS gets a 400, so no link or redirect
is ever built from an attacker's Host header. Load balancers and orchestrators, though,
probe ``/healthz`` and ``/readyz`` by IP address (``Host: 10.0.0.5:8000``). Those two build
no links and reveal nothing that depends on the host, so for them alone the Host header is
replaced by the first trusted host before Flask checks it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

HEALTH_PATHS = frozenset({"/healthz", "/readyz"})

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class HealthChecksForAnyHost:
    def __init__(self, app: WSGIApp, trusted_hosts: Callable[[], list[str] | None]) -> None:
        self.app = app
        self.trusted_hosts = trusted_hosts

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO") in HEALTH_PATHS:  # the path first: one config look-up less
            hosts = self.trusted_hosts()
            if hosts:
                environ["HTTP_HOST"] = hosts[0]
                environ.pop("HTTP_X_FORWARDED_HOST", None)
        return self.app(environ, start_response)
