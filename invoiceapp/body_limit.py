"""MAX_CONTENT_LENGTH for bodies sent without a Content-Length (chunked transfer).

Werkzeug stops reading such a body at the limit and hands on what it read, so an
oversized chunked form was silently truncated and then processed. This middleware
reads the body first: over the limit is a 413 and nothing runs; under it, the app
sees an ordinary body with a Content-Length.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response


def _too_large(environ: dict[str, Any]) -> Any:
    """The API answers in its own JSON shape; pages get Werkzeug's plain 413."""
    if environ.get("PATH_INFO", "").startswith("/api/"):
        body = json.dumps(
            {"error": {"code": "too_large", "message": "The request body is too large."}}
        )
        return Response(body, status=413, mimetype="application/json")
    return RequestEntityTooLarge()


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ChunkedBodyLimit:
    def __init__(self, app: WSGIApp, max_bytes: Callable[[], int | None]) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        limit = self.max_bytes()
        if chunked and not environ.get("CONTENT_LENGTH") and limit is not None:
            body = environ["wsgi.input"].read(limit + 1)
            if len(body) > limit:
                return _too_large(environ)(environ, start_response)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            environ.pop("HTTP_TRANSFER_ENCODING", None)
            environ["wsgi.input_terminated"] = False
        return self.app(environ, start_response)
