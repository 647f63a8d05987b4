#!/usr/bin/env bash
# The test command. Installs what it needs, then runs the linters, builds the documentation
# (mkdocs build --strict) and runs the whole test suite on SQLite and on a throwaway PostgreSQL
# server, with Python 3.11 + Django 5.2 (.venv) and then Python 3.12 + Django 6.0 (.venv-dj6,
# without the tests marked slow: real worker, Celery and browser processes). tox.ini describes
# the same matrix.
#
# Usage: scripts/test.sh [--quick] [--skip-lint] [PYTEST_ARGS...]
#   --quick       only Python 3.11 + Django 5.2 (no .venv-dj6)
#   --skip-lint   no ruff / mypy / makemigrations --check / mkdocs build (quick iterations on tests)
#   PYTEST_ARGS   passed to every pytest run, e.g. `scripts/test.sh -k claim -x`
#
# The PostgreSQL runs see DATABASE_URL=postgres://postgres@127.0.0.1:PORT/django_durable and
# DURABLE_TEST_PG_{HOST,PORT,BINDIR,DATADIR,SOCKETDIR}; the SQLite runs see no DATABASE_URL and a
# fresh SQLITE_TEST_DIR. The server and its files are removed on any exit.
set -uo pipefail

# shellcheck source=scripts/_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
cd "$REPO_ROOT" || exit 1

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }

# `ruff format --check` joins the lint steps once the code base has been formatted (`ruff format .`).
CHECK_FORMAT=0

QUICK=0
LINT=1
PYTEST_ARGS=()
for arg in "$@"; do
    case $arg in
        --quick) QUICK=1 ;;
        --skip-lint) LINT=0 ;;
        -h | --help)
            usage
            exit 0
            ;;
        *) PYTEST_ARGS+=("$arg") ;;
    esac
done

VENV="$REPO_ROOT/.venv"
VENV_DJ6="$REPO_ROOT/.venv-dj6"
ARTIFACTS="$REPO_ROOT/test-artifacts"
RUN_TMP=$(mktemp -d "${TMPDIR:-/tmp}/django-durable-test.XXXXXX")
PG_TMP=""
PG_BIN=""
PG_ENV=() # the environment of the PostgreSQL test runs (DATABASE_URL, DURABLE_TEST_PG_*)

# --- steps, timings and the summary -------------------------------------------------------

now_ms() { echo $(($(date +%s%N) / 1000000)); }
RUN_START=$(now_ms)
STEP_LINES=()
CURRENT_STEP=""
CURRENT_START=0

record() { # record RESULT NAME START_MS
    local ms=$(($(now_ms) - $3))
    STEP_LINES+=("$(printf '%-8s %7d.%ds  %s' "$1" $((ms / 1000)) $((ms % 1000 / 100)) "$2")")
}

# step NAME COMMAND...: run one step in this shell; on failure stop the whole run.
step() {
    local name=$1 rc
    shift
    log "$name"
    CURRENT_STEP=$name
    CURRENT_START=$(now_ms)
    "$@"
    rc=$?
    if [ "$rc" -ne 0 ]; then
        printf '%sFAILED: %s (exit %d)%s\n' "$C_RED" "$name" "$rc" "$C_OFF" >&2
        exit "$rc"
    fi
    record ok "$name" "$CURRENT_START"
    CURRENT_STEP=""
}

skip_step() { # skip_step NAME REASON
    warn "skipping $1: $2"
    STEP_LINES+=("$(printf '%-8s %9s  %s (%s)' skipped - "$1" "$2")")
}

print_summary() {
    local rc=$1 ms line
    [ -n "$CURRENT_STEP" ] && record FAILED "$CURRENT_STEP" "$CURRENT_START"
    ms=$(($(now_ms) - RUN_START))
    echo
    echo "================================ scripts/test.sh summary ================================"
    for line in "${STEP_LINES[@]}"; do echo "$line"; done
    printf '%-8s %7d.%ds  %s\n' total $((ms / 1000)) $((ms % 1000 / 100)) "(wall clock)"
    if [ -x "$VENV/bin/python" ] && compgen -G "$ARTIFACTS/junit-*.xml" >/dev/null; then
        "$VENV/bin/python" - "$ARTIFACTS"/junit-*.xml <<'EOF' || true
import sys
import xml.etree.ElementTree as ET

n = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
for path in sys.argv[1:]:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        continue
    for suite in [root] if root.tag == "testsuite" else root.iter("testsuite"):
        for key in n:
            n[key] += int(suite.get(key, 0))
failed = n["failures"] + n["errors"]
passed = n["tests"] - failed - n["skipped"]
print(f"Tests: {passed} passed, {failed} failed, {n['skipped']} skipped")
EOF
    fi
    if [ "$rc" -eq 0 ]; then
        printf '%sALL STEPS PASSED%s\n' "$C_GREEN" "$C_OFF"
    else
        printf '%sFAILED (exit %d)%s\n' "$C_RED" "$rc" "$C_OFF"
    fi
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_postgres
    rm -rf "$RUN_TMP"
    print_summary "$rc"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- PostgreSQL: a throwaway cluster -------------------------------------------------------

# as_pg COMMAND...: run as the `postgres` OS user when we are root (initdb refuses root).
as_pg() {
    if [ "$(id -u)" != 0 ]; then
        (cd / && "$@")
    elif command -v runuser >/dev/null 2>&1; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && su -s /bin/sh postgres -c "$(printf '%q ' "$@")")
    fi
}

