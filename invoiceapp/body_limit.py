"""MAX_CONTENT_LENGTH for bodies sent without a Content-Length (chunked transfer).

Werkzeug stops reading such a body at the limit and hands on what it read, so an
oversized chunked form was silently truncated and then processed. This middleware
reads the body first: over the limit is a 413 and nothing runs; under it, the app
sees an ordinary body with a Content-Length.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.exceptions import RequestEntityTooLarge

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
                return RequestEntityTooLarge()(environ, start_response)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            environ.pop("HTTP_TRANSFER_ENCODING", None)
            environ["wsgi.input_terminated"] = False
        return self.app(environ, start_response)
