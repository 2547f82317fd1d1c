#!/usr/bin/env bash
# Benchmarks of issue 13 (roles and the admin API), on SQLite and PostgreSQL:
#
#   bash bench/admin.sh [ACCOUNTS]      # default 100000
#
# 1. ACCOUNTS accounts are bulk-inserted (not through the API); then, with authgate on
#    CPU 0 and wrk on CPU 1 (8 connections, 5 s each): GET /admin/v1/users?q=<prefix>
#    (a prefix matching about a tenth of the accounts, first page of 50) and a cursor
#    page deep in the list (past 90 % of the accounts): p50 and p99 latency.
# 2. Refresh throughput for an account with three roles mapped to five scopes, and for
#    one without roles, interleaved (3 runs of 3 s each, 32 connections): the cost of
#    issuing roles and scopes.
set -euo pipefail

ACCOUNTS=${1:-100000}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
AUTHGATE="$ROOT/target/release/authgate"
export BENCH_LUA_DIR="$BENCH"
for name in $(compgen -e | grep '^AUTHGATE_' || true); do unset "$name"; done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/authgate-admin.XXXXXX")
PG_DB="authgate_admin_bench_$$"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ms() { awk -v v="$1" 'BEGIN {printf "%.2f", v / 1000}'; }

command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
log "building"
(cd "$ROOT" && cargo build --release --bin authgate -p authgate)

cat >"$WORK/authgate.toml" <<'TOML'
[roles.editor]
scopes = ["articles:read", "articles:write"]
[roles.analyst]
scopes = ["reports:read", "reports:export"]
[roles.support]
scopes = ["tickets:write"]
TOML
export AUTHGATE_CONFIG="$WORK/authgate.toml" AUTHGATE_RATE_LIMIT_PER_IP=0 AUTHGATE_LOGIN_MAX_FAILURES=1000000000 AUTHGATE_LOG=warn
export AUTHGATE_ARGON2_MEMORY_KIB=1024 AUTHGATE_ARGON2_ITERATIONS=1
export AUTHGATE_MASTER_KEY_FILE="$WORK/master.key"
openssl rand -base64 32 >"$AUTHGATE_MASTER_KEY_FILE"

wrk_line() { # wrk_line CONNECTIONS DURATION URL [wrk args...]: the BENCH line
  local connections=$1 duration=$2 url=$3
  shift 3
  taskset -c 1 timeout 60 wrk -t1 -c"$connections" -d"${duration}s" --latency "$@" "$url" | grep '^BENCH'
}
field() { sed -E "s/.*$1=([0-9]+).*/\1/" <<<"$2"; }

bench_backend() { # bench_backend NAME URL
  local name=$1 url=$2 port admin_port key base admin
  export AUTHGATE_DATABASE_URL=$url
  "$AUTHGATE" migrate
  log "$name: inserting $ACCOUNTS accounts"
  case $name in
    sqlite)
      python3 - "${url#sqlite://}" "$ACCOUNTS" <<'PY'
import sqlite3, sys, uuid
path, n = sys.argv[1].split("?")[0], int(sys.argv[2])
db = sqlite3.connect(path)
db.executemany(
    "INSERT INTO users (id, email, password_hash, created_at, email_verified, roles, disabled)"
    " VALUES (?, ?, '', 0, 0, ?, 0)",
    ((uuid.uuid4().bytes, f"user{i:06d}@example.com", "editor" if i % 10 == 0 else "")
     for i in range(n)))
