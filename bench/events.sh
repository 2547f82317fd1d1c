#!/usr/bin/env bash
# Benchmarks of issue 14 (event webhooks), on SQLite and PostgreSQL:
#
#   bash bench/events.sh [EVENTS]     # default 5000 events
#
# 1. Delivery rate: EVENTS registrations (one user.created each) are made while the
#    subscriber is down, authgate is stopped, the deliveries are made due, then authgate
#    is started against a local receiver (bench/webhook_sink.py on CPU 1); the figure is
#    EVENTS / (last arrival - first arrival).
# 2. What the outbox costs login and refresh: two instances on CPU 0 at once, one without
#    a subscriber, one with (the sink on CPU 1 receiving every event, so the deliverer
#    runs on authgate's core too); wrk (CPU 1, 32 connections) alternates between them,
#    PAIRS (default 6) pairs of 3 s login runs and of 1 s refresh runs, and the ratio is
#    the median of the pairs' ratios. Argon2 at 1 MiB / 1 iteration, so the extra insert
#    weighs as much as it can (BENCH_ARGON2=default: the production parameters, login only).
set -euo pipefail

EVENTS=${1:-5000}
PAIRS=${PAIRS:-6}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
AUTHGATE="$ROOT/target/release/authgate"
export BENCH_LUA_DIR="$BENCH"
for name in $(compgen -e | grep '^AUTHGATE_' || true); do unset "$name"; done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/authgate-events.XXXXXX")
PG_DB="authgate_events_bench_$$"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" \
    -c "DROP DATABASE IF EXISTS ${PG_DB}_off WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
field() { sed -E "s/.*$1=([0-9]+).*/\1/" <<<"$2"; }
rate() { awk -v r="$(field requests "$1")" -v d="$(field duration_us "$1")" 'BEGIN {printf "%.0f", r / (d / 1e6)}'; }

command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
if [[ -z ${BENCH_NO_BUILD:-} ]]; then
  log "building"
  (cd "$ROOT" && cargo build --release --bin authgate -p authgate)
fi

export AUTHGATE_RATE_LIMIT_PER_IP=0 AUTHGATE_LOGIN_MAX_FAILURES=1000000000 AUTHGATE_LOG=warn
# BENCH_ARGON2=default: the production parameters instead (login then costs what it
# costs in use, and only login is timed: making refresh tokens would take too long).
if [[ ${BENCH_ARGON2:-} != default ]]; then
  export AUTHGATE_ARGON2_MEMORY_KIB=1024 AUTHGATE_ARGON2_ITERATIONS=1
fi
export AUTHGATE_MASTER_KEY_FILE="$WORK/master.key"
openssl rand -base64 32 >"$AUTHGATE_MASTER_KEY_FILE"
PASSWORD="correct horse battery staple"
SECRET="whsec_$(openssl rand -base64 32)"

start() { # start VAR=VALUE...: authgate on CPU 0 with these settings
  env "$@" taskset -c 0 "$AUTHGATE" serve >>"$WORK/authgate.log" 2>&1 &
  AUTHGATE_PID=$!
  PIDS+=("$AUTHGATE_PID")
  until curl -sf -o /dev/null "$BASE/health/ready"; do
    kill -0 "$AUTHGATE_PID" || { tail "$WORK/authgate.log"; exit 1; }
    sleep 0.1
  done
}
stop() { kill -TERM "$AUTHGATE_PID"; wait "$AUTHGATE_PID" || true; }
wait_until_delivered() { # the outbox gauge (refreshed each second) at 0, or 30 s
  local tries=0
  sleep 1.2
  until curl -sf "$BASE/metrics" | grep -qx 'authgate_outbox_pending 0'; do
    ((tries++ < 60)) || { log "outbox not drained after 30 s"; return; }
    sleep 0.5
  done
}

bench_backend() { # bench_backend NAME URL OFF_URL (OFF_URL: an empty database)
  local name=$1 url=$2 sink_port hook received seconds
  export AUTHGATE_DATABASE_URL=$url
  PORT=$(free_port)
  BASE="http://127.0.0.1:$PORT"
  export AUTHGATE_LISTEN="127.0.0.1:$PORT"
  sink_port=$(free_port)
  hook="http://127.0.0.1:$sink_port/hook"

  # ---------------------------------------------------------------- 1. delivery rate
  log "$name: $EVENTS events with the subscriber down"
  start AUTHGATE_EVENTS_WEBHOOK_URL="$hook" AUTHGATE_EVENTS_WEBHOOK_SECRET="$SECRET" AUTHGATE_LOG=error
  seq "$EVENTS" | taskset -c 1 xargs -P 16 -I{} curl -sf -o /dev/null -H 'content-type: application/json' \
    -d "{\"email\":\"user{}@example.com\",\"password\":\"$PASSWORD\"}" "$BASE/v1/auth/register"
  stop
  case $name in
    sqlite) python3 -c 'import sqlite3, sys
