#!/usr/bin/env bash
# The example job: creates or refreshes .venv (Python 3.11, requirements/test.txt, this package
# editable), migrates the test project's SQLite database (testproject/db.sqlite3) and runs the
# example workflows with `testproject/manage.py durable_example`. Arguments go to that command.
# Any DATABASE_URL in the environment is ignored: the example runs on the embedded SQLite.
set -euo pipefail

# shellcheck source=scripts/_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
cd "$REPO_ROOT"

VENV="$REPO_ROOT/.venv"
ensure_venv "$VENV" 3.11 requirements/test.txt
unset DATABASE_URL

log "Migrating testproject/db.sqlite3"
"$VENV/bin/python" testproject/manage.py migrate --noinput
log "Running the example workflows (manage.py durable_example)"
exec "$VENV/bin/python" testproject/manage.py durable_example "$@"
