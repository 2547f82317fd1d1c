#!/usr/bin/env bash
# Benchmarks of issue 14 (event webhooks), on SQLite and PostgreSQL:
#
#   bash bench/events.sh [EVENTS]     # default 5000 events
#
# 1. Delivery rate: EVENTS registrations (one user.created each) are made while the
#    subscriber is down, authgate is stopped, the deliveries are made due, then authgate
#    is started against a local receiver (bench/webhook_sink.py on CPU 1); the figure is
#    EVENTS / (last arrival - first arrival).
# 2. What the outbox costs login and refresh: authgate without a subscriber, then with
#    one (the sink receiving every event, so the deliverer runs on authgate's core too),
#    interleaved three times, 5 s (login) and 2 s (refresh) each, 32 connections;
#    authgate on CPU 0, wrk on CPU 1. Refresh writes no event: its run starts once the
#    events of the logins that made its tokens are delivered.
#    Argon2 at 1 MiB / 1 iteration, so the extra insert weighs as much as it can.
set -euo pipefail

EVENTS=${1:-5000}
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
  psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true
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
export AUTHGATE_ARGON2_MEMORY_KIB=1024 AUTHGATE_ARGON2_ITERATIONS=1
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

bench_backend() { # bench_backend NAME URL
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
  start
  curl -sf -o /dev/null -H 'content-type: application/json' \
    -d "{\"email\":\"bench-$name@example.com\",\"password\":\"$PASSWORD\"}" "$BASE/v1/auth/register"
  stop
  local run mode line
  for run in 1 2 3; do
    for mode in off on; do
      case $mode in
        off) start ;;
        on)
          taskset -c 1 python3 "$BENCH/webhook_sink.py" "$sink_port" 100000000 >/dev/null &
          PIDS+=("$!")
          sleep 0.3
          start AUTHGATE_EVENTS_WEBHOOK_URL="$hook" AUTHGATE_EVENTS_WEBHOOK_SECRET="$SECRET" ;;
      esac
      line=$(BENCH_EMAIL="bench-$name@example.com" BENCH_PASSWORD="$PASSWORD" taskset -c 1 timeout 60 \
        wrk -t1 -c32 -d5s --latency -s "$BENCH/login.lua" "$BASE/v1/auth/login" | grep '^BENCH')
      echo "$name login $mode $run $(rate "$line") $(field status_errors "$line")" >>"$WORK/rates.txt"
      # Enough tokens for 2 s at the fastest rate seen (a spent one answers 401, fast);
      # the logins that made them are delivered before refresh is timed.
      taskset -c 1 python3 "$BENCH/client.py" refresh-tokens "$BASE" "bench-$name@example.com" "$PASSWORD" 7000 "$WORK/tokens" >/dev/null
      if [[ $mode == on ]]; then wait_until_delivered; else sleep 1.2; fi
      line=$(BENCH_TOKENS="$WORK/tokens" taskset -c 1 timeout 60 \
        wrk -t1 -c32 -d2s --latency -s "$BENCH/refresh.lua" "$BASE/v1/auth/refresh" | grep '^BENCH')
      echo "$name refresh $mode $run $(rate "$line") $(field status_errors "$line")" >>"$WORK/rates.txt"
      stop
      if [[ $mode == on ]]; then kill -TERM "${PIDS[-2]}" 2>/dev/null || true; fi
    done
  done
}

bench_backend sqlite "sqlite://$WORK/authgate.db?mode=rwc"
psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $PG_DB" >/dev/null
bench_backend postgres "postgres://postgres@127.0.0.1:5432/$PG_DB"

echo
cat "$WORK/results.txt"
printf '\nreq/s (backend, route, events, run, req/s, non-2xx):\n'
cat "$WORK/rates.txt"
printf '\n| backend | route | no subscriber (mean req/s) | one subscriber | ratio |\n|---|---|---|---|---|\n'
awk '{sum[$1" "$2" "$3] += $5; n[$1" "$2" "$3]++}
     END {for (k in sum) {split(k, p, " "); if (p[3] == "off") {
            on = sum[p[1]" "p[2]" on"] / n[p[1]" "p[2]" on"]; off = sum[k] / n[k];
            printf "| %s | %s | %.0f | %.0f | %.3f |\n", p[1], p[2], off, on, on / off}}}' "$WORK/rates.txt" | sort