db = sqlite3.connect(sys.argv[1].split("?")[0])
db.execute("UPDATE event_deliveries SET next_attempt_at = 0, claimed_until = 0")
db.commit()' "${url#sqlite://}" ;;
    postgres) psql -q -h 127.0.0.1 -U postgres -d "$PG_DB" -c "UPDATE event_deliveries SET next_attempt_at = 0, claimed_until = 0" ;;
  esac
  taskset -c 1 python3 "$BENCH/webhook_sink.py" "$sink_port" "$EVENTS" >"$WORK/sink.out" &
  local sink_pid=$!
  PIDS+=("$sink_pid")
  sleep 0.5
  start AUTHGATE_EVENTS_WEBHOOK_URL="$hook" AUTHGATE_EVENTS_WEBHOOK_SECRET="$SECRET"
  timeout 120 tail --pid="$sink_pid" -f /dev/null
  read -r received seconds <<<"$(sed -E 's/.*received=([0-9]+) first_to_last_s=([0-9.]+).*/\1 \2/' "$WORK/sink.out")"
  printf '%s delivery: %s events in %s s = %.0f events/s (%s)\n' "$name" "$received" "$seconds" \
    "$(bc -l <<<"$received / $seconds")" "$(cat "$WORK/sink.out")" >>"$WORK/results.txt"
  stop

  # ------------------------------------------------------ 2. login and refresh, off / on
  # Two instances at once on CPU 0, each on its own database: "off" without a
  # subscriber, "on" with the sink (CPU 1) receiving every event. wrk alternates between
  # them in short runs (off-on, then on-off), and each pair gives a ratio: the machine's
  # speed drifts by more than the 5 % looked for, within a pair it hardly does.
  local off_url=$3 off_base on_base pair first second line
  taskset -c 1 python3 "$BENCH/webhook_sink.py" "$sink_port" 100000000 >/dev/null &
  PIDS+=("$!")
  sleep 0.3
  start AUTHGATE_EVENTS_WEBHOOK_URL="$hook" AUTHGATE_EVENTS_WEBHOOK_SECRET="$SECRET"
  on_base=$BASE
  PORT=$(free_port)
  BASE="http://127.0.0.1:$PORT"
  start AUTHGATE_DATABASE_URL="$off_url" AUTHGATE_LISTEN="127.0.0.1:$PORT"
  off_base=$BASE
  for base in "$off_base" "$on_base"; do
    curl -sf -o /dev/null -H 'content-type: application/json' \
      -d "{\"email\":\"bench-$name@example.com\",\"password\":\"$PASSWORD\"}" "$base/v1/auth/register"
  done
  for pair in $(seq "$PAIRS"); do
    if ((pair % 2)); then first=off; second=on; else first=on; second=off; fi
    for mode in $first $second; do
      [[ $mode == on ]] && base=$on_base || base=$off_base
      line=$(BENCH_EMAIL="bench-$name@example.com" BENCH_PASSWORD="$PASSWORD" taskset -c 1 timeout 60 \
        wrk -t1 -c"${LOGIN_CONNECTIONS:-32}" -d3s --latency -s "$BENCH/login.lua" "$base/v1/auth/login" | grep '^BENCH')
      echo "$name login $mode $pair $(rate "$line") $(field status_errors "$line")" >>"$WORK/rates.txt"
    done
  done
  if [[ ${BENCH_ARGON2:-} != default ]]; then
    # Refresh writes no event; what could cost it is the deliverer sending the logins'
    # events. Tokens for both are made first, then delivered, then timed in pairs.
    for pair in $(seq "$PAIRS"); do
      for mode in off on; do
        [[ $mode == on ]] && base=$on_base || base=$off_base
        taskset -c 1 python3 "$BENCH/client.py" refresh-tokens "$base" "bench-$name@example.com" "$PASSWORD" 3500 "$WORK/tokens-$mode-$pair" >/dev/null
      done
    done
    BASE=$on_base wait_until_delivered
    for pair in $(seq "$PAIRS"); do
      if ((pair % 2)); then first=off; second=on; else first=on; second=off; fi
      for mode in $first $second; do
        [[ $mode == on ]] && base=$on_base || base=$off_base
        line=$(BENCH_TOKENS="$WORK/tokens-$mode-$pair" taskset -c 1 timeout 60 \
          wrk -t1 -c32 -d1s --latency -s "$BENCH/refresh.lua" "$base/v1/auth/refresh" | grep '^BENCH')
        echo "$name refresh $mode $pair $(rate "$line") $(field status_errors "$line")" >>"$WORK/rates.txt"
      done
    done
  fi
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  PIDS=()
}

bench_backend sqlite "sqlite://$WORK/authgate.db?mode=rwc" "sqlite://$WORK/authgate-off.db?mode=rwc"
psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $PG_DB" -c "CREATE DATABASE ${PG_DB}_off" >/dev/null
bench_backend postgres "postgres://postgres@127.0.0.1:5432/$PG_DB" "postgres://postgres@127.0.0.1:5432/${PG_DB}_off"

echo
cat "$WORK/results.txt"
printf '\nreq/s (backend, route, events, pair, req/s, non-2xx):\n'
cat "$WORK/rates.txt"
printf '\n| backend | route | no subscriber (median req/s) | one subscriber | on/off ratio, median of pairs (min–max) |\n|---|---|---|---|---|\n'
python3 - "$WORK/rates.txt" <<'PY'
import collections, statistics, sys
rates = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    backend, route, mode, pair, rate, _ = line.split()
    rates[(backend, route)].setdefault(pair, {})[mode] = float(rate)
for (backend, route), pairs in sorted(rates.items()):
    ratios = [p["on"] / p["off"] for p in pairs.values()]
    off = statistics.median(p["off"] for p in pairs.values())
    on = statistics.median(p["on"] for p in pairs.values())
    print(f"| {backend} | {route} | {off:.0f} | {on:.0f} | "
          f"{statistics.median(ratios):.3f} ({min(ratios):.3f}–{max(ratios):.3f}) |")
PY
