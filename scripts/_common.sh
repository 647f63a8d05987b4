# Shared helpers of scripts/test.sh and scripts/example.sh: logging, finding a Python, and
# creating or refreshing a pinned virtualenv. Sourced, never run.
# shellcheck shell=bash

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# pip and pyenv need HOME; a stripped CI environment may not set it.
: "${HOME:=$(getent passwd "$(id -u)" | cut -d: -f6)}"
export HOME
PIP_VERSION=26.3
export PIP_DISABLE_PIP_VERSION_CHECK=1

# Colours only on a terminal, and never with NO_COLOR set.
if [ -t 2 ] && [ -z "${NO_COLOR:-}" ]; then
    C_BOLD=$'\033[1m' C_RED=$'\033[31m' C_GREEN=$'\033[32m' C_YELLOW=$'\033[33m' C_OFF=$'\033[0m'
else
    C_BOLD="" C_RED="" C_GREEN="" C_YELLOW="" C_OFF=""
fi

log() { printf '%s==> %s%s\n' "$C_BOLD" "$*" "$C_OFF" >&2; }
warn() { printf '%sWARNING: %s%s\n' "$C_YELLOW" "$*" "$C_OFF" >&2; }
die() {
    printf '%sERROR: %s%s\n' "$C_RED" "$*" "$C_OFF" >&2
    exit 1
}

# find_python X.Y: print the path of a Python X.Y interpreter that can create venvs.
# Looks at $PYTHON_X_Y (e.g. PYTHON_3_12=/opt/py/bin/python3.12), pyenv's versions, then PATH.
find_python() {
    local want=$1 var cand pyenv_root
    local -a cands=()
    var="PYTHON_${want//./_}"
    [ -n "${!var:-}" ] && cands+=("${!var}")
    pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}
    if [ -d "$pyenv_root/versions" ]; then
        # Newest patch release first.
        while IFS= read -r cand; do
            cands+=("$cand")
        done < <(ls -d "$pyenv_root/versions/$want".*/bin/python 2>/dev/null | sort -rV)
    fi
    cands+=("python$want" "/usr/local/bin/python$want" "/usr/bin/python$want")
    for cand in "${cands[@]}"; do
        if "$cand" -c "import sys, venv, ensurepip; sys.exit(sys.version_info[:2] != tuple(map(int, '$want'.split('.'))))" \
            >/dev/null 2>&1; then
            command -v "$cand"
            return 0
        fi
    done
    return 1
}

# require_python X.Y: like find_python, but on Debian (as root) installs Debian's python3.X and
# python3.X-venv when they exist there and nothing else was found; dies with a hint otherwise.
require_python() {
    local want=$1 py
    if py=$(find_python "$want"); then
        echo "$py"
        return 0
    fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "No Python $want with venv support found: trying Debian's python$want-venv"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || true
        if DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python$want" "python$want-venv" >&2 \
            && py=$(find_python "$want"); then
            echo "$py"
            return 0
        fi
    fi
    die "Python $want not found (looked at \$PYTHON_${want//./_}, ${PYENV_ROOT:-$HOME/.pyenv}/versions/$want.*, python$want on PATH). Install it (e.g. 'pyenv install $want') or set PYTHON_${want//./_}=/path/to/python$want."
}

# req_closure FILE: FILE and the files it includes with -r, recursively, one per line.
req_closure() {
    local inc
    echo "$1"
    for inc in $(sed -n 's/^-r[[:space:]]*//p' "$1"); do
        req_closure "$(dirname "$1")/$inc"
    done
}

# pip_quiet DIR ARGS...: DIR's pip, quiet, without the warnings about unreachable local
# --find-links / --extra-index-url folders that some machines' pip.conf names.
pip_quiet() {
    local venv=$1
    shift
    "$venv/bin/python" -m pip "$@" --quiet --progress-bar off 2>&1 \
        | { grep -v -E "^WARNING: Location 'file:[^']*' is ignored" || true; }
    return "${PIPESTATUS[0]}"
}

