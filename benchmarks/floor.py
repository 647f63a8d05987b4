"""The floor: a minimal raw-SQL queue on PostgreSQL (psycopg 3), W1 measured against it.

One ``INSERT`` per task (autocommit); workers claim 100 rows at a time with
``FOR UPDATE SKIP LOCKED`` in one short transaction, then record each completion with one
``UPDATE`` (autocommit). Idle workers poll every ``IDLE_SLEEP`` seconds (no LISTEN/NOTIFY).
It does what a durable queue must do at the least, so the engine's W1 numbers are reported as
a ratio to it, measured in the same run on the same server.

``python benchmarks/floor.py worker DSN`` runs one worker process until SIGTERM/SIGINT; the
driver imports the rest.
"""

from __future__ import annotations

import signal
import sys
import time
from types import FrameType
from typing import Any

import psycopg

TABLE = "bench_floor_queue"
CLAIM_SIZE = 100
IDLE_SLEEP = 0.005

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id bigserial PRIMARY KEY,
    payload text NOT NULL,
    status text NOT NULL DEFAULT 'ready',
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at timestamptz,
    finished_at timestamptz
);
CREATE INDEX IF NOT EXISTS {TABLE}_ready_idx ON {TABLE} (id) WHERE status = 'ready';
"""

INSERT = f"INSERT INTO {TABLE} (payload) VALUES (%s)"
CLAIM = f"""
SELECT id, payload FROM {TABLE} WHERE status = 'ready' ORDER BY id
LIMIT {CLAIM_SIZE} FOR UPDATE SKIP LOCKED
"""
MARK_RUNNING = (
    f"UPDATE {TABLE} SET status = 'running', started_at = clock_timestamp() WHERE id = ANY(%s)"
)
MARK_DONE = f"UPDATE {TABLE} SET status = 'done', finished_at = clock_timestamp() WHERE id = %s"


def create_schema(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(SCHEMA)


def truncate(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f"TRUNCATE {TABLE} RESTART IDENTITY")


class Enqueuer:
    """The benchmark side: one autocommit ``INSERT`` per task."""

    def __init__(self, dsn: str) -> None:
        self.connection = psycopg.connect(dsn, autocommit=True)

    def enqueue(self, payload: str) -> None:
        self.connection.execute(INSERT, (payload,))

    def enqueue_many(self, payloads: list[str]) -> None:
        with self.connection.transaction(), self.connection.cursor() as cursor:
            cursor.executemany(INSERT, [(payload,) for payload in payloads])

    def counts(self) -> tuple[int, int]:
        """(rows, rows not done)."""
        row = self.connection.execute(
            f"SELECT count(*), count(*) FILTER (WHERE status <> 'done') FROM {TABLE}"
        ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def span(self) -> tuple[float, float, float]:
        """Epoch seconds of the first claim, the last finish and the first creation."""
        row = self.connection.execute(
            f"SELECT extract(epoch FROM min(started_at)), extract(epoch FROM max(finished_at)), "
            f"extract(epoch FROM min(created_at)) FROM {TABLE}"
        ).fetchone()
        assert row is not None and row[0] is not None and row[1] is not None
        return float(row[0]), float(row[1]), float(row[2])

    def close(self) -> None:
        self.connection.close()


def run_task(payload: str) -> Any:
    """The no-op task."""
    return payload


def worker(dsn: str) -> int:
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with psycopg.connect(dsn, autocommit=True) as connection:
        print("ready", flush=True)
        while not stopping:
            with connection.transaction():
                claimed = connection.execute(CLAIM).fetchall()
                if claimed:
                    connection.execute(MARK_RUNNING, ([row[0] for row in claimed],))
            if not claimed:
                time.sleep(IDLE_SLEEP)
                continue
            for execution_id, payload in claimed:
                run_task(payload)
                connection.execute(MARK_DONE, (execution_id,))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "worker":
        sys.exit("usage: floor.py worker DSN")
    sys.exit(worker(sys.argv[2]))
