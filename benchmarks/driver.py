"""Runs every workload on ONE database and writes the raw per-repetition numbers as JSON.

Started by ``run.py`` (one process per database, in its own process group, so that the
orchestrator can stop it and every worker it started at once). This process enqueues and
watches the table; the workers are ``manage.py durable_worker`` processes of
``benchproject`` (and, for the floor, ``floor.py worker`` processes).

Usage (normally through run.py): ``driver.py CONFIG_JSON OUTPUT_JSON``.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
PROJECT = HERE / "benchproject"
REPO = HERE.parent

sys.path[:0] = [str(HERE), str(PROJECT), str(REPO)]

import floor  # noqa: E402
from procs import BenchmarkError, Processes  # noqa: E402

#: Poll interval of the completion checks (COUNT of unfinished rows).
COMPLETION_POLL = 0.005
#: Poll interval when waiting for one execution (latency workload).
LATENCY_POLL = 0.001
#: How long worker processes may take to boot and register.
READY_TIMEOUT = 60.0


@dataclass
class Config:
    db: str  # "postgres" | "sqlite"
    database_url: str
    log_dir: str
    reps: int = 3
    n: int = 2000
    children: int = 500
    steps: int = 100
    latency_samples: int = 100
    timeout: float = 120.0
    concurrency: int | None = None
    poll_interval: float | None = None
    python: str = sys.executable


def log(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


class Deadline:
    def __init__(self, seconds: float, what: str) -> None:
        self.seconds = seconds
        self.what = what
        self.end = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise BenchmarkError(f"{self.what}: not finished after {self.seconds:g} s (aborted)")


def wait_until(
    done: Callable[[], bool],
    deadline: Deadline,
    interval: float,
    processes: Processes | None = None,
) -> None:
    while not done():
        if processes is not None:
            processes.check_alive()
        deadline.check()
        time.sleep(interval)


def epoch(value: datetime) -> float:
    return value.timestamp()


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile: the smallest value with ``fraction`` of the values <= it."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class Driver:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.log_dir = Path(config.log_dir)
        self.env = dict(os.environ)
        self.env.update(
            {
                "DATABASE_URL": config.database_url,
                "DJANGO_SETTINGS_MODULE": "benchproject.settings",
                "DURABLE_BENCH_CHAIN_STEPS": str(config.steps),
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.errors: list[dict[str, Any]] = []
        self.abnormal_exits: list[dict[str, Any]] = []
        self.rep = 0

    # -- set-up ------------------------------------------------------------------------------

    def migrate(self) -> None:
        result = subprocess.run(
            [self.config.python, str(PROJECT / "manage.py"), "migrate", "--noinput", "-v", "0"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            raise BenchmarkError(f"manage.py migrate failed:\n{result.stdout}\n{result.stderr}")

    def setup_django(self) -> None:
        os.environ.update(self.env)
        import django

        django.setup()
        from benchapp import tasks

        from django_durable.models import TaskExecution, Worker

        self.tasks = tasks
        self.TaskExecution = TaskExecution
        self.Worker = Worker

    @property
    def is_postgres(self) -> bool:
        return self.config.db == "postgres"

    def truncate(self) -> None:
        from django.db import connection

        tables = [self.TaskExecution._meta.db_table, self.Worker._meta.db_table]
        with connection.cursor() as cursor:
            if self.is_postgres:
                cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY")
            else:
                for table in tables:
                    cursor.execute(f"DELETE FROM {table}")
        if self.is_postgres:
            floor.truncate(self.config.database_url)

    # -- processes -----------------------------------------------------------------------------

    def workers(self, label: str, count: int) -> Processes:
        argv = [
            self.config.python,
            str(PROJECT / "manage.py"),
            "durable_worker",
            "--log-level",
            "WARNING",
        ]
        if self.config.concurrency is not None:
            argv += ["--concurrency", str(self.config.concurrency)]
        if self.config.poll_interval is not None:
            argv += ["--poll-interval", str(self.config.poll_interval)]
        return Processes(
            label=f"rep{self.rep}-{label}",
            argv=argv,
            count=count,
            log_dir=self.log_dir,
            env=self.env,
            cwd=PROJECT,
        )

    def floor_workers(self, label: str, count: int) -> Processes:
        return Processes(
            label=f"rep{self.rep}-{label}",
            argv=[self.config.python, str(HERE / "floor.py"), "worker", self.config.database_url],
            count=count,
            log_dir=self.log_dir,
            env=self.env,
        )

    def note_exits(self, processes: Processes) -> None:
        for stopped in processes.stop():
            if stopped.killed or stopped.returncode not in (0, None):
                self.abnormal_exits.append(
                    {
                        "process": stopped.log.stem,
                        "returncode": stopped.returncode,
                        "killed_after_sigterm_timeout": stopped.killed,
                        "log": stopped.log.name,
                    }
                )

    def wait_workers_ready(self, processes: Processes) -> int:
        """Wait until the workers registered (and, on PostgreSQL, LISTEN), then warm them up.

        Returns the largest execution id so far: the workload's rows are those above it.
        """
        from django.db import connection
        from django.db.models import Max

        deadline = Deadline(READY_TIMEOUT, f"{processes.label}: workers starting")
        pids = processes.pids
        wait_until(
            lambda: (
                self.Worker.objects.filter(pid__in=pids, stopped_at__isnull=True).count()
                >= len(pids)
            ),
            deadline,
            0.02,
            processes,
        )
        if self.is_postgres:

            def listening() -> bool:
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND query ILIKE 'LISTEN %'"
                    )
                    row = cursor.fetchone()
                return row is not None and row[0] >= len(pids)

            wait_until(listening, deadline, 0.02, processes)
        # Warm-up: a few executions through each worker (imports, connections, thread pools).
        handles = self.tasks.noop.enqueue_many([None] * (4 * len(pids)))
        ids = [handle.execution_id for handle in handles]
        wait_until(
            lambda: (
                not self.TaskExecution.objects.filter(
                    execution_id__in=ids, is_finished=False
                ).exists()
            ),
            deadline,
            COMPLETION_POLL,
            processes,
        )
        time.sleep(0.2)  # let the sweepers settle the warm-up rows
        return int(self.TaskExecution.objects.aggregate(m=Max("id"))["m"] or 0)

    def wait_floor_ready(self, processes: Processes) -> None:
        deadline = Deadline(READY_TIMEOUT, f"{processes.label}: floor workers starting")

        def ready() -> bool:
            return all(log.exists() and "ready" in log.read_text() for log in processes.logs)

        wait_until(ready, deadline, 0.02, processes)

    # -- engine workloads -----------------------------------------------------------------

    def _finished_w1(self, base: int, n: int) -> bool:
        from django.db.models import Count, Q

        counts = self.TaskExecution.objects.filter(id__gt=base).aggregate(
            total=Count("id"), unfinished=Count("id", filter=Q(is_finished=False))
        )
        return bool(counts["total"] >= n and counts["unfinished"] == 0)

    def _w1_span(self, base: int, n: int, what: str) -> tuple[float, float]:
        """(first claim, last finish) of the W1 rows as epoch seconds; checks all completed."""
        from django.db.models import Count, Max, Min

        rows = self.TaskExecution.objects.filter(id__gt=base)
        statuses = dict(rows.values_list("status").annotate(c=Count("id")).order_by())
        if statuses.get("completed", 0) != n:
            raise BenchmarkError(f"{what}: expected {n} completed executions, got {statuses}")
        span = rows.aggregate(first=Min("started_at"), last=Max("finished_at"))
        return epoch(span["first"]), epoch(span["last"])

    def w1_end_to_end(self, processes_count: int) -> dict[str, float]:
        """Idle workers; N single enqueue() calls; tasks/s from the first enqueue to the last
        completion (its finished_at)."""
        n = self.config.n
        what = f"W1 {processes_count} proc end-to-end"
        with self.workers(f"w1-{processes_count}proc-e2e", processes_count) as processes:
            try:
                base = self.wait_workers_ready(processes)
                deadline = Deadline(self.config.timeout, what)
                noop = self.tasks.noop
                cpu_before = processes.cpu_seconds()
                start_wall = time.time()
                start = time.perf_counter()
                for i in range(n):
                    noop.enqueue(i)
                    if i % 100 == 0:
                        deadline.check()
                enqueue_s = time.perf_counter() - start
                wait_until(lambda: self._finished_w1(base, n), deadline, COMPLETION_POLL, processes)
                cpu = processes.cpu_seconds() - cpu_before
                rss = processes.peak_rss_mb()
            finally:
                self.note_exits(processes)
        _, last = self._w1_span(base, n, what)
        suffix = f"{processes_count}proc"
        result = {
            f"w1_{suffix}_tps": n / (last - start_wall),
            f"w1_{suffix}_worker_cpu_ms_per_task": 1000 * cpu / n,
            f"_rss_w1_{suffix}_e2e": rss,
        }
        if processes_count == 1:
            result["enqueue_per_s"] = n / enqueue_s
        else:
            result["enqueue_per_s_2proc"] = n / enqueue_s
        return result

    def w1_run_only(self, processes_count: int) -> dict[str, float]:
        """N rows enqueued with enqueue_many before any worker runs; tasks/s from the first
        claim (started_at) to the last finish."""
        n = self.config.n
        what = f"W1 {processes_count} proc run-only"
        start = time.perf_counter()
        self.tasks.noop.enqueue_many(list(range(n)))
        enqueue_many_s = time.perf_counter() - start
        with self.workers(f"w1-{processes_count}proc-run", processes_count) as processes:
            try:
                deadline = Deadline(self.config.timeout, what)
                wait_until(lambda: self._finished_w1(0, n), deadline, COMPLETION_POLL, processes)
                rss = processes.peak_rss_mb()
            finally:
                self.note_exits(processes)
        first, last = self._w1_span(0, n, what)
        suffix = f"{processes_count}proc"
        result = {f"w1_{suffix}_run_tps": n / (last - first), f"_rss_w1_{suffix}_run": rss}
        if processes_count == 1:
            result["enqueue_many_per_s"] = n / enqueue_many_s
        return result

    def _wait_execution(
        self, execution_id: str, deadline: Deadline, interval: float, processes: Processes
    ) -> dict[str, Any]:
        rows = self.TaskExecution.objects.filter(execution_id=execution_id)
        fields = ("is_finished", "status", "created_at", "finished_at", "output", "error")
        found: dict[str, Any] = {}

        def finished() -> bool:
            row = rows.values(*fields).first()
            if row is not None and row["is_finished"]:
                found.update(row)
                return True
            return False

        wait_until(finished, deadline, interval, processes)
        return found

    def _one_execution(self, label: str, what: str, enqueue: Callable[[], Any]) -> dict[str, Any]:
        with self.workers(label, 1) as processes:
            try:
                self.wait_workers_ready(processes)
                deadline = Deadline(self.config.timeout, what)
                handle = enqueue()
                row = self._wait_execution(
                    handle.execution_id, deadline, COMPLETION_POLL, processes
                )
            finally:
                self.note_exits(processes)
        if row["status"] != "completed":
            raise BenchmarkError(f"{what}: ended {row['status']}: {row['error']}")
        row["seconds"] = epoch(row["finished_at"]) - epoch(row["created_at"])
        return row

    def w2_fan_out(self) -> dict[str, float]:
        children = self.config.children
        what = f"W2 fan-out of {children}"
        row = self._one_execution(
            "w2", what, lambda: self.tasks.fanout.enqueue({"children": children})
        )
        if json.loads(row["output"]) != children:
            raise BenchmarkError(f"{what}: finalize returned {row['output']}, not {children}")
        return {"w2_s": row["seconds"]}

    def w3_chain(self) -> dict[str, float]:
        steps = self.config.steps
        what = f"W3 chain of {steps}"
        row = self._one_execution("w3", what, lambda: self.tasks.chain.enqueue(0))
        if json.loads(row["output"]) != steps:
            raise BenchmarkError(f"{what}: chain returned {row['output']}, not {steps}")
        return {"w3_s": row["seconds"], "w3_per_hop_ms": 1000 * row["seconds"] / steps}

    def latency(self) -> dict[str, float]:
        samples = self.config.latency_samples
        what = f"L latency ({samples} single enqueues)"
        stored: list[float] = []
        observed: list[float] = []
        with self.workers("latency", 1) as processes:
            try:
                self.wait_workers_ready(processes)
                deadline = Deadline(self.config.timeout, what)
                noop = self.tasks.noop
                for i in range(samples):
                    start = time.perf_counter()
                    handle = noop.enqueue(i)
                    row = self._wait_execution(
                        handle.execution_id, deadline, LATENCY_POLL, processes
                    )
                    observed.append(1000 * (time.perf_counter() - start))
                    if row["status"] != "completed":
                        raise BenchmarkError(f"{what}: ended {row['status']}: {row['error']}")
                    stored.append(1000 * (epoch(row["finished_at"]) - epoch(row["created_at"])))
            finally:
                self.note_exits(processes)
        return {
            "latency_p50_ms": percentile(stored, 0.50),
            "latency_p95_ms": percentile(stored, 0.95),
            "latency_observed_p50_ms": percentile(observed, 0.50),
            "latency_observed_p95_ms": percentile(observed, 0.95),
        }

    # -- the floor ---------------------------------------------------------------------------

    def floor_end_to_end(self, processes_count: int) -> dict[str, float]:
        n = self.config.n
        what = f"floor {processes_count} proc end-to-end"
        enqueuer = floor.Enqueuer(self.config.database_url)
        try:
            with self.floor_workers(f"floor-{processes_count}proc-e2e", processes_count) as procs:
                try:
                    self.wait_floor_ready(procs)
                    deadline = Deadline(self.config.timeout, what)
                    cpu_before = procs.cpu_seconds()
                    start_wall = time.time()
                    start = time.perf_counter()
                    for i in range(n):
                        enqueuer.enqueue(json.dumps(i))
                    enqueue_s = time.perf_counter() - start
                    wait_until(
                        lambda: enqueuer.counts() == (n, 0), deadline, COMPLETION_POLL, procs
                    )
                    cpu = procs.cpu_seconds() - cpu_before
                finally:
                    self.note_exits(procs)
            _, last, _ = enqueuer.span()
        finally:
            enqueuer.close()
        suffix = "" if processes_count == 1 else "_2proc"
        result = {
            f"floor{suffix}_tps": n / (last - start_wall),
            f"floor{suffix}_worker_cpu_ms_per_task": 1000 * cpu / n,
        }
        if processes_count == 1:
            result["floor_enqueue_per_s"] = n / enqueue_s
        return result

    def floor_run_only(self, processes_count: int) -> dict[str, float]:
        n = self.config.n
        what = f"floor {processes_count} proc run-only"
        enqueuer = floor.Enqueuer(self.config.database_url)
        try:
            enqueuer.enqueue_many([json.dumps(i) for i in range(n)])
            with self.floor_workers(f"floor-{processes_count}proc-run", processes_count) as procs:
                try:
                    deadline = Deadline(self.config.timeout, what)
                    wait_until(
                        lambda: enqueuer.counts() == (n, 0), deadline, COMPLETION_POLL, procs
                    )
                finally:
                    self.note_exits(procs)
            first, last, _ = enqueuer.span()
        finally:
            enqueuer.close()
        suffix = "" if processes_count == 1 else "_2proc"
        return {f"floor{suffix}_run_tps": n / (last - first)}

    # -- the run -------------------------------------------------------------------------------

    def step(
        self, metrics: dict[str, float], name: str, function: Callable[[], dict[str, float]]
    ) -> None:
        started = time.monotonic()
        try:
            values = function()
        except BenchmarkError as error:
            self.errors.append({"rep": self.rep, "workload": name, "error": str(error)})
            log(f"{name}: FAILED: {error}")
        except Exception as error:
            self.errors.append(
                {
                    "rep": self.rep,
                    "workload": name,
                    "error": repr(error),
                    "traceback": traceback.format_exc(),
                }
            )
            log(f"{name}: FAILED: {error!r}")
        else:
            metrics.update(values)
            shown = ", ".join(
                f"{key}={value:.4g}" for key, value in values.items() if not key.startswith("_")
            )
            log(f"{name}: {shown}  ({time.monotonic() - started:.1f} s)")
        finally:
            self.truncate()

    def run(self) -> list[dict[str, float]]:
        self.migrate()
        self.setup_django()
        if self.is_postgres:
            floor.create_schema(self.config.database_url)
        self.truncate()
        reps: list[dict[str, float]] = []
        for rep in range(1, self.config.reps + 1):
            self.rep = rep
            log(f"[{self.config.db}] repetition {rep}/{self.config.reps}")
            metrics: dict[str, float] = {}
            plan: list[tuple[str, Callable[[], dict[str, float]]]] = []
            if self.is_postgres:
                plan += [(f"floor {c}p e2e", partial(self.floor_end_to_end, c)) for c in (1, 2)]
                plan += [(f"floor {c}p run", partial(self.floor_run_only, c)) for c in (1, 2)]
            plan += [(f"W1 {c}p e2e", partial(self.w1_end_to_end, c)) for c in (1, 2)]
            plan += [(f"W1 {c}p run", partial(self.w1_run_only, c)) for c in (1, 2)]
            for name, function in plan:
                self.step(metrics, name, function)
            self.step(metrics, "W2 fan-out", self.w2_fan_out)
            self.step(metrics, "W3 chain", self.w3_chain)
            self.step(metrics, "L latency", self.latency)
            rss = [value for key, value in metrics.items() if key.startswith("_rss_w1_")]
            if rss:
                metrics["worker_rss_mb"] = max(rss)
            reps.append(metrics)
        return reps


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    config = Config(**json.loads(Path(sys.argv[1]).read_text()))
    driver = Driver(config)
    output: dict[str, Any] = {"config": asdict(config)}
    try:
        output["reps"] = driver.run()
    except BenchmarkError as error:
        driver.errors.append({"rep": driver.rep, "workload": "setup", "error": str(error)})
        output["reps"] = []
    except KeyboardInterrupt:  # SIGTERM/SIGINT from run.py: the with-blocks stopped the workers
        driver.errors.append({"rep": driver.rep, "workload": "driver", "error": "interrupted"})
        output["reps"] = []
        return 130
    finally:
        output["errors"] = driver.errors
        output["abnormal_exits"] = driver.abnormal_exits
        Path(sys.argv[2]).write_text(json.dumps(output, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
