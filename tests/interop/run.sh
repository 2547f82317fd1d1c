#!/usr/bin/env bash
# Interop check: standard JWT libraries in other languages (PyJWT, jose) must
# accept authgate access tokens using nothing but the public JWKS.
#
# Usage: bash tests/interop/run.sh <path-to-authgate-binary> [<path-to-downstream-example>]
# With the second argument it also runs the authgate-verify `downstream` example
# against the same authgate, end to end.
# Needs python3, node (>= 20) and npm; installs PyJWT and jose from PyPI/npm
# into ${XDG_CACHE_HOME:-$HOME/.cache}/authgate-interop so reruns are fast.
set -euo pipefail

BIN=$(realpath "${1:?usage: run.sh <path-to-authgate-binary>}")
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/authgate-interop"
WORK=$(mktemp -d)
DOWNSTREAM=${2:+$(realpath "$2")}
SERVER_PID= DOWNSTREAM_PID=

cleanup() {
  for pid in $SERVER_PID $DOWNSTREAM_PID; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

die() { echo "interop: $*" >&2; exit 1; }

# --- dependencies (cached; reinstalled only if missing or broken) ----------
# Major versions are pinned so that an upstream API break shows up as a
# deliberate bump here, not as a surprise red CI.
mkdir -p "$CACHE"
PY="$CACHE/venv/bin/python"
if ! "$PY" -c 'import jwt, cryptography, authlib, requests' 2>/dev/null; then
  python3 -m venv --clear "$CACHE/venv"
  "$PY" -m pip install --quiet 'pyjwt[crypto]>=2.8,<3' 'authlib>=1.3,<2' 'requests>=2.31,<3' \
    || die "could not install PyJWT, Authlib and requests"
fi
JOSE_DIR="$CACHE/node"
if [[ ! -f $JOSE_DIR/node_modules/jose/package.json ]]; then
  mkdir -p "$JOSE_DIR"
  npm install --silent --no-audit --no-fund --prefix "$JOSE_DIR" 'jose@^6' || die "could not install jose"
fi

# --- start authgate on a free port with a throwaway database ----------------
# Small race between picking the port and binding it; acceptable for a test.
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
# Talk to our own server directly even if CI sets an HTTP proxy.
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}" no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"

APORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ADMIN="http://127.0.0.1:$APORT"
# INTEROP_DATABASE_URL: an empty PostgreSQL database to run against instead.
DB_URL=${INTEROP_DATABASE_URL:-"sqlite://$WORK/interop.db?mode=rwc"}
if [[ $DB_URL == postgres* ]]; then
  openssl rand -base64 32 >"$WORK/master.key"
  export AUTHGATE_MASTER_KEY_FILE="$WORK/master.key"
fi
# Accounts start as analysts, whose scope includes reports:read.
printf '[roles.analyst]\nscopes = ["reports:read"]\n' >"$WORK/roles.toml"

# Cheap argon2 cost: hashing strength is not what this test is about.
AUTHGATE_LISTEN="127.0.0.1:$PORT" \
AUTHGATE_ADMIN_LISTEN="127.0.0.1:$APORT" \
AUTHGATE_CONFIG="$WORK/roles.toml" \
AUTHGATE_DEFAULT_ROLES=analyst \
AUTHGATE_ISSUER="$BASE" \
AUTHGATE_DATABASE_URL="$DB_URL" \
AUTHGATE_LOG=warn \
AUTHGATE_ARGON2_MEMORY_KIB=1024 \
AUTHGATE_ARGON2_ITERATIONS=1 \
  "$BIN" serve >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

for _ in $(seq 60); do
  curl -fs --max-time 2 -o /dev/null "$BASE/health/ready" && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; die "authgate exited during startup"; }
  sleep 0.5
done
curl -fs --max-time 2 -o /dev/null "$BASE/health/ready" || { cat "$WORK/server.log" >&2; die "authgate not ready after 30 s"; }

# --- obtain an access token the way a real client does -----------------------
CREDS='{"email":"interop@example.com","password":"interop-password"}'
post() { curl -fsS --max-time 10 -H 'content-type: application/json' -d "$CREDS" "$BASE$1"; }
post /v1/auth/register >/dev/null || die "register failed"
TOKEN=$(post /v1/auth/login | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])') \
  || die "login failed"

# --- run each library's check; report every one even if an earlier one fails --
passed=0 failed=0
check() { # name, command...
  local name=$1 out; shift
  if out=$("$@" 2>&1); then
    echo "interop: $name ${out##*$'\n'} accepts the access token"
    passed=$((passed + 1))
  else
    echo "interop: FAIL $name: $out"
    failed=$((failed + 1))
  fi
}
check PyJWT "$PY" "$HERE/verify_pyjwt.py" "$BASE" "$TOKEN"
check jose env JOSE_DIR="$JOSE_DIR" node "$HERE/verify_jose.mjs" "$BASE" "$TOKEN"

