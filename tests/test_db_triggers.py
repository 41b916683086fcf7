"""The triggers live in invoiceapp/db_triggers.py; models.py is the schema and nothing else.

create_all() (the tests, the demo's SQLite file) and the migrations (a real database)
must still end with the same triggers and functions, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import Connection, create_engine, pool, text

import seed
from conftest import POSTGRES_URL
from invoiceapp import db_triggers
from invoiceapp.db import Base
from support import postgres_schema

ROOT = Path(__file__).resolve().parent.parent
ALL_STATEMENTS = {
    "sqlite": db_triggers.INVOICE_COUNT_TRIGGERS_SQLITE
    + db_triggers.AUDIT_TRIGGERS_SQLITE
    + db_triggers.AUDIT_COUNT_TRIGGERS_SQLITE
    + db_triggers.AUDIT_PRUNE_TRIGGERS_SQLITE,
    "postgresql": db_triggers.INVOICE_COUNT_TRIGGERS_POSTGRESQL
    + db_triggers.AUDIT_TRIGGERS_POSTGRESQL
    + db_triggers.AUDIT_COUNT_TRIGGERS_POSTGRESQL
    + db_triggers.AUDIT_PRUNE_TRIGGERS_POSTGRESQL,
}


def _migration(file: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(file, ROOT / "migrations" / "versions" / file)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_models_py_holds_the_schema_and_no_trigger_ddl() -> None:
    source = (ROOT / "invoiceapp" / "models.py").read_text()
    for ddl in ("CREATE TRIGGER", "CREATE FUNCTION", "DDL(", "event.listen"):
        assert ddl not in source, f"models.py still has {ddl!r}: it belongs in db_triggers.py"


def test_the_append_only_migration_copies_the_audit_triggers_exactly() -> None:
    """Migrations never import the app, so 0004 keeps a copy; the copy must not drift."""
    migration = _migration("0004_organizations.py")
    assert migration.TRIGGERS["sqlite"] == db_triggers.AUDIT_TRIGGERS_SQLITE
    assert migration.TRIGGERS["postgresql"] == db_triggers.AUDIT_TRIGGERS_POSTGRESQL


def test_the_retention_migration_copies_the_prune_door_exactly() -> None:
    """0019 lets ``flask audit prune`` through the append-only triggers; same copy rule."""
    migration = _migration("0019_audit_retention.py")
    assert migration.TRIGGERS["sqlite"] == db_triggers.AUDIT_PRUNE_TRIGGERS_SQLITE
    assert migration.TRIGGERS["postgresql"] == db_triggers.AUDIT_PRUNE_TRIGGERS_POSTGRESQL


def _names_created_by(statements: list[str]) -> set[str]:
    return {
        name
        for statement in statements
        for name in re.findall(r"CREATE (?:TRIGGER|FUNCTION) (\w+)", statement)
    }


def _triggers_and_functions(connection: Connection) -> set[str]:
    if connection.dialect.name == "sqlite":
        query = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
    else:
        query = (
            "SELECT trigger_name FROM information_schema.triggers "
            "WHERE trigger_schema = current_schema() "
            "UNION SELECT proname FROM pg_proc JOIN pg_namespace n ON n.oid = pronamespace "
            "WHERE n.nspname = current_schema()"
        )
    return set(connection.execute(text(query)).scalars())


@contextmanager
def _empty_database(engine_name: str, tmp_path: Path, name: str) -> Iterator[str]:
    if engine_name == "sqlite":
        yield f"sqlite:///{tmp_path / f'{name}.sqlite3'}"
        return
    if not POSTGRES_URL:
        pytest.skip("set INVOICEAPP_TEST_POSTGRES_URL to run the PostgreSQL variant")
    with postgres_schema(POSTGRES_URL) as url:
        yield url


def _found_in(url: str) -> set[str]:
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return _triggers_and_functions(connection)
    finally:
        engine.dispose()


@pytest.mark.parametrize("engine_name", ["sqlite", "postgresql"])
def test_create_all_and_the_migrations_make_the_same_triggers(
    engine_name: str, tmp_path: Path
) -> None:
    with (
        _empty_database(engine_name, tmp_path, "built") as built,
        _empty_database(engine_name, tmp_path, "migrated") as migrated,
    ):
        engine = create_engine(built, poolclass=pool.NullPool)
        try:
            Base.metadata.create_all(engine)
        finally:
            engine.dispose()
        seed.migrate(migrated)

        expected = _names_created_by(ALL_STATEMENTS[engine_name])
        assert _found_in(built) == expected
        assert _found_in(migrated) == expected
