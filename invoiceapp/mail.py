"""Outgoing mail: views call send_mail(); a backend chosen by MAIL_BACKEND delivers it.

- "file" (the default) writes each message as one RFC 5322 ``.eml`` file into
  MAIL_OUTBOX_DIR. The demo shows them at /dev/mail; tests read them with
  read_outbox().
- "smtp" hands the message to a mail server (the MAIL_SMTP_* settings).

Two rules the rest of the app relies on:

- Links in mail are built from BASE_URL only, never from the request's Host header.
  Whoever sends the request chooses that header, so a reset link built from it
  could carry the token to an attacker's site (password-reset poisoning).
- send_mail() never raises because delivery failed. A mail server being down must
  not undo the sign-up or the reset the person asked for; it is logged instead,
  without the body, whose links carry tokens.
"""

from __future__ import annotations

import email.policy
import os
import re
import secrets
import smtplib
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, make_msgid, parseaddr, parsedate_to_datetime
from pathlib import Path
from typing import Any

from flask import current_app
from jinja2 import TemplateNotFound
from markupsafe import Markup, escape

# Only http(s) URLs become links; punctuation that ends a sentence is not part of them.
URL = re.compile(r"https?://[^\s<>\"'`]+")
TRAILING_PUNCTUATION = ".,;:!?)]}"
# Outbox file names: a UTC time to the microsecond, then randomness; sorting them sorts by time.
MAIL_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]*")


# ---------------------------------------------------------------------------
# What the app calls
# ---------------------------------------------------------------------------


def absolute_url(path: str) -> str:
    """BASE_URL + path: the one way to build a link that leaves the site in a mail."""
    if not path.startswith("/"):
        raise ValueError(f"absolute_url() wants a path starting with '/', got {path!r}")
    return current_app.config["BASE_URL"].rstrip("/") + path


def link_for(endpoint: str, **values: Any) -> str:
    """BASE_URL + the path of ``endpoint``: a link for a mail, built as url_for builds it.

    A renamed route fails here (BuildError), not as a dead link in someone's inbox. It
    needs no request (the forgot-password mail is sent by a background job) and never
    reads the Host header, which whoever sends the request chooses.
    """
    return absolute_url(current_app.url_map.bind("localhost").build(endpoint, values))


def duration_in_words(seconds: int) -> str:
    """ "2 days", "30 minutes": how long a mailed link works, as people say it."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} seconds"


def send_mail(to: str, subject: str, template: str, **context: Any) -> bool:
    """Render ``templates/mail/<template>.txt`` (and ``.html`` if present) and send it.

    Returns False, after logging a warning, when delivery fails; the caller carries on.
    A missing template or a bad header is a bug and raises like any other.
    """
    message = build_message(to, subject, template, **context)
    deliver = BACKENDS.get(current_app.config["MAIL_BACKEND"])
    if deliver is None:
        raise ValueError(f"MAIL_BACKEND must be one of {sorted(BACKENDS)}")
    try:
        deliver(message)
    except Exception as error:  # any delivery failure, by design (see the module docstring)
        # The domain and the error class help whoever runs the server; the address,
        # the body and the error text (servers echo what they refused) stay out.
        domain = parseaddr(to)[1].rpartition("@")[2]
        current_app.logger.warning(
            "mail to a recipient at %r was not sent: %s", domain, type(error).__name__
        )
        return False
    return True


def build_message(to: str, subject: str, template: str, **context: Any) -> EmailMessage:
    """The whole message, plain text first and HTML as the alternative."""
    context["base_url"] = current_app.config["BASE_URL"].rstrip("/")  # a caller cannot swap it
    context["subject"] = subject
    text = _render(f"mail/{template}.txt", context)
    try:
        html = _render(f"mail/{template}.html", context)
    except TemplateNotFound as missing:
        if missing.name != f"mail/{template}.html":
            raise  # the HTML template exists but includes something that does not
        html = text_to_html_document(text, subject)

    sender = current_app.config["MAIL_FROM"]
    message = EmailMessage(policy=email.policy.SMTP)  # CRLF line ends, as RFC 5322 asks
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    # The sender's domain, not the default socket.getfqdn(), which can wait on DNS.
    message["Message-ID"] = make_msgid(domain=parseaddr(sender)[1].rpartition("@")[2] or None)
    message.set_content(text, cte=_readable_encoding(text))
    message.add_alternative(html, subtype="html", cte=_readable_encoding(html))
    return message


def _render(name: str, context: dict[str, Any]) -> str:
    # The Jinja environment directly, not render_template(): mail templates get no
    # request, session or principal, so nothing in a mail can come from the Host header.
    return current_app.jinja_env.get_template(name).render(context)


def _readable_encoding(body: str) -> str:
    # The library would pick quoted-printable for lines over 78 characters, splitting
    # links with "=" soft breaks; 7bit/8bit keeps them whole in the .eml file.
    return "7bit" if body.isascii() else "8bit"


def linkify(text: str) -> Markup:
    """Escape ``text`` and make every http(s) URL in it a link; nothing else is markup."""
    parts: list[Markup] = []
    position = 0
    for start, end, href in _urls_with_spans(text):
        parts.append(escape(text[position:start]))
        parts.append(Markup('<a href="{0}">{0}</a>').format(href))
        position = end
    parts.append(escape(text[position:]))
    return Markup("").join(parts)


def text_to_html(text: str) -> Markup:
    """Paragraphs and line breaks of a plain-text body, with its links clickable."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    return Markup("\n").join(
        Markup("<p>{}</p>").format(linkify(p).replace("\n", Markup("<br>\n"))) for p in paragraphs
    )


