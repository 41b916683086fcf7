"""README's Deploying section as an operator meets it: one secret key for every instance,
passkeys that follow BASE_URL, mail that is really sent, health checks probed by IP
address, and several workers with rate limits switched off."""

from __future__ import annotations

import re
import runpy
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from conftest import make_test_app
from invoiceapp import create_app
from invoiceapp.config import ConfigurationError

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def deploying_section() -> str:
    return README.split("\n## Deploying\n", 1)[1].split("\n## ", 1)[0]


def deployment(database_file: Path, **settings: Any) -> dict[str, Any]:
    """A configuration as a deployment has it: a key, no debug, demo or testing."""
    return {
        "SECRET_KEY": "deployed-key-" + "k" * 32,
        "DATABASE_URL": f"sqlite:///{database_file}",
        "MAIL_OUTBOX_DIR": str(database_file.parent / "outbox"),
        **settings,
    }


# --- One secret key, made once --------------------------------------------------------------


def test_the_deploying_section_makes_the_secret_key_once_and_every_instance_reads_it() -> None:
    """A key generated inside `export FLASK_SECRET_KEY=$(…)` differs on every instance, and
    a form posted to the other instance is then a 400."""
    blocks = re.findall(r"```sh\n(.*?)```", deploying_section(), re.S)
    lines = [line for block in blocks for line in block.splitlines()]
    exports = [line for line in lines if "FLASK_SECRET_KEY=" in line]
    assert exports, "the Deploying section sets FLASK_SECRET_KEY"
    assert not any("token_hex" in line or "secrets." in line for line in exports), exports
    made = [block for block in blocks if "token_hex" in block]
    assert len(made) == 1 and "FLASK_SECRET_KEY" not in made[0]


def test_the_commands_table_says_make_serve_listens_on_bind() -> None:
    rows = [line for line in README.splitlines() if line.startswith("| `")]
    row = next(line for line in rows if "make serve" in line)
    assert "`BIND`" in row and "127.0.0.1:8000" in row


# --- Passkeys follow BASE_URL ---------------------------------------------------------------


def test_passkeys_follow_base_url_when_not_set(database_file: Path) -> None:
    app = make_test_app(database_file, BASE_URL="https://invoices.example.com")
    assert app.config["WEBAUTHN_RP_ID"] == "invoices.example.com"
    assert app.config["WEBAUTHN_ORIGIN"] == "https://invoices.example.com"
    page = app.test_client().get("/sign-in", headers={"Host": "invoices.example.com"})
    assert page.status_code == 200
    assert b"localhost" not in page.data  # no "passkeys belong to http://localhost:5000"
    app.extensions["db_engine"].dispose()


def test_a_base_url_on_an_ip_address_keeps_passkeys_on_localhost_as_the_demo_needs(
    database_file: Path,
) -> None:
    app = make_test_app(database_file, BASE_URL="http://127.0.0.1:5001")
    assert app.config["WEBAUTHN_RP_ID"] == "localhost"
    assert app.config["WEBAUTHN_ORIGIN"] == "http://localhost:5001"
    app.extensions["db_engine"].dispose()


def test_passkey_settings_are_kept_as_browsers_spell_them(database_file: Path) -> None:
    app = make_test_app(
        database_file,
        BASE_URL="https://Invoices.Example.com:443/",
        WEBAUTHN_ORIGIN="https://invoices.example.com/",
    )
    assert app.config["WEBAUTHN_ORIGIN"] == "https://invoices.example.com"
    assert app.config["WEBAUTHN_RP_ID"] == "invoices.example.com"
    app.extensions["db_engine"].dispose()


def test_a_passkey_rp_id_for_the_parent_domain_is_accepted(database_file: Path) -> None:
    app = make_test_app(
        database_file, BASE_URL="https://invoices.example.com", WEBAUTHN_RP_ID="example.com"
    )
    assert app.config["WEBAUTHN_ORIGIN"] == "https://invoices.example.com"
    app.extensions["db_engine"].dispose()


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"WEBAUTHN_ORIGIN": "http://localhost:5000"}, "WEBAUTHN_ORIGIN"),
        ({"WEBAUTHN_ORIGIN": "https://other.example.com"}, "WEBAUTHN_ORIGIN"),
        ({"WEBAUTHN_RP_ID": "localhost"}, "WEBAUTHN_RP_ID"),
        ({"WEBAUTHN_RP_ID": "other.example.com"}, "WEBAUTHN_RP_ID"),
    ],
    ids=["demo-origin", "other-origin", "demo-rp-id", "other-rp-id"],
)
def test_passkey_settings_that_disagree_with_base_url_refuse_to_start(
    database_file: Path, settings: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigurationError, match=named):
        create_app(
            deployment(
                database_file,
                BASE_URL="https://invoices.example.com",
                MAIL_BACKEND="smtp",
                **settings,
            )
        )


