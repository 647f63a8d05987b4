#!/usr/bin/env bash
# The example job: creates or refreshes .venv (Python 3.11, requirements/test.txt, this package
# editable), migrates the test project's SQLite database (testproject/db.sqlite3) and runs
# `testproject/manage.py durable_example`: it starts a worker (manage.py durable_worker), enqueues
# the example workflows of testproject/example/tasks.py, shows their progress, prints each finished
# execution tree, stops the worker and tells how to browse the executions in the admin.
# Arguments go to that command. Any DATABASE_URL in the environment is ignored: the example runs
# on the embedded SQLite database, which is kept between runs.
set -euo pipefail

# shellcheck source=scripts/_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
cd "$REPO_ROOT"

VENV="$REPO_ROOT/.venv"
ensure_venv "$VENV" 3.11 requirements/test.txt
unset DATABASE_URL

log "Migrating testproject/db.sqlite3"
"$VENV/bin/python" testproject/manage.py migrate --noinput -v 0
log "Running the example workflows (testproject/manage.py durable_example)"
exec "$VENV/bin/python" testproject/manage.py durable_example "$@"
