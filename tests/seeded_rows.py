"""A PostgreSQL test schema put back to its seeded rows in milliseconds, not seeded again.

Why: the PostgreSQL variants start each test from the demo data. Emptying ~30 tables with
TRUNCATE (new files for each) and running the seed (ORM inserts, password hashes) took
about 0.3 s per test, for a few hundred tests. Here the first call does exactly that and
then copies every table into a schema beside the test's own; later calls delete the rows
and copy them back, and set every sequence back to where it was.

Triggers are off while rows are put back (``session_replication_role = replica``): the
copies already hold what the triggers computed (the invoice and audit counts), and the
audit log's append-only guard would refuse the DELETE. That setting needs a superuser, as
the tests' PostgreSQL is; without one, every call seeds again as before.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

from flask import Flask
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

import seed as seed_module
from invoiceapp.db import Base, get_db


@dataclass
class _Copy:
    schema: str  # where the seeded rows are kept
    sequences: list[tuple[str, int | None]]  # each sequence's last value after seeding


_copies: weakref.WeakKeyDictionary[Flask, _Copy | None] = weakref.WeakKeyDictionary()


def reseed(app: Flask) -> None:
    """Give ``app``'s PostgreSQL schema the seeded demo data and nothing else."""
    engine = app.extensions["db_engine"]
    copy = _copies.get(app)
    if copy is not None:
        with engine.begin() as connection:
            _put_back(connection, copy)
        return
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    with engine.begin() as connection:
        # Row triggers (the audit log's append-only guard) do not fire on TRUNCATE.
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    with app.app_context():
        seed_module.seed(get_db())
    if app not in _copies:
        _copies[app] = _take_copy(app)


def keep(app: Flask, name: str) -> bool:
    """Copy the rows ``app``'s schema holds now, to be put back by ``put_back(app, name)``:
    for a module whose tests all start from the same costly arrangement on top of the seed
    (test_no_leaks.py). False without the rights for it (then arrange for each test)."""
    copy = _take_copy(app, name)
    if copy is None:
        return False
    _kept.setdefault(app, {})[name] = copy
    return True


def put_back(app: Flask, name: str) -> None:
    """The rows kept by ``keep(app, name)`` again, and nothing else."""
    with app.extensions["db_engine"].begin() as connection:
        _put_back(connection, _kept[app][name])


_kept: weakref.WeakKeyDictionary[Flask, dict[str, _Copy]] = weakref.WeakKeyDictionary()


def forget(app: Flask) -> None:
    """Drop the copies of ``app``'s rows, if any were made (before its schema goes)."""
    copies = [_copies.pop(app, None), *_kept.pop(app, {}).values()]
    for copy in copies:
        if copy is not None:
            with app.extensions["db_engine"].begin() as connection:
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{copy.schema}" CASCADE'))


def _take_copy(app: Flask, name: str = "seeded") -> _Copy | None:
    """Copy the rows beside the schema (the freshly seeded ones unless ``name`` says
    otherwise); None without the rights for it."""
    try:
        with app.extensions["db_engine"].begin() as connection:
            connection.execute(text("SET LOCAL session_replication_role = replica"))
            schema = f"{connection.scalar(text('SELECT current_schema()'))}_{name}"
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
            for table in Base.metadata.sorted_tables:
                connection.execute(
                    text(f'CREATE TABLE "{schema}"."{table.name}" AS SELECT * FROM "{table.name}"')
                )
            sequences = connection.execute(
                text(
                    "SELECT sequencename, last_value FROM pg_sequences "
                    "WHERE schemaname = current_schema()"
                )
            ).all()
    except DBAPIError:  # not a superuser: seed each time
        return None
    return _Copy(schema, [(name, value) for name, value in sequences])


def _put_back(connection: Connection, copy: _Copy) -> None:
    connection.execute(text("SET LOCAL session_replication_role = replica"))
    for table in reversed(Base.metadata.sorted_tables):
        connection.execute(text(f'DELETE FROM "{table.name}"'))
    for table in Base.metadata.sorted_tables:
        connection.execute(
            text(
                f'INSERT INTO "{table.name}" OVERRIDING SYSTEM VALUE '
                f'SELECT * FROM "{copy.schema}"."{table.name}"'
            )
        )
    for name, last_value in copy.sequences:
        connection.execute(
            text("SELECT setval(:sequence, :value, :called)"),
            {"sequence": f'"{name}"', "value": last_value or 1, "called": last_value is not None},
        )