find_pg_bindir() {
    local d found=""
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V); do
        [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ] && [ -x "$d/postgres" ] && found=$d
    done
    echo "$found"
}

ensure_postgres_installed() {
    PG_BIN=$(find_pg_bindir)
    [ -n "$PG_BIN" ] && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        die "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/pg_ctl) and cannot install them (needs root and apt-get): install the 'postgresql' package."
    fi
    log "Installing PostgreSQL with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq postgresql-common || die "apt-get install postgresql-common failed"
    # Keep the package from creating (and starting) its own 'main' cluster: we never use one.
    sed -ri 's/^#?\s*(create_main_cluster)\s*=.*$/\1 = false/' \
        /etc/postgresql-common/createcluster.conf 2>/dev/null || true
    apt-get install -y -qq postgresql || die "apt-get install postgresql failed"
    PG_BIN=$(find_pg_bindir)
    [ -n "$PG_BIN" ] || die "PostgreSQL was installed but /usr/lib/postgresql/*/bin/pg_ctl is still missing"
}

# Debian packages some tests drive for real: Chromium (admin browser test) and Redis (Celery).
ensure_system_packages() {
    local missing=()
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        warn "missing ${missing[*]} (needs root and apt-get): the tests that need them will fail"
        return 0
    fi
    log "Installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" || die "apt-get install ${missing[*]} failed"
}

free_port() {
    "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_postgres() {
    local attempt
    ensure_postgres_installed
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || die "running as root, but there is no 'postgres' OS user to run the server as"
        # The postgres user must reach the directory: use /tmp, not a private $TMPDIR.
        PG_TMP=$(mktemp -d /tmp/django-durable-pg.XXXXXX) || die "mktemp failed"
        chown postgres: "$PG_TMP" || die "chown postgres $PG_TMP failed"
    else
        PG_TMP=$(mktemp -d "${TMPDIR:-/tmp}/django-durable-pg.XXXXXX") || die "mktemp failed"
    fi
    if ! as_pg "$PG_BIN/initdb" -D "$PG_TMP/data" -A trust -U postgres -E UTF8 --locale=C \
        --no-sync --no-instructions >"$PG_TMP/initdb.log" 2>&1; then
        cat "$PG_TMP/initdb.log" >&2
        die "initdb failed"
    fi
    # A throwaway server: durability off for speed; only loopback and a private socket dir.
    cat >>"$PG_TMP/data/postgresql.conf" <<EOF

# scripts/test.sh
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PG_TMP'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    PG_PORT=""
    for attempt in 1 2 3; do
        local port
        port=$(free_port) || die "could not pick a free port"
        if as_pg "$PG_BIN/pg_ctl" -D "$PG_TMP/data" -l "$PG_TMP/server.log" -o "-p $port" \
            -w -t 60 start >/dev/null; then
            PG_PORT=$port
            break
        fi
        warn "PostgreSQL did not start on port $port (attempt $attempt)"
    done
    if [ -z "$PG_PORT" ]; then
        tail -n 30 "$PG_TMP/server.log" >&2 2>/dev/null
        die "could not start PostgreSQL (log above)"
    fi
    for attempt in $(seq 1 60); do
        "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -t 1 && break
        [ "$attempt" = 60 ] && die "PostgreSQL on port $PG_PORT is not ready after 30 s"
        sleep 0.5
    done
    "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres django_durable \
        || die "createdb django_durable failed"
    PG_ENV=(
        "DATABASE_URL=postgres://postgres@127.0.0.1:$PG_PORT/django_durable"
        "DURABLE_TEST_PG_HOST=127.0.0.1"
        "DURABLE_TEST_PG_PORT=$PG_PORT"
        "DURABLE_TEST_PG_BINDIR=$PG_BIN"
        "DURABLE_TEST_PG_DATADIR=$PG_TMP/data"
        "DURABLE_TEST_PG_SOCKETDIR=$PG_TMP"
    )
    log "PostgreSQL $("$PG_BIN/postgres" -V | awk '{print $3}') on 127.0.0.1:$PG_PORT, data in $PG_TMP/data"
}

