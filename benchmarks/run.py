#!/usr/bin/env python
"""django-durable benchmarks (issue 7): W1 flat, W2 fan-out, W3 chain, L latency, the floor.

    python benchmarks/run.py [--quick] [--db postgres|sqlite|both] [--reps 3]

Starts a throwaway PostgreSQL cluster (default durability settings) and/or a SQLite file in a
temporary directory, runs every workload with real ``manage.py durable_worker`` processes,
prints a table (median [min-max], ratio to the raw-SQL floor) and writes
``benchmarks/results/latest.json``. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VENV = REPO / ".venv"
RESULTS = HERE / "results"
DEFAULT_OUTPUT = RESULTS / "latest.json"


def _ensure_venv() -> None:
    """Re-run with the repository's virtualenv when Django or psycopg is missing here."""
    try:
        import django  # noqa: F401
        import psycopg  # noqa: F401
    except ImportError:
        python = VENV / "bin" / "python"
        if python.exists() and Path(sys.prefix).resolve() != VENV.resolve():
            os.execv(str(python), [str(python), str(Path(__file__).resolve()), *sys.argv[1:]])
        raise


_ensure_venv()
sys.path.insert(0, str(HERE))

from pgcluster import PostgresCluster  # noqa: E402
from procs import kill_group  # noqa: E402

# (key, label, unit, floor key the ratio is taken against)
ROWS: list[tuple[str, str, str, str | None]] = [
    ("w1_1proc_tps", "W1 flat, 1 worker, enqueue->complete", "tasks/s", "floor_tps"),
    ("w1_2proc_tps", "W1 flat, 2 workers, enqueue->complete", "tasks/s", "floor_2proc_tps"),
    ("w1_1proc_run_tps", "W1 flat, 1 worker, run only", "tasks/s", "floor_run_tps"),
    ("w1_2proc_run_tps", "W1 flat, 2 workers, run only", "tasks/s", "floor_2proc_run_tps"),
    ("enqueue_per_s", "enqueue(), one call per task", "/s", "floor_enqueue_per_s"),
    ("enqueue_per_s_2proc", "enqueue(), 2 workers running", "/s", "floor_enqueue_per_s"),
    ("enqueue_many_per_s", "enqueue_many(), one call", "/s", None),
    ("w2_s", "W2 fan-out + finalize", "s", None),
    ("w3_s", "W3 chain", "s", None),
    ("w3_per_hop_ms", "W3 per hop", "ms", None),
    ("latency_p50_ms", "L p50 (created_at->finished_at)", "ms", None),
    ("latency_p95_ms", "L p95 (created_at->finished_at)", "ms", None),
    ("latency_observed_p50_ms", "L p50 (seen by the enqueuer)", "ms", None),
    ("latency_observed_p95_ms", "L p95 (seen by the enqueuer)", "ms", None),
    ("worker_rss_mb", "worker peak RSS (VmHWM), W1", "MiB", None),
    (
        "w1_1proc_worker_cpu_ms_per_task",
        "worker CPU per task, W1 1 worker (lower=better)",
        "ms",
        "floor_worker_cpu_ms_per_task",
    ),
    (
        "w1_2proc_worker_cpu_ms_per_task",
        "worker CPU per task, W1 2 workers (lower=better)",
        "ms",
        "floor_2proc_worker_cpu_ms_per_task",
    ),
    ("floor_tps", "floor, 1 worker, enqueue->complete", "tasks/s", None),
    ("floor_2proc_tps", "floor, 2 workers, enqueue->complete", "tasks/s", None),
    ("floor_run_tps", "floor, 1 worker, run only", "tasks/s", None),
    ("floor_2proc_run_tps", "floor, 2 workers, run only", "tasks/s", None),
    ("floor_enqueue_per_s", "floor INSERT, one per task", "/s", None),
    ("floor_worker_cpu_ms_per_task", "floor worker CPU per task, 1 worker", "ms", None),
    ("floor_2proc_worker_cpu_ms_per_task", "floor worker CPU per task, 2 workers", "ms", None),
]

QUICK = {"reps": 1, "n": 300, "children": 100, "steps": 20, "latency_samples": 20}
FULL = {"reps": 3, "n": 2000, "children": 500, "steps": 100, "latency_samples": 100}


class Interrupted(Exception):
    pass


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


# -- machine --------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def machine_info() -> dict[str, Any]:
    import django

    status = _git("status", "--porcelain", "--", "django_durable")
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)),
        "memory_gib": _mem_total_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "postgres": None,
        "sqlite": __import__("sqlite3").sqlite_version,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load_average_at_start": list(os.getloadavg()),
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "engine_has_uncommitted_changes": bool(status) if status is not None else None,
    }


# -- one database ---------------------------------------------------------------------------


