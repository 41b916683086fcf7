"""Mail: the .eml outbox, a real SMTP server, links from BASE_URL only, and /dev/mail.

Every app here writes its outbox under the test's tmp_path, never into instance/.
"""

from __future__ import annotations

import email.policy
import logging
import stat
from collections.abc import Iterator
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from flask import Flask
from jinja2 import ChoiceLoader, DictLoader

from conftest import make_test_app
from invoiceapp.mail import absolute_url, read_mail, read_outbox, send_mail
from support import free_port, latest_mail_to

TOKEN = "tok_3fJ9xQ2mVbL8"


def make_app(database_file: Path, tmp_path: Path, **overrides: Any) -> Flask:
    return make_test_app(database_file, MAIL_OUTBOX_DIR=str(tmp_path / "outbox"), **overrides)


@pytest.fixture()
def mail_app(database_file: Path, tmp_path: Path) -> Iterator[Flask]:
    app = make_app(database_file, tmp_path)
    yield app
    app.extensions["db_engine"].dispose()


@pytest.fixture()
def demo_app(database_file: Path, tmp_path: Path) -> Iterator[Flask]:
    app = make_app(database_file, tmp_path, DEMO_MODE=True)
    yield app
    app.extensions["db_engine"].dispose()


def add_mail_templates(app: Flask, **templates: str) -> None:
    """Templates only this test knows, e.g. a mail with no .html of its own."""
    extra = DictLoader({f"mail/{name}": source for name, source in templates.items()})
    app.jinja_env.loader = ChoiceLoader([extra, app.jinja_env.loader])  # type: ignore[list-item]


def send_example(app: Flask, to: str = "ada@acme.test", path: str = f"/x/{TOKEN}") -> bool:
    with app.app_context():
        return send_mail(to, "Example", "example", name="Ada", path=path)


def outbox_files(app: Flask) -> list[Path]:
    return sorted(Path(app.config["MAIL_OUTBOX_DIR"]).iterdir())


def parse(path: Path) -> EmailMessage:
    return BytesParser(policy=email.policy.default).parsebytes(path.read_bytes())


# --- the file backend -------------------------------------------------------------


def test_file_backend_writes_one_rfc5322_eml_with_text_and_html(mail_app: Flask) -> None:
    assert send_example(mail_app) is True

    [path] = outbox_files(mail_app)  # one file, and no temporary file left behind
    assert path.suffix == ".eml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"\r\n" in path.read_bytes()  # RFC 5322 line ends
    message = parse(path)
    assert message["From"] == mail_app.config["MAIL_FROM"]
    assert message["To"] == "ada@acme.test"
    assert message["Subject"] == "Example"
    assert message["Date"].datetime.tzinfo is not None
    assert message["Message-ID"].endswith("@invoiceapp.test>")
    assert message.get_content_type() == "multipart/alternative"
    link = f"http://127.0.0.1:5000/x/{TOKEN}"
    assert link in message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    assert f'<a href="{link}">' in html


def test_a_long_link_stays_whole_in_the_eml_file(mail_app: Flask) -> None:
    # Quoted-printable would fold it with "=" soft breaks; a person reading the file,
    # or a script grepping it, needs the link on one line.
    long_path = "/reset-password/" + "t" * 90
    send_example(mail_app, path=long_path)
    [path] = outbox_files(mail_app)
    assert f"http://127.0.0.1:5000{long_path}\r\n".encode() in path.read_bytes()


def test_a_mail_without_an_html_template_gets_an_escaped_html_version_with_links(
    mail_app: Flask,
) -> None:
    add_mail_templates(mail_app, **{"plain.txt": "Hi <b>{{ name }}</b> & co:\n{{ link }}.\n"})
    link = f"https://invoices.example.com/reset-password/{TOKEN}?a=1&b=2"
    with mail_app.app_context():
        assert send_mail("ada@acme.test", "Plain <only>", "plain", name="<Ada>", link=link)

    [path] = outbox_files(mail_app)
    html = parse(path).get_body(preferencelist=("html",)).get_content()
    assert "Hi &lt;b&gt;&lt;Ada&gt;&lt;/b&gt; &amp; co:" in html
    assert "<title>Plain &lt;only&gt;</title>" in html
    escaped = link.replace("&", "&amp;")
    assert f'<a href="{escaped}">{escaped}</a>.' in html  # the full stop is not in the link
    assert "<b>" not in html


