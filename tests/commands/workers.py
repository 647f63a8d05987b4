"""Real ``manage.py durable_worker`` processes for the tests, and a restartable PostgreSQL.

:class:`WorkerProcesses` starts ``python -m django durable_worker`` subprocesses on the test
database (``DURABLE_TEST_DB_NAME``) with short intervals (``DURABLE_TEST_SETTINGS``), writes the
output of each (stdout and stderr, with timestamps and thread names: see ``tests/settings.py``)
to a file under the test's ``tmp_path`` and kills every one still alive when the test ends.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from django.db import connection

REPO_ROOT = Path(__file__).resolve().parents[2]

#: The workers' ``--log-level`` (``DURABLE_TEST_WORKER_LOG_LEVEL=DEBUG`` to see every claim).
LOG_LEVEL = os.environ.get("DURABLE_TEST_WORKER_LOG_LEVEL", "INFO")

#: Short intervals so that recovery happens within seconds: a silent worker is taken as dead
#: after 3 heartbeats (1.5 s), an expired execution after its timeout + 1 s.
FAST_SETTINGS: dict[str, Any] = {
    "EXPIRE_LEEWAY": 1,
    "HEARTBEAT_INTERVAL": 0.5,
    "POLL_INTERVAL": 0.05,
    "SHUTDOWN_TIMEOUT": 10,
}


def wait_for(
    condition: Callable[[], Any],
    timeout: float,
    message: str | Callable[[], str],
    interval: float = 0.05,
) -> Any:
    """Poll ``condition`` until it is truthy and return it; fail with ``message`` at ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(message() if callable(message) else message)
        time.sleep(interval)


class WorkerProcess:
    """One ``durable_worker`` subprocess and its output file."""

    def __init__(self, name: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.name = name
        self.process = process
        self.log_path = log_path

    def __repr__(self) -> str:
        return f"<WorkerProcess {self.name} pid={self.pid} returncode={self.process.poll()}>"

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 40) -> str:
        text = "\n".join(self.output().splitlines()[-lines:])
        return f"--- worker {self.name} (pid {self.pid}, exit {self.returncode}) ---\n{text}"

    def wait_for_output(self, text: str, timeout: float = 30.0) -> None:
        """Wait until ``text`` appears in the output (fails at once if the process died)."""

        def seen() -> bool:
            if text in self.output():
                return True
            if self.process.poll() is not None:
                raise AssertionError(f"worker {self.name} exited before {text!r}\n{self.tail()}")
            return False

        wait_for(seen, timeout, lambda: f"worker {self.name}: no {text!r}\n{self.tail()}")

    def send_signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL and reap (no-op if it already exited)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)


class WorkerProcesses:
    """Starts worker subprocesses on the test database; :meth:`kill_all` ends them."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.workers: list[WorkerProcess] = []

    def start(
        self,
        name: str,
        *,
        settings: dict[str, Any] | None = None,
        args: Sequence[str] = (),
        wait_started: bool = True,
    ) -> WorkerProcess:
        """Start ``python -m django durable_worker --log-level INFO *args`` from the repo root.

        ``settings`` are merged over :data:`FAST_SETTINGS`; with ``wait_started`` this returns
        once the worker logged that it started.
        """
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE="tests.settings",
            DURABLE_TEST_DB_NAME=str(connection.settings_dict["NAME"]),
            DURABLE_TEST_SETTINGS=json.dumps({**FAST_SETTINGS, **(settings or {})}),
            PYTHONUNBUFFERED="1",
            PYTHONPATH=os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])]),
        )
        log_path = self.log_dir / f"worker-{name}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "django", "durable_worker", "--log-level", LOG_LEVEL, *args],
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        worker = WorkerProcess(name, process, log_path)
        self.workers.append(worker)
        if wait_started:
            worker.wait_for_output("event=started concurrency")
        return worker

    def tails(self) -> str:
        return "\n".join(worker.tail() for worker in self.workers)

    def kill_all(self) -> None:
        for worker in self.workers:
            try:
                worker.kill()
            except subprocess.TimeoutExpired:  # pragma: no cover
                pass


# -- PostgreSQL ------------------------------------------------------------------------------


def postgres_datadir() -> str | None:
    """The data directory of a test server we may restart (scripts/test.sh), if any."""
    if not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        return None
    return os.environ.get("DURABLE_TEST_PG_DATADIR") or None


def restart_postgres(log_path: Path) -> float:
    """``pg_ctl restart -m fast`` the test server (as the ``postgres`` user when we are root).

    The server's own log goes to ``server.log`` in ``DURABLE_TEST_PG_SOCKETDIR`` (where
    scripts/test.sh keeps it), pg_ctl's output to ``log_path``. Returns the seconds it took.
    """
    datadir = postgres_datadir()
    assert datadir, "no restartable PostgreSQL (DURABLE_TEST_PG_DATADIR)"
    bindir = os.environ.get("DURABLE_TEST_PG_BINDIR", "")
    pg_ctl = os.path.join(bindir, "pg_ctl") if bindir else "pg_ctl"
    command = [pg_ctl, "-D", datadir, "-w", "-t", "60", "restart", "-m", "fast"]
    socket_dir = os.environ.get("DURABLE_TEST_PG_SOCKETDIR")
    if socket_dir:
        command += ["-l", os.path.join(socket_dir, "server.log")]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    started = time.monotonic()
    # Output to a file, never a pipe: the restarted server inherits it and keeps it open.
    with open(log_path, "ab") as log:
        subprocess.run(
            command,
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=90,
        )
    return time.monotonic() - started
