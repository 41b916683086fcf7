"""MAX_CONTENT_LENGTH for bodies sent without a Content-Length (chunked transfer).

Werkzeug stops reading such a body at the limit and hands on what it read, so an
oversized chunked form was silently truncated and then processed. This middleware
reads the body first: under the limit, the app sees an ordinary body with a
Content-Length; over it, the app sees an empty body and a mark, and the first of its
before-request functions (``refuse_oversized_body``) answers 413 before anything else
runs. The 413 is then an ordinary Flask error: the API's JSON, the site's page, and
the same security and cache headers as every other answer.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

TOO_LARGE = "invoiceapp.body_too_large"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ChunkedBodyLimit:
    def __init__(self, app: WSGIApp, max_bytes: Callable[[], int | None]) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        # The limit (a config look-up) only for the rare chunked body, not every request.
        limit = self.max_bytes() if chunked else None
        if chunked and not environ.get("CONTENT_LENGTH") and limit is not None:
            body = environ["wsgi.input"].read(limit + 1)
            if len(body) > limit:
                environ[TOO_LARGE] = True
                body = b""  # nothing of it reaches a view, even one that forgets to check
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            environ.pop("HTTP_TRANSFER_ENCODING", None)
            environ["wsgi.input_terminated"] = False
        return self.app(environ, start_response)


def refuse_oversized_body() -> None:
    """Registered before every other before-request function (create_app)."""
    if request.environ.get(TOO_LARGE):
        raise RequestEntityTooLarge()
