#!/usr/bin/env bash
# Load harness for authgate (issue #6): throughput and latency of the hot endpoints on
# SQLite and PostgreSQL, next to the ceilings they are judged against. See bench/README.md.
#
#   bash bench/run.sh            # 3 runs of 10 s per figure, the median is reported
#   bash bench/run.sh --quick    # 1 run of 3 s per figure (a smoke test, noisy)
#   bash bench/run.sh --accounts 1000000
#                                # /me and refresh only, against databases first filled
#                                # with that many accounts, live sessions and refresh
#                                # tokens (2 per session, half spent) by bench/populate.py
#
# Servers run on CPU 0 and wrk on CPU 1, so the load generator never steals cycles from
# the server it measures and every server gets exactly one core.
set -euo pipefail

RUNS=3
DURATION=10
ACCOUNTS=0
while (($#)); do
  case "$1" in
    --quick) RUNS=1; DURATION=3 ;;
    --accounts) ACCOUNTS=${2:?--accounts needs a number}; shift ;;
    *) echo "usage: bash bench/run.sh [--quick] [--accounts N]" >&2; exit 2 ;;
  esac
  shift
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
AUTHGATE="$ROOT/target/release/authgate"
CEILING="$ROOT/target/release/examples/ceiling"
DOWNSTREAM="$ROOT/target/release/examples/downstream"
ROTATION="$ROOT/target/release/examples/rotation_ceiling"
PG_ADMIN_URL="postgres://postgres@127.0.0.1:5432"
PASSWORD="correct horse battery staple"
CONNECTIONS=32
# The argon2 admission limit is 17 hashes per core (running or queued); authgate sees one
# core, so more login connections than that measure 503 shedding, not logins.
LOGIN_CONNECTIONS=16
# A few connections probe /me during the login flood: with 32 the p99 would mostly be
# /me requests queueing behind each other, not behind argon2.
PROBE_CONNECTIONS=4
# The cheap cost used while preparing refresh tokens and measuring me/refresh, and the
# default cost authgate ships with (memory KiB x iterations, for the argon2 estimate).
CHEAP_MEMORY_KIB=1024
CHEAP_ITERATIONS=1
DEFAULT_COST=$((19456 * 2))
CHEAP_COST=$((CHEAP_MEMORY_KIB * CHEAP_ITERATIONS))

# Inherited AUTHGATE_* settings (a config file, a database URL, limits) would silently
# change what is measured; only the log settings are let through.
for name in $(compgen -e | grep '^AUTHGATE_' || true); do
  case "$name" in AUTHGATE_LOG | AUTHGATE_LOG_FORMAT) ;; *) unset "$name" ;; esac
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/authgate-bench.XXXXXX")
SERVER_PIDS=()
FLOOD_PID=""
PG_DB=""
export BENCH_LUA_DIR="$BENCH"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