# The downstream example finds authgate's keys through discovery and answers /hello.
downstream_check() {
  local port base body claims
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  base="http://127.0.0.1:$port"
  AUTHGATE_ISSUER="$BASE" DOWNSTREAM_LISTEN="127.0.0.1:$port" DOWNSTREAM_LOG=warn DOWNSTREAM_REVOCATION_INTERVAL=2 \
    "$DOWNSTREAM" >"$WORK/downstream.log" 2>&1 &
  DOWNSTREAM_PID=$!
  for _ in $(seq 60); do curl -fs --max-time 2 -o /dev/null "$base/docs" && break; sleep 0.5; done
  [[ $(curl -s -o /dev/null -w '%{http_code}' "$base/hello") == 401 ]] || { echo "no token: not 401"; return 1; }
  [[ $(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer ${TOKEN}x" "$base/hello") == 401 ]] \
    || { echo "tampered token: not 401"; return 1; }
  body=$(curl -fsS --max-time 10 -H "Authorization: Bearer $TOKEN" "$base/hello") || { cat "$WORK/downstream.log"; return 1; }
  claims=$(python3 -c 'import base64, json, sys; p = sys.argv[1].split(".")[1]; print(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)).decode())' "$TOKEN")
  python3 -c 'import json, sys; b, c = json.loads(sys.argv[1]), json.loads(sys.argv[2]); assert (b["sub"], b["sid"]) == (c["sub"], c["sid"]), (b, c)' "$body" "$claims" \
    || return 1
  # A service client, through an off-the-shelf OAuth 2.0 library.
  local client client_id client_secret authlib
  client=$(AUTHGATE_DATABASE_URL="$DB_URL" "$BIN" clients create interop-robot --scopes "reports:read") || return 1
  client_id=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["client_id"])' "$client")
  client_secret=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["client_secret"])' "$client")
  authlib=$("$PY" "$HERE/oauth_authlib.py" "$BASE" "$client_id" "$client_secret" "$base") \
    || { echo "$authlib"; return 1; }
  # Roles and scopes: an analyst reads reports but is no admin; made admin (and no
  # longer analyst) by the admin API, the next token opens /admin and not /reports.
  status() { curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $1" "$base$2"; }
  [[ $(status "$TOKEN" /reports) == 200 ]] || { echo "analyst: /reports not 200"; return 1; }
  [[ $(status "$TOKEN" /admin) == 403 ]] || { echo "analyst: /admin not 403"; return 1; }
  local key id admin_token
  key=$(AUTHGATE_DATABASE_URL="$DB_URL" "$BIN" admin-keys create interop) || return 1
  id=$(curl -fsS -H "Authorization: Bearer $TOKEN" "$BASE/v1/auth/me" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
  curl -fsS -o /dev/null -X PATCH -H "Authorization: Bearer $key" -H 'content-type: application/json' \
    -d '{"roles":["admin"]}' "$ADMIN/admin/v1/users/$id" || { echo "admin PATCH failed"; return 1; }
  admin_token=$(post /v1/auth/login | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
  [[ $(status "$admin_token" /admin) == 200 ]] || { echo "admin: /admin not 200"; return 1; }
  [[ $(status "$admin_token" /reports) == 403 ]] || { echo "admin: /reports not 403"; return 1; }
  # Revocation feed: after logout-all, the still unexpired token is refused within the
  # poll interval (2 s) + 2 s.
  curl -fsS -o /dev/null -X POST -H "Authorization: Bearer $admin_token" "$BASE/v1/auth/logout-all" \
    || { echo "logout-all failed"; return 1; }
  local waited=0
  until [[ $(status "$admin_token" /hello) == 401 ]]; do
    ((waited < 40)) || { echo "a token of an ended session still accepted after 4 s"; return 1; }
    sleep 0.1; waited=$((waited + 1))
  done
  echo "example (GET /hello answered $body; /admin and /reports by role and scope; $authlib got client tokens it accepts; a logged-out token refused after $((waited * 100)) ms)"
}
# `check` may run its command in a subshell, where DOWNSTREAM_PID does not reach the
# EXIT trap: the example is stopped here, pass or fail.
downstream_check_and_stop() {
  local status=0
  downstream_check || status=$?
  [[ -n $DOWNSTREAM_PID ]] && { kill "$DOWNSTREAM_PID" 2>/dev/null; wait "$DOWNSTREAM_PID" 2>/dev/null; }
  return "$status"
}
if [[ -n $DOWNSTREAM ]]; then check "authgate-verify downstream" downstream_check_and_stop; fi

echo "interop: $passed passed, $failed failed"
((failed == 0))
