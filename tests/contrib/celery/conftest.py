"""Fixtures of the Celery runner tests: a real Redis server and real ``celery worker`` processes.

``redis_url`` starts ``redis-server`` once per session on a free loopback port with its files
in a temp dir (skipped when it is not installed, a failure with ``DURABLE_REQUIRE_REDIS=1``).
``celery_workers`` starts ``celery -A tests.celery_app worker --pool=threads`` subprocesses on
the test database (like ``tests/commands/workers.py`` does for ``durable_worker``) and kills
their process groups when the test ends. ``celery_dispatch`` makes the pytest process publish
to that Redis (``DURABLE["DISPATCH"] = "celery"``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from tests.celery_app import app as celery_app
from tests.commands.workers import FAST_SETTINGS, REPO_ROOT, WorkerProcess, wait_for

REDIS_SERVER = os.environ.get("DURABLE_TEST_REDIS_SERVER") or shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _redis_binary() -> str:
    if REDIS_SERVER and os.access(REDIS_SERVER, os.X_OK):
        return REDIS_SERVER
    reason = "redis-server is not installed (apt-get install redis-server)"
    if os.environ.get("DURABLE_REQUIRE_REDIS") == "1":
        pytest.fail(f"DURABLE_REQUIRE_REDIS=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway ``redis-server`` on 127.0.0.1 (no persistence), for the whole session."""
    import redis

    binary = _redis_binary()
    directory = tmp_path_factory.mktemp("redis")
    port = _free_port()
    log = open(directory / "redis.log", "wb")  # noqa: SIM115 (closed at teardown)
    process = subprocess.Popen(
        [
            *(binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)),
            *("--save", "", "--appendonly", "no", "--daemonize", "no"),
        ],
        cwd=directory,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError((directory / "redis.log").read_text(errors="replace"))
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    try:
        wait_for(ready, 30, "redis-server did not answer within 30 s")
        yield url
    finally:
        celery_app.close()  # the publisher's broker connections
        client.close()
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            process.kill()
            process.wait(10)
        log.close()


@pytest.fixture
def celery_dispatch(redis_url: str, settings: Any) -> Iterator[Any]:
    """The pytest process publishes to the test Redis (``DISPATCH = "celery"``); the queue
    starts empty. Yields the Celery app."""
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    celery_app.conf.broker_url = redis_url
    celery_app.set_current()  # the app django-durable's shared tasks publish with
    settings.DURABLE = {**settings.DURABLE, "DISPATCH": "celery"}
    yield celery_app


class CeleryWorkers:
    """Starts ``celery worker`` subprocesses; :meth:`kill_all` kills their process groups."""

    def __init__(self, log_dir: Path, broker_url: str) -> None:
        self.log_dir = log_dir
        self.broker_url = broker_url
        self.workers: list[WorkerProcess] = []

    def start(
        self,
        name: str,
        *,
        settings: dict[str, Any] | None = None,
        concurrency: int = 4,
        beat: bool = False,
    ) -> WorkerProcess:
        """Start a worker (threads pool) and wait until it is ready to take tasks.

        ``settings`` are merged over FAST_SETTINGS and ``DISPATCH = "celery"``; with ``beat``
        it embeds beat (the sweepers and the re-dispatcher every 0.5 s).
        """
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE="tests.settings",
            DURABLE_TEST_DB_NAME=str(connection.settings_dict["NAME"]),
            DURABLE_TEST_SETTINGS=json.dumps(
                {**FAST_SETTINGS, "DISPATCH": "celery", **(settings or {})}
            ),
            CELERY_BROKER_URL=self.broker_url,
            PYTHONUNBUFFERED="1",
            PYTHONPATH=os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])]),
        )
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.celery_app",
            "worker",
            "--pool=threads",
            f"--concurrency={concurrency}",
            "--loglevel=INFO",
            f"--hostname={name}@%h",
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
        ]
        if beat:
            command += ["--beat", f"--schedule={self.log_dir / f'beat-{name}'}"]
        log_path = self.log_dir / f"celery-{name}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = WorkerProcess(name, process, log_path)
        self.workers.append(worker)
        worker.wait_for_output(" ready.", timeout=60)
        return worker

    def kill(self, worker: WorkerProcess) -> None:
        """SIGKILL the worker and everything it started (its process group), and reap it."""
        if worker.returncode is None:
            try:
                os.killpg(worker.pid, signal.SIGKILL)
            except ProcessLookupError:  # pragma: no cover
                pass
        worker.wait(10)

    def tails(self) -> str:
        return "\n".join(worker.tail() for worker in self.workers)

    def kill_all(self) -> None:
        for worker in self.workers:
            try:
                self.kill(worker)
            except subprocess.TimeoutExpired:  # pragma: no cover
                pass
        # Their connections to the test database must be gone before it is flushed.
        time.sleep(0.1)


@pytest.fixture
def celery_workers(
    transactional_db: None, celery_dispatch: Any, redis_url: str, tmp_path: Path
) -> Iterator[CeleryWorkers]:
    """Start Celery workers on the test database and the test Redis; killed at teardown."""
    workers = CeleryWorkers(tmp_path, redis_url)
    try:
        yield workers
    finally:
        workers.kill_all()