cleanup() {
  local pid
  [[ -z "$FLOOD_PID" ]] || kill -TERM "$FLOOD_PID" 2>/dev/null || true
  for pid in "${SERVER_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${SERVER_PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [[ -n "$PG_DB" ]]; then
    # FORCE: a server killed mid-run may leave its connections behind for a moment.
    psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 ||
      log "could not drop database $PG_DB"
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------- setup

install_wrk() {
  command -v wrk >/dev/null && return
  log "installing wrk from Debian's packages"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
}

build() {
  log "building (a no-op when target/release is up to date)"
  (cd "$ROOT" &&
    cargo build --release --bin authgate --example ceiling --example rotation_ceiling -p authgate &&
    cargo build --release -p authgate-verify --example downstream)
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --------------------------------------------------------------------------- servers

# start_server LOG CPU VAR=VALUE... -- COMMAND...: starts it in the background with only
# the given environment changes, pinned to CPU ("any" for no pinning); sets STARTED_PID.
start_server() {
  local logfile=$1 cpu=$2
  shift 2
  local vars=()
  while [[ $1 != -- ]]; do vars+=("$1"); shift; done
  shift
  local pin=()
  [[ $cpu != any ]] && pin=(taskset -c "$cpu")
  env "${vars[@]}" "${pin[@]}" "$@" >>"$logfile" 2>&1 &
  STARTED_PID=$!
  SERVER_PIDS+=("$STARTED_PID")
}

stop_server() {
  local pid=$1 waited=0
  kill -TERM "$pid" 2>/dev/null || return 0
  # authgate drains in-flight requests on SIGTERM; wrk has closed its connections by now.
  while kill -0 "$pid" 2>/dev/null && ((waited < 100)); do sleep 0.1; waited=$((waited + 1)); done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  # Forget it, so that cleanup never signals a recycled process id.
  local kept=() other
  for other in "${SERVER_PIDS[@]}"; do [[ $other == "$pid" ]] || kept+=("$other"); done
  SERVER_PIDS=("${kept[@]}")
}

# wait_http URL PID LOG: until URL answers at all (any status), or the server died.
wait_http() {
  local url=$1 pid=$2 logfile=$3 tries=0
  until [[ $(curl -s -o /dev/null -w '%{http_code}' "$url" || true) != 000 ]]; do
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$logfile" >&2; die "server for $url exited"; }
    ((tries++ < 300)) || die "$url did not answer within 30 s"
    sleep 0.1
  done
}

# authgate_env DATABASE_URL PORT [cheap]: the environment of a benchmarked authgate,
# one VAR=VALUE per line. Limits are off so that they are not what gets measured.
authgate_env() {
  local url=$1 port=$2
  cat <<EOF
AUTHGATE_DATABASE_URL=$url
AUTHGATE_LISTEN=127.0.0.1:$port
AUTHGATE_ISSUER=http://127.0.0.1:$port
AUTHGATE_SIGNING_KEY_FILE=$WORK/key.pem
AUTHGATE_RATE_LIMIT_PER_IP=0
AUTHGATE_LOGIN_MAX_FAILURES=1000000000
EOF
  if [[ ${3:-} == cheap ]]; then
    echo "AUTHGATE_ARGON2_MEMORY_KIB=$CHEAP_MEMORY_KIB"
    echo "AUTHGATE_ARGON2_ITERATIONS=$CHEAP_ITERATIONS"
  fi
}

# start_authgate DATABASE_URL [cheap]: sets AUTHGATE_PID and BASE.
start_authgate() {
  local port vars
  port=$(free_port)
  mapfile -t vars < <(authgate_env "$1" "$port" "${2:-}")
  start_server "$WORK/authgate.log" 0 "${vars[@]}" -- "$AUTHGATE" serve
  AUTHGATE_PID=$STARTED_PID
  BASE="http://127.0.0.1:$port"
  wait_http "$BASE/health/ready" "$AUTHGATE_PID" "$WORK/authgate.log"
  [[ $(curl -s -o /dev/null -w '%{http_code}' "$BASE/health/ready") == 200 ]] || die "authgate not ready"
}

client() { taskset -c 1 python3 "$BENCH/client.py" "$@"; }

# ----------------------------------------------------------------------- measuring

# wrk_once LUA URL CONNECTIONS [EXTRA_ENV...]: one bounded wrk run on CPU 1; prints the
# BENCH line of bench/report.lua.
wrk_once() {
  local lua=$1 url=$2 connections=$3
  shift 3
  local out
  # --timeout: slow answers (refresh tails, queued logins) are latency, not socket errors.
  out=$(env "$@" timeout $((DURATION + 60)) taskset -c 1 \
    wrk -t1 -c"$connections" -d"${DURATION}s" --timeout 10s --latency -s "$BENCH/$lua" "$url") ||
    die "wrk failed on $url"
  grep '^BENCH ' <<<"$out" || die "no BENCH line from wrk on $url: $out"
}

field() { # field NAME LINE
  local pair
  for pair in $2; do [[ $pair == "$1="* ]] && { echo "${pair#*=}"; return; }; done
  echo 0
}

median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# summarize LABEL FILE: "req/s p50_ms p99_ms errors" over the BENCH lines of FILE; each is
# the median over runs except errors, which is the total (it must be 0).
summarize() {
  local file=$1 line rps=() p50=() p99=() errors=0
  while read -r line; do
    rps+=("$(awk -v r="$(field requests "$line")" -v d="$(field duration_us "$line")" 'BEGIN {printf "%.1f", r / (d / 1e6)}')")
    p50+=("$(awk -v v="$(field p50_us "$line")" 'BEGIN {printf "%.2f", v / 1000}')")
    p99+=("$(awk -v v="$(field p99_us "$line")" 'BEGIN {printf "%.2f", v / 1000}')")
    errors=$((errors + $(field status_errors "$line") + $(field socket_errors "$line")))
  done <"$file"
  echo "$(printf '%s\n' "${rps[@]}" | median) $(printf '%s\n' "${p50[@]}" | median) $(printf '%s\n' "${p99[@]}" | median) $errors"
}

# settle: authgate finishes the hashes of logins whose client has gone (the handler is not
# cancelled when wrk closes its connections), so right after a login run the argon2
# admission queue stays full for up to 17 x 30 ms and would answer the next run with
# thousands of instant 503s. Wait until its pool is idle.
settle() {
  local tries=0
  until curl -s "$BASE/metrics" | awk '/^authgate_pool\{pool="argon2"/ {busy += $2} END {exit busy != 0}'; do
    ((tries++ < 300)) || die "authgate's argon2 pool did not drain within 30 s"
    sleep 0.1
  done
}

# measure KEY LUA URL CONNECTIONS [EXTRA_ENV...]: RUNS runs into $WORK/results/KEY.
measure() {
  local key=$1 url=$3 i
  shift
  log "measuring $key ($RUNS x ${DURATION}s)"
  for ((i = 0; i < RUNS; i++)); do
    if [[ $url == "$BASE"/* ]]; then settle; fi
    wrk_once "$@" >>"$WORK/results/$key"
  done
}

# measure_alternating KEY URL CEILING_KEY CEILING_URL: RUNS runs of each GET, alternating,
# so that a figure and its ceiling are measured seconds apart: this VM's speed drifts by
# tens of percent within minutes, and the ratio is what is judged.
measure_alternating() {
  local key=$1 url=$2 ceiling_key=$3 ceiling_url=$4 i
  log "measuring $key and $ceiling_key alternately ($RUNS x ${DURATION}s each)"
  for ((i = 0; i < RUNS; i++)); do
    wrk_once get.lua "$ceiling_url" "$CONNECTIONS" BENCH_TOKEN="$ACCESS" >>"$WORK/results/$ceiling_key"
    if [[ $url == "$BASE"/* ]]; then settle; fi
    wrk_once get.lua "$url" "$CONNECTIONS" BENCH_TOKEN="$ACCESS" >>"$WORK/results/$key"
  done
}

# measure_rotations KEY DATABASE_URL: the rotation-transaction ceiling (examples/
# rotation_ceiling.rs: 16 tasks rotating token chains back to back on authgate's pool
# settings), pinned to CPU 0 like the servers; RUNS runs of DURATION seconds.
measure_rotations() {
  local key=$1 url=$2 i out
  log "measuring $key ($RUNS x ${DURATION}s)"
  for ((i = 0; i < RUNS; i++)); do
    out=$(env ROTATION_DATABASE_URL="$url" ROTATION_SECONDS="$DURATION" ROTATION_WORKERS=16 \
      timeout $((DURATION + 60)) taskset -c 0 "$ROTATION" 2>&1) || die "rotation ceiling failed: $out"
    grep '^ROTATIONS ' <<<"$out" >>"$WORK/results/$key" || die "no ROTATIONS line: $out"
  done
}

# start_ceiling: the bare poem + jsonwebtoken server, validating tokens of the running
# authgate ($BASE); sets CEILING_PID and CEILING_BASE.
start_ceiling() {
  local port
  port=$(free_port)
  start_server "$WORK/ceiling.log" 0 CEILING_LISTEN="127.0.0.1:$port" CEILING_KEY_FILE="$WORK/key.pem" \
    CEILING_ISSUER="$BASE" -- "$CEILING"
  CEILING_PID=$STARTED_PID
  CEILING_BASE="http://127.0.0.1:$port"
  wait_http "$CEILING_BASE/static" "$CEILING_PID" "$WORK/ceiling.log"
}

# measure_login KEY: like measure, with the argon2 time taken just before each run: this
# VM's CPU speed drifts by tens of percent within minutes, and the login ceiling must be
# measured at the speed the logins saw.
measure_login() {
  local key=$1 i
  log "measuring $key ($RUNS x ${DURATION}s)"
  for ((i = 0; i < RUNS; i++)); do
    settle
    unknown_login_ms >>"$WORK/results/$key-argon2"
    settle
    wrk_once login.lua "$BASE/v1/auth/login" "$LOGIN_CONNECTIONS" \
      BENCH_EMAIL="$EMAIL" BENCH_PASSWORD="$PASSWORD" >>"$WORK/results/$key"
  done
}

# measure_refresh KEY: every request spends a distinct refresh token made beforehand. A
# short probe run sizes the token files (rate x duration x 1.3); each later run is sized
# by the fastest rate seen so far.
measure_refresh() {
  local key=$1 rate probe tokens i line
  log "preparing refresh tokens for a probe run"
  client refresh-tokens "$BASE" "$EMAIL" "$PASSWORD" 4000 "$WORK/tokens"
  probe=$(DURATION=2 wrk_once refresh.lua "$BASE/v1/auth/refresh" "$CONNECTIONS" BENCH_TOKENS="$WORK/tokens")
  rate=$(awk -v r="$(field requests "$probe")" -v d="$(field duration_us "$probe")" 'BEGIN {printf "%d", r / (d / 1e6)}')
  [[ $(field tokens_handed "$probe") -lt 4000 ]] || log "warning: the probe ran out of tokens; sizing from a lower bound"
  log "measuring $key ($RUNS x ${DURATION}s; probe: $rate req/s)"
  for ((i = 0; i < RUNS; i++)); do
    tokens=$(awk -v r="$rate" -v d="$DURATION" 'BEGIN {printf "%d", r * d * 1.3 + 500}')
    client refresh-tokens "$BASE" "$EMAIL" "$PASSWORD" "$tokens" "$WORK/tokens"
    line=$(wrk_once refresh.lua "$BASE/v1/auth/refresh" "$CONNECTIONS" BENCH_TOKENS="$WORK/tokens")
    echo "$line" >>"$WORK/results/$key"
    if (($(field tokens_handed "$line") > $(field tokens_available "$line"))); then
      log "warning: run $((i + 1)) of $key ran out of tokens (the 401s are counted as errors)"
    fi
    rate=$(awk -v a="$rate" -v r="$(field requests "$line")" -v d="$(field duration_us "$line")" \
      'BEGIN {b = r / (d / 1e6); printf "%d", (a > b) ? a : b}')
  done
}

# measure_flood KEY: /me latency from a few connections while 16 others keep the argon2
# pool saturated with correct-password logins; both wrk processes share CPU 1.
measure_flood() {
  local key=$1 i flood_pid
  log "measuring $key ($RUNS x ${DURATION}s)"
  for ((i = 0; i < RUNS; i++)); do
    settle
    env BENCH_EMAIL="$EMAIL" BENCH_PASSWORD="$PASSWORD" timeout $((DURATION + 60)) taskset -c 1 \
      wrk -t1 -c"$LOGIN_CONNECTIONS" -d"$((DURATION + 2))s" --timeout 10s -s "$BENCH/login.lua" \
      "$BASE/v1/auth/login" >"$WORK/flood.out" 2>&1 &
    flood_pid=$!
    FLOOD_PID=$flood_pid
    sleep 1 # let the argon2 queue fill before /me is probed
    wrk_once get.lua "$BASE/v1/auth/me" "$PROBE_CONNECTIONS" BENCH_TOKEN="$ACCESS" >>"$WORK/results/$key"
    wait "$flood_pid" || die "login flood failed: $(cat "$WORK/flood.out")"
    FLOOD_PID=""
    grep '^BENCH ' "$WORK/flood.out" >>"$WORK/results/$key-logins"
  done
}

# unknown_login_ms: median latency of 20 sequential logins of an unknown account (one
# argon2 verify against the dummy hash, at the configured cost, plus an audit write).
unknown_login_ms() { client argon2-ms "$BASE" "nobody-$RANDOM@example.com"; }

# --------------------------------------------------------------------------- phases

# bench_backend NAME DATABASE_URL ROTATIONS_URL: me, refresh, the rotation ceiling, login
# and me-under-flood on one backend.
bench_backend() {
  local name=$1 url=$2
  log "== $name"
  if ((ACCOUNTS > 0)); then
    mapfile -t vars < <(authgate_env "$url" 0)
    env "${vars[@]}" "$AUTHGATE" migrate >>"$WORK/authgate.log" 2>&1
    log "$(python3 "$BENCH/populate.py" "$url" "$ACCOUNTS")"
    if [[ $name == sqlite ]]; then
      local path=${url#sqlite://}
      log "SQLite database: $(du -h "${path%%\?*}" | cut -f1)"
    fi
  fi
  start_authgate "$url" cheap
  EMAIL="bench-$name-cheap@example.com"
  client register "$BASE" "$EMAIL" "$PASSWORD"
  ACCESS=$(client access "$BASE" "$EMAIL" "$PASSWORD")
  start_ceiling
  measure_alternating "me-$name" "$BASE/v1/auth/me" "ceiling-jwt-$name" "$CEILING_BASE/jwt"
  stop_server "$CEILING_PID"
  measure_refresh "refresh-$name"
  # The baseline of the argon2 estimate: the same unknown-account login, nearly free hash.
  settle
  unknown_login_ms >"$WORK/results/cheap-login-$name"
  stop_server "$AUTHGATE_PID"
  # On the same disk or server, with authgate stopped so that it does not compete.
  measure_rotations "rotations-$name" "$3"
  ((ACCOUNTS == 0)) || return 0

  # Same database, default argon2 cost; a user registered now has a default-cost hash.
  start_authgate "$url"
  EMAIL="bench-$name-default@example.com"
  client register "$BASE" "$EMAIL" "$PASSWORD"
  ACCESS=$(client access "$BASE" "$EMAIL" "$PASSWORD")
  measure_login "login-$name"
  measure "me-quiet-$name" get.lua "$BASE/v1/auth/me" "$PROBE_CONNECTIONS" BENCH_TOKEN="$ACCESS"
  measure_flood "me-flood-$name"
  stop_server "$AUTHGATE_PID"
}

# bench_verifiers: the downstream example and the ceiling server, with tokens from a
# running authgate (idle on CPU 0 after serving the discovery document and JWKS once).
bench_verifiers() {
  local port
  log "== downstream and ceilings"
  start_authgate "sqlite://$WORK/authgate.db?mode=rwc"
  EMAIL="bench-sqlite-default@example.com"
  ACCESS=$(client access "$BASE" "$EMAIL" "$PASSWORD")

  port=$(free_port)
  start_server "$WORK/downstream.log" 0 AUTHGATE_ISSUER="$BASE" DOWNSTREAM_LISTEN="127.0.0.1:$port" -- "$DOWNSTREAM"
  local downstream_pid=$STARTED_PID
  wait_http "http://127.0.0.1:$port/hello" "$downstream_pid" "$WORK/downstream.log"
  start_ceiling
  measure ceiling-static get.lua "$CEILING_BASE/static" "$CONNECTIONS"
  measure_alternating hello "http://127.0.0.1:$port/hello" ceiling-jwt "$CEILING_BASE/jwt"
  stop_server "$CEILING_PID"
  stop_server "$downstream_pid"
  stop_server "$AUTHGATE_PID"
}

# bench_startup: exec to the first 200 of /health/ready on the existing SQLite database
# (migrations already applied, signing key from the file), median of 5.
bench_startup() {
  local port i
  log "measuring startup (5 starts)"
  port=$(free_port)
  authgate_env "sqlite://$WORK/authgate.db?mode=rwc" "$port" >"$WORK/startup.env"
  for ((i = 0; i < 5; i++)); do
    taskset -c 1 python3 "$BENCH/client.py" startup-ms "$WORK/startup.env" "$WORK/startup.log" -- \
      taskset -c 0 "$AUTHGATE" serve
  done | median
}

# -------------------------------------------------------------------------- report

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.0f%%", 100 * a / b}'; }

row() { # row TARGET BACKEND KEY RATIO CEILING
  local rps p50 p99 errors
  read -r rps p50 p99 errors < <(summarize "$WORK/results/$3")
  printf '| %s | %s | %.0f | %s | %s | %s | %s | %s |\n' "$1" "$2" "$rps" "$p50" "$p99" "$4" "$5" "$errors"
}

rps_of() { summarize "$WORK/results/$1" | cut -d' ' -f1; }

# rotations_of KEY: the median rate of the rotation-ceiling runs, transactions per second.
rotations_of() {
  local line
  while read -r line; do
    awk -v t="$(field transactions "$line")" -v d="$(field duration_us "$line")" 'BEGIN {printf "%.1f\n", t / (d / 1e6)}'
  done <"$WORK/results/$1" | median
}

# criterion_argon2_note: if `cargo bench --bench building_blocks` has run in this checkout,
# its argon2 figure is a second opinion on the ceiling (the harness never runs it: it would
# compile the benches).
criterion_argon2_note() {
  local estimates="$ROOT/target/criterion/argon2id m=19456 t=2 p=1/verify a password/new/estimates.json"
  [[ -f $estimates ]] || return 0
  local ms name ratios=""
  ms=$(python3 -c 'import json, sys; print("%.2f" % (json.load(open(sys.argv[1]))["median"]["point_estimate"] / 1e6))' "$estimates")
  for name in sqlite postgres; do
    ratios+=" $name $(ratio "$(rps_of "login-$name")" "$(awk -v ms="$ms" 'BEGIN {print 1000 / ms}')"),"
  done
  echo "- for comparison, criterion's last argon2 verify in target/criterion ($(date -u -r "$estimates" +%Y-%m-%dT%H:%MZ)): $ms ms, a login ceiling of $(awk -v ms="$ms" 'BEGIN {printf "%.1f", 1000 / ms}') req/s; login ratio against it:${ratios%,}"
}

# argon2_ms NAME: the argon2id verify time at the default cost on backend NAME: the
# median unknown-account login at the default cost minus the same at the cheap cost (HTTP,
# the account lookup and the audit write cancel), scaled up because the cheap hash is not
# free: it costs CHEAP_COST/DEFAULT_COST of the default one.
argon2_ms() {
  awk -v d="$(median <"$WORK/results/login-$1-argon2")" -v c="$(cat "$WORK/results/cheap-login-$1")" \
    -v D="$DEFAULT_COST" -v C="$CHEAP_COST" 'BEGIN {printf "%.2f", (d - c) * D / (D - C)}'
}

login_ceiling() { awk -v ms="$(argon2_ms "$1")" 'BEGIN {printf "%.1f", 1000 / ms}'; }

report() {
  local jwt static name rps
  jwt=$(rps_of ceiling-jwt)
  static=$(rps_of ceiling-static)

  echo
  echo "authgate load harness: $RUNS run(s) of ${DURATION}s per figure (median), servers on CPU 0, wrk on CPU 1, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "| target | backend | req/s | p50 ms | p99 ms | ratio to ceiling | ceiling | errors |"
  echo "|---|---|---|---|---|---|---|---|"
  row "ceiling GET /static (bare poem)" - ceiling-static "" ""
  row "ceiling GET /jwt (poem + jsonwebtoken)" - ceiling-jwt "$(ratio "$jwt" "$static") of /static" ""
  row "downstream GET /hello" - hello "$(ratio "$(rps_of hello)" "$jwt")" "$(printf '%.0f' "$jwt") (/jwt)"
  for name in sqlite postgres; do
    local me_jwt
    me_jwt=$(rps_of "ceiling-jwt-$name")
    row "GET /v1/auth/me" "$name" "me-$name" "$(ratio "$(rps_of "me-$name")" "$me_jwt")" "$(printf '%.0f' "$me_jwt") (/jwt, alternating)"
  done
  for name in sqlite postgres; do
    local rotations
    rotations=$(rotations_of "rotations-$name")
    row "POST /v1/auth/refresh" "$name" "refresh-$name" "$(ratio "$(rps_of "refresh-$name")" "$rotations")" "$(printf '%.0f' "$rotations") (rotation tx/s)"
  done
  for name in sqlite postgres; do
    row "POST /v1/auth/login (c=$LOGIN_CONNECTIONS)" "$name" "login-$name" \
      "$(ratio "$(rps_of "login-$name")" "$(login_ceiling "$name")")" "$(login_ceiling "$name") (1 core / argon2)"
  done
  echo
  for name in sqlite postgres; do
    echo "- argon2id verify at the default cost ($name): $(argon2_ms "$name") ms = (unknown-account login at the default cost, median of $(paste -sd/ "$WORK/results/login-$name-argon2") ms, minus $(cat "$WORK/results/cheap-login-$name") ms at m=$CHEAP_MEMORY_KIB,t=$CHEAP_ITERATIONS) x $DEFAULT_COST/($DEFAULT_COST-$CHEAP_COST); the login ceiling is 1 core / that"
  done
  criterion_argon2_note
  echo "- startup, exec to /health/ready 200 on an existing SQLite database: $STARTUP_MS ms (median of 5)"
  for name in sqlite postgres; do
    local quiet quiet_p50 flood flood_p50 logins login_errors
    read -r _ quiet_p50 quiet _ < <(summarize "$WORK/results/me-quiet-$name")
    read -r rps flood_p50 flood errors < <(summarize "$WORK/results/me-flood-$name")
    read -r logins _ _ login_errors < <(summarize "$WORK/results/me-flood-$name-logins")
    printf -- '- GET /v1/auth/me under a login flood (%s): p99 %s ms, p50 %s ms, %.0f req/s from %d connections (without the flood: p99 %s ms, p50 %s ms); meanwhile %.0f logins/s from %d connections; errors %d\n' \
      "$name" "$flood" "$flood_p50" "$rps" "$PROBE_CONNECTIONS" "$quiet" "$quiet_p50" "$logins" "$LOGIN_CONNECTIONS" "$((errors + login_errors))"
  done
  echo "- the /jwt ceiling is measured in alternation with each GET it is compared with: with /hello (the row above), and with /me on each backend ($(printf '%.0f' "$(rps_of ceiling-jwt-sqlite)") and $(printf '%.0f' "$(rps_of ceiling-jwt-postgres)") req/s)"
  echo "- rotation ceiling: examples/rotation_ceiling.rs, 16 tasks each rotating its own token chain (UPDATE … WHERE unspent, INSERT successor, COMMIT) on authgate's pool settings, pinned to CPU 0, on the same SQLite disk / PostgreSQL server"
}

# report_populated: the /me and refresh rows of `report`, for a populated database.
report_populated() {
  echo
  echo "authgate load harness, $ACCOUNTS accounts / sessions and $((2 * ACCOUNTS)) refresh tokens loaded: $RUNS run(s) of ${DURATION}s per figure (median), servers on CPU 0, wrk on CPU 1, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "| target | backend | req/s | p50 ms | p99 ms | ratio to ceiling | ceiling | errors |"
  echo "|---|---|---|---|---|---|---|---|"
  for name in sqlite postgres; do
    local me_jwt rotations
    me_jwt=$(rps_of "ceiling-jwt-$name")
    row "GET /v1/auth/me" "$name" "me-$name" "$(ratio "$(rps_of "me-$name")" "$me_jwt")" "$(printf '%.0f' "$me_jwt") (/jwt, alternating)"
    rotations=$(rotations_of "rotations-$name")
    row "POST /v1/auth/refresh" "$name" "refresh-$name" "$(ratio "$(rps_of "refresh-$name")" "$rotations")" "$(printf '%.0f' "$rotations") (rotation tx/s)"
  done
}

# ---------------------------------------------------------------------------- main

main() {
  local started=$SECONDS
  install_wrk
  build
  mkdir -p "$WORK/results"
  openssl genpkey -algorithm ED25519 -out "$WORK/key.pem" 2>/dev/null

  bench_backend sqlite "sqlite://$WORK/authgate.db?mode=rwc" "sqlite://$WORK/rotations.db?mode=rwc"
  ((ACCOUNTS > 0)) || STARTUP_MS=$(bench_startup)

  PG_DB="authgate_bench_$$_$RANDOM"
  psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $PG_DB" >/dev/null
  bench_backend postgres "$PG_ADMIN_URL/$PG_DB" "$PG_ADMIN_URL/$PG_DB"

  if ((ACCOUNTS > 0)); then
    report_populated
  else
    bench_verifiers
    report
  fi
  log "done in $((SECONDS - started)) s"
}

main
