"""What the application log may say about a request, and how it is kept one line per event.

Two rules (OWASP Logging Cheat Sheet):

- A log line names the route's rule (``/reset-password/<path:token>``), never the path
  that was asked for: for a mailed link the path *is* the secret, and a log is read by
  more people, and kept longer, than the token is meant to live.
- Whatever a client sent may hold control characters. A newline would forge a second
  log line, an escape sequence would repaint the operator's terminal, so every message
  is written with them escaped (``\\n``, ``\\x1b``).
"""

from __future__ import annotations

import logging

from flask import Flask, has_request_context, request

# Newlines separate the lines of a traceback, which the formatter writes after the
# message; every other control character is escaped there too.
_KEEP_IN_TRACEBACKS = frozenset("\n")


def escape_control_characters(text: str, keep: frozenset[str] = frozenset()) -> str:
    """``text`` with every control character written as an escape sequence, so it prints
    as one harmless line. Characters in ``keep`` stay as they are."""
    return "".join(
        char if char in keep or char.isprintable() else char.encode("unicode_escape").decode()
        for char in text
    )


def route_for_log() -> str:
    """Where a request went, as the log says it: the matched rule, or that none matched."""
    if not has_request_context():
        return "(no request)"
    rule = request.url_rule
    return rule.rule if rule is not None else "(no matching route)"


class EscapeControlCharacters(logging.Filter):
    """Formats each record's message once, with control characters escaped, before any
    handler sees it; a traceback keeps its line breaks and loses everything else."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = escape_control_characters(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = escape_control_characters(record.exc_text, _KEEP_IN_TRACEBACKS)
        return True


def init_logging(app: Flask) -> None:
    """Every record the app logs passes the filter, whichever handler writes it."""
    app.logger.addFilter(EscapeControlCharacters())