def run_driver(db: str, database_url: str, options: dict[str, Any], work: Path) -> dict[str, Any]:
    """Run driver.py for ``db`` in its own process group; stop the whole group on any exit."""
    log_dir = RESULTS / "logs" / db
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    config = {"db": db, "database_url": database_url, "log_dir": str(log_dir), **options}
    config_path = work / f"{db}-config.json"
    output_path = work / f"{db}-output.json"
    config_path.write_text(json.dumps(config))
    # Every workload is bounded; this only catches a driver that hangs outside of them.
    budget = options["reps"] * 16 * (options["timeout"] + 120) + 600
    driver = subprocess.Popen(
        [sys.executable, str(HERE / "driver.py"), str(config_path), str(output_path)],
        start_new_session=True,
    )
    try:
        driver.wait(budget)
    except subprocess.TimeoutExpired:
        print(f"!! {db}: the driver ran over {budget:.0f} s; stopping it", file=sys.stderr)
    finally:
        kill_group(driver.pid, leader=driver)
    if output_path.exists():
        result: dict[str, Any] = json.loads(output_path.read_text())
    else:
        result = {
            "reps": [],
            "errors": [{"workload": "driver", "error": f"driver exited {driver.returncode}"}],
            "abnormal_exits": [],
        }
    result["worker_log_problems"] = scan_logs(log_dir)
    return result


PROBLEM = re.compile(r"level=(WARNING|ERROR|CRITICAL)|Traceback|Error|Exception")


def scan_logs(log_dir: Path) -> dict[str, dict[str, Any]]:
    """Count warnings, errors and tracebacks in the workers' logs; drop the empty logs."""
    problems: dict[str, dict[str, Any]] = {}
    for log in sorted(log_dir.glob("*.log")):
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        meaningful = [line for line in lines if line.strip() != "ready"]
        if not meaningful:
            log.unlink()
            continue
        samples: list[str] = []
        for line in meaningful:
            if PROBLEM.search(line) and line[:300] not in samples and len(samples) < 5:
                samples.append(line[:300])
        problems[str(log.relative_to(HERE))] = {
            "lines": len(meaningful),
            "errors": sum(bool(re.search(r"level=(ERROR|CRITICAL)", line)) for line in lines),
            "warnings": sum("level=WARNING" in line for line in lines),
            "tracebacks": sum("Traceback (most recent call last)" in line for line in lines),
            "samples": samples or meaningful[:3],
        }
    return problems


