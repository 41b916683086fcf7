"""The shortcuts that keep the suite fast change nothing a test can see.

- compiled_once.py: test apps share compiled URL builders and template code; a second app
  compiles nothing, builds the same URLs and renders the same pages, and a template whose
  source changed is compiled again.
- seeded_rows.py: a PostgreSQL schema put back to its seeded rows holds exactly what
  seeding gave it (rows and the next id of every table), and its triggers work again.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, url_for
from jinja2.bccache import Bucket
from sqlalchemy import Connection, func, select, text
from sqlalchemy.orm import Session
from werkzeug.routing import Rule

import support
from compiled_once import TEMPLATE_CODE
from conftest import make_test_app
from invoiceapp.db import Base
from invoiceapp.mail import build_message, deliver_to_outbox, read_outbox
from invoiceapp.models import Invoice, InvoiceCount, Organization
from seeded_rows import reseed
from support import calls_of, outbox_mails, signed_in_client


def _builder(app: Flask, endpoint: str) -> object:
    (rule,) = app.url_map._rules_by_endpoint[endpoint]
    return rule._build.__func__  # type: ignore[attr-defined]


def test_a_second_test_app_compiles_no_template_and_no_url_builder_again(
    database_file: Path,
) -> None:
    first = make_test_app(database_file)
    assert first.test_client().get("/sign-in").status_code == 200
    compiled = dict(TEMPLATE_CODE.code)
    assert compiled

    second = make_test_app(database_file)
    page = second.test_client().get("/sign-in")

    assert page.status_code == 200
    assert "<form" in page.get_data(as_text=True)
    assert TEMPLATE_CODE.code == compiled  # rendered from the first app's code
    assert _builder(second, "static") is _builder(first, "static")
    with first.test_request_context(), second.test_request_context():
        assert url_for("static", filename="app.css") == "/static/app.css"


def test_a_template_whose_source_changed_is_compiled_again() -> None:
    bucket = Bucket(None, "a-template", "checksum-before")  # type: ignore[arg-type]
    bucket.code = compile("x = 1", "<template>", "exec")
    TEMPLATE_CODE.dump_bytecode(bucket)

    changed = Bucket(None, "a-template", "checksum-after")  # type: ignore[arg-type]
    TEMPLATE_CODE.load_bytecode(changed)
    same = Bucket(None, "a-template", "checksum-before")  # type: ignore[arg-type]
    TEMPLATE_CODE.load_bytecode(same)

    assert changed.code is None
    assert same.code is bucket.code
    del TEMPLATE_CODE.code["a-template"]


def _state(connection: Connection) -> dict[str, tuple[int, int]]:
    """Each table's row count and the id its next row would get (without taking one)."""
    state = {}
    for table in Base.metadata.sorted_tables:
        count = connection.scalar(select(func.count()).select_from(table)) or 0
        sequence = None
        if "id" in table.c:
            sequence = connection.scalar(
                text("SELECT pg_get_serial_sequence(:table, 'id')"), {"table": f'"{table.name}"'}
            )
        next_id = 0
        if sequence:
            last, called = connection.execute(
                text(f"SELECT last_value, is_called FROM {sequence}")
            ).one()
            next_id = last + 1 if called else last
        state[table.name] = (count, next_id)
    return state


def test_postgresql_reseeded_holds_what_seeding_gave_and_its_triggers_count_again(
    postgres_app: Flask,
) -> None:
    engine = postgres_app.extensions["db_engine"]
    reseed(postgres_app)  # the first time: emptied, seeded, copied aside
    with engine.connect() as connection:
        seeded = _state(connection)
    with engine.begin() as connection:
        _add_a_draft(connection)
    with engine.connect() as connection:
        assert _state(connection) != seeded

    reseed(postgres_app)  # now from the copy

    with engine.connect() as connection:
        assert _state(connection) == seeded
        drafts = _acme_drafts(connection)
    # The triggers were off only while rows were copied back: a new draft is counted.
    with engine.begin() as connection:
        _add_a_draft(connection)
    with engine.connect() as connection:
        assert _acme_drafts(connection) == drafts + 1


def _acme() -> Any:
    return select(Organization.id).where(Organization.slug == "acme").scalar_subquery()


def _add_a_draft(connection: Connection) -> None:
    connection.execute(
        Invoice.__table__.insert().values(
            public_id="inv_reseedtest00001", organization_id=_acme(), number=9999,
            customer="Gone after reseed", amount_minor=1, currency="EUR",
            status="draft", issue_date=date(2024, 1, 1), due_date=date(2024, 2, 1),
        )
    )  # fmt: skip


