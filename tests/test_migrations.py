"""The Alembic migrations build exactly the schema that invoiceapp/models.py describes.

Runs on SQLite (a file under tmp_path) always, and on PostgreSQL too when
INVOICEAPP_TEST_POSTGRES_URL is set (e.g. postgresql+psycopg://postgres@127.0.0.1:54329/x);
each PostgreSQL test gets its own throwaway schema.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, make_url, pool, text
from sqlalchemy.engine import Connection, Engine

from invoiceapp import models  # noqa: F401  (registers every table on Base.metadata)
from invoiceapp.db import Base

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get("INVOICEAPP_TEST_POSTGRES_URL")
HEAD = "0020_support_access"


def alembic_config(url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["url"] = url
    config.attributes["configure_logger"] = False  # leave pytest's logging alone
    return config


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'migrations.sqlite3'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def new_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Makes empty databases for this test: SQLite files, or PostgreSQL schemas."""
    if request.param == "sqlite":
        counter = iter(range(1_000))
        yield lambda: f"sqlite:///{tmp_path / f'db{next(counter)}.sqlite3'}"
        return

    if not POSTGRES_URL:
        pytest.skip("set INVOICEAPP_TEST_POSTGRES_URL to run the PostgreSQL variant")
    admin = create_engine(POSTGRES_URL, poolclass=pool.NullPool)
    schemas: list[str] = []

    def new_schema() -> str:
        schema = f"test_{uuid.uuid4().hex[:12]}"
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        schemas.append(schema)
        # Everything (tables, alembic_version, reflection) then happens inside the schema.
        url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
        return url.render_as_string(hide_password=False)

    try:
        yield new_schema
    finally:
        with admin.begin() as connection:
            for schema in schemas:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def database_url(new_database_url: Callable[[], str]) -> str:
    return new_database_url()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url, poolclass=pool.NullPool)
    yield engine
    engine.dispose()


def schema_differences(connection: Connection) -> list[Any]:
    """Alembic's own comparison (what `alembic check` runs), with column types compared."""
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return compare_metadata(context, Base.metadata)


def schema_snapshot(connection: Connection) -> dict[str, Any]:
    """Everything reflection tells about the tables, including what Alembic's comparison
    leaves out: CHECK constraints and foreign key ON DELETE rules."""
    inspector = inspect(connection)
    snapshot: dict[str, Any] = {}
    for table in sorted(inspector.get_table_names()):
        if table == "alembic_version":
            continue
        snapshot[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)
            ],
            "primary_key": inspector.get_pk_constraint(table),
            "foreign_keys": sorted(
                (
                    fk["name"],
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    tuple(fk["referred_columns"]),
                    tuple(sorted((k, v) for k, v in fk["options"].items() if v)),
                )
                for fk in inspector.get_foreign_keys(table)
            ),
            "unique_constraints": sorted(
                (u["name"], tuple(u["column_names"]))
                for u in inspector.get_unique_constraints(table)
            ),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in inspector.get_indexes(table)
                # PostgreSQL lists the index behind each unique constraint as well.
                if not i.get("duplicates_constraint")
            ),
            "check_constraints": sorted(
                (c["name"], " ".join(c["sqltext"].split()))
                for c in inspector.get_check_constraints(table)
            ),
        }
    return snapshot


def test_there_is_one_head_and_it_is_the_latest_revision() -> None:
    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert scripts.get_heads() == [HEAD]


def test_upgrade_head_on_empty_database_matches_models(engine: Engine, database_url: str) -> None:
    command.upgrade(alembic_config(database_url), "head")

    with engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == HEAD
        assert schema_differences(connection) == []


def test_upgrade_head_builds_every_constraint_and_index_of_create_all(
    engine: Engine, database_url: str, new_database_url: Callable[[], str]
) -> None:
    command.upgrade(alembic_config(database_url), "head")
    with engine.connect() as connection:
        migrated = schema_snapshot(connection)

    # The reference: the same database engine, built straight from the models.
    reference = create_engine(new_database_url(), poolclass=pool.NullPool)
    try:
        Base.metadata.create_all(reference)
        with reference.connect() as connection:
            expected = schema_snapshot(connection)
    finally:
        reference.dispose()

    assert set(migrated) == set(Base.metadata.tables)
    assert migrated == expected


def test_comparison_notices_a_missing_index(engine: Engine, database_url: str) -> None:
    """Guards the tests above against passing vacuously."""
    command.upgrade(alembic_config(database_url), "head")
    with engine.begin() as connection:
        connection.execute(text("DROP INDEX ix_sessions_user_id"))
    with engine.connect() as connection:
        differences = schema_differences(connection)
    assert [d[0] for d in differences] == ["add_index"]
    assert differences[0][1].name == "ix_sessions_user_id"


def test_downgrade_to_base_and_upgrade_again_works(engine: Engine, database_url: str) -> None:
    config = alembic_config(database_url)
    command.upgrade(config, "head")
    command.downgrade(config, "base")

    with engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() is None
        assert set(inspect(connection).get_table_names()) <= {"alembic_version"}

    command.upgrade(config, "head")
    with engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == HEAD
        assert schema_differences(connection) == []


def test_alembic_command_line_takes_the_url_from_flask_database_url(
    sqlite_url: str, tmp_path: Path
) -> None:
    environment = {**os.environ, "FLASK_DATABASE_URL": sqlite_url}
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    engine = create_engine(sqlite_url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            assert MigrationContext.configure(connection).get_current_revision() == HEAD
    finally:
        engine.dispose()


def test_alembic_x_url_overrides_the_app_configuration(tmp_path: Path) -> None:
    target = tmp_path / "from_x_url.sqlite3"
    environment = {
        **os.environ,
        "FLASK_DATABASE_URL": f"sqlite:///{tmp_path / 'not_this_one.sqlite3'}",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "alembic",
            "-c",
            str(ROOT / "alembic.ini"),
            "-x",
            f"url=sqlite:///{target}",
            "upgrade",
            "head",
        ],
        cwd=tmp_path,  # alembic.ini finds migrations/ relative to itself, not to the cwd
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert target.exists()
    assert not (tmp_path / "not_this_one.sqlite3").exists()


def test_migration_file_does_not_import_the_app() -> None:
    """Revision files must stay valid when the models change later: plain sa types only."""
    for path in sorted((ROOT / "migrations" / "versions").glob("*.py")):
        _assert_standalone(path.read_text(encoding="utf-8"))


def _assert_standalone(source: str) -> None:
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert not [line for line in imports if "invoiceapp" in line]
    assert "UTCDateTime(" not in source
    assert "auto generated" not in source
