#!/usr/bin/env bash
# Benchmarks of issue 12 (password reset and message delivery), on SQLite:
#
#   bash bench/messages.sh [MESSAGES]     # default 3000 messages
#
# 1. POST /v1/auth/password/forgot for a registered and for an unknown address, measured
#    interleaved (registered, unknown, three times, 5 s each): req/s and median latency.
#    authgate on CPU 0, wrk on CPU 1, 32 connections, limits off.
# 2. Delivery rate: MESSAGES verification messages are queued while the webhook is down,
#    authgate is stopped, their next attempt is made due, then authgate is started
#    against a local receiver (bench/webhook_sink.py on CPU 1); the figure is
#    MESSAGES / (last arrival - first arrival).
set -euo pipefail

MESSAGES=${1:-3000}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
AUTHGATE="$ROOT/target/release/authgate"
export BENCH_LUA_DIR="$BENCH"
for name in $(compgen -e | grep '^AUTHGATE_' || true); do unset "$name"; done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/authgate-messages.XXXXXX")
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
log "building"
(cd "$ROOT" && cargo build --release --bin authgate -p authgate)

PORT=$(free_port)
BASE="http://127.0.0.1:$PORT"
export AUTHGATE_DATABASE_URL="sqlite://$WORK/authgate.db?mode=rwc"
export AUTHGATE_LISTEN="127.0.0.1:$PORT" AUTHGATE_RATE_LIMIT_PER_IP=0 AUTHGATE_LOG=warn
export AUTHGATE_ARGON2_MEMORY_KIB=1024 AUTHGATE_ARGON2_ITERATIONS=1

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
register() { curl -sf -o /dev/null -H 'content-type: application/json' \
  -d "{\"email\":\"$1\",\"password\":\"correct horse battery staple\"}" "$BASE/v1/auth/register"; }

# ------------------------------------------------------------------ 1. forgot timing
start AUTHGATE_DELIVERY_FILE="$WORK/messages.jsonl"
register registered@example.com
printf '\n| forgot, run | registered req/s | registered p50 | unknown req/s | unknown p50 |\n|---|---|---|---|---|\n'
for run in 1 2 3; do
  row="| $run "
  for email in registered@example.com unknown@example.com; do
    line=$(BENCH_EMAIL=$email taskset -c 1 timeout 30 wrk -t1 -c32 -d5s --latency -s "$BENCH/forgot.lua" \
      "$BASE/v1/auth/password/forgot" | grep '^BENCH')
    read -r requests duration p50 errors <<<"$(sed -E 's/.*requests=([0-9]+) duration_us=([0-9]+) p50_us=([0-9]+) .*status_errors=([0-9]+).*/\1 \2 \3 \4/' <<<"$line")"
    ((errors == 0)) || log "$email: $errors non-2xx answers"
    row+=$(printf '| %.0f | %.3f ms ' "$(bc -l <<<"$requests * 1000000 / $duration")" "$(bc -l <<<"$p50 / 1000")")
  done
  echo "$row|"
done
echo "reset messages written: $(grep -c password_reset "$WORK/messages.jsonl" || true) (one per account per minute)"
stop

# ------------------------------------------------------------------ 2. delivery rate
SINK_PORT=$(free_port)
HOOK="http://127.0.0.1:$SINK_PORT/hook"
SECRET="whsec_$(openssl rand -base64 32)"
log "queueing $MESSAGES messages with the webhook down"
start AUTHGATE_DELIVERY_WEBHOOK_URL="$HOOK" AUTHGATE_DELIVERY_WEBHOOK_SECRET="$SECRET" AUTHGATE_LOG=error
seq "$MESSAGES" | taskset -c 1 xargs -P 16 -I{} curl -sf -o /dev/null -H 'content-type: application/json' \
  -d '{"email":"user{}@example.com","password":"correct horse battery staple"}' "$BASE/v1/auth/register"
stop
python3 - "$WORK/authgate.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("UPDATE outbox SET due_at = 0, claimed_until = 0")
db.commit()
print("pending:", db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
PY
taskset -c 1 python3 "$BENCH/webhook_sink.py" "$SINK_PORT" "$MESSAGES" >"$WORK/sink.out" &
SINK_PID=$!
PIDS+=("$SINK_PID")
sleep 0.5
log "delivering"
start AUTHGATE_DELIVERY_WEBHOOK_URL="$HOOK" AUTHGATE_DELIVERY_WEBHOOK_SECRET="$SECRET"
timeout 120 tail --pid="$SINK_PID" -f /dev/null
cat "$WORK/sink.out"
read -r received seconds <<<"$(sed -E 's/.*received=([0-9]+) first_to_last_s=([0-9.]+).*/\1 \2/' "$WORK/sink.out")"
printf 'delivery: %s messages in %s s = %.0f messages/s\n' "$received" "$seconds" "$(bc -l <<<"$received / $seconds")"
