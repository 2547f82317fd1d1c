#!/usr/bin/env bash
# Benchmark of issue 15 (service clients), on SQLite and PostgreSQL:
#
#   bash bench/clients.sh
#
# POST /v1/oauth/token (client_credentials, client_secret_basic) against GET /v1/auth/me
# with a user's token, in the same run, interleaved three times, 5 s each, 32
# connections; authgate on CPU 0, wrk on CPU 1, rate limit off. The target: the token
# endpoint at ≥ 50 % of /me (a client's secret costs one SHA-256 and a lookup).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
AUTHGATE="$ROOT/target/release/authgate"
export BENCH_LUA_DIR="$BENCH"
for name in $(compgen -e | grep '^AUTHGATE_' || true); do unset "$name"; done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/authgate-clients.XXXXXX")
PG_DB="authgate_clients_bench_$$"
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
export AUTHGATE_RATE_LIMIT_PER_IP=0 AUTHGATE_LOG=warn
export AUTHGATE_ARGON2_MEMORY_KIB=1024 AUTHGATE_ARGON2_ITERATIONS=1
export AUTHGATE_MASTER_KEY_FILE="$WORK/master.key"
openssl rand -base64 32 >"$AUTHGATE_MASTER_KEY_FILE"

bench_backend() { # bench_backend NAME URL
  local name=$1 url=$2 port base client id secret token run line
  export AUTHGATE_DATABASE_URL=$url
  "$AUTHGATE" migrate
  client=$("$AUTHGATE" clients create "bench-$name" --scopes "reports:read")
  id=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["client_id"])' "$client")
  secret=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["client_secret"])' "$client")
  port=$(free_port)
  base="http://127.0.0.1:$port"
  AUTHGATE_LISTEN="127.0.0.1:$port" taskset -c 0 "$AUTHGATE" serve >>"$WORK/authgate-$name.log" 2>&1 &
  PIDS+=("$!")
  until curl -sf -o /dev/null "$base/health/ready"; do sleep 0.1; done
  python3 "$BENCH/client.py" register "$base" "bench@example.com" "correct horse battery staple" >/dev/null
  token=$(python3 "$BENCH/client.py" access "$base" "bench@example.com" "correct horse battery staple")
  for run in 1 2 3; do
    line=$(BENCH_TOKEN="$token" taskset -c 1 timeout 60 wrk -t1 -c32 -d5s --latency -s "$BENCH/get.lua" "$base/v1/auth/me" | grep '^BENCH')
    echo "$name me $run $(rate "$line") $(field p99_us "$line") $(field status_errors "$line")" >>"$WORK/rates.txt"
    line=$(BENCH_BASIC="$(printf '%s:%s' "$id" "$secret" | base64 -w0)" taskset -c 1 timeout 60 \
      wrk -t1 -c32 -d5s --latency -s "$BENCH/token.lua" "$base/v1/oauth/token" | grep '^BENCH')
    echo "$name token $run $(rate "$line") $(field p99_us "$line") $(field status_errors "$line")" >>"$WORK/rates.txt"
  done
  kill -TERM "${PIDS[-1]}"; wait "${PIDS[-1]}" || true; unset 'PIDS[-1]'
}

bench_backend sqlite "sqlite://$WORK/authgate.db?mode=rwc"
psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $PG_DB" >/dev/null
bench_backend postgres "postgres://postgres@127.0.0.1:5432/$PG_DB"

printf '\nreq/s (backend, route, run, req/s, p99 µs, non-2xx):\n'
cat "$WORK/rates.txt"
printf '\n| backend | GET /v1/auth/me (mean req/s) | POST /v1/oauth/token | ratio |\n|---|---|---|---|\n'
awk '{sum[$1" "$2] += $4; n[$1" "$2]++}
     END {for (k in sum) {split(k, p, " "); if (p[2] == "me") {
            me = sum[k] / n[k]; token = sum[p[1]" token"] / n[p[1]" token"];
            printf "| %s | %.0f | %.0f | %.2f |\n", p[1], me, token, token / me}}}' "$WORK/rates.txt" | sort
