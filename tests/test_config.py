"""Configuration: the secret key, FLASK_* variables, and what "development" changes."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import click
import pytest
from flask import Flask
from flask.cli import run_command

from invoiceapp import config, create_app
from invoiceapp.config import _development_secret_key, load_config


def test_missing_secret_key_outside_development_is_a_clear_start_up_error(
    database_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLASK_SECRET_KEY", raising=False)
    monkeypatch.delenv("FLASK_DEMO_MODE", raising=False)
    monkeypatch.delenv("FLASK_DEBUG", raising=False)
    with pytest.raises(RuntimeError, match="SECRET_KEY is not set"):
        create_app({"DATABASE_URL": f"sqlite:///{database_file}"})


def test_flask_run_on_loopback_is_development_a_generated_key_and_plain_http_cookies(
    database_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CONTRACT §1: `flask --app invoiceapp run` is the development server, as it is."""
    for name in ("FLASK_SECRET_KEY", "FLASK_DEMO_MODE", "FLASK_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(config, "_development_secret_key", lambda _instance: "generated" * 8)
    with click.Context(run_command, info_name="run") as context:
        context.params["host"] = "127.0.0.1"  # flask run's default
        app = create_app({"DATABASE_URL": f"sqlite:///{database_file}"})
    assert app.config["SECRET_KEY"] == "generated" * 8
    assert app.config["AUTH_COOKIE_SECURE"] is False
    app.extensions["db_engine"].dispose()

    # Served to the network, another command named "run", an operator's `flask … policy`:
    # all of them still need a real key.
    exposed = click.Context(run_command, info_name="run")
    exposed.params["host"] = "0.0.0.0"
    for context in (
        exposed,
        click.Context(click.Command("run"), info_name="run"),
        click.Context(click.Command("policy"), info_name="policy"),
    ):
        with context, pytest.raises(RuntimeError, match="SECRET_KEY is not set"):
            create_app({"DATABASE_URL": f"sqlite:///{database_file}"})


def test_development_secret_key_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    first = _development_secret_key(tmp_path / "instance")
    second = _development_secret_key(tmp_path / "instance")
    key_file = tmp_path / "instance" / "secret_key"
    assert first == second
    assert len(first) >= 64
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_settings_come_from_flask_prefixed_environment_variables(
    database_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLASK_FRESH_AGE_SECONDS", "5")
    monkeypatch.setenv("FLASK_RATELIMIT_ENABLED", "false")
    monkeypatch.setenv("FLASK_SECRET_KEY", "from-the-environment")
    monkeypatch.setenv("FLASK_MAIL_BACKEND", "smtp")
    app = create_app({"DATABASE_URL": f"sqlite:///{database_file}"})
    assert app.config["FRESH_AGE_SECONDS"] == 5
    assert app.config["RATELIMIT_ENABLED"] is False
    assert app.config["SECRET_KEY"] == "from-the-environment"
    assert app.config["DEMO_MODE"] is False
    app.extensions["db_engine"].dispose()


def test_demo_mode_cookies_work_over_plain_http(database_file: Path) -> None:
    app = create_app(
        {"DATABASE_URL": f"sqlite:///{database_file}", "DEMO_MODE": True, "SECRET_KEY": "x" * 32}
    )
    assert app.config["AUTH_COOKIE_SECURE"] is False
    assert app.config["SESSION_COOKIE_SECURE"] is False
    app.extensions["db_engine"].dispose()


def test_every_setting_of_our_own_has_its_default_in_config_py(database_file: Path) -> None:
    """One source for configuration: the whole app adds no key that config.py lacks,
    only the extensions' own (Flask-WTF, Flask-Limiter fill in their defaults)."""
    settings = {"TESTING": True, "SECRET_KEY": "k" * 32, "PASSWORD_HASH_PROFILE": "CHEAPEST"}
    app = create_app({**settings, "DATABASE_URL": f"sqlite:///{database_file}"})
    config_py_only = Flask("invoiceapp", instance_path=app.instance_path)
    config_py_only.testing = True
    load_config(config_py_only, settings)
    added = set(app.config) - set(config_py_only.config)
    assert {key for key in added if not key.startswith(("WTF_", "RATELIMIT_"))} == set()
    app.extensions["db_engine"].dispose()


def test_no_module_keeps_a_fallback_default_of_its_own() -> None:
    """``config.get("KEY", fallback)`` is a second default that can drift from config.py's."""
    package = Path(config.__file__).parent
    fallback = re.compile(r'config\.get\(\s*"([A-Z0-9_]+)",')
    own = {
        (source.relative_to(package).as_posix(), key)
        for source in package.rglob("*.py")
        for key in fallback.findall(source.read_text())
        if not key.startswith(("WTF_", "RATELIMIT_"))  # the extensions' own settings
    }
    assert own == set()