def test_links_come_from_base_url_even_when_the_host_header_says_otherwise(
    database_file: Path, tmp_path: Path
) -> None:
    app = make_app(database_file, tmp_path, BASE_URL="https://invoices.example.com/")
    with app.test_request_context("/forgot-password", base_url="http://evil.example"):
        assert absolute_url(f"/reset-password/{TOKEN}") == (
            f"https://invoices.example.com/reset-password/{TOKEN}"
        )
        assert send_mail("ada@acme.test", "Reset", "example", name="Ada", path=f"/r/{TOKEN}")
    app.extensions["db_engine"].dispose()

    [path] = outbox_files(app)
    assert b"evil.example" not in path.read_bytes()
    mail = latest_mail_to(app.config["MAIL_OUTBOX_DIR"], "ada@acme.test")
    assert mail is not None
    assert mail.links == [f"https://invoices.example.com/r/{TOKEN}"]


def test_a_failed_outbox_write_returns_false_and_leaves_no_file(
    mail_app: Flask, tmp_path: Path
) -> None:
    blocker = tmp_path / "outbox"
    blocker.write_text("a file where the outbox directory should be")
    assert send_example(mail_app) is False
    assert blocker.is_file()
    assert not list(tmp_path.glob("**/*.tmp"))


def test_absolute_url_refuses_something_that_is_not_a_path(mail_app: Flask) -> None:
    with mail_app.app_context(), pytest.raises(ValueError):
        absolute_url("evil.example/reset")


def test_read_outbox_is_newest_first_and_latest_mail_to_finds_the_newest(mail_app: Flask) -> None:
    send_example(mail_app, "ada@acme.test", "/first")
    send_example(mail_app, "grace@acme.test", "/second")
    send_example(mail_app, "ada@acme.test", "/third")
    outbox = mail_app.config["MAIL_OUTBOX_DIR"]

    assert [mail.to for mail in read_outbox(outbox)] == [
        "ada@acme.test",
        "grace@acme.test",
        "ada@acme.test",
    ]
    newest = latest_mail_to(outbox, "ADA@acme.test")
    assert newest is not None
    assert newest.links == ["http://127.0.0.1:5000/third"]
    assert newest.subject == "Example"
    assert "Hello Ada," in newest.text
    assert 'href="http://127.0.0.1:5000/third"' in newest.html
    assert read_mail(outbox, newest.id) == newest
    assert latest_mail_to(outbox, "nobody@acme.test") is None


def test_read_mail_reads_nothing_outside_the_outbox(mail_app: Flask, tmp_path: Path) -> None:
    send_example(mail_app)
    outbox = Path(mail_app.config["MAIL_OUTBOX_DIR"])
    (tmp_path / "secret.eml").write_bytes(outbox_files(mail_app)[0].read_bytes())
    (outbox / "link.eml").symlink_to(tmp_path / "secret.eml")

    assert read_mail(outbox, "../secret") is None
    assert read_mail(outbox, str(tmp_path / "secret")) is None
    assert read_mail(outbox, "link") is None  # a symbolic link out of the outbox
    assert read_mail(outbox, ".hidden") is None


# --- the SMTP backend ---------------------------------------------------------------


