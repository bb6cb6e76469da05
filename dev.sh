#!/usr/bin/env bash
# barsmith's two commands (see README):
#   ./dev.sh quickstart   install, start the embedded PostgreSQL, load sample data, driver refresh --all
#   ./dev.sh test         install and run the whole test suite (pytest: loader, parity with the
#                         reference, incremental == full refresh, dbt build + data tests, sqlfluff,
#                         charts and report in headless Chromium: apt-installs chromium when missing)
#   ./dev.sh test-port    the port `test` gives CI's PostgreSQL (BARSMITH_TEST_PORT, else 55432 if free, else a free one)
# Needs only Python 3.11+ on PATH. With BARSMITH_DB_URL set, everything runs against that server.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
VENV=${BARSMITH_VENV:-$ROOT/.venv}

log() { printf '\033[1m== %s\033[0m\n' "$*"; }

find_python() {
    for py in "${PYTHON:-}" python3.11 python3.12 python3; do
        [ -n "$py" ] || continue
        if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 13) else 1)'; then
            echo "$py"; return 0
        fi
    done
    echo "barsmith needs Python 3.11 or 3.12 on PATH (or PYTHON=/path/to/python)" >&2
    return 1
}

install() {
    local t0=$SECONDS
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating $VENV"
        "$(find_python)" -m venv "$VENV"
    fi
    if ! "$VENV/bin/python" -m uv --version >/dev/null 2>&1; then
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check uv
    fi
    log "installing barsmith and its pinned dependencies"
    "$VENV/bin/python" -m uv pip install --quiet --python "$VENV/bin/python" -e '.[dev]'
    log "installed in $((SECONDS - t0)) s"
}

# The port of CI's throw-away PostgreSQL: BARSMITH_TEST_PORT when set (refused if taken), else
# 55432 when free, else any free port the kernel picks (another server may hold 55432).
test_port() {
    local py=python3
    [ -x "$VENV/bin/python" ] && py="$VENV/bin/python"
    "$py" - "${BARSMITH_TEST_PORT:-}" <<'PY'
import socket, sys
def free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
asked = sys.argv[1]
if asked:
    if not (asked.isdigit() and 0 < int(asked) < 65536):
        sys.exit(f"BARSMITH_TEST_PORT={asked!r} is not a port number")
    if not free(int(asked)):
        sys.exit(f"BARSMITH_TEST_PORT={asked}: that port is taken on 127.0.0.1; unset it to let ./dev.sh pick a free one")
    print(asked)
elif free(55432):
    print(55432)
else:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])
PY
}

# A throw-away Debian PostgreSQL (15+) for CI: installed with apt when missing, run as user postgres.
start_system_postgres() {
    local pgbin
    pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$pgbin" ] || [ ! -x "$pgbin/pg_ctl" ]; then
        if [ "$(id -u)" != 0 ]; then
            echo "no PostgreSQL server found and not root: set BARSMITH_DB_URL or drop CI=true to use the embedded server" >&2
            return 1
        fi
        log "installing postgresql-15 (apt)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq postgresql-15 >/dev/null || apt-get install -y -qq postgresql >/dev/null
        pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    fi
    local version
    version=$(basename "$(dirname "$pgbin")")
    if [ "${version%%.*}" -lt 15 ]; then
        echo "PostgreSQL $version is too old (merge needs 15+)" >&2; return 1
    fi
    local port
    port=$(test_port)
    PGTMP=$(mktemp -d /tmp/barsmith-pg.XXXXXX)
    chmod 755 "$PGTMP"
    local as=()
    if [ "$(id -u)" = 0 ]; then chown postgres "$PGTMP"; as=(runuser -u postgres --); fi
    "${as[@]}" "$pgbin/initdb" -D "$PGTMP/data" -A trust -U postgres --no-sync -E UTF8 >/dev/null
    "${as[@]}" "$pgbin/pg_ctl" -D "$PGTMP/data" -l "$PGTMP/log" -w \
        -o "-p $port -k $PGTMP -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c work_mem=64MB -c shared_buffers=256MB" start >/dev/null
    trap 'stop_system_postgres' EXIT
    export BARSMITH_DB_URL="postgresql://postgres@127.0.0.1:$port/postgres"
    log "PostgreSQL $version running on 127.0.0.1:$port"
}

stop_system_postgres() {
    [ -n "${PGTMP:-}" ] || return 0
    local pgbin; pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    local as=(); [ "$(id -u)" = 0 ] && as=(runuser -u postgres --)
    "${as[@]}" "$pgbin/pg_ctl" -D "$PGTMP/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$PGTMP"
}

# Debian's Chromium for the browser tests and `driver plot --png` (never a downloaded browser):
# installed with apt when missing and root, else a clear message. BARSMITH_CHROMIUM overrides.
ensure_chromium() {
    if [ -n "${BARSMITH_CHROMIUM:-}" ] || command -v chromium >/dev/null 2>&1; then
        return 0
    fi
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "the browser tests need Chromium: apt-get install chromium (or set BARSMITH_CHROMIUM)" >&2
        return 1
    fi
    log "installing chromium (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium >/dev/null
}

cmd_quickstart() {
    local t0=$SECONDS
    install
    export PATH="$VENV/bin:$PATH"
    if [ -z "${BARSMITH_DB_URL:-}" ]; then
        log "starting the embedded PostgreSQL (.barsmith/pgdata)"
        driver db start
    fi
    log "generating and loading the sample data set"
    driver sample --load
    log "driver refresh --all"
    driver refresh --all
    log "quickstart finished in $((SECONDS - t0)) s"
}

cmd_test() {
    local t0=$SECONDS
    install
    export PATH="$VENV/bin:$PATH"
    if [ "${CI:-}" = "true" ] && [ -z "${BARSMITH_DB_URL:-}" ]; then
        start_system_postgres
    fi
    ensure_chromium
    log "pytest"
    set +e
    # two workers, one test file each at a time (module fixtures build once); BARSMITH_TEST_WORKERS=0: serial
    local workers="${BARSMITH_TEST_WORKERS:-2}"
    if [ "$workers" = 0 ]; then
        "$VENV/bin/python" -m pytest "$@"
    else
        "$VENV/bin/python" -m pytest -n "$workers" --dist loadfile "$@"
    fi
    local rc=$?
    set -e
    if [ $rc -eq 5 ]; then echo "pytest collected no tests: that is a failure" >&2; rc=1; fi
    log "tests finished in $((SECONDS - t0)) s (exit $rc)"
    return $rc
}

case "${1:-}" in
    quickstart) shift; cmd_quickstart "$@" ;;
    test) shift; cmd_test "$@" ;;
    install) install ;;
    test-port) test_port ;;
    *) echo "usage: ./dev.sh quickstart | test [pytest args] | install | test-port" >&2; exit 2 ;;
esac
