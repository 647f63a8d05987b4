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
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    source = Path(argv[0]) if argv else DEFAULT_RESULTS
    page = Path(argv[1]) if len(argv) > 1 else DEFAULT_PAGE
    page.write_text(render(json.loads(source.read_text())))
    print(f"wrote {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
