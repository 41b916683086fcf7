"""The bare route: a plain Flask app answering "ok", on the same gunicorn settings."""

from flask import Flask


def create_app() -> Flask:
    app = Flask(__name__)

    @app.get("/")
    @app.get("/healthz")
    def ok() -> str:
        return "ok"

    return app