def text_to_html_document(text: str, subject: str) -> str:
    """The HTML alternative for a mail whose template has only a ``.txt``."""
    return str(
        Markup(
            '<!doctype html>\n<html><head><meta charset="utf-8"><title>{}</title></head>\n'
            "<body>\n{}\n</body></html>\n"
        ).format(subject, text_to_html(text))
    )


def _urls_with_spans(text: str) -> list[tuple[int, int, str]]:
    found: list[tuple[int, int, str]] = []
    for match in URL.finditer(text):
        url = match.group().rstrip(TRAILING_PUNCTUATION)
        if url.partition("://")[2]:
            found.append((match.start(), match.start() + len(url), url))
    return found


def find_links(text: str) -> list[str]:
    """The absolute http(s) URLs in a text, in order, each once."""
    return list(dict.fromkeys(url for _, _, url in _urls_with_spans(text)))


# ---------------------------------------------------------------------------
# Backends: each takes a finished message and raises if it could not deliver it
# ---------------------------------------------------------------------------


def deliver_to_outbox(message: EmailMessage) -> None:
    """Write the message as ``<UTC time>-<random>.eml``, readable by this user only."""
    directory = Path(current_app.config["MAIL_OUTBOX_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    target = directory / f"{stamp}-{secrets.token_hex(4)}.eml"
    # A temporary file (mode 0600, and not *.eml) renamed into place: a reader never
    # sees half a message.
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(bytes(message))
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def deliver_by_smtp(message: EmailMessage) -> None:
    """Hand the message to the configured SMTP server, over STARTTLS unless told not to."""
    config = current_app.config
    timeout = config["MAIL_SMTP_TIMEOUT_SECONDS"]
    with smtplib.SMTP(config["MAIL_SMTP_HOST"], config["MAIL_SMTP_PORT"], timeout=timeout) as smtp:
        if config["MAIL_SMTP_STARTTLS"]:
            smtp.starttls(context=ssl.create_default_context())  # checks the certificate
        if config["MAIL_SMTP_USERNAME"]:
            smtp.login(config["MAIL_SMTP_USERNAME"], config["MAIL_SMTP_PASSWORD"] or "")
        smtp.send_message(message)
    # Leaving the "with" block sends QUIT and closes the connection, also after an error.


BACKENDS: dict[str, Callable[[EmailMessage], None]] = {
    "file": deliver_to_outbox,
    "smtp": deliver_by_smtp,
}


# ---------------------------------------------------------------------------
# Reading the outbox (the /dev/mail viewer, and tests)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredMail:
    id: str  # the file name without ".eml"; what /dev/mail/<id> shows
    sent_at: datetime
    sender: str
    to: str
    subject: str
    text: str
    html: str
    links: list[str]  # absolute http(s) URLs in the plain-text body


def read_outbox(directory: str | Path, limit: int | None = None) -> list[StoredMail]:
    """Messages in the outbox, newest first (the file names sort by time)."""
    paths = sorted(Path(directory).glob("*.eml"), key=lambda path: path.name, reverse=True)
    mails = (_read(path) for path in paths[:limit])
    return [mail for mail in mails if mail is not None]


def read_mail(directory: str | Path, mail_id: str) -> StoredMail | None:
    """One message by its id, or None. Only a plain file name in ``directory`` is
    accepted, so an id like ``../../instance/secret_key`` reads nothing."""
    if not MAIL_ID.fullmatch(mail_id):
        return None
    folder = Path(directory).resolve()
    path = (folder / f"{mail_id}.eml").resolve()
    if path.parent != folder:  # e.g. a symbolic link pointing out of the outbox
        return None
    return _read(path)


def _read(path: Path) -> StoredMail | None:
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return None
    message = BytesParser(policy=email.policy.default).parsebytes(raw)
    text = _body(message, "plain")
    return StoredMail(
        id=path.stem,
        sent_at=_sent_at(message, path),
        sender=str(message["From"] or ""),
        to=str(message["To"] or ""),
        subject=str(message["Subject"] or ""),
        text=text,
        html=_body(message, "html"),
        links=find_links(text),
    )


def _body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    if part is None:
        return ""
    return part.get_content().replace("\r\n", "\n")  # the file has CRLF line ends


def _sent_at(message: EmailMessage, path: Path) -> datetime:
    try:
        return parsedate_to_datetime(str(message["Date"])).astimezone(UTC)
    except (TypeError, ValueError):
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
