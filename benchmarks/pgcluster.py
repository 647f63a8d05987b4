"""A throwaway PostgreSQL cluster for the benchmarks: initdb, start on a free port, stop, remove.

The server keeps PostgreSQL's default durability settings (``fsync``, ``synchronous_commit``
and ``full_page_writes`` on); only ``listen_addresses``, the socket directory, the port and
``max_connections`` are set. Run as root, the server runs as the ``postgres`` OS user (initdb
refuses root).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

DEFAULT_BINDIR = Path("/usr/lib/postgresql/15/bin")
DATABASE = "durable_bench"


def find_bindir() -> Path:
    """``$PG_BINDIR``, PostgreSQL 15's directory, or the newest ``/usr/lib/postgresql/*/bin``."""
    candidates: list[Path] = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(Path(os.environ["PG_BINDIR"]))
    candidates.append(DEFAULT_BINDIR)
    candidates += sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    raise RuntimeError(
        "PostgreSQL server binaries not found (looked at $PG_BINDIR and /usr/lib/postgresql/*/bin)"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresCluster:
    """``with PostgresCluster() as cluster: cluster.url`` — stopped and removed on exit."""

    def __init__(self, bindir: Path | None = None, max_connections: int = 200) -> None:
        self.bindir = bindir or find_bindir()
        self.max_connections = max_connections
        self.tmpdir: Path | None = None
        self.port: int | None = None
        self.started = False
        self.as_root = os.geteuid() == 0
        #: Where to copy the server log before the directory is removed (None: nowhere).
        self.keep_log: Path | None = None

    @property
    def datadir(self) -> Path:
        assert self.tmpdir is not None
        return self.tmpdir / "data"

    @property
    def logfile(self) -> Path:
        assert self.tmpdir is not None
        return self.tmpdir / "server.log"

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _cmd(self, *args: str) -> list[str]:
        if self.as_root:
            return ["runuser", "-u", "postgres", "--", *args]
        return list(args)

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._cmd(*args),
            cwd="/",
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self) -> None:
        # The postgres OS user must reach the directory: /tmp, not a private $TMPDIR.
        self.tmpdir = Path(tempfile.mkdtemp(prefix="durable-bench-pg.", dir="/tmp"))
        if self.as_root:
            shutil.chown(self.tmpdir, "postgres", "postgres")
        initdb = self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.datadir),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-instructions",
        )
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{initdb.stdout}\n{initdb.stderr}")
        with open(self.datadir / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# benchmarks/pgcluster.py (durability settings left at their defaults)\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.tmpdir}'\n"
                f"max_connections = {self.max_connections}\n"
            )
        last_error = ""
        for _ in range(3):
            port = free_port()
            result = self._run(
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.datadir),
                "-l",
                str(self.logfile),
                "-o",
                f"-p {port}",
                "-w",
                "-t",
                "60",
                "start",
            )
            if result.returncode == 0:
                self.port = port
                self.started = True
                break
            last_error = result.stdout + result.stderr + self.log_tail()
        else:
            raise RuntimeError(f"could not start PostgreSQL:\n{last_error}")
        self._create_database()

    def _create_database(self) -> None:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(
                    host="127.0.0.1",
                    port=self.port,
                    user="postgres",
                    dbname="postgres",
                    autocommit=True,
                    connect_timeout=5,
                ) as connection:
                    connection.execute(f"CREATE DATABASE {DATABASE}")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def version(self) -> str:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as connection:
            row = connection.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the server (fast, then immediate) and remove its directory; idempotent."""
        if self.tmpdir is None:
            return
        if self.started and (self.datadir / "postmaster.pid").exists():
            pg_ctl = str(self.bindir / "pg_ctl")
            for mode in ("fast", "immediate"):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    result = self._run(
                        pg_ctl,
                        "-D",
                        str(self.datadir),
                        "-m",
                        mode,
                        "-w",
                        "-t",
                        "30",
                        "stop",
                        timeout=45,
                    )
                    if result.returncode == 0:
                        break
        self.started = False
        if self.keep_log is not None and self.logfile.exists():
            with contextlib.suppress(OSError):
                self.keep_log.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self.logfile, self.keep_log)
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        self.tmpdir = None

    def __enter__(self) -> PostgresCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
