#!/usr/bin/env bash
# Issue 16, point 4: `authgate cleanup` on a database holding ACCOUNTS ended sessions
# (default 1,000,000; each with two refresh tokens), on SQLite and PostgreSQL:
#
#   bash bench/cleanup.sh [ACCOUNTS]
#
# For each backend: the database is filled by bench/populate.py --ended, then authgate
# serves it (CPU 0, cheap argon2) and, as it does at start, cleans up (the same code as
# `authgate cleanup`) while 8 clients rotate refresh tokens one request at a time
# (bench/refresh_chains.py, CPU 1), until no ended session is left; then 10 s more.
# Prints the time from start to a clean database, authgate's peak RSS (the SQLite
# memory map counts in it) and refresh p50/p99 during and after.
set -euo pipefail

ACCOUNTS=${1:-1000000}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
AUTHGATE="$ROOT/target/release/authgate"
for name in $(compgen -e | grep '^AUTHGATE_' || true); do unset "$name"; done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/authgate-cleanup.XXXXXX")
PG_DB="authgate_cleanup_bench_$$"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

if [[ -z ${BENCH_NO_BUILD:-} ]]; then
  log "building"
  (cd "$ROOT" && cargo build --release --bin authgate -p authgate)
fi
export AUTHGATE_RATE_LIMIT_PER_IP=0 AUTHGATE_LOGIN_MAX_FAILURES=1000000000 AUTHGATE_LOG=warn
export AUTHGATE_ARGON2_MEMORY_KIB=1024 AUTHGATE_ARGON2_ITERATIONS=1
export AUTHGATE_MASTER_KEY_FILE="$WORK/master.key"
openssl rand -base64 32 >"$AUTHGATE_MASTER_KEY_FILE"
PASSWORD="correct horse battery staple"

probe() { # probe NAME SECONDS|until-clean: refresh chains for that long
  rm -f "$WORK/stop"
  taskset -c 1 python3 "$BENCH/refresh_chains.py" "$BASE" "bench@example.com" "$PASSWORD" 8 "$WORK/stop" \
    >"$WORK/probe-$1" &
  local probe_pid=$!
  if [[ $2 == until-clean ]]; then
    until [[ $(ended_sessions) == 0 ]]; do sleep 0.5; done
  else
    sleep "$2"
  fi
  touch "$WORK/stop"
  wait "$probe_pid"
}

ended_sessions() {
  case $AUTHGATE_DATABASE_URL in
    sqlite*) python3 -c 'import sqlite3, sys
db = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
print(db.execute("SELECT count(*) FROM sessions WHERE revoked_at IS NOT NULL").fetchone()[0])' "$WORK/authgate.db" ;;
    *) psql -Atq "$AUTHGATE_DATABASE_URL" -c "SELECT count(*) FROM sessions WHERE revoked_at IS NOT NULL" ;;
  esac
}

bench_backend() { # bench_backend NAME URL
  local name=$1 port started seconds peak
  export AUTHGATE_DATABASE_URL=$2
  "$AUTHGATE" migrate >/dev/null 2>&1
  # The account the probe uses, before the ended sessions arrive.
  port=$(free_port)
  BASE="http://127.0.0.1:$port"
  log "$name: $(python3 "$BENCH/populate.py" "$2" "$ACCOUNTS" --ended)"
  # authgate cleans up at start (then every 5 minutes): the refreshes of 8 clients are
  # timed until no ended session is left, then 10 s more on the clean database.
  started=$(date +%s.%N)
  AUTHGATE_LISTEN="127.0.0.1:$port" taskset -c 0 "$AUTHGATE" serve >>"$WORK/authgate-$name.log" 2>&1 &
  PIDS+=("$!")
  until curl -sf -o /dev/null "$BASE/health/ready"; do sleep 0.1; done
  curl -sf -o /dev/null -H 'content-type: application/json' \
    -d "{\"email\":\"bench@example.com\",\"password\":\"$PASSWORD\"}" "$BASE/v1/auth/register"
  log "$name: refresh during the cleanup authgate runs at start"
  probe "$name-cleanup" until-clean
  seconds=$(bc -l <<<"$(date +%s.%N) - $started")
  peak=$(awk '/VmHWM/ {print $2}' "/proc/${PIDS[-1]}/status")
  log "$name: refresh on the clean database (10 s)"
  probe "$name-quiet" 10
  printf '| %s | %.0f s | %.0f MiB | %s | %s |\n' "$name" "$seconds" "$(bc -l <<<"$peak / 1024")" \
    "$(cat "$WORK/probe-$name-cleanup")" "$(cat "$WORK/probe-$name-quiet")" >>"$WORK/results"
  kill -TERM "${PIDS[-1]}"; wait "${PIDS[-1]}" || true; unset 'PIDS[-1]'
}

bench_backend sqlite "sqlite://$WORK/authgate.db?mode=rwc"
psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $PG_DB" >/dev/null
bench_backend postgres "postgres://postgres@127.0.0.1:5432/$PG_DB"

printf '\n%s ended sessions (each with 2 refresh tokens):\n\n' "$ACCOUNTS"
printf '| backend | start to clean | authgate peak RSS | refresh (8 chains) during cleanup | refresh after |\n|---|---|---|---|---|\n'
cat "$WORK/results"
