#!/usr/bin/env bash
# Bounded schemathesis fuzz of the served OpenAPI spec: no 5xx, and every
# response matches its documented status code, content type and schema.
#
# Usage: bash tests/fuzz/schemathesis.sh <path-to-authgate-binary>
# Needs python3 and curl; installs schemathesis from PyPI into
# ${XDG_CACHE_HOME:-$HOME/.cache}/authgate-schemathesis so reruns are fast.
set -euo pipefail

BIN=$(realpath "${1:?usage: schemathesis.sh <path-to-authgate-binary>}")
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/authgate-schemathesis"
WORK=$(mktemp -d)
SERVER_PID=

cleanup() {
  if [[ -n $SERVER_PID ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

die() { echo "schemathesis: $*" >&2; exit 1; }

# --- dependencies (cached; reinstalled only if missing or broken) ----------
# Major version pinned so that an upstream CLI break is a deliberate bump here.
mkdir -p "$CACHE"
ST="$CACHE/venv/bin/schemathesis"
if ! "$ST" --version >/dev/null 2>&1; then
  python3 -m venv --clear "$CACHE/venv"
  "$CACHE/venv/bin/python" -m pip install --quiet 'schemathesis>=4,<5' || die "could not install schemathesis"
fi

# --- start authgate on a free port with a throwaway database ----------------
# Small race between picking the port and binding it; acceptable for a test.
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
# Talk to our own server directly even if CI sets an HTTP proxy.
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}" no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"

# Throttling off so that the fuzzer's volume is not answered with 429s, and a
# cheap argon2 cost: neither is what this test is about. A delivery channel (a file):
# without one, forgot-password and verification answer 501 by contract, which the
# fuzzer rightly counts as a server error.
AUTHGATE_LISTEN="127.0.0.1:$PORT" \
AUTHGATE_ISSUER="$BASE" \
AUTHGATE_DATABASE_URL="sqlite://$WORK/fuzz.db?mode=rwc" \
AUTHGATE_LOG=warn \
AUTHGATE_DELIVERY_FILE="$WORK/messages.jsonl" \
AUTHGATE_RATE_LIMIT_PER_IP=0 \
AUTHGATE_LOGIN_MAX_FAILURES=1000000 \
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

# --- real access tokens, so Bearer operations get past authentication ------
# Two accounts: logout-all ends every session of its user, so it gets its own
# and GET /v1/auth/me keeps a live token for the whole run.
token() { # email
  local creds="{\"email\":\"$1\",\"password\":\"fuzz-password\"}"
  curl -fsS --max-time 10 -H 'content-type: application/json' -d "$creds" "$BASE/v1/auth/register" >/dev/null &&
    curl -fsS --max-time 10 -H 'content-type: application/json' -d "$creds" "$BASE/v1/auth/login" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}
export ME_TOKEN LOGOUT_TOKEN
ME_TOKEN=$(token me@example.com) || die "register/login failed"
LOGOUT_TOKEN=$(token logout-all@example.com) || die "register/login failed"

# A config file rather than -H, because a CLI header would override the
# per-operation one; schemathesis fills in the ${VAR}s from the environment.
# The spec does not say what a valid email or password looks like, so random
# strings almost never register or log in and the 201/200 bodies would go
# unchecked: the dictionaries mix in real credentials (a second casing of one
# email for case-insensitivity). Refresh and revoke then get real refresh
# tokens, which schemathesis reuses from the login responses.
cat >"$WORK/schemathesis.toml" <<'TOML'
headers = { Authorization = "Bearer ${ME_TOKEN}" }

[dictionaries]
emails = { values = ["me@example.com", "new@example.com", "New@Example.com"] }
passwords = { values = ["fuzz-password"] }

[parameters]
"body.email" = { dictionary = "emails", probability = 0.5 }
"body.password" = { dictionary = "passwords", probability = 0.5 }

[[operations]]
include-path = "/v1/auth/logout-all"
headers = { Authorization = "Bearer ${LOGOUT_TOKEN}" }
TOML

# --- fuzz -------------------------------------------------------------------
# Run from $WORK: schemathesis and Hypothesis keep state (.schemathesis/,
# .hypothesis/) in the current directory, which must not land in the repo.
status=0
(cd "$WORK" && timeout 600 "$ST" --config-file schemathesis.toml run "$BASE/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples 50 \
  --no-color \
  --report junit --report-junit-path junit.xml) || status=$?
((status != 124)) || echo "schemathesis: timed out after 600 s" >&2
kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; die "authgate died during the run"; }

# Count API operations, as schemathesis's JUnit report does.
python3 - "$WORK/junit.xml" <<'PY' || status=1
import sys, xml.etree.ElementTree as ET
s = ET.parse(sys.argv[1]).getroot().attrib
failed = int(s["failures"]) + int(s["errors"])
print(f"schemathesis: {int(s['tests']) - failed - int(s['skipped'])} passed, {failed} failed")
PY
exit $status
