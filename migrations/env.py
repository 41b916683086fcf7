"""Alembic environment for InvoiceApp.

Where the database URL comes from, first match wins:

1. ``config.attributes["connection"]``: an open SQLAlchemy Connection (tests, tools);
   the caller owns its transaction.
2. ``alembic -x url=...`` on the command line.
3. ``config.attributes["url"]`` or a ``sqlalchemy.url`` main option set programmatically.
4. The application configuration: ``FLASK_DATABASE_URL``, else the same SQLite file in
   ``instance/`` that the app uses (invoiceapp.config.load_config).
"""

from __future__ import annotations

from logging.config import fileConfig
from pathlib import Path
from typing import Any

from alembic import context
from alembic.autogenerate.api import AutogenContext
from flask import Flask
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import Connection

from invoiceapp import models  # noqa: F401  (registers every table on Base.metadata)
from invoiceapp.db import Base, UTCDateTime, ensure_sqlite_directory

ROOT = Path(__file__).resolve().parent.parent

config = context.config

# Command-line runs log through alembic.ini; programmatic callers (seed.py, tests)
# may set attributes["configure_logger"] = False to keep their own logging set-up.
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def database_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url")
    if url:
        return url
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if url:
        return str(url)
    return app_database_url()


def app_database_url() -> str:
    """DATABASE_URL exactly as the app resolves it (defaults, then FLASK_* variables)."""
    from invoiceapp.config import load_config

    app = Flask("invoiceapp", instance_path=str(ROOT / "instance"))
    # Migrations sign nothing; the override only keeps load_config from demanding a key.
    load_config(app, {"SECRET_KEY": "unused-by-migrations"})
    return str(app.config["DATABASE_URL"])


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | bool:
    """Render app-level column types as plain SQLAlchemy types in revision files."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def configure_options(dialect_name: str) -> dict[str, Any]:
    return {
        "target_metadata": target_metadata,
        "compare_type": True,
        # SQLite cannot ALTER most things; batch mode recreates the table instead.
        "render_as_batch": dialect_name == "sqlite",
        "render_item": render_item,
    }


def run_migrations_offline() -> None:
    """``alembic upgrade head --sql``: print the SQL instead of running it."""
    url = database_url()
    context.configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **configure_options(url.split(":", 1)[0].split("+", 1)[0]),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_on(connection: Connection) -> None:
    context.configure(connection=connection, **configure_options(connection.dialect.name))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    # A plain engine, not invoiceapp.db.make_engine: SQLite foreign keys stay off while
    # migrating, because batch mode drops and recreates tables.
    url = database_url()
    ensure_sqlite_directory(url)
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            run_on(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