def _acme_drafts(connection: Connection) -> int:
    return (
        connection.scalar(
            select(InvoiceCount.live_count).where(
                InvoiceCount.organization_id == _acme(), InvoiceCount.status == "draft"
            )
        )
        or 0
    )


def test_a_second_test_app_reuses_the_parsed_rules_and_routes_alike(database_file: Path) -> None:
    """compiled_once.py hands an app's rules the parts a first app's parse made; each rule
    still gets converters of its own map, and the same parts as a parse of its own."""
    first = make_test_app(database_file)
    second = make_test_app(database_file)
    parse = Rule.compile.original  # type: ignore[attr-defined]
    checked = 0
    for rule in second.url_map.iter_rules():
        (twin,) = [
            r
            for r in first.url_map.iter_rules()
            if r.rule == rule.rule and r.endpoint == rule.endpoint
        ]
        assert rule._parts[-1] is twin._parts[-1]  # reused, not parsed again
        alone = rule.empty()
        alone.map = second.url_map
        parse(alone)  # Werkzeug's own parse
        assert rule._parts == alone._parts
        assert rule._trace == alone._trace
        assert rule.arguments == alone.arguments
        for name, converter in rule._converters.items():
            assert converter.map is second.url_map
            assert type(converter) is type(alone._converters[name])
            assert converter.regex == alone._converters[name].regex
        checked += 1
    assert checked > 100
    adapter = second.url_map.bind("localhost")
    assert adapter.match("/invoices/inv_7") == ("invoices.show", {"invoice_id": "inv_7"})
    assert adapter.build("invoices.send", {"invoice_id": "a b"}) == "/invoices/a%20b/send"


def test_a_second_sqlite_test_app_compiles_no_sql_again_and_keeps_its_own_file(
    seeded_database: Path, tmp_path: Path
) -> None:
    """compiled_once.reuse_compiled_sql: the SQL a first app compiled serves a second app,
    whose pool and file stay its own."""
    files = [tmp_path / "one.sqlite3", tmp_path / "two.sqlite3"]
    for file in files:
        shutil.copyfile(seeded_database, file)
    first, second = (make_test_app(file) for file in files)
    assert second.extensions["db_engine"].dialect is first.extensions["db_engine"].dialect
    signed_in_client(first, "ada@acme.test").get("/invoices/inv_7")
    cache = first.extensions["db_engine"].get_execution_options().get("compiled_cache")
    cache = cache if cache is not None else first.extensions["db_engine"]._compiled_cache
    compiled = len(cache)

    client = signed_in_client(second, "ada@acme.test")
    assert client.get("/invoices/inv_7").status_code == 200
    assert len(cache) == compiled  # the same statements: nothing compiled again
    assert client.post("/invoices/inv_7/void").status_code in (302, 303)

    with (
        Session(first.extensions["db_engine"]) as one,
        Session(second.extensions["db_engine"]) as two,
    ):
        voided = select(Invoice.status).where(Invoice.public_id == "inv_7")
        assert two.scalar(voided) == "void"
        assert one.scalar(voided) != "void"  # the other app's file was not touched
    for app in (first, second):
        app.extensions["db_engine"].dispose()


def test_the_polled_outbox_reads_like_read_outbox_and_parses_each_file_once(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """support.outbox_mails, which the race tests poll many times a second: newest first,
    as read_outbox gives them, and a message already read is not parsed again."""
    outbox = Path(app.config["MAIL_OUTBOX_DIR"])
    assert outbox_mails(outbox) == []  # no folder yet: nothing sent
    parsed = calls_of(monkeypatch, support, "read_mail", keep=lambda arguments: arguments[1])

    def send(to: str) -> None:
        with app.test_request_context("/"):
            deliver_to_outbox(build_message(to, "Hello", "account_exists", email=to))

    send("first@example.org")
    send("second@example.org")
    assert outbox_mails(outbox) == read_outbox(outbox)
    assert [mail.to for mail in outbox_mails(outbox)] == ["second@example.org", "first@example.org"]
    assert len(parsed) == 2  # the second and third reads parsed nothing

    send("third@example.org")
    newest = outbox_mails(outbox)
    assert [mail.to for mail in newest][0] == "third@example.org"
    assert len(parsed) == 3  # only the new file
    (outbox / f"{newest[-1].id}.eml").unlink()  # a deleted message is no longer listed
    assert [mail.to for mail in outbox_mails(outbox)] == ["third@example.org", "second@example.org"]
