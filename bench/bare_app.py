"""The yardstick bench/throughput.py measures against: a plain Flask route answering "ok".

No extensions, no database, no headers: what any Flask app costs before it does anything.
Served by the same gunicorn, with the same gunicorn.conf.py and environment as the app.
"""

from __future__ import annotations

from flask import Flask

app = Flask(__name__)


@app.get("/")
def ok() -> str:
    return "ok"
