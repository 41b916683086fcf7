"""Helpers the benchmarks and the load run share: throwaway databases, counting SQL
statements, gunicorn on a free loopback port, and a cookie-keeping HTTP client."""

from __future__ import annotations

import json
import math
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, event, make_url, pool, text  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402


@contextmanager
def postgres_schema(admin_url: str) -> Iterator[str]:
    """A URL whose connections all live in a fresh PostgreSQL schema, dropped afterwards."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, poolclass=pool.NullPool)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(admin_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


class StatementCounter:
    """Counts the SQL statements an engine sends (every cursor execute, executemany once)."""

    def __init__(self, engine: Engine) -> None:
        self.count = 0
        self.statements: list[str] = []
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.count += 1
        self.statements.append(statement)

    def reset(self) -> None:
        self.count = 0
        self.statements.clear()


# --- Real servers on loopback (bench/throughput.py, load/run.py) -------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10) -> None:
    """Until something listens on ``port`` (redis-server, nginx), or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)


def wait_until_up(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:  # refused, reset or timed out while booting
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


SERVER_ENVIRONMENT = {
    "FLASK_SECRET_KEY": "bench-and-load-only-" + "k" * 32,
    "FLASK_AUTH_COOKIE_SECURE": "false",  # plain HTTP on loopback
    "FLASK_SESSION_COOKIE_SECURE": "false",
    "FLASK_MAIL_FILE_BACKEND_ALLOWED": "true",  # the runs read their mail from the outbox
}


@contextmanager
def gunicorn(
    database_url: str, *, workers: int = 1, log: Path | None = None, **environment: str
) -> Iterator[str]:
    """gunicorn with gunicorn.conf.py on a free loopback port; yields its base URL."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLASK_")},
        **SERVER_ENVIRONMENT,
        "FLASK_DATABASE_URL": database_url,
        "WEB_CONCURRENCY": str(workers),
        "BIND": f"127.0.0.1:{port}",
        **environment,
    }
    output = open(log, "ab") if log else subprocess.DEVNULL
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "--no-control-socket",
         "-c", "gunicorn.conf.py", "invoiceapp:create_app()"],
        cwd=ROOT, env=env, stdout=output, stderr=output,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url + "/healthz", process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log:
            output.close()  # type: ignore[union-attr]


class Browser:
    """A cookie-keeping HTTP client over real sockets (no redirects followed)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies: dict[str, str] = {}
        self.lock = threading.Lock()

    def request(
        self,
        path: str,
        data: dict[str, str] | None = None,
        *,
        method: str | None = None,
        headers: dict[str, str] | None = None,
        json_body: Any = None,
        timeout: float = 30,
    ) -> tuple[int, dict[str, str], str]:
        with self.lock:
            cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        all_headers = {"Cookie": cookie, **(headers or {})}
        body = None
        if data is not None:
            body = urllib.parse.urlencode(data).encode()
        elif json_body is not None:
            body = json.dumps(json_body).encode()
            all_headers["Content-Type"] = "application/json"
        request = urllib.request.Request(
            self.base + path, data=body, headers=all_headers, method=method
        )
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            response = opener.open(request, timeout=timeout)
        except urllib.error.HTTPError as error:
            response = error
        with self.lock:
            for header in response.headers.get_all("Set-Cookie") or []:
                name, _, rest = header.partition("=")
                self.cookies[name] = rest.split(";", 1)[0]
        text_body = response.read().decode("utf-8", "replace")
        return response.status, dict(response.headers.items()), text_body

    def csrf_token(self, path: str) -> str:
        _, _, html = self.request(path)
        match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html)
        if not match:
            raise RuntimeError(f"no CSRF token on {path}: {html[:200]}")
        return match.group(1)

    def sign_in(self, email: str, password: str) -> None:
        token = self.csrf_token("/sign-in")
        status, _, _ = self.request(
            "/sign-in", {"email": email, "password": password, "csrf_token": token}
        )
        if status != 303:
            raise RuntimeError(f"sign-in as {email} answered {status}")


def steady_cookie(browser: Browser, path: str) -> str:
    """The cookie header of a signed-in browser that has already viewed ``path`` once.

    Right after a sign-in the cookie still holds the "You are signed in." flash and no CSRF
    token: a page asked with it would show and pop the flash and sign a new token, and
    answer a new cookie, every time. A browser follows the redirect, so from its second
    page on it sends a cookie the page leaves as it is: that is what a benchmark of
    repeated views must send. Raises if a second view still rewrites the cookie.
    """
    browser.request(path)
    status, headers, _ = browser.request(path)
    if status != 200 or any(name.lower() == "set-cookie" for name in headers):
        raise RuntimeError(f"{browser.base}{path}: not a steady signed-in view ({status})")
    return "; ".join(f"{k}={v}" for k, v in browser.cookies.items())


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


# --- Figures that a noisy machine cannot move much ------------------------------------------
#
# A shared machine speeds up and slows down by tens of percent within seconds. Two medians
# taken a minute apart compare two different machines; a ratio taken within one pair (A
# then B, or B then A, alternating which goes first) compares the same one. So every figure
# below is the median of per-pair ratios, printed with its spread, and a verdict is given
# only once the median is known well enough to land on one side of its goal.


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """The 25th, 50th and 75th percentiles: the median and the spread around it."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0], ordered[0], ordered[0]
    low, median, high = statistics.quantiles(ordered, n=4, method="inclusive")
    return low, median, high


def median_interval(values: list[float]) -> tuple[float, float]:
    """A 95 % confidence interval for the median, from order statistics alone (no
    assumption about the shape of the noise): the ranks n/2 ± 0.98·√n."""
    ordered = sorted(values)
    n = len(ordered)
    half_width = 0.98 * math.sqrt(n)
    low = max(0, math.floor(n / 2 - half_width))
    high = min(n - 1, math.ceil(n / 2 + half_width) - 1)
    return ordered[low], ordered[high]


def settled(values: list[float], goal: float) -> bool:
    """Whether the median's confidence interval lies wholly on one side of ``goal``."""
    low, high = median_interval(values)
    return low > goal or high < goal


def paired_ratios(
    first: Callable[[], float],
    second: Callable[[], float],
    rounds: int,
    *,
    keep_going: Callable[[list[float]], bool] = lambda _ratios: False,
    max_rounds: int | None = None,
) -> list[float]:
    """``second() / first()`` for ``rounds`` pairs, which one runs first alternating; then
    more pairs, up to ``max_rounds``, while ``keep_going(ratios)`` says the figure is not
    yet clear."""
    ratios: list[float] = []
    limit = max(rounds, max_rounds or rounds)
    while len(ratios) < limit and (len(ratios) < rounds or keep_going(ratios)):
        if len(ratios) % 2 == 0:
            a = first()
            b = second()
        else:
            b = second()
            a = first()
        ratios.append(b / a)
    return ratios


def spread(values: list[float], form: str = "{:.2f}") -> str:
    """'1.04 (1.01–1.09, 40 pairs)': the median, the middle half of the pairs, how many."""
    low, median, high = quartiles(values)
    return f"{form.format(median)} ({form.format(low)}–{form.format(high)}, {len(values)} pairs)"