class Collector:
    """An aiosmtpd handler that keeps every message it is given."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


def smtp_settings(port: int) -> dict[str, Any]:
    return {
        "MAIL_BACKEND": "smtp",
        "MAIL_SMTP_HOST": "127.0.0.1",
        "MAIL_SMTP_PORT": port,
        "MAIL_SMTP_STARTTLS": False,  # the test server speaks plain SMTP on loopback
        "MAIL_SMTP_TIMEOUT_SECONDS": 5,
    }


def test_smtp_backend_delivers_to_a_real_smtp_server(database_file: Path, tmp_path: Path) -> None:
    collector = Collector()
    port = free_port()
    server = Controller(collector, hostname="127.0.0.1", port=port)
    server.start()
    try:
        app = make_app(database_file, tmp_path, **smtp_settings(port))
        assert send_example(app, "grace@acme.test") is True
        app.extensions["db_engine"].dispose()
    finally:
        server.stop()

    [envelope] = collector.envelopes
    assert envelope.rcpt_tos == ["grace@acme.test"]
    assert envelope.mail_from == "no-reply@invoiceapp.test"
    message = BytesParser(policy=email.policy.default).parsebytes(envelope.content)
    assert message["Subject"] == "Example"
    assert f"/x/{TOKEN}" in message.get_body(preferencelist=("plain",)).get_content()
    assert not (tmp_path / "outbox").exists()  # the smtp backend writes no files


def test_smtp_server_down_returns_false_and_logs_without_the_link(
    database_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(database_file, tmp_path, **smtp_settings(free_port()))  # nothing listens
    with caplog.at_level(logging.WARNING):
        assert send_example(app, "ada@acme.test") is False
    app.extensions["db_engine"].dispose()

    [record] = [r for r in caplog.records if r.name == app.logger.name]
    assert record.levelno == logging.WARNING
    assert "acme.test" in record.getMessage()
    assert "ConnectionRefusedError" in record.getMessage()
    for secret in (TOKEN, "/x/", "ada@", "Hello Ada"):
        assert secret not in caplog.text


# --- /dev/mail ----------------------------------------------------------------------


def test_dev_mail_lists_the_outbox_newest_first(demo_app: Flask) -> None:
    client = demo_app.test_client()
    empty = client.get("/dev/mail")
    assert empty.status_code == 200
    assert "No mail yet." in empty.get_data(as_text=True)

    send_example(demo_app, "ada@acme.test")
    send_example(demo_app, "hank@globex.test")
    response = client.get("/dev/mail")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert page.index("hank@globex.test") < page.index("ada@acme.test")
    assert "In a real deployment this mail goes to the recipient" in page  # the demo note
    assert response.headers["Cache-Control"] == "no-store"


def test_dev_mail_shows_a_message_with_its_link_clickable(demo_app: Flask) -> None:
    send_example(demo_app, "ada@acme.test")
    mail = latest_mail_to(demo_app.config["MAIL_OUTBOX_DIR"], "ada@acme.test")
    assert mail is not None

    response = demo_app.test_client().get(f"/dev/mail/{mail.id}")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    link = f"http://127.0.0.1:5000/x/{TOKEN}"
    assert f'<a href="{link}">{link}</a>' in page
    assert "ada@acme.test" in page
    assert "no-reply@invoiceapp.test" in page


def test_dev_mail_escapes_everything_and_links_only_http_urls(demo_app: Flask) -> None:
    add_mail_templates(
        demo_app, **{"hostile.txt": "<script>alert(1)</script>\njavascript:alert(2)\n{{ link }}\n"}
    )
    with demo_app.app_context():
        send_mail(
            "ada@acme.test", "<img src=x onerror=alert(3)>", "hostile", link='https://a.test/"x'
        )
    [mail] = read_outbox(demo_app.config["MAIL_OUTBOX_DIR"])

    page = demo_app.test_client().get(f"/dev/mail/{mail.id}").get_data(as_text=True)
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page
    assert 'href="javascript:' not in page
    assert '<a href="https://a.test/">https://a.test/</a>&#34;x' in page  # the quote ends the link


@pytest.mark.parametrize("path", ["/dev/mail", "/dev/mail/{id}"])
def test_dev_mail_is_404_outside_demo_mode(mail_app: Flask, path: str) -> None:
    send_example(mail_app)
    [mail] = read_outbox(mail_app.config["MAIL_OUTBOX_DIR"])

    response = mail_app.test_client().get(path.format(id=mail.id))
    assert response.status_code == 404
    assert "There is nothing here" in response.get_data(as_text=True)  # the standard 404 page
    assert "ada@acme.test" not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "mail_id", ["..%2Fsecret", "..%2F..%2Finstance%2Fsecret_key", "%2E%2E", ".secret", "nope"]
)
def test_dev_mail_path_traversal_is_404(demo_app: Flask, tmp_path: Path, mail_id: str) -> None:
    send_example(demo_app)
    (tmp_path / "secret.eml").write_bytes(outbox_files(demo_app)[0].read_bytes())

    response = demo_app.test_client().get(f"/dev/mail/{mail_id}")
    assert response.status_code == 404
    assert TOKEN not in response.get_data(as_text=True)