stop_postgres() {
    [ -n "$PG_TMP" ] && [ -d "$PG_TMP" ] || return 0
    if [ -f "$PG_TMP/data/postmaster.pid" ]; then
        as_pg "$PG_BIN/pg_ctl" -D "$PG_TMP/data" -m immediate -w -t 30 stop >/dev/null 2>&1 \
            || warn "pg_ctl stop failed (the server shuts itself down once its data dir is gone)"
    fi
    mkdir -p "$ARTIFACTS" && cp "$PG_TMP/server.log" "$ARTIFACTS/postgres.log" 2>/dev/null
    rm -rf "$PG_TMP"
    PG_TMP=""
}

# --- checks and test runs ------------------------------------------------------------------

has_test_files() { find tests -name 'test_*.py' -o -name '*_test.py' 2>/dev/null | grep -q .; }
has_models() { [ -e django_durable/models.py ] || [ -d django_durable/models ]; }

# pytest_run VENV LABEL sqlite|postgres
pytest_run() {
    local venv=$1 label=$2 db=$3 rc
    shift 3
    local -a envs=(-u DATABASE_URL "SQLITE_TEST_DIR=$RUN_TMP/sqlite-$label")
    mkdir -p "$RUN_TMP/sqlite-$label"
    [ "$db" = postgres ] && envs=("${PG_ENV[@]}")
    envs+=("DURABLE_REQUIRE_BROWSER=1" "DURABLE_REQUIRE_REDIS=1")
    env "${envs[@]}" "$venv/bin/python" -m pytest --junitxml="$ARTIFACTS/junit-$label.xml" \
        "$@" "${PYTEST_ARGS[@]}"
    rc=$?
    if [ "$rc" -eq 5 ] && ! has_test_files; then
        warn "pytest collected no tests: tests/ has no test files yet"
        return 0
    fi
    return "$rc"
}

# pytest_pair VENV LABEL [PYTEST_ARGS...]: the SQLite and the PostgreSQL runs side by side
# (2 cores), each printed whole when both ended.
pytest_pair() {
    local venv=$1 label=$2 rc_sqlite rc_postgres
    shift 2
    pytest_run "$venv" "$label-sqlite" sqlite "$@" >"$RUN_TMP/$label-sqlite.log" 2>&1 &
    local pid_sqlite=$!
    pytest_run "$venv" "$label-postgres" postgres "$@" >"$RUN_TMP/$label-postgres.log" 2>&1 &
    local pid_postgres=$!
    wait "$pid_sqlite"
    rc_sqlite=$?
    wait "$pid_postgres"
    rc_postgres=$?
    log "$label-sqlite (exit $rc_sqlite)"
    cat "$RUN_TMP/$label-sqlite.log"
    log "$label-postgres (exit $rc_postgres)"
    cat "$RUN_TMP/$label-postgres.log"
    [ "$rc_sqlite" -eq 0 ] && [ "$rc_postgres" -eq 0 ]
}

lint_cmd() { env -u DATABASE_URL "SQLITE_TEST_DIR=$RUN_TMP" "$@"; }

makemigrations_check() {
    lint_cmd env DJANGO_SETTINGS_MODULE=tests.settings \
        "$VENV/bin/python" -m django makemigrations --check --dry-run
}

mkdir -p "$ARTIFACTS" && rm -f "$ARTIFACTS"/junit-*.xml "$ARTIFACTS/postgres.log"

step "venv .venv (Python 3.11, Django 5.2)" ensure_venv "$VENV" 3.11 requirements/test.txt
if [ "$QUICK" = 0 ]; then
    step "venv .venv-dj6 (Python 3.12, Django 6.0)" \
        ensure_venv "$VENV_DJ6" 3.12 requirements/django60.txt
fi

if [ "$LINT" = 0 ]; then
    skip_step "ruff, mypy, makemigrations --check, mkdocs build" "--skip-lint"
else
    step "ruff check" lint_cmd "$VENV/bin/ruff" check .
    if [ "$CHECK_FORMAT" = 1 ]; then
        step "ruff format --check" lint_cmd "$VENV/bin/ruff" format --check .
    fi
    step "mypy django_durable" lint_cmd "$VENV/bin/mypy" django_durable
    if has_models; then
        step "makemigrations --check" makemigrations_check
    else
        skip_step "makemigrations --check" "no django_durable/models.py yet"
    fi
    step "mkdocs build --strict" lint_cmd "$VENV/bin/mkdocs" build --strict --quiet \
        --site-dir "$RUN_TMP/site"
fi

step "system packages (Chromium, Redis)" ensure_system_packages
step "start PostgreSQL" start_postgres

step "pytest py311-django52 (sqlite | postgres)" pytest_pair "$VENV" py311-django52
if [ "$QUICK" = 0 ]; then
    # The tests marked slow drive real processes (workers, Celery, a browser) through the same
    # code as the Django 5.2 pass; on Django 6.0 the in-process suite covers the version.
    step "pytest py312-django60 (sqlite | postgres, not slow)" \
        pytest_pair "$VENV_DJ6" py312-django60 -m "not slow"
else
    skip_step "py312-django60 (sqlite, postgres)" "--quick"
fi