# --- Mail that nobody would receive ---------------------------------------------------------


def test_a_server_outside_development_refuses_to_write_mail_to_files(database_file: Path) -> None:
    with pytest.raises(ConfigurationError, match="MAIL_BACKEND is 'file'") as refused:
        create_app(deployment(database_file, BASE_URL="https://invoices.example.com"))
    assert "FLASK_MAIL_FILE_BACKEND_ALLOWED" in str(refused.value)


def test_file_mail_allowed_outside_development_starts_and_readyz_says_it_is_not_sent(
    database_file: Path,
) -> None:
    app = create_app(deployment(database_file, MAIL_FILE_BACKEND_ALLOWED=True))
    ready = app.test_client().get("/readyz", headers={"Host": "127.0.0.1"})
    assert ready.status_code == 200
    assert "not sent" in ready.get_json()["mail"]
    app.extensions["db_engine"].dispose()


def test_smtp_mail_outside_development_starts_and_readyz_says_nothing_of_mail(
    database_file: Path,
) -> None:
    app = create_app(deployment(database_file, MAIL_BACKEND="smtp"))
    ready = app.test_client().get("/readyz", headers={"Host": "127.0.0.1"})
    assert ready.status_code == 200 and "mail" not in ready.get_json()
    app.extensions["db_engine"].dispose()


def test_the_demo_and_the_tests_keep_their_mail_in_files(database_file: Path) -> None:
    app = make_test_app(database_file)
    assert app.config["MAIL_BACKEND"] == "file"
    assert "mail" not in app.test_client().get("/readyz").get_json()
    app.extensions["db_engine"].dispose()


# --- Health checks probed by IP address -----------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_checks_answer_a_load_balancer_probing_by_ip_address(
    database_file: Path, path: str
) -> None:
    app = create_app(
        deployment(database_file, BASE_URL="https://invoices.example.com", MAIL_BACKEND="smtp")
    )
    client = app.test_client()
    for host in ("10.0.0.5:8000", "evil.example", "[::1]:8000"):
        probe = client.get(path, headers={"Host": host})
        assert probe.status_code == 200, host
        assert probe.get_json()["status"] == "ok"
    app.extensions["db_engine"].dispose()


def test_every_other_page_still_refuses_an_untrusted_host(database_file: Path) -> None:
    app = create_app(
        deployment(database_file, BASE_URL="https://invoices.example.com", MAIL_BACKEND="smtp")
    )
    client = app.test_client()
    for path in ("/", "/sign-in", "/healthz/", "/api/v1/me"):
        assert client.get(path, headers={"Host": "10.0.0.5:8000"}).status_code == 400, path
    assert client.get("/", headers={"Host": "invoices.example.com"}).status_code == 200
    app.extensions["db_engine"].dispose()


# --- Workers and rate limits ----------------------------------------------------------------


def gunicorn_settings(monkeypatch: pytest.MonkeyPatch, **environment: str) -> dict[str, Any]:
    for name in ("FLASK_RATELIMIT_ENABLED", "FLASK_RATELIMIT_STORAGE_URI", "WEB_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


def starting(settings: dict[str, Any], workers: int) -> None:
    settings["on_starting"](SimpleNamespace(cfg=SimpleNamespace(workers=workers)))


def test_several_workers_with_rate_limits_switched_off_are_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = gunicorn_settings(monkeypatch, FLASK_RATELIMIT_ENABLED="false")
    assert settings["workers"] == 2
    starting(settings, 4)  # no SystemExit: nothing is counted, so nothing is counted twice


def test_several_workers_with_in_memory_rate_limits_are_still_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = gunicorn_settings(monkeypatch)
    assert settings["workers"] == 1
    with pytest.raises(SystemExit, match="FLASK_RATELIMIT_STORAGE_URI"):
        starting(settings, 4)
    settings = gunicorn_settings(monkeypatch, FLASK_RATELIMIT_ENABLED="true")
    with pytest.raises(SystemExit):
        starting(settings, 2)
