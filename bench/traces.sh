#!/usr/bin/env bash
# Benchmark of issue 18 (request traces): what exporting every request costs /me.
#
#   bash bench/traces.sh            # SQLite; BENCH_BACKEND=postgres for PostgreSQL
#
# Two instances of the same build on CPU 0 at once, each on its own database: "off"
# without AUTHGATE_OTLP_ENDPOINT, "on" exporting to a local receiver (bench/webhook_sink.py
# on CPU 1, answering every POST at once, as a collector on another host would). wrk (CPU
# 1, 32 connections) alternates between them, PAIRS (default 6) pairs of 3 s runs of
# GET /v1/auth/me (off-on, then on-off), and the ratio is the median of the pairs' ratios:
# the machine's speed drifts by more than the 10 % looked for, within a pair it hardly
# does. BENCH_SERVER_TIMING=true turns on Server-Timing in both.
#
# BENCH_BASELINE=/path/to/an/older/authgate: what the code costs with export unset. The
# "off" instance runs that build, the "on" instance this one, neither exporting.
set -euo pipefail

PAIRS=${PAIRS:-6}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
AUTHGATE="$ROOT/target/release/authgate"
export BENCH_LUA_DIR="$BENCH"
for name in $(compgen -e | grep '^AUTHGATE_' || true); do unset "$name"; done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/authgate-traces.XXXXXX")
PG_DB="authgate_traces_bench_$$"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS ${PG_DB}_on WITH (FORCE)" \
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

export AUTHGATE_RATE_LIMIT_PER_IP=0 AUTHGATE_LOG=warn AUTHGATE_SERVER_TIMING=${BENCH_SERVER_TIMING:-false}
export AUTHGATE_ARGON2_MEMORY_KIB=1024 AUTHGATE_ARGON2_ITERATIONS=1
export AUTHGATE_MASTER_KEY_FILE="$WORK/master.key"
openssl rand -base64 32 >"$AUTHGATE_MASTER_KEY_FILE"
PASSWORD="correct horse battery staple"

case ${BENCH_BACKEND:-sqlite} in
  sqlite) on_url="sqlite://$WORK/on.db?mode=rwc" off_url="sqlite://$WORK/off.db?mode=rwc" ;;
  postgres)
    psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE ${PG_DB}_on" -c "CREATE DATABASE ${PG_DB}_off" >/dev/null
    on_url="postgres://postgres@127.0.0.1:5432/${PG_DB}_on" off_url="postgres://postgres@127.0.0.1:5432/${PG_DB}_off" ;;
esac

start() { # start VAR=VALUE...: authgate on CPU 0 with these settings; sets BASE
  local port
  port=$(free_port)
  BASE="http://127.0.0.1:$port"
  env AUTHGATE_LISTEN="127.0.0.1:$port" "$@" taskset -c 0 "$AUTHGATE" serve >>"$WORK/authgate.log" 2>&1 &
  PIDS+=("$!")
  until curl -sf -o /dev/null "$BASE/health/ready"; do
    kill -0 "${PIDS[-1]}" || { tail "$WORK/authgate.log"; exit 1; }
    sleep 0.1
  done
}
token() { # token BASE: an access token of a new account
  curl -sf -o /dev/null -H 'content-type: application/json' \
    -d "{\"email\":\"bench@example.com\",\"password\":\"$PASSWORD\"}" "$1/v1/auth/register"
  curl -sf -H 'content-type: application/json' \
    -d "{\"email\":\"bench@example.com\",\"password\":\"$PASSWORD\"}" "$1/v1/auth/login" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}

sink_port=$(free_port)
taskset -c 1 python3 "$BENCH/webhook_sink.py" "$sink_port" 1000000000 >/dev/null &
PIDS+=("$!")
sleep 0.3
if [[ -n ${BENCH_BASELINE:-} ]]; then
  start AUTHGATE_DATABASE_URL="$on_url"
  on_base=$BASE
  AUTHGATE=$BENCH_BASELINE start AUTHGATE_DATABASE_URL="$off_url"
else
  start AUTHGATE_DATABASE_URL="$on_url" AUTHGATE_OTLP_ENDPOINT="http://127.0.0.1:$sink_port"
  on_base=$BASE
  start AUTHGATE_DATABASE_URL="$off_url"
fi
off_base=$BASE
on_token=$(token "$on_base")
off_token=$(token "$off_base")

log "${BENCH_BACKEND:-sqlite}: $PAIRS pairs of 3 s /me runs, export off and on"
for pair in $(seq "$PAIRS"); do
  if ((pair % 2)); then first=off; second=on; else first=on; second=off; fi
  for mode in $first $second; do
    if [[ $mode == on ]]; then base=$on_base tok=$on_token; else base=$off_base tok=$off_token; fi
    line=$(BENCH_TOKEN="$tok" taskset -c 1 timeout 60 \
      wrk -t1 -c32 -d3s --latency -s "$BENCH/get.lua" "$base/v1/auth/me" | grep '^BENCH')
    echo "$mode $pair $(rate "$line") $(field status_errors "$line")" | tee -a "$WORK/rates.txt" >&2
  done
done

printf '\n| backend | export off (median req/s) | export on | on/off ratio, median of pairs (min–max) |\n|---|---|---|---|\n'
python3 - "$WORK/rates.txt" "${BENCH_BACKEND:-sqlite}" <<'PY'
import collections, statistics, sys
pairs = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    mode, pair, rate, errors = line.split()
    assert errors == "0", f"non-2xx answers: {line}"
    pairs[pair][mode] = float(rate)
ratios = [p["on"] / p["off"] for p in pairs.values()]
off = statistics.median(p["off"] for p in pairs.values())
on = statistics.median(p["on"] for p in pairs.values())
print(f"| {sys.argv[2]} | {off:.0f} | {on:.0f} | "
      f"{statistics.median(ratios):.3f} ({min(ratios):.3f}–{max(ratios):.3f}) |")
PY
