"""Slow clients: how long /healthz waits while 40 connections trickle their requests.

Measured twice in one run: straight to gunicorn as `make serve` runs it (3 sync workers,
rate limits off so that three are allowed), then through deploy/nginx.conf in front of the
same gunicorn, over TLS with a throwaway certificate (openssl). A trickling client sends
its request one header line every 0.2 s and never finishes it. Straight to gunicorn each
one holds a worker until gunicorn's timeout; nginx reads requests whole before passing
them on, so the workers never see them.

Goal: through nginx, every /healthz answers within 1 s (median under 0.1 s). The direct
figure is printed for comparison (a health check that waits 15 s counts as 15 s).
Needs nginx (`apt-get install nginx-light`). tests/test_reverse_proxy.py is the quick
functional version of the same setup.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import free_port, gunicorn, wait_for_port  # noqa: E402

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
WAIT_CAP_SECONDS = 15.0


def nginx_configuration(
    folder: Path, *, https_port: int, http_port: int, upstream: int, cert: Path, key: Path
) -> Path:
    """deploy/nginx.conf with this run's host, ports and certificate, inside the few lines
    of a top-level nginx.conf that a distribution's own file provides."""
    site = (ROOT / "deploy" / "nginx.conf").read_text()
    replacements = {
        "server 127.0.0.1:8000;": f"server 127.0.0.1:{upstream};",
        "listen 443 ssl;": f"listen 127.0.0.1:{https_port} ssl;",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "https://invoices.example.com$request_uri": f"https://localhost:{https_port}$request_uri",
        "invoices.example.com": "localhost",
        "/etc/ssl/invoiceapp/fullchain.pem": str(cert),
        "/etc/ssl/invoiceapp/privkey.pem": str(key),
    }
    for old, new in replacements.items():
        assert old in site, f"deploy/nginx.conf no longer says {old!r}"
        site = site.replace(old, new)
    temporary = folder / "nginx-temp"
    temporary.mkdir(exist_ok=True)
    temp_paths = "".join(
        f"    {kind}_temp_path {temporary / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = folder / "nginx.conf"
    main.write_text(
        f"daemon off;\nworker_processes 1;\npid {folder / 'nginx.pid'};\n"
        f"error_log {folder / 'nginx-error.log'} warn;\n"
        "events { worker_connections 512; }\n"
        f"http {{\n    access_log off;\n{temp_paths}{site}\n}}\n"
    )
    return main


@contextmanager
def nginx(folder: Path, upstream: int, cert: Path, key: Path) -> Iterator[int]:
    """deploy/nginx.conf in front of 127.0.0.1:``upstream``; yields its HTTPS port."""
    assert NGINX is not None, "nginx is not installed"
    https_port = free_port()
    configuration = nginx_configuration(
        folder, https_port=https_port, http_port=free_port(), upstream=upstream,
        cert=cert, key=key,
    )  # fmt: skip
    process = subprocess.Popen(
        [NGINX, "-c", str(configuration), "-p", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(https_port)
        yield https_port
    finally:
        process.terminate()
        process.wait(timeout=20)


class Tricklers:
    """Connections that send their request one header line at a time, never finishing."""

    def __init__(self, port: int, count: int, context: ssl.SSLContext | None) -> None:
        self.sockets: list[socket.socket] = []
        for _ in range(count):
            connection = socket.create_connection(("127.0.0.1", port), timeout=10)
            if context is not None:
                connection = context.wrap_socket(connection, server_hostname="localhost")
            connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
            self.sockets.append(connection)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self) -> None:
        line = 0
        while not self.stopped.wait(0.2):
            line += 1
            for connection in self.sockets:
                try:
                    connection.sendall(f"X-Slow-{line}: a\r\n".encode())
                except OSError:
                    pass

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        for connection in self.sockets:
            connection.close()


def health_wait(port: int, context: ssl.SSLContext | None) -> float:
    """Seconds until /healthz answers on a fresh connection (capped)."""
    started = time.monotonic()
    try:
        connection = socket.create_connection(("127.0.0.1", port), timeout=WAIT_CAP_SECONDS)
        if context is not None:
            connection = context.wrap_socket(connection, server_hostname="localhost")
        with connection:
            connection.sendall(
                b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            )
            answer = connection.recv(64)
        if not answer.startswith(b"HTTP/1.1 200"):
            return WAIT_CAP_SECONDS
    except OSError:
        return WAIT_CAP_SECONDS
    return min(time.monotonic() - started, WAIT_CAP_SECONDS)


def waits_with_tricklers(
    port: int, context: ssl.SSLContext | None, clients: int, probes: int
) -> list[float]:
    tricklers = Tricklers(port, clients, context)
    try:
        return [health_wait(port, context) for _ in range(probes)]
    finally:
        tricklers.close()


def certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def summary(waits: list[float]) -> str:
    return (
        f"median {statistics.median(waits):.3f} s, max {max(waits):.3f} s "
        f"over {len(waits)} health checks"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=40)
    parser.add_argument("--probes", type=int, default=5)
    arguments = parser.parse_args()
    if NGINX is None:
        print("slow clients: nginx is not installed (apt-get install nginx-light); not measured")
        return 0
    import seed

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        database_url = f"sqlite:///{folder / 'app.sqlite3'}"
        seed.migrate(database_url)
        cert, key = certificate(folder)
        settings = {"FLASK_RATELIMIT_ENABLED": "false", "FLASK_TRUSTED_PROXY_HOPS": "1"}
        with gunicorn(database_url, workers=3, **settings) as base:
            upstream = int(base.rsplit(":", 1)[1])
            # Through nginx first: straight to gunicorn leaves workers busy for a while.
            with nginx(folder, upstream, cert, key) as https_port:
                context = ssl.create_default_context(cafile=str(cert))
                proxied = waits_with_tricklers(
                    https_port, context, arguments.clients, arguments.probes * 4
                )
            direct = waits_with_tricklers(upstream, None, arguments.clients, arguments.probes)
    print(f"/healthz with {arguments.clients} trickling clients (3 sync gunicorn workers)")
    print(f"  straight to gunicorn: {summary(direct)}")
    print(f"  through nginx (TLS):  {summary(proxied)}")
    met = statistics.median(proxied) < 0.1 and max(proxied) < 1.0
    print("goal (through nginx: median < 0.1 s, every one < 1 s):", "met" if met else "MISSED")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