# ensure_venv DIR X.Y REQUIREMENTS_FILE: create DIR with Python X.Y if it is missing or has another
# Python, then install the pinned requirements and this project (editable, no deps; "compat" mode
# puts the repo root on sys.path, which holds however the package's modules change). Skips pip when
# the stamp in DIR matches the hash of the requirement files (with their -r includes),
# pyproject.toml and the Python version.
ensure_venv() {
    local venv=$1 want=$2 reqs=$3 py stamp_file stamp have
    stamp_file="$venv/.django-durable-stamp"
    if [ -x "$venv/bin/python" ]; then
        have=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)
        if [ "$have" != "$want" ]; then
            log "$venv has Python '${have:-broken}', want $want: recreating it"
            rm -rf "$venv"
        fi
    fi
    if [ ! -x "$venv/bin/python" ]; then
        py=$(require_python "$want") || exit 1
        log "Creating $venv with $py"
        rm -rf "$venv"
        "$py" -m venv "$venv" || die "could not create the virtualenv $venv with $py"
    fi
    stamp=$(
        cd "$REPO_ROOT" || exit 1
        {
            "$venv/bin/python" -VV
            echo "$reqs editable_mode=compat pip==$PIP_VERSION"
            req_closure "$reqs" | xargs cat
            cat pyproject.toml
        } | sha256sum | cut -d' ' -f1
    )
    if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ] \
        && "$venv/bin/python" -c 'import importlib.metadata as m; m.version("django-durable")' \
            >/dev/null 2>&1; then
        log "$venv is up to date ($reqs)"
        warn_unpinned "$venv" "$reqs"
        return 0
    fi
    log "Installing $reqs into $venv"
    rm -f "$stamp_file"
    # One pip everywhere (Python's bundled pip differs between patch releases).
    if [ "$("$venv/bin/python" -m pip --version 2>/dev/null | cut -d' ' -f2)" != "$PIP_VERSION" ]; then
        pip_quiet "$venv" install "pip==$PIP_VERSION" || die "could not install pip==$PIP_VERSION into $venv"
    fi
    (
        cd "$REPO_ROOT" || exit 1
        # "compat" is deliberate (above): setuptools' notice that it is transitional is silenced.
        pip_quiet "$venv" install -r "$reqs" \
            && PYTHONWARNINGS="ignore:Compat editable installs" \
                pip_quiet "$venv" install --no-deps --no-build-isolation -e . \
                --config-settings editable_mode=compat \
            && "$venv/bin/python" -m pip check
    ) || die "pip failed to install $reqs into $venv"
    echo "$stamp" >"$stamp_file"
    warn_unpinned "$venv" "$reqs"
}

# warn_unpinned DIR REQUIREMENTS_FILE: warn about packages in the venv that the requirement files
# (with their -r includes) do not pin: installed by hand, they will be missing on a fresh clone.
warn_unpinned() {
    (cd "$REPO_ROOT" && "$1/bin/python" - "$2") <<'EOF' || true
import re
import sys
from importlib.metadata import distributions
from pathlib import Path


def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned(path, seen):
    if path in seen:
        return set()
    seen.add(path)
    names = set()
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r"):
            names |= pinned(str(Path(path).parent / line[2:].strip()), seen)
        elif line and not line.startswith("-"):
            names.add(norm(re.split(r"[=<>!~;\[ ]", line, maxsplit=1)[0]))
    return names


names = pinned(sys.argv[1], set()) | {"pip", "setuptools", "django-durable"}
extra = {d.metadata["Name"] for d in distributions()}
extra = sorted(n for n in extra if norm(n) not in names)
if extra:
    print(
        f"WARNING: installed but not in {sys.argv[1]}: {', '.join(extra)}. "
        "A fresh clone will not have them: pin them in requirements/ if the code needs them.",
        file=sys.stderr,
    )
EOF
}
