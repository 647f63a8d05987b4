"""Render a benchmark results JSON as the documentation's benchmark page.

``python benchmarks/report.py [RESULTS_JSON] [PAGE]`` (defaults: ``results/latest.json`` and
``docs/benchmarks.md``). ``run.py`` calls it after a full run that wrote ``latest.json``, so
the page always shows the figures of the last run, with the machine they were taken on.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import ROWS, fmt  # noqa: E402

DEFAULT_RESULTS = HERE / "results" / "latest.json"
DEFAULT_PAGE = HERE.parent / "docs" / "benchmarks.md"

INTRO = """\
# Benchmarks

How fast django-durable runs on one machine, next to the physical floor of the same database:
a minimal raw-SQL queue (psycopg 3, one `INSERT` per task, claims of 100 rows with
`FOR UPDATE SKIP LOCKED`, one `UPDATE` per completion) measured in the same run on the same
server. Nothing is mocked: real `durable_worker` processes, a real PostgreSQL server with its
default durability settings (every commit waits for the WAL flush), SQLite in WAL mode.

Run them yourself (not part of the test suite; the details are in `benchmarks/README.md` in the
repository):

```sh
.venv/bin/python benchmarks/run.py            # 3 repetitions, PostgreSQL and SQLite
.venv/bin/python benchmarks/run.py --quick    # a smoke test
```

The workloads:

- **W1 flat**: 2,000 no-op tasks. *enqueue->complete*: idle workers, one `enqueue()` call per
  task, from the first enqueue to the last completion. *run only*: the rows are stored first
  with `enqueue_many()`, then the workers start; from the first claim to the last completion.
- **W2 fan-out**: one parent task with 500 no-op children and a finalize function summing them.
- **W3 chain**: `sequential_tasks` of 100 steps, each adding one to its input.
- **L latency**: idle workers, 100 single enqueues one after another; time from `created_at`
  to `finished_at` of each execution, and as seen by the enqueuing process.
"""


#: The targets of the benchmark issue, on PostgreSQL with 2 workers: (label, key, how to read
#: the figure, bound, unit). ``ratio`` keys are read from ``ratio_to_floor``.
TARGETS: list[tuple[str, str, str, float, str]] = [
    ("W1 enqueue->complete, 2 workers", "w1_2proc_tps", ">=", 1000, "tasks/s"),
    ("W1 enqueue->complete, 2 workers, x floor", "ratio:w1_2proc_tps", ">=", 0.4, ""),
    ("W2 fan-out of 500 + finalize", "w2_s", "<=", 2, "s"),
    ("W3 chain of 100", "w3_s", "<=", 2, "s"),
    ("L p50", "latency_p50_ms", "<=", 20, "ms"),
    ("L p95", "latency_p95_ms", "<=", 50, "ms"),
    ("worker peak RSS, W1", "worker_rss_mb", "<=", 150, "MiB"),
]

NOTES = """## Where the time goes

On a machine this size the enqueuing process, the workers and PostgreSQL share two cores, so
what W1 measures is CPU per task, summed over all of them. What the engine does per task:

- **enqueue**: one `INSERT … RETURNING id` on the caller's connection, a prepared statement
  whose columns holding a new row's constants are literals (an enqueue sends its handful of
  varying values), carrying its own `pg_notify` (delivered on commit, no second transaction);
  the payload names the queue, so workers of other queues are not woken.
- **claim**: one `UPDATE … FROM (SELECT … FOR UPDATE SKIP LOCKED)`. When wake-ups come faster
  than claims, a worker claims at most every 5 ms, divided by its share of the new rows (two
  workers competing for the same rows claim every 10 ms each): rows gather into bigger claims
  instead of every notification waking every worker into a claim of its own.
- **record**: a top-level task's result is one autocommit `UPDATE` returning its close status;
  results finishing at the same time go together (one statement per shape, values as arrays).
- rows come back through one cached cursor per connection that reads `timestamptz` with
  `datetime.fromisoformat` (10x the pure-Python loader Django registers).

The floor does less because it is a different product: its row has 6 columns and 1 index
where an execution has 48 columns and 3 full indexes plus partial ones (every update of a row
changes its status, which PostgreSQL cannot do in place), it has no wake-ups, leases, retries or
families, and its worker is one thread with no task code to isolate.
"""


def _target_rows(summary: dict[str, Any]) -> list[str]:
    rows = ["## Targets (PostgreSQL, 2 workers)\n", "| target | measured | met |"]
    rows.append("| --- | --- | --- |")
    for label, key, how, bound, unit in TARGETS:
        if key.startswith("ratio:"):
            value = summary.get("ratio_to_floor", {}).get(key.removeprefix("ratio:"))
        else:
            value = summary.get(key)
        target = f"{label} {how} {fmt(bound)} {unit}".rstrip()
        if value is None:
            rows.append(f"| {target} | - | - |")
            continue
        met = value >= bound if how == ">=" else value <= bound
        shown = f"{value:.2f}" if key.startswith("ratio:") else f"{fmt(value)} {unit}"
        rows.append(f"| {target} | {shown} | {'yes' if met else 'no'} |")
    rows.append("")
    return rows


def _cell(summary: dict[str, Any], key: str) -> str:
    if key not in summary:
        return "-"
    spread = summary.get("spread", {}).get(key)
    if spread and spread["min"] != spread["max"]:
        return f"{fmt(summary[key])} ({fmt(spread['min'])}-{fmt(spread['max'])})"
    return fmt(summary[key])


def render(results: dict[str, Any]) -> str:
    machine = results.get("machine", {})
    config = results.get("config", {})
    dbs = [db for db in ("postgres", "sqlite") if db in results]
    lines = [INTRO]
    lines.append("## Latest figures\n")
    lines.append(
        f"Taken {machine.get('date', '?')} on {machine.get('cores', '?')} cores "
        f"({machine.get('cpu', '?')}), {machine.get('memory_gib', '?')} GiB, "
        f"Python {machine.get('python', '?')}, Django {machine.get('django', '?')}, "
        f"PostgreSQL {machine.get('postgres', '?')}, SQLite {machine.get('sqlite', '?')}; "
        f"commit `{machine.get('git_commit', '?')}`, "
        f"{config.get('reps', '?')} repetition(s): medians, (min-max) when they differ. "
        f"x floor: the engine's figure over the floor's (for rates, higher is better).\n"
    )
    header = "| workload | unit | " + " | ".join(
        f"{'PostgreSQL' if db == 'postgres' else 'SQLite'} | x floor" for db in dbs
    )
    lines.append(header + " |")
    lines.append("|" + " --- |" * (2 + 2 * len(dbs)))
    for key, label, unit, _ in ROWS:
        if not any(key in results[db] for db in dbs):
            continue
        cells = []
        for db in dbs:
            ratio = results[db].get("ratio_to_floor", {}).get(key)
            cells += [_cell(results[db], key), f"{ratio:.2f}" if ratio is not None else ""]
        lines.append(f"| {label} | {unit} | " + " | ".join(cells) + " |")
    lines.append("")
    if "sqlite" in dbs:
        lines.append(
            "SQLite's ratios are taken against the PostgreSQL floor (there is no SQLite floor). "
            "SQLite serves one worker process well; use PostgreSQL for more.\n"
        )
    if "postgres" in dbs:
        lines += _target_rows(results["postgres"])
    lines.append(NOTES)
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    source = Path(argv[0]) if argv else DEFAULT_RESULTS
    page = Path(argv[1]) if len(argv) > 1 else DEFAULT_PAGE
    page.write_text(render(json.loads(source.read_text())))
    print(f"wrote {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