def scan_server_log(log: Path) -> list[str]:
    """The PostgreSQL server log's ERROR/FATAL/PANIC lines (deadlocks, failed statements)."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line[:300] for line in lines if re.search(r"\b(ERROR|FATAL|PANIC):", line)][:50]


# -- aggregation and report -----------------------------------------------------------------


def summarize(raw: dict[str, Any], floor_medians: dict[str, float]) -> dict[str, Any]:
    values: dict[str, list[float]] = {}
    for rep in raw.get("reps", []):
        for key, value in rep.items():
            if not key.startswith("_") and value is not None:
                values.setdefault(key, []).append(float(value))
    order = [row[0] for row in ROWS]
    keys = sorted(values, key=lambda k: (order.index(k) if k in order else len(order), k))
    summary: dict[str, Any] = {key: statistics.median(values[key]) for key in keys}
    summary["spread"] = {
        key: {"min": min(values[key]), "max": max(values[key]), "values": values[key]}
        for key in keys
    }
    floors = {**floor_medians, **{k: v for k, v in summary.items() if k.startswith("floor")}}
    summary["ratio_to_floor"] = {
        key: summary[key] / floors[floor_key]
        for key, _, _, floor_key in ROWS
        if floor_key and key in summary and floors.get(floor_key)
    }
    summary["repetitions"] = len(raw.get("reps", []))
    summary["errors"] = raw.get("errors", [])
    summary["abnormal_worker_exits"] = raw.get("abnormal_exits", [])
    summary["worker_log_problems"] = raw.get("worker_log_problems", {})
    if "server_log_problems" in raw:
        summary["server_log_problems"] = raw["server_log_problems"]
    return summary


def fmt(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def print_table(results: dict[str, Any], dbs: list[str], options: dict[str, Any]) -> None:
    n, children, steps = options["n"], options["children"], options["steps"]
    labels = {
        "w2_s": f"W2 fan-out of {children} + finalize",
        "w3_s": f"W3 chain of {steps}",
        "latency_p50_ms": "L p50 (created_at->finished_at)",
    }
    width = 49
    header = f"{'workload (N=' + str(n) + ')':<{width}} {'unit':<8}"
    for db in dbs:
        header += f" | {db + ': median [min-max]':<28} {'x floor':>7}"
    print()
    print(header)
    print("-" * len(header))
    for key, label, unit, _ in ROWS:
        if not any(key in results.get(db, {}) for db in dbs):
            continue
        line = f"{labels.get(key, label):<{width}} {unit:<8}"
        for db in dbs:
            summary = results.get(db, {})
            if key not in summary:
                line += f" | {'-':<28} {'':>7}"
                continue
            spread = summary["spread"][key]
            cell = f"{fmt(summary[key])} [{fmt(spread['min'])}-{fmt(spread['max'])}]"
            ratio = summary["ratio_to_floor"].get(key)
            line += f" | {cell:<28} {(f'{ratio:.2f}' if ratio is not None else ''):>7}"
        print(line)
    print()
    print(
        "x floor = engine / raw-SQL floor (PostgreSQL, same run): for /s higher is better, "
        "for CPU per task lower is better."
    )
    if "sqlite" in dbs and "postgres" in dbs:
        print("SQLite's ratios are taken against the PostgreSQL floor (there is no SQLite floor).")
    for db in dbs:
        summary = results.get(db, {})
        for error in summary.get("errors", []):
            print(f"!! {db} rep {error.get('rep')}: {error['workload']}: {error['error']}")
        for exit_ in summary.get("abnormal_worker_exits", []):
            print(f"!! {db}: worker {exit_['process']} exited abnormally: {exit_}")
        for line in summary.get("server_log_problems", [])[:10]:
            print(f"!! {db} server log: {line}")
        for log, info in summary.get("worker_log_problems", {}).items():
            print(
                f"!! {db}: {log}: {info['errors']} errors, {info['warnings']} warnings, "
                f"{info['tracebacks']} tracebacks; e.g. {info['samples'][0]}"
            )


# -- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 rep, small sizes")
    parser.add_argument("--db", choices=["postgres", "sqlite", "both"], default="both")
    parser.add_argument("--reps", type=int, help="repetitions (default 3; 1 with --quick)")
    parser.add_argument("--n", type=int, help="W1 tasks (default 2000; 300 with --quick)")
    parser.add_argument("--children", type=int, help="W2 children (default 500; 100 quick)")
    parser.add_argument("--steps", type=int, help="W3 chain steps (default 100; 20 quick)")
    parser.add_argument(
        "--latency-samples", type=int, help="L enqueues (default 100; 20 with --quick)"
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="abort a workload after this many s"
    )
    parser.add_argument(
        "--concurrency", type=int, help="durable_worker --concurrency (default: the engine's)"
    )
    parser.add_argument(
        "--poll-interval", type=float, help="durable_worker --poll-interval (default: engine's)"
    )
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="where to write the JSON"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    defaults = QUICK if args.quick else FULL
    options: dict[str, Any] = {
        key: getattr(args, key) if getattr(args, key) is not None else default
        for key, default in defaults.items()
    }
    options.update(
        timeout=args.timeout, concurrency=args.concurrency, poll_interval=args.poll_interval
    )
    dbs = ["postgres", "sqlite"] if args.db == "both" else [args.db]
    # Explicitly: a shell starts background jobs with SIGINT ignored, which Python keeps.
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    machine = machine_info()
    raw: dict[str, dict[str, Any]] = {}
    work = Path(tempfile.mkdtemp(prefix="durable-bench."))
    cluster: PostgresCluster | None = None
    started = time.monotonic()
    try:
        for db in dbs:
            print(f"== {db}", file=sys.stderr, flush=True)
            if db == "postgres":
                cluster = PostgresCluster()
                cluster.keep_log = RESULTS / "logs" / "postgres-server.log"
                cluster.start()
                machine["postgres"] = cluster.version()
                print(f"   PostgreSQL {machine['postgres']} on {cluster.url}", file=sys.stderr)
                raw[db] = run_driver(db, cluster.url, options, work)
                cluster.stop()
                cluster = None
                raw[db]["server_log_problems"] = scan_server_log(
                    RESULTS / "logs" / "postgres-server.log"
                )
            else:
                sqlite_dir = work / "sqlite"
                sqlite_dir.mkdir()
                raw[db] = run_driver(db, f"sqlite:///{sqlite_dir / 'bench.sqlite3'}", options, work)
    except (KeyboardInterrupt, Interrupted) as interruption:
        print(f"\n!! interrupted ({interruption}); cleaning up", file=sys.stderr)
        return 130
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(work, ignore_errors=True)

    results: dict[str, Any] = {"machine": machine}
    machine["load_average_at_end"] = list(os.getloadavg())
    machine["duration_s"] = round(time.monotonic() - started, 1)
    floor_medians: dict[str, float] = {}
    for db in dbs:  # postgres first: its floor is the basis of SQLite's ratios
        results[db] = summarize(raw[db], floor_medians)
        if db == "postgres":
            floor_medians = {k: v for k, v in results[db].items() if k.startswith("floor")}
    if "sqlite" in results and floor_medians:
        results["sqlite"]["ratio_to_floor_basis"] = "the PostgreSQL floor of this run"
    results["config"] = {**options, "dbs": dbs, "quick": args.quick}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results, dbs, options)
    print(f"\nwrote {args.output} ({machine['duration_s']} s)")
    if args.output.resolve() == DEFAULT_OUTPUT.resolve() and not args.quick:
        from report import main as write_report

        write_report([str(args.output)])
    failed = any(results[db]["errors"] for db in dbs)
    return 1 if failed else 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
