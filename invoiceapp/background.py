"""Work that runs after the answer has been sent, off the request worker.

Why it exists: /forgot-password must answer alike for every address, and not only in
its bytes. Work that a WSGI server runs when it closes the response (``call_on_close``)
still keeps that worker busy, and the next request on the same kept-alive connection
(or the next one the only worker would take) waits for it: how long it waits tells a
verified account from an unknown address. So the look-up and the mail go to a small pool
of threads in each process, and the worker is free the moment the answer is out.

``BACKGROUND_JOBS`` chooses how:

- ``"threads"`` (the default): ``BACKGROUND_THREADS`` threads per process. A job
  still waiting when the process stops is finished first (Python joins the pool at exit).
- ``"inline"``: the job runs in the worker as the response is closed. The test suite
  uses it, so a test knows the work is done once it has closed the response.

Tests that use the threads wait for them with ``wait_for_jobs(app)``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait

from flask import Flask, current_app
from werkzeug.wrappers import Response

Job = Callable[[], None]


class JobPool:
    """A thread pool per process that remembers which jobs are still running."""

    def __init__(self, app: Flask) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._owner_pid: int | None = None
        self._pending: set[Future[None]] = set()

    def submit(self, job: Job) -> None:
        with self._lock:
            # Threads do not survive fork(): a pool made before a server forked its
            # workers would be a dead one in each of them. Make one per process.
            if self._executor is None or self._owner_pid != os.getpid():
                self._executor = ThreadPoolExecutor(
                    max_workers=self._app.config["BACKGROUND_THREADS"],
                    thread_name_prefix="invoiceapp-background",
                )
                self._owner_pid = os.getpid()
                self._pending = set()
            future = self._executor.submit(self._run, job)
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _run(self, job: Job) -> None:
        try:
            job()
        except Exception as error:  # nobody waits for the answer: the log is all there is
            # The class only: error texts can quote an address or a token.
            self._app.logger.warning("background job failed: %s", type(error).__name__)

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)

    def wait(self, timeout: float) -> bool:
        """Wait until every job submitted so far has finished; False on timeout."""
        with self._lock:
            pending = list(self._pending)
        _, not_done = wait(pending, timeout=timeout)
        return not not_done


def after_response(response: Response, job: Job) -> None:
    """Run ``job`` once ``response`` has been sent: on the pool, or inline if so configured.

    ``job`` carries its own context (``copy_current_request_context``): it runs after
    this request's context is gone.
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if app.config["BACKGROUND_JOBS"] == "inline":
        response.call_on_close(job)
        return
    pool = app.extensions["background_jobs"]
    response.call_on_close(lambda: pool.submit(job))


def wait_for_jobs(app: Flask, timeout: float = 10) -> bool:
    """For tests and scripts: True once every job submitted so far is done."""
    return app.extensions["background_jobs"].wait(timeout)


def init_app(app: Flask) -> None:
    if app.config["BACKGROUND_JOBS"] not in ("threads", "inline"):
        raise ValueError('BACKGROUND_JOBS must be "threads" or "inline"')
    app.extensions["background_jobs"] = JobPool(app)