db.commit()
PY
      ;;
    postgres)
      psql -q -h 127.0.0.1 -U postgres -d "$PG_DB" -c "INSERT INTO users (id, email, password_hash, created_at, email_verified, roles, disabled)
        SELECT gen_random_uuid(), 'user' || lpad(i::text, 6, '0') || '@example.com', '', 0, false,
               CASE WHEN i % 10 = 0 THEN 'editor' ELSE '' END, false
          FROM generate_series(0, $ACCOUNTS - 1) AS i; ANALYZE users;"
      ;;
  esac
  key=$("$AUTHGATE" admin-keys create "bench-$name")
  port=$(free_port)
  admin_port=$(free_port)
  base="http://127.0.0.1:$port"
  admin="http://127.0.0.1:$admin_port"
  AUTHGATE_LISTEN="127.0.0.1:$port" AUTHGATE_ADMIN_LISTEN="127.0.0.1:$admin_port" \
    taskset -c 0 "$AUTHGATE" serve >>"$WORK/authgate-$name.log" 2>&1 &
  PIDS+=("$!")
  until curl -sf -o /dev/null "$base/health/ready"; do sleep 0.1; done

  local deep prefix_line deep_line
  deep=$(printf 'user%06d@example.com' $((ACCOUNTS * 9 / 10)) | base64 | tr '+/' '-_' | tr -d '=\n')
  prefix_line=$(wrk_line 8 5 "$admin/admin/v1/users?q=user01" -s "$BENCH/report.lua" -H "Authorization: Bearer $key")
  deep_line=$(wrk_line 8 5 "$admin/admin/v1/users?cursor=$deep&limit=50" -s "$BENCH/report.lua" -H "Authorization: Bearer $key")
  printf '| %s | `q=user01` (first 50 of %d) | %s | %s ms | %s ms |\n' "$name" $((ACCOUNTS / 10)) \
    "$(awk -v r="$(field requests "$prefix_line")" -v d="$(field duration_us "$prefix_line")" 'BEGIN {printf "%.0f", r / (d / 1e6)}')" \
    "$(ms "$(field p50_us "$prefix_line")")" "$(ms "$(field p99_us "$prefix_line")")"
  printf '| %s | cursor past %d%% | %s | %s ms | %s ms |\n' "$name" 90 \
    "$(awk -v r="$(field requests "$deep_line")" -v d="$(field duration_us "$deep_line")" 'BEGIN {printf "%.0f", r / (d / 1e6)}')" \
    "$(ms "$(field p50_us "$deep_line")")" "$(ms "$(field p99_us "$deep_line")")"

  # Refresh with and without roles.
  local password="correct horse battery staple" id run who line
  for who in plain roles; do
    curl -sf -o "$WORK/$who.json" -H 'content-type: application/json' \
      -d "{\"email\":\"$who-$name@example.com\",\"password\":\"$password\"}" "$base/v1/auth/register"
  done
  id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$WORK/roles.json")
  curl -sf -o /dev/null -X PATCH -H "Authorization: Bearer $key" -H 'content-type: application/json' \
    -d '{"roles":["editor","analyst","support"]}' "$admin/admin/v1/users/$id"
  for run in 1 2 3; do
    for who in plain roles; do
      taskset -c 1 python3 "$BENCH/client.py" refresh-tokens "$base" "$who-$name@example.com" "$password" 16000 "$WORK/tokens-$who" >/dev/null
      line=$(BENCH_TOKENS="$WORK/tokens-$who" wrk_line 32 3 "$base/v1/auth/refresh" -s "$BENCH/refresh.lua")
      echo "$name $who $run $(awk -v r="$(field requests "$line")" -v d="$(field duration_us "$line")" 'BEGIN {printf "%.0f", r / (d / 1e6)}') $(field status_errors "$line")" >>"$WORK/refresh.txt"
    done
  done
  kill -TERM "${PIDS[-1]}"; wait "${PIDS[-1]}" || true; unset 'PIDS[-1]'
}

printf '\n| backend | query | req/s | p50 | p99 |\n|---|---|---|---|---|\n'
bench_backend sqlite "sqlite://$WORK/authgate.db?mode=rwc"
psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $PG_DB" >/dev/null
bench_backend postgres "postgres://postgres@127.0.0.1:5432/$PG_DB"

printf '\nrefresh req/s (backend, account, run, req/s, non-2xx):\n'
cat "$WORK/refresh.txt"
awk '{sum[$1" "$2] += $4; n[$1" "$2]++} END {for (k in sum) printf "%s mean %.0f\n", k, sum[k] / n[k]}' "$WORK/refresh.txt" | sort
